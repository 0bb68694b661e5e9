//! WAV decoding with hound: 8/16/24/32-bit integer and 32-bit float PCM, any channel count,
//! mixed down to mono by averaging channels; optionally only a [start, end) segment in seconds.

use std::path::Path;

use super::Audio;

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum WavError {
    #[error("file not found")]
    Missing,
    #[error("not a readable WAV file: {0}")]
    Undecodable(String),
    #[error("unsupported WAV encoding: {0}")]
    Unsupported(String),
    #[error("truncated: the header declares {declared} frames but only {found} could be read")]
    Truncated { declared: u64, found: u64 },
    #[error("segment {start:.3}-{end:.3} s is outside the file ({seconds:.3} s)")]
    BadSegment { start: f64, end: f64, seconds: f64 },
}

/// Seconds a segment end may overshoot the file (rounding in manifests).
const SEGMENT_SLACK: f64 = 0.05;

/// Decodes `path` to mono; with `segment`, only that span (seconds).
pub fn read_mono(path: &Path, segment: Option<(f64, Option<f64>)>) -> Result<Audio, WavError> {
    if !path.exists() {
        return Err(WavError::Missing);
    }
    let mut reader =
        hound::WavReader::open(path).map_err(|e| WavError::Undecodable(e.to_string()))?;
    let spec = reader.spec();
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
