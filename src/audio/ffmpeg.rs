//! The fallback for formats symphonia does not decode (AC-3 or DTS in a Matroska episode, Opus,
//! WMA): the `ffmpeg` and `ffprobe` programs, when they are on PATH.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use super::error::{check_decoded_span, AudioError, Segment};
use super::Audio;

/// Whether `ffmpeg` and `ffprobe` can be run (checked once per process).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        ["ffmpeg", "ffprobe"].iter().all(|program| {
            Command::new(program)
                .arg("-version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
    })
}

/// Decodes the first audio stream of `path` to mono at its own sample rate (ffmpeg's downmix);
/// with `segment`, only that span (ffmpeg seeks).
pub fn read(path: &Path, segment: Segment) -> Result<Audio, AudioError> {
    let (rate, seconds) = probe(path)?;
    let mut command = Command::new("ffmpeg");
    command.args(["-v", "error", "-nostdin"]);
    if let Some((start, _)) = segment {
        command.args(["-ss", &format!("{start}")]);
    }
    command.arg("-i").arg(path);
    if let Some((start, Some(end))) = segment {
        command.args(["-t", &format!("{}", (end - start).max(0.0))]);
    }
    command.args([
        "-map",
        "0:a:0",
        "-ac",
        "1",
        "-ar",
        &rate.to_string(),
        "-f",
        "f32le",
        "-",
    ]);
    let output = command
        .output()
        .map_err(|e| AudioError::Unreadable(format!("cannot run ffmpeg: {e}")))?;
    if !output.status.success() {
        return Err(AudioError::Undecodable(format!(
            "ffmpeg: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let samples: Vec<f32> = output
        .stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    match seconds {
        Some(seconds) => {
            let frames = (seconds * rate as f64).round() as u64;
            check_decoded_span(segment, frames, rate)?
        }
        None if segment.is_some_and(|(start, _)| start > 0.0) && samples.is_empty() => {
            check_decoded_span(segment, 0, rate)?
        }
        None => {}
    }
    Ok(Audio { samples, rate })
}

/// The first audio stream's sample rate and the file's duration in seconds (when known).
fn probe(path: &Path) -> Result<(u32, Option<f64>), AudioError> {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "a:0"])
        .args(["-show_entries", "stream=sample_rate:format=duration"])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(path)
        .output()
        .map_err(|e| AudioError::Unreadable(format!("cannot run ffprobe: {e}")))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .map(str::trim)
    };
    let rate = field("sample_rate").and_then(|r| r.parse::<u32>().ok());
    match rate {
        Some(rate) if output.status.success() && rate > 0 => {
            Ok((rate, field("duration").and_then(|d| d.parse().ok())))
        }
        _ => Err(AudioError::Undecodable(format!(
            "ffmpeg (ffprobe) finds no audio stream: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))),
    }
}
