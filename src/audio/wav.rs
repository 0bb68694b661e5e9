//! WAV with hound: 8/16/24/32-bit integer and 32-bit float PCM, any channel count, mixed down
//! to mono by averaging channels; optionally only a [start, end) segment, read by seeking.

use std::path::Path;

use super::error::{frame_span, AudioError, Segment};
use super::Audio;

/// Decodes the RIFF/WAVE file `path` (`file_bytes` long) to mono; with `segment`, only that span.
pub fn read(path: &Path, segment: Segment, file_bytes: u64) -> Result<Audio, AudioError> {
    let mut reader =
        hound::WavReader::open(path).map_err(|e| AudioError::Undecodable(e.to_string()))?;
    let spec = reader.spec();
    // A data chunk that claims more than the file holds: refused before anything is allocated
    // for it (a forged header could otherwise ask for gigabytes).
    let frame_bytes = (spec.bits_per_sample as u64).div_ceil(8) * spec.channels as u64;
    let declared_frames = reader.duration() as u64;
    if frame_bytes > 0 && declared_frames.saturating_mul(frame_bytes) > file_bytes {
        return Err(AudioError::OversizeData {
            declared_bytes: declared_frames.saturating_mul(frame_bytes),
            file_bytes,
        });
    }
    let channels = spec.channels as usize;
    if channels == 0 || spec.sample_rate == 0 {
        return Err(AudioError::Undecodable(format!(
            "{} channels at {} Hz",
            spec.channels, spec.sample_rate
        )));
    }
    let declared = reader.duration() as u64;
    let (first, last) = frame_span(segment, Some(declared), spec.sample_rate)?;
    let count = last.saturating_sub(first);
    if first > 0 {
        reader
            .seek(first as u32)
            .map_err(|e| AudioError::Undecodable(e.to_string()))?;
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
        (format, bits) => return Err(AudioError::Unsupported(format!("{bits}-bit {format:?}"))),
    };
    let interleaved = interleaved.map_err(|read| {
        let found = first + (read / channels) as u64;
        AudioError::Truncated { declared, found }
    })?;
    Ok(Audio::from_interleaved(
        interleaved,
        channels,
        spec.sample_rate,
    ))
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

/// Saves 16-bit mono PCM at `path` atomically, never through a link or into a FIFO or device
/// (`crate::atomic`): what synthesis hands a user.
pub fn save_mono_i16(path: &Path, audio: &Audio) -> std::io::Result<()> {
    crate::atomic::replace_with(path, |tmp| {
        write_mono_i16(tmp, audio).map_err(|e| match e {
            hound::Error::IoError(e) => e,
            other => std::io::Error::other(other.to_string()),
        })
    })
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
