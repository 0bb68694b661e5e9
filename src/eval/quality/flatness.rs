//! Spectral flatness as librosa defines it (`librosa.feature.spectral_flatness`): per frame of a
//! centred, zero-padded STFT (n_fft 2048, hop 512, periodic Hann), the geometric over the
//! arithmetic mean of the power spectrum floored at 1e-10; averaged over frames. 0 is a pure
//! tone, 1 white noise.

use realfft::RealFftPlanner;

use crate::audio::window::{hann_periodic, zero_pad};

pub const N_FFT: usize = 2048;
pub const HOP: usize = 512;
const AMIN: f64 = 1e-10;

/// Per-frame flatness; empty for an empty clip.
pub fn frames(samples: &[f32]) -> Vec<f64> {
    if samples.is_empty() {
        return Vec::new();
    }
    let padded = zero_pad(samples, N_FFT / 2);
    let window = hann_periodic(N_FFT);
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(N_FFT);
    let mut input = fft.make_input_vec();
    let mut spectrum = fft.make_output_vec();
    let count = 1 + samples.len() / HOP;
    (0..count)
        .map(|t| {
            let frame = &padded[t * HOP..t * HOP + N_FFT];
            for ((i, x), w) in input.iter_mut().zip(frame).zip(&window) {
                *i = x * w;
            }
            fft.process(&mut input, &mut spectrum)
                .expect("buffers come from the plan");
            let (mut sum, mut sum_log) = (0.0, 0.0);
            for c in &spectrum {
                let power = (c.re * c.re + c.im * c.im).max(AMIN);
                sum += power;
                sum_log += power.ln();
            }
            let n = spectrum.len() as f64;
            (sum_log / n).exp() / (sum / n)
        })
        .collect()
}

/// Mean flatness over frames; `None` for an empty clip.
pub fn spectral_flatness(samples: &[f32]) -> Option<f64> {
    let f = frames(samples);
    (!f.is_empty()).then(|| f.iter().sum::<f64>() / f.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_is_flat_zero_and_noise_is_near_one() {
        let tone: Vec<f32> = (0..16_000)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16_000.0).sin())
            .collect();
        assert!(spectral_flatness(&tone).unwrap() < 0.05);
        let mut rng = crate::rng::Rng::new(1);
        let noise: Vec<f32> = (0..16_000).map(|_| rng.normal() as f32).collect();
        let f = frames(&noise);
        // Inner frames of white noise: the flatness of an exponential power spectrum, ~0.56.
        let inner = f[2..f.len() - 2].iter().sum::<f64>() / (f.len() - 4) as f64;
        assert!((inner - 0.56).abs() < 0.05, "{inner}");
    }
}
