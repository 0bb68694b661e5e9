//! Kaldi's log mel filterbank (`compute-fbank-feats`, torchaudio's `compliance.kaldi.fbank`) with
//! the options speaker encoders of the Kaldi lineage use (CAM++): 25 ms frames every 10 ms with
//! Kaldi's edge snipping, DC removal, pre-emphasis 0.97, the povey window, a power spectrum
//! zero-padded to a power of two, triangular filters on Kaldi's mel scale (1127 ln(1 + f/700))
//! from 20 Hz to Nyquist, and the natural log with float32's epsilon as the floor. No dither, no
//! energy column.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

const PREEMPHASIS: f64 = 0.97;
const LOW_HZ: f64 = 20.0;
/// torch.finfo(torch.float32).eps, the floor of the log.
const LOG_FLOOR: f64 = f32::EPSILON as f64;

pub struct Fbank {
    window: Vec<f64>,
    shift: usize,
    padded: usize,
    /// Per mel bin: its first FFT bin and weights from there.
    filters: Vec<(usize, Vec<f64>)>,
    fft: Arc<dyn RealToComplex<f64>>,
}

fn kaldi_mel(hz: f64) -> f64 {
    1127.0 * (1.0 + hz / 700.0).ln()
}

impl Fbank {
    /// `bins` filters over audio at `rate` Hz.
    pub fn new(rate: u32, bins: usize) -> Fbank {
        let length = (rate as usize * 25) / 1000;
        let shift = (rate as usize * 10) / 1000;
        let padded = length.next_power_of_two();
        // The povey window: a symmetric Hann window to the power 0.85.
        let window = (0..length)
            .map(|n| {
                let hann =
                    0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / (length - 1) as f64).cos();
                hann.powf(0.85)
            })
            .collect();
        let nyquist = rate as f64 / 2.0;
        let bin_hz = rate as f64 / padded as f64;
        let (low, high) = (kaldi_mel(LOW_HZ), kaldi_mel(nyquist));
        let delta = (high - low) / (bins + 1) as f64;
        // Kaldi's filters cover the FFT bins below Nyquist; the Nyquist bin gets no weight.
        let fft_bins = padded / 2;
        let filters = (0..bins)
            .map(|b| {
                let left = low + b as f64 * delta;
                let centre = left + delta;
                let right = centre + delta;
                let weights: Vec<f64> = (0..fft_bins)
                    .map(|k| {
                        let mel = kaldi_mel(bin_hz * k as f64);
                        let up = (mel - left) / (centre - left);
                        let down = (right - mel) / (right - centre);
                        up.min(down).max(0.0)
                    })
                    .collect();
                let first = weights.iter().position(|&w| w > 0.0).unwrap_or(0);
                let last = weights
                    .iter()
                    .rposition(|&w| w > 0.0)
                    .map_or(first, |k| k + 1);
                (first, weights[first..last].to_vec())
            })
            .collect();
        Fbank {
            window,
            shift,
            padded,
            filters,
            fft: RealFftPlanner::<f64>::new().plan_fft_forward(padded),
        }
    }

    pub fn bins(&self) -> usize {
        self.filters.len()
    }

    /// Frames Kaldi takes of `samples` samples (snip_edges: whole windows only).
    pub fn frames(&self, samples: usize) -> usize {
        let length = self.window.len();
        if samples < length {
            0
        } else {
            1 + (samples - length) / self.shift
        }
    }

    /// Log filterbank energies, row-major `[frames][bins]`, of `samples` (any scale; speaker
    /// encoders take [-1, 1]).
    pub fn compute(&self, samples: &[f32]) -> Vec<f32> {
        let length = self.window.len();
        let frames = self.frames(samples.len());
        let mut out = Vec::with_capacity(frames * self.bins());
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut frame = vec![0f64; length];
        let mut power = vec![0f64; self.padded / 2 + 1];
        for f in 0..frames {
            let start = f * self.shift;
            for (x, &s) in frame.iter_mut().zip(&samples[start..start + length]) {
                *x = s as f64;
            }
            let mean = frame.iter().sum::<f64>() / length as f64;
            frame.iter_mut().for_each(|x| *x -= mean);
            // Pre-emphasis from the last sample back; the first sample's predecessor is itself.
            for i in (1..length).rev() {
                frame[i] -= PREEMPHASIS * frame[i - 1];
            }
            frame[0] -= PREEMPHASIS * frame[0];
            input.iter_mut().for_each(|x| *x = 0.0);
            for ((x, &s), &w) in input.iter_mut().zip(&frame).zip(&self.window) {
                *x = s * w;
            }
            self.fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .expect("buffers come from the plan");
            for (p, c) in power.iter_mut().zip(&spectrum) {
                *p = c.norm_sqr();
            }
            for (first, weights) in &self.filters {
                let energy: f64 = weights
                    .iter()
                    .zip(&power[*first..])
                    .map(|(w, p)| w * p)
                    .sum();
                out.push(energy.max(LOG_FLOOR).ln() as f32);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kaldi_framing_and_filters() {
        let fbank = Fbank::new(16_000, 80);
        // 25 ms windows every 10 ms, whole windows only.
        assert_eq!(fbank.frames(399), 0);
        assert_eq!(fbank.frames(400), 1);
        assert_eq!(fbank.frames(16_000), 98);
        assert_eq!(fbank.padded, 512);
        // Every filter peaks below 1 and the first starts above 20 Hz (bin 1 = 31.25 Hz).
        assert!(fbank
            .filters
            .iter()
            .all(|(_, w)| w.iter().all(|&x| x <= 1.0)));
        assert!(fbank.filters[0].0 >= 1);
        // Silence sits on the floor.
        let silent = fbank.compute(&[0.0; 800]);
        assert!(silent
            .iter()
            .all(|&x| (x - (f32::EPSILON).ln()).abs() < 1e-6));
    }
}
