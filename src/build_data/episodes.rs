//! Episodes: media files with a subtitle file of the same name beside them (`s01e01.mkv` with
//! `s01e01.srt`, or `s01e01.en.srt`).

use std::path::{Path, PathBuf};

use super::subtitles::{self, BadCue, Cue};
use crate::listing::{has_extension, sorted_entries};

pub struct Episode {
    pub media: PathBuf,
    pub subtitles: PathBuf,
    /// The file name without extension (the manifest's `episode`).
    pub name: String,
    pub cues: Vec<Cue>,
    /// Cues of the subtitle file that cannot be spoken lines (for `rejected.jsonl`).
    pub rejected: Vec<BadCue>,
}

/// Media extensions looked for in a directory (any file named explicitly is taken).
const MEDIA: [&str; 14] = [
    "wav", "flac", "mp3", "ogg", "oga", "opus", "m4a", "mp4", "m4v", "mkv", "mka", "webm", "avi",
    "mov",
];

/// The episodes among `inputs` (media files, or directories searched for media files), each
/// with its subtitles read. A media file without subtitles is an error naming it; subtitles
/// that yield no line are a warning per file, and an error when no episode yields any.
pub fn find(inputs: &[PathBuf]) -> Result<Vec<Episode>, String> {
    let mut media = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let found = sorted_entries(input)?.into_iter();
            media.extend(found.filter(|p| p.is_file() && has_extension(p, &MEDIA)));
        } else if input.is_file() {
            media.push(input.clone());
        } else {
            return Err(format!("episode {} not found", input.display()));
        }
    }
    if media.is_empty() {
        return Err(format!(
            "no episodes found in {} (media files: {})",
            inputs
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            MEDIA.join(", ")
        ));
    }
    let episodes: Vec<Episode> = media.into_iter().map(episode).collect::<Result<_, _>>()?;
    if episodes.iter().all(|e| e.cues.is_empty()) {
        let files: Vec<String> = episodes
            .iter()
            .map(|e| e.subtitles.display().to_string())
            .collect();
        return Err(format!(
            "no subtitle lines in any episode's subtitles ({}): see the warnings above",
            files.join(", ")
        ));
    }
    Ok(episodes)
}

/// The episode of one media file, its subtitles read (and warned about where they hold no
/// line, or their encoding had to be guessed).
fn episode(media: PathBuf) -> Result<Episode, String> {
    let path = subtitles_of(&media).ok_or_else(|| {
        format!(
            "{}: no subtitles beside it (looked for {} with the same name)",
            media.display(),
            subtitles::EXTENSIONS.map(|e| format!(".{e}")).join(", ")
        )
    })?;
    let read = subtitles::read(&path)?;
    if read.guessed {
        tracing::warn!(
            "{}: not UTF-8; read as {}. If its accents look wrong in report.md, convert it to \
             UTF-8 first (iconv -f ENCODING -t UTF-8)",
            path.display(),
            read.encoding
        );
    }
    if read.cues.is_empty() {
        let why = match read.rejected.len() {
            0 => "no cue with a time line found".to_string(),
            n => format!("all {n} cues rejected, each listed in rejected.jsonl"),
        };
        tracing::warn!(
            "{}: no subtitle lines ({why}; read as {}): the episode gives nothing",
            path.display(),
            read.encoding
        );
    }
    let name = media
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Episode {
        media,
        subtitles: path,
        name,
        cues: read.cues,
        rejected: read.rejected,
    })
}

/// A note for an episode with several audio tracks (a dub, a commentary) naming the one read,
/// given the tracks' languages in file order; `None` for one track.
pub fn audio_track_note(media: &Path, languages: &[Option<String>]) -> Option<String> {
    if languages.len() < 2 {
        return None;
    }
    let names: Vec<&str> = languages
        .iter()
        .map(|l| l.as_deref().unwrap_or("language not tagged"))
        .collect();
    Some(format!(
        "{}: {} audio tracks ({}); build-data and training read the first ({}). For another, \
         extract it (ffmpeg -i FILE -map 0:a:N -c copy NAME.mka, N counted from 0) and give \
         that file, with its subtitles beside it under the same name",
        media.display(),
        names.len(),
        names.join(", "),
        names[0]
    ))
}

/// `dir/stem.{ass,ssa,srt,vtt}`, else `dir/stem.<language>.<ext>`.
fn subtitles_of(media: &Path) -> Option<PathBuf> {
    let dir = media.parent()?;
    let stem = media.file_stem()?.to_string_lossy().into_owned();
    for ext in subtitles::EXTENSIONS {
        let path = dir.join(format!("{stem}.{ext}"));
        if path.is_file() {
            return Some(path);
        }
    }
    let mut tagged: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            has_extension(p, &subtitles::EXTENSIONS)
                && p.file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.strip_prefix(&stem))
                    .is_some_and(|rest| rest.starts_with('.'))
        })
        .collect();
    tagged.sort();
    tagged.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_audio_tracks_are_named() {
        let path = Path::new("s01e01.mkv");
        assert_eq!(audio_track_note(path, &[Some("eng".into())]), None);
        let note = audio_track_note(path, &[Some("jpn".into()), None]).unwrap();
        assert!(
            note.starts_with(
                "s01e01.mkv: 2 audio tracks (jpn, language not tagged); build-data and training \
                 read the first (jpn)"
            ),
            "{note}"
        );
    }
}
