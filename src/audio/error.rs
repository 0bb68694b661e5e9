//! What can go wrong reading an audio file, and the segment (`start`/`end`) arithmetic every
//! decoder shares.

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum AudioError {
    #[error("file not found")]
    Missing,
    #[error("cannot open the file: {0}")]
    Unreadable(String),
    #[error("not a readable audio file: {0}")]
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

/// A `[start, end)` span in seconds; no end: to the end of the file.
pub type Segment = Option<(f64, Option<f64>)>;

/// Seconds a segment end may overshoot the file (rounding in manifests).
const SEGMENT_SLACK: f64 = 0.05;

/// The frames `[first, last)` of `segment` in a stream of `frames` frames at `rate` (`None`:
/// length not known before decoding; `last` is then where the segment ends, or `u64::MAX`).
pub fn frame_span(
    segment: Segment,
    frames: Option<u64>,
    rate: u32,
) -> Result<(u64, u64), AudioError> {
    let rate = rate as f64;
    let Some((start, end)) = segment else {
        return Ok((0, frames.unwrap_or(u64::MAX)));
    };
    let seconds = frames.map(|f| f as f64 / rate);
    let end_seconds = end.or(seconds).unwrap_or(f64::INFINITY);
    let outside = start < 0.0
        || !start.is_finite()
        || end_seconds <= start
        || seconds.is_some_and(|s| end_seconds > s + SEGMENT_SLACK);
    if outside {
        return Err(AudioError::BadSegment {
            start,
            end: end_seconds,
            seconds: seconds.unwrap_or(f64::NAN),
        });
    }
    let first = (start * rate).round() as u64;
    let last = match end {
        Some(end) => (end * rate).round() as u64,
        None => u64::MAX,
    };
    Ok((first, frames.map_or(last, |f| last.min(f))))
}

/// After decoding a stream whose length was not known: the segment must have started inside
/// it and may end at most `SEGMENT_SLACK` past it.
pub fn check_decoded_span(
    segment: Segment,
    decoded_frames: u64,
    rate: u32,
) -> Result<(), AudioError> {
    frame_span(segment, Some(decoded_frames), rate).map(|_| ())
}
