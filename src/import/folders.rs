//! A folder per speaker: `<root>/<speaker>/<clip>.{wav,flac,...}`, each clip's transcript in
//! `<clip>.txt` or `<clip>.lab` beside it (Montreal Forced Aligner's layout).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::{read_bytes, Imported, Line};
use crate::audio::read::is_audio_file;
use crate::listing::{has_extension, sorted_entries};

const TRANSCRIPTS: [&str; 2] = ["txt", "lab"];

fn is_transcript(path: &Path) -> bool {
    has_extension(path, &TRANSCRIPTS)
}

pub fn read(root: &Path) -> Result<Imported, String> {
    let mut out = Imported::default();
    for speaker_dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
        let speaker = speaker_dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let files: Vec<PathBuf> = sorted_entries(&speaker_dir)?
            .into_iter()
            .filter(|p| p.is_file())
            .collect();
        // A set, not a scan per transcript: a speaker's folder may hold tens of thousands.
        let clip_stems: HashSet<&OsStr> = files
            .iter()
            .filter(|f| is_audio_file(f))
            .filter_map(|f| f.file_stem())
            .collect();
        for transcript in files.iter().filter(|p| is_transcript(p)) {
            if !transcript
                .file_stem()
                .is_some_and(|stem| clip_stems.contains(stem))
            {
                out.skipped.push(format!(
                    "{}: a transcript with no audio clip of the same name beside it",
                    transcript.display()
                ));
            }
        }
        for clip in files.iter().filter(|p| is_audio_file(p)) {
            let transcript = TRANSCRIPTS
                .iter()
                .map(|e| clip.with_extension(e))
                .find(|p| p.is_file());
            let Some(transcript) = transcript else {
                out.skipped.push(format!(
                    "{}: no .txt or .lab transcript beside it",
                    clip.display()
                ));
                continue;
            };
            let bytes = read_bytes(&transcript)?;
            let text = match std::str::from_utf8(&bytes) {
                Ok(text) => text.split_whitespace().collect::<Vec<_>>().join(" "),
                Err(e) => {
                    out.skipped.push(format!(
                        "{}: not UTF-8 (byte {}): save the transcript as UTF-8",
                        transcript.display(),
                        e.valid_up_to() + 1
                    ));
                    continue;
                }
            };
            if text.is_empty() {
                out.skipped
                    .push(format!("{}: an empty transcript", transcript.display()));
                continue;
            }
            let stem = clip
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            out.lines.push(Line {
                id: format!("{speaker}-{stem}"),
                audio: clip.clone(),
                text,
                speaker: speaker.clone(),
                context: Vec::new(),
            });
        }
    }
    if out.lines.is_empty() && out.skipped.is_empty() {
        return Err(format!(
            "{}: no <speaker>/<clip> audio files found (extensions: {})",
            root.display(),
            crate::audio::read::AUDIO_EXTENSIONS.join(", ")
        ));
    }
    Ok(out)
}
