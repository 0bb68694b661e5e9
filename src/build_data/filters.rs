//! The acoustic filters as build-data applies them to an episode's lines: length, clipping, and
//! silence judged against the episode's own speech level (a quiet mix is not silence), from
//! what the cache measured, so changing a setting reruns in seconds.

use super::cache::Measured;

/// Below this a line is digital silence whatever the episode's level.
const DIGITAL_SILENCE_DBFS: f64 = -90.0;

#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct LineFilters {
    pub min_seconds: f64,
    pub max_seconds: f64,
    /// A line this many dB below its episode's median line level is `silent`.
    pub quiet_db: f64,
    /// Share of samples in flat runs at full scale above which a line is `clipped`.
    pub max_clipped_fraction: f64,
    /// Lines with less speech than this (seconds, after the voice-activity trim) are
    /// `no_speech`.
    pub min_voiced_seconds: f64,
}

impl Default for LineFilters {
    fn default() -> Self {
        LineFilters {
            min_seconds: 0.5,
            max_seconds: 30.0,
            quiet_db: 25.0,
            max_clipped_fraction: 0.001,
            min_voiced_seconds: 0.3,
        }
    }
}

/// The median line level (dBFS) of an episode's measured lines; `None` when none was measured.
pub fn speech_level<'a>(lines: impl IntoIterator<Item = &'a Measured>) -> Option<f64> {
    let mut levels: Vec<f64> = lines
        .into_iter()
        .filter(|m| m.failure.is_none() && m.rms_dbfs > DIGITAL_SILENCE_DBFS)
        .map(|m| m.rms_dbfs)
        .collect();
    if levels.is_empty() {
        return None;
    }
    levels.sort_by(f64::total_cmp);
    Some(levels[levels.len() / 2])
}

/// Why `line` is left out under `filters`, if it is: (reason, detail).
pub fn check(line: &Measured, level: Option<f64>, f: &LineFilters) -> Option<(String, String)> {
    if let Some(failure) = &line.failure {
        return Some(failure.clone());
    }
    let reject = |reason: &str, detail: String| Some((reason.to_string(), detail));
    let seconds = line.seconds();
    if seconds < f.min_seconds {
        return reject(
            "too_short",
            format!("{seconds:.3} s < --min-seconds {}", f.min_seconds),
        );
    }
    if seconds > f.max_seconds {
        return reject(
            "too_long",
            format!("{seconds:.3} s > --max-seconds {}", f.max_seconds),
        );
    }
    if line.rms_dbfs <= DIGITAL_SILENCE_DBFS {
        return reject(
            "silent",
            format!("RMS {:.1} dBFS: digital silence", line.rms_dbfs),
        );
    }
    if let Some(level) = level {
        if line.rms_dbfs < level - f.quiet_db {
            return reject(
                "silent",
                format!(
                    "RMS {:.1} dBFS, {:.1} dB below the episode's median line ({:.1} dBFS; --quiet-db {})",
                    line.rms_dbfs,
                    level - line.rms_dbfs,
                    level,
                    f.quiet_db
                ),
            );
        }
    }
    if line.clipped_fraction > f.max_clipped_fraction {
        return reject(
            "clipped",
            format!(
                "{:.4} of samples in flat runs at full scale > --max-clipped-fraction {}",
                line.clipped_fraction, f.max_clipped_fraction
            ),
        );
    }
    if line.voiced_seconds < f.min_voiced_seconds {
        return reject(
            "no_speech",
            format!(
                "{:.2} s of speech after the voice-activity trim (at least {:.2} s)",
                line.voiced_seconds, f.min_voiced_seconds
            ),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(rms_dbfs: f64, seconds: f64) -> Measured {
        Measured {
            start: 10.0,
            end: 10.0 + seconds,
            rms_dbfs,
            clipped_fraction: 0.0,
            voiced_seconds: seconds,
            embedding: Some(vec![1.0]),
            failure: None,
        }
    }

    #[test]
    fn silence_is_relative_to_the_episode() {
        let f = LineFilters::default();
        // A quiet mix: every line near -49 dBFS; all pass, whatever the absolute level.
        let quiet: Vec<Measured> = [-48.0, -49.0, -50.0, -52.0].map(|l| line(l, 2.0)).to_vec();
        let level = speech_level(&quiet);
        assert_eq!(level, Some(-49.0));
        assert!(quiet.iter().all(|l| check(l, level, &f).is_none()));
        // A line 30 dB under the episode's level is silent; digital silence always is.
        let reason = check(&line(-80.0, 2.0), level, &f).unwrap();
        assert_eq!(reason.0, "silent");
        assert!(
            reason.1.contains("below the episode's median"),
            "{}",
            reason.1
        );
        assert_eq!(check(&line(-120.0, 2.0), None, &f).unwrap().0, "silent");
        assert_eq!(check(&line(-20.0, 0.2), level, &f).unwrap().0, "too_short");
    }
}
