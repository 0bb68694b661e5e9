//! AudioRole's acoustic-integrity filters: every clip either passes or gets one reason.

use std::fmt;

use super::Audio;
use crate::recipe::QualityFilters;

/// Why an utterance was left out. The names are the `reason` field of the rejection report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rejection {
    MalformedLine,
    MissingFile,
    Undecodable,
    Truncated,
    BadSegment,
    NonFinite,
    TooShort,
    TooLong,
    Silent,
    Clipped,
    EmptyText,
}

impl Rejection {
    pub fn name(self) -> &'static str {
        match self {
            Rejection::MalformedLine => "malformed_line",
            Rejection::MissingFile => "missing_file",
            Rejection::Undecodable => "undecodable",
            Rejection::Truncated => "truncated",
            Rejection::BadSegment => "bad_segment",
            Rejection::NonFinite => "non_finite_samples",
            Rejection::TooShort => "too_short",
            Rejection::TooLong => "too_long",
            Rejection::Silent => "silent",
            Rejection::Clipped => "clipped",
            Rejection::EmptyText => "empty_text",
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Level statistics of a clip.
#[derive(Clone, Copy, Debug)]
pub struct Levels {
    pub rms_dbfs: f64,
    /// Share of samples inside runs of at least [`CLIPPED_RUN`] consecutive samples at or above
    /// the clip level.
    pub clipped_fraction: f64,
}

/// Consecutive samples at full scale that make clipping. A mastered track touches full scale
/// on single samples (peak normalization, a limiter's ceiling) without distortion; a clipped
/// one stays there, flat-topped, for several.
pub const CLIPPED_RUN: usize = 3;

pub fn levels(audio: &Audio, clip_level: f64) -> Levels {
    let n = audio.samples.len().max(1) as f64;
    let energy: f64 = audio
        .samples
        .iter()
        .map(|&x| (x as f64) * (x as f64))
        .sum::<f64>()
        / n;
    let mut clipped = 0usize;
    let mut run = 0usize;
    for &x in &audio.samples {
        if (x as f64).abs() >= clip_level {
            run += 1;
        } else {
            if run >= CLIPPED_RUN {
                clipped += run;
            }
            run = 0;
        }
    }
    if run >= CLIPPED_RUN {
        clipped += run;
    }
    Levels {
        rms_dbfs: 10.0 * energy.max(1e-20).log10(),
        clipped_fraction: clipped as f64 / n,
    }
}

/// Applies the filters to one decoded clip and its transcript; `Err` carries a readable detail.
pub fn check(audio: &Audio, text: &str, f: &QualityFilters) -> Result<(), (Rejection, String)> {
    if let Some(at) = audio.samples.iter().position(|x| !x.is_finite()) {
        return Err((
            Rejection::NonFinite,
            format!("sample {at} is {}", audio.samples[at]),
        ));
    }
    let seconds = audio.seconds();
    if seconds < f.min_seconds || audio.samples.is_empty() {
        return Err((
            Rejection::TooShort,
            format!("{seconds:.3} s < min_seconds {}", f.min_seconds),
        ));
    }
    if seconds > f.max_seconds {
        return Err((
            Rejection::TooLong,
            format!("{seconds:.3} s > max_seconds {}", f.max_seconds),
        ));
    }
    let l = levels(audio, f.clip_level);
    if l.rms_dbfs < f.min_rms_dbfs {
        return Err((
            Rejection::Silent,
            format!(
                "RMS {:.1} dBFS < min_rms_dbfs {}",
                l.rms_dbfs, f.min_rms_dbfs
            ),
        ));
    }
    if l.clipped_fraction > f.max_clipped_fraction {
        return Err((
            Rejection::Clipped,
            format!(
                "{:.4} of samples in flat runs at full scale > max_clipped_fraction {}",
                l.clipped_fraction, f.max_clipped_fraction
            ),
        ));
    }
    if f.require_text && text.trim().is_empty() {
        return Err((Rejection::EmptyText, "transcript is empty".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_is_a_run_at_full_scale_not_a_touch() {
        let audio = |samples: Vec<f32>| Audio {
            samples,
            rate: 16_000,
        };
        // A peak-normalized master: single samples at full scale, twice.
        let mut touched = vec![0.3f32; 1000];
        touched[100] = 1.0;
        touched[500] = -1.0;
        touched[501] = -1.0;
        assert_eq!(levels(&audio(touched), 0.999).clipped_fraction, 0.0);
        // Flat tops of 3 and 5 samples, one at the end.
        let mut flat = vec![0.3f32; 1000];
        flat[10..13].fill(1.0);
        flat[995..].fill(-1.0);
        assert_eq!(levels(&audio(flat), 0.999).clipped_fraction, 8.0 / 1000.0);
    }
}
