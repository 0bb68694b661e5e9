//! F0 targets for the vocoder's pitch loss: YIN (de Cheveigné & Kawahara, 2002), one value per
//! decoder mel frame, 0 where unvoiced.
//!
//! Frame t analyses the same 1024 samples as mel frame t (the mel pads 384 samples each side
//! and hops 256, so frame t starts at sample 256 t - 384; outside the clip counts as silence).
//! Steps: difference function d(tau) over the first 1024 - tau_max samples, cumulative mean
//! normalized difference d'(tau), the first tau in [sr/fmax, sr/fmin] with d' < 0.15 followed
//! down to its local minimum, parabolic interpolation, f0 = sr / tau. Frames with no dip below
//! the threshold, or quieter than -60 dBFS RMS, are unvoiced.

pub const FMIN: f64 = 50.0;
pub const FMAX: f64 = 600.0;
const THRESHOLD: f64 = 0.15;
const SILENCE_RMS: f64 = 1e-3;
const WINDOW: usize = 1024;
const HOP: usize = 256;
const OFFSET: isize = 384;

/// F0 in Hz for `frames` mel frames of `samples` at `rate`.
pub fn yin(samples: &[f32], rate: u32, frames: usize) -> Vec<f32> {
    let sr = rate as f64;
    let tau_min = (sr / FMAX).floor() as usize;
    let tau_max = ((sr / FMIN).ceil() as usize).min(WINDOW / 2);
    let span = WINDOW - tau_max;
    let mut frame = vec![0f64; WINDOW];
    let mut diff = vec![0f64; tau_max + 2];
    (0..frames)
        .map(|t| {
            let start = (t * HOP) as isize - OFFSET;
            for (j, v) in frame.iter_mut().enumerate() {
                let i = start + j as isize;
                *v = if i >= 0 && (i as usize) < samples.len() {
                    samples[i as usize] as f64
                } else {
                    0.0
                };
            }
            let rms = (frame.iter().map(|v| v * v).sum::<f64>() / WINDOW as f64).sqrt();
            if rms < SILENCE_RMS {
                return 0.0;
            }
            for (tau, d) in diff.iter_mut().enumerate().take(tau_max + 1).skip(1) {
                *d = (0..span).map(|j| (frame[j] - frame[j + tau]).powi(2)).sum();
            }
            // Cumulative mean normalized difference.
            let mut running = 0.0;
            let mut cmnd = vec![1.0; tau_max + 1];
            for tau in 1..=tau_max {
                running += diff[tau];
                cmnd[tau] = if running > 0.0 {
                    diff[tau] * tau as f64 / running
                } else {
                    1.0
                };
            }
            let Some(mut tau) = (tau_min.max(1)..=tau_max).find(|&tau| cmnd[tau] < THRESHOLD)
            else {
                return 0.0;
            };
            while tau < tau_max && cmnd[tau + 1] < cmnd[tau] {
                tau += 1;
            }
            let refined = if tau > 1 && tau < tau_max {
                let (a, b, c) = (cmnd[tau - 1], cmnd[tau], cmnd[tau + 1]);
                let denom = a - 2.0 * b + c;
                if denom.abs() > 1e-12 {
                    tau as f64 + 0.5 * (a - c) / denom
                } else {
                    tau as f64
                }
            } else {
                tau as f64
            };
            (sr / refined) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::yin;

    #[test]
    fn tones_are_found_and_silence_is_unvoiced() {
        let sr = 22050;
        for f in [90.0f64, 220.0, 440.0] {
            let x: Vec<f32> = (0..sr)
                .map(|i| {
                    (0.3 * (2.0 * std::f64::consts::PI * f * i as f64 / sr as f64).sin()) as f32
                })
                .collect();
            let f0 = yin(&x, sr as u32, 80);
            for &v in &f0[4..76] {
                assert!((v as f64 - f).abs() / f < 0.01, "{f} Hz found as {v}");
            }
        }
        assert!(yin(&vec![0.0; 22050], 22050, 80).iter().all(|&v| v == 0.0));
        // White noise is mostly unvoiced.
        let mut rng = crate::rng::Rng::new(1);
        let noise: Vec<f32> = (0..22050).map(|_| (rng.normal() * 0.1) as f32).collect();
        let voiced = yin(&noise, 22050, 80).iter().filter(|&&v| v > 0.0).count();
        assert!(voiced < 8, "{voiced} of 80 noise frames voiced");
    }
}
