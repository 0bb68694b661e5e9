//! WAV decoding with hound: 8/16/24/32-bit integer and 32-bit float PCM, any channel count,
//! mixed down to mono by averaging channels; optionally only a [start, end) segment in seconds.

use std::path::Path;

use super::Audio;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum WavError {
    #[error("file not found")]
    Missing,
    #[error("cannot open the file: {0}")]
    Unreadable(String),
    #[error("not a readable WAV file: {0}")]
    Undecodable(String),
    #[error("unsupported format: {0}")]
    Unsupported(String),
    #[error("truncated: the header declares {declared} frames but only {found} could be read")]
    Truncated { declared: u64, found: u64 },
    #[error("the data chunk declares {declared_bytes} bytes but the whole file has {file_bytes} (truncated, or a corrupt header)")]
    OversizeData {
        declared_bytes: u64,
        file_bytes: u64,
    },
    #[error(
        "segment {}-{} s is outside the file ({} s)",
        seconds_text(*start),
        seconds_text(*end),
        seconds_text(*seconds)
    )]
    BadSegment { start: f64, end: f64, seconds: f64 },
}

/// Seconds for messages: `12.345`, or `1.000e308` for absurd values (never 300 digits).
pub fn seconds_text(seconds: f64) -> String {
    if seconds.is_finite() && seconds.abs() < 1e9 {
        format!("{seconds:.3}")
    } else {
        format!("{seconds:.3e}")
    }
}

/// What a file that is not a RIFF/WAVE file is, from its first bytes, for the rejection reason.
fn not_wav(head: &[u8]) -> String {
    let kind = match head {
        [b'I', b'D', b'3', ..] | [0xFF, 0xE0..=0xFF, ..] => Some("MP3"),
        [b'f', b'L', b'a', b'C', ..] => Some("FLAC"),
        [b'O', b'g', b'g', b'S', ..] => Some("Ogg (Vorbis/Opus)"),
        [_, _, _, _, b'f', b't', b'y', b'p', ..] => Some("MP4/M4A"),
        [0x1A, 0x45, 0xDF, 0xA3, ..] => Some("Matroska/WebM"),
        [b'R', b'I', b'F', b'F', _, _, _, _, w, ..] if *w != b'W' => {
            Some("a RIFF file that is not WAVE")
        }
        [] => None,
        _ => None,
    };
    match (kind, head.is_empty()) {
        (_, true) => "an empty file, not a WAV file".into(),
        (Some(kind), _) => format!(
            "{kind}, not WAV; arp-train reads WAV (convert with e.g. `ffmpeg -i IN -ar 16000 OUT.wav`)"
        ),
        (None, _) => "not a WAV file (no RIFF/WAVE header)".into(),
    }
}

/// Seconds a segment end may overshoot the file (rounding in manifests).
const SEGMENT_SLACK: f64 = 0.05;

/// Decodes `path` to mono; with `segment`, only that span (seconds).
pub fn read_mono(path: &Path, segment: Option<(f64, Option<f64>)>) -> Result<Audio, WavError> {
    let file_bytes = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(WavError::Missing),
        // A symlink loop, a permission problem: say which, not "not found".
        Err(e) => return Err(WavError::Unreadable(e.to_string())),
    };
    let mut head = [0u8; 12];
    let read = std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read(&mut f, &mut head))
        .map_err(|e| WavError::Unreadable(e.to_string()))?;
    let head = &head[..read];
    if !(head.len() == 12 && matches!(&head[..4], b"RIFF" | b"RF64") && &head[8..12] == b"WAVE") {
        return Err(WavError::Unsupported(not_wav(head)));
    }
    let mut reader =
        hound::WavReader::open(path).map_err(|e| WavError::Undecodable(e.to_string()))?;
    let spec = reader.spec();
    // A data chunk that claims more than the file holds: refused before anything is allocated
    // for it (a forged header could otherwise ask for gigabytes).
    let frame_bytes = (spec.bits_per_sample as u64).div_ceil(8) * spec.channels as u64;
    let declared_frames = reader.duration() as u64;
    if frame_bytes > 0 && declared_frames.saturating_mul(frame_bytes) > file_bytes {
        return Err(WavError::OversizeData {
            declared_bytes: declared_frames.saturating_mul(frame_bytes),
            file_bytes,
        });
    }
    let channels = spec.channels as usize;
    if channels == 0 || spec.sample_rate == 0 {
        return Err(WavError::Undecodable(format!(
            "{} channels at {} Hz",
            spec.channels, spec.sample_rate
        )));
    }
    let declared = reader.duration() as u64;
    let seconds = declared as f64 / spec.sample_rate as f64;
    let (first, count) = match segment {
        None => (0, declared),
        Some((start, end)) => {
            let end = end.unwrap_or(seconds);
            if start < 0.0 || end <= start || end > seconds + SEGMENT_SLACK {
                return Err(WavError::BadSegment {
                    start,
                    end,
                    seconds,
                });
            }
            let first = (start * spec.sample_rate as f64).round() as u64;
            let last = ((end * spec.sample_rate as f64).round() as u64).min(declared);
            (first, last.saturating_sub(first))
        }
    };
    if first > 0 {
        reader
            .seek(first as u32)
            .map_err(|e| WavError::Undecodable(e.to_string()))?;
    }
    let wanted = (count as usize) * channels;
    let interleaved = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => collect(reader.samples::<f32>().take(wanted), |x| x),
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            collect(reader.samples::<i32>().take(wanted), |x| {
                (x as f64 * scale) as f32
            })
        }
        (format, bits) => return Err(WavError::Unsupported(format!("{bits}-bit {format:?}"))),
    };
    let interleaved = interleaved.map_err(|read| {
        let found = first + (read / channels) as u64;
        WavError::Truncated { declared, found }
    })?;
    let samples = if channels == 1 {
        interleaved
    } else {
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() / channels as f32)
            .collect()
    };
    Ok(Audio {
        samples,
        rate: spec.sample_rate,
    })
}

/// Collects converted samples; on a read error, returns how many were read before it.
fn collect<S, I: Iterator<Item = hound::Result<S>>>(
    iter: I,
    convert: impl Fn(S) -> f32,
) -> Result<Vec<f32>, usize> {
    let mut out = Vec::with_capacity(iter.size_hint().0);
    for sample in iter {
        match sample {
            Ok(s) => out.push(convert(s)),
            Err(_) => return Err(out.len()),
        }
    }
    Ok(out)
}

/// Writes 16-bit mono PCM (used for synthesized audio and test data).
pub fn write_mono_i16(path: &Path, audio: &Audio) -> hound::Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: audio.rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec)?;
    for &s in &audio.samples {
        writer.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16)?;
    }
    writer.finalize()
}
