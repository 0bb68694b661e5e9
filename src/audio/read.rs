//! Reading any audio file to mono, the one entry point every command uses: WAV with hound,
//! FLAC/MP3/Ogg Vorbis/AAC/ALAC (in MP4, M4A or Matroska) with symphonia, anything else with
//! `ffmpeg` when it is on PATH.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::error::{AudioError, Segment};
use super::{compressed, ffmpeg, wav, Audio};

/// What to do about a file neither hound nor symphonia decodes.
const FORMATS_HELP: &str = "arp-train decodes WAV, FLAC, MP3, Ogg Vorbis, and AAC or ALAC in MP4/M4A/MKV; \
for other formats install ffmpeg (e.g. `apt-get install ffmpeg`) so arp-train can use it, or convert \
the file (`ffmpeg -i IN -vn -ar 16000 OUT.flac`)";

/// File extensions of the audio formats read here (lower case); ffmpeg reads more.
pub const AUDIO_EXTENSIONS: [&str; 9] = [
    "wav", "flac", "mp3", "ogg", "oga", "m4a", "mp4", "mka", "mkv",
];

/// Whether `path`'s extension names one of `AUDIO_EXTENSIONS` (any case).
pub fn is_audio_file(path: &Path) -> bool {
    crate::listing::has_extension(path, &AUDIO_EXTENSIONS)
}

/// Decodes `path` to mono at its own sample rate; with `segment`, only that span (seconds).
pub fn read_mono(path: &Path, segment: Segment) -> Result<Audio, AudioError> {
    let file_bytes = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(AudioError::Missing),
        // A symlink loop, a permission problem: say which, not "not found".
        Err(e) => return Err(AudioError::Unreadable(e.to_string())),
    };
    if file_bytes == 0 {
        return Err(AudioError::Undecodable("an empty file".into()));
    }
    let mut head = [0u8; 12];
    let read = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .map_err(|e| AudioError::Unreadable(e.to_string()))?;
    let head = &head[..read];
    if head.len() == 12 && matches!(&head[..4], b"RIFF" | b"RF64") && &head[8..12] == b"WAVE" {
        return wav::read(path, segment, file_bytes);
    }
    match compressed::read(path, segment) {
        Ok(audio) => Ok(audio),
        Err(compressed::Failure::Failed(e)) => Err(e),
        Err(compressed::Failure::Unsupported(what)) if ffmpeg::available() => {
            say_ffmpeg_once(path, &what);
            ffmpeg::read(path, segment)
        }
        Err(compressed::Failure::Unsupported(what)) => {
            Err(AudioError::Unsupported(format!("{what}; {FORMATS_HELP}")))
        }
    }
}

/// Says once per process that ffmpeg decodes what symphonia cannot (each file at debug level).
fn say_ffmpeg_once(path: &Path, what: &str) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        tracing::info!(
            "decoding {} with ffmpeg ({what}: not a format arp-train decodes itself); files like it are decoded the same way",
            path.display()
        );
    } else {
        tracing::debug!("decoding {} with ffmpeg ({what})", path.display());
    }
}
