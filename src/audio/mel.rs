//! The two log-mel recipes of GLM-4-Voice, written from ../shared/reference/audio-and-eval.md:
//! Whisper's 128-bin log10 mel (speech tokenizer input, 16 kHz) and Matcha/CosyVoice's 80-bin
//! natural-log mel (decoder target and vocoder input, 22.05 kHz). Both use a Slaney filterbank
//! and a periodic Hann window; the STFT runs in f64 with realfft.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};

use super::window::{hann_periodic, zero_pad};

/// A log-mel spectrogram, row-major `[n_mels][frames]` (the layout of the reference arrays).
#[derive(Clone, Debug, PartialEq)]
pub struct Mel {
    pub n_mels: usize,
    pub frames: usize,
    pub data: Vec<f32>,
}

/// Slaney's mel scale (librosa's default, `htk=False`).
pub fn hz_to_mel(f: f64) -> f64 {
    if f >= 1000.0 {
        15.0 + (f / 1000.0).ln() / (6.4f64.ln() / 27.0)
    } else {
        f / (200.0 / 3.0)
    }
}

pub fn mel_to_hz(m: f64) -> f64 {
    if m >= 15.0 {
        1000.0 * ((m - 15.0) * (6.4f64.ln() / 27.0)).exp()
    } else {
        m * (200.0 / 3.0)
    }
}

/// One triangular filter: its first non-zero FFT bin and weights from there.
#[derive(Clone, Debug)]
struct Filter {
    first_bin: usize,
    weights: Vec<f64>,
}

/// Slaney-normalized triangular filters over the `n_fft / 2 + 1` bins of an `n_fft`-point FFT.
fn slaney_filterbank(
    sample_rate: u32,
    n_fft: usize,
    n_mels: usize,
    fmin: f64,
    fmax: f64,
) -> Vec<Filter> {
    let bins = n_fft / 2 + 1;
    let bin_hz: Vec<f64> = (0..bins)
        .map(|k| k as f64 * sample_rate as f64 / n_fft as f64)
        .collect();
    let (low, high) = (hz_to_mel(fmin), hz_to_mel(fmax));
    let edges: Vec<f64> = (0..n_mels + 2)
        .map(|i| mel_to_hz(low + (high - low) * i as f64 / (n_mels + 1) as f64))
        .collect();
    (0..n_mels)
        .map(|m| {
            let (left, centre, right) = (edges[m], edges[m + 1], edges[m + 2]);
            let norm = 2.0 / (right - left);
            let dense: Vec<f64> = bin_hz
                .iter()
                .map(|&f| {
                    ((f - left) / (centre - left))
                        .min((right - f) / (right - centre))
                        .max(0.0)
                        * norm
                })
                .collect();
            let first_bin = dense.iter().position(|&w| w > 0.0).unwrap_or(0);
            let last_bin = dense
                .iter()
                .rposition(|&w| w > 0.0)
                .map_or(first_bin, |k| k + 1);
            Filter {
                first_bin,
                weights: dense[first_bin..last_bin].to_vec(),
            }
        })
        .collect()
}

/// The Slaney filterbank as a dense row-major [n_mels, n_fft / 2 + 1] matrix.
pub fn slaney_matrix(
    sample_rate: u32,
    n_fft: usize,
    n_mels: usize,
    fmin: f64,
    fmax: f64,
) -> Vec<f32> {
    let bins = n_fft / 2 + 1;
    let mut dense = vec![0f32; n_mels * bins];
    for (m, filter) in slaney_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
        .iter()
        .enumerate()
    {
        for (i, w) in filter.weights.iter().enumerate() {
            dense[m * bins + filter.first_bin + i] = *w as f32;
        }
    }
    dense
}

/// How a frame's spectrum becomes the filterbank input.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Magnitude {
    /// |X|^2 (Whisper).
    Power,
    /// sqrt(re^2 + im^2 + 1e-9) (Matcha).
    SqrtEps,
}

/// How the signal is extended by `pad` samples on both sides before framing.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Padding {
    /// numpy's reflect (torch.stft and Matcha).
    Reflect,
    /// Zeros (librosa >= 0.10's `pad_mode="constant"`).
    Zeros,
}

/// STFT + mel filterbank for one fixed recipe; reusable across clips.
pub struct MelExtractor {
    n_fft: usize,
    hop: usize,
    pad: usize,
    padding: Padding,
    magnitude: Magnitude,
    window: Vec<f64>,
    filters: Vec<Filter>,
    fft: Arc<dyn RealToComplex<f64>>,
}

impl MelExtractor {
    fn new(
        sample_rate: u32,
        n_fft: usize,
        hop: usize,
        pad: usize,
        padding: Padding,
        n_mels: usize,
        magnitude: Magnitude,
    ) -> Self {
        let window = hann_periodic(n_fft);
        MelExtractor {
            n_fft,
            hop,
            pad,
            padding,
            magnitude,
            window,
            filters: slaney_filterbank(sample_rate, n_fft, n_mels, 0.0, 8000.0),
            fft: RealFftPlanner::<f64>::new().plan_fft_forward(n_fft),
        }
    }

    /// Whisper: 16 kHz, n_fft 400, hop 160, centred (reflect 200), power, 128 mels.
    pub fn whisper() -> Self {
        Self::new(
            16_000,
            400,
            160,
            200,
            Padding::Reflect,
            128,
            Magnitude::Power,
        )
    }

    /// Matcha/CosyVoice: 22.05 kHz, n_fft 1024, hop 256, reflect 384 then uncentred, 80 mels.
    pub fn decoder() -> Self {
        Self::new(
            22_050,
            1024,
            256,
            384,
            Padding::Reflect,
            80,
            Magnitude::SqrtEps,
        )
    }

    /// Resemblyzer's speaker-encoder input (librosa.feature.melspectrogram defaults): 16 kHz,
    /// n_fft 400, hop 160, centred with zero padding, power, 40 mels.
    pub fn speaker_encoder() -> Self {
        Self::new(16_000, 400, 160, 200, Padding::Zeros, 40, Magnitude::Power)
    }

    /// Linear (not log) mel energies, frame-major `[frames][n_mels]` (Resemblyzer's layout).
    pub fn power_mel_frames(&self, samples: &[f32]) -> (Vec<f32>, usize) {
        let (energies, frames) = self.mel_energies(samples);
        let n_mels = self.filters.len();
        let mut out = vec![0f32; frames * n_mels];
        for m in 0..n_mels {
            for t in 0..frames {
                out[t * n_mels + m] = energies[m * frames + t] as f32;
            }
        }
        (out, frames)
    }

    /// Linear mel energies `[n_mels][frames]` for the reflect-padded signal.
    fn mel_energies(&self, samples: &[f32]) -> (Vec<f64>, usize) {
        let padded = match self.padding {
            Padding::Reflect => reflect_pad(samples, self.pad),
            Padding::Zeros => zero_pad(samples, self.pad),
        };
        let frames = frames_in(padded.len(), self.n_fft, self.hop);
        let n_mels = self.filters.len();
        let mut out = vec![0.0f64; n_mels * frames];
        let mut input = self.fft.make_input_vec();
        let mut spectrum = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut magnitude = vec![0.0f64; spectrum.len()];
        for t in 0..frames {
            let start = t * self.hop;
            for (i, (x, w)) in padded[start..start + self.n_fft]
                .iter()
                .zip(&self.window)
                .enumerate()
            {
                input[i] = x * w;
            }
            self.fft
                .process_with_scratch(&mut input, &mut spectrum, &mut scratch)
                .expect("buffers come from the plan");
            for (m, c) in magnitude.iter_mut().zip(&spectrum) {
                let power = c.re * c.re + c.im * c.im;
                *m = match self.magnitude {
                    Magnitude::Power => power,
                    Magnitude::SqrtEps => (power + 1e-9).sqrt(),
                };
            }
            for (m, filter) in self.filters.iter().enumerate() {
                let bins = &magnitude[filter.first_bin..filter.first_bin + filter.weights.len()];
                out[m * frames + t] = bins.iter().zip(&filter.weights).map(|(a, b)| a * b).sum();
            }
        }
        (out, frames)
    }

    /// Whisper's normalized log-mel: log10(max(x, 1e-10)), floored at max - 8, then (x + 4) / 4;
    /// the last STFT frame is dropped. Input at 16 kHz.
    pub fn whisper_log_mel(&self, samples: &[f32]) -> Mel {
        let (energies, frames) = self.mel_energies(samples);
        let kept = frames.saturating_sub(1);
        let n_mels = self.filters.len();
        let mut log = Vec::with_capacity(n_mels * kept);
        for m in 0..n_mels {
            log.extend(
                energies[m * frames..m * frames + kept]
                    .iter()
                    .map(|&x| x.max(1e-10).log10()),
            );
        }
        let max = log.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let data = log
            .iter()
            .map(|&x| ((x.max(max - 8.0) + 4.0) / 4.0) as f32)
            .collect();
        Mel {
            n_mels,
            frames: kept,
            data,
        }
    }

    /// Matcha/CosyVoice log-mel: ln(max(x, 1e-5)). Input at 22.05 kHz.
    pub fn decoder_log_mel(&self, samples: &[f32]) -> Mel {
        let (energies, frames) = self.mel_energies(samples);
        let data = energies.iter().map(|&x| x.max(1e-5).ln() as f32).collect();
        Mel {
            n_mels: self.filters.len(),
            frames,
            data,
        }
    }
}

/// numpy's `pad(mode="reflect")`: mirror without repeating the edge sample, folding again when
/// the pad is longer than the signal.
/// STFT frames of a padded signal of `padded` samples (uncentred windows of `n_fft`).
fn frames_in(padded: usize, n_fft: usize, hop: usize) -> usize {
    if padded < n_fft {
        0
    } else {
        1 + (padded - n_fft) / hop
    }
}

/// Frames of the decoder log-mel ([`MelExtractor::decoder`]) of `samples` samples at `rate`
/// Hz, resampled to 22.05 kHz first as `prepare` does, without reading or computing anything.
pub fn decoder_mel_frames(samples: usize, rate: u32) -> usize {
    let at_decoder_rate = super::resample::output_len(samples, rate, super::DECODER_RATE);
    if at_decoder_rate == 0 {
        return 0;
    }
    frames_in(at_decoder_rate + 2 * 384, 1024, 256)
}

fn reflect_pad(samples: &[f32], pad: usize) -> Vec<f64> {
    let n = samples.len();
    if n == 0 {
        return Vec::new();
    }
    if n == 1 {
        return vec![samples[0] as f64; n + 2 * pad];
    }
    let period = 2 * (n - 1) as i64;
    (0..n + 2 * pad)
        .map(|i| {
            let mut k = (i as i64 - pad as i64).rem_euclid(period);
            if k >= n as i64 {
                k = period - k;
            }
            samples[k as usize] as f64
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_mel_frames_are_counted_as_computed() {
        let decoder = MelExtractor::decoder();
        for (samples, rate) in [
            (1, 22_050),
            (100, 22_050),
            (256, 22_050),
            (22_050, 22_050),
            (7_919, 16_000),
            (48_000, 48_000),
        ] {
            let audio = vec![0.1f32; samples];
            let at22 = crate::audio::resample::resample(&audio, rate, crate::audio::DECODER_RATE);
            assert_eq!(
                decoder_mel_frames(samples, rate),
                decoder.decoder_log_mel(&at22).frames,
                "{samples} samples at {rate} Hz"
            );
        }
    }

    #[test]
    fn reflect_matches_numpy() {
        // np.pad([1, 2, 3], 2, mode="reflect") == [3, 2, 1, 2, 3, 2, 1]
        assert_eq!(
            reflect_pad(&[1.0, 2.0, 3.0], 2),
            vec![3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]
        );
        // np.pad([1, 2, 3], 4, mode="reflect") == [1, 2, 3, 2, 1, 2, 3, 2, 1, 2, 3]
        assert_eq!(
            reflect_pad(&[1.0, 2.0, 3.0], 4),
            vec![1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 3.0]
        );
    }

    #[test]
    fn frame_counts() {
        let whisper = MelExtractor::whisper();
        assert_eq!(whisper.whisper_log_mel(&vec![0.1; 16_000]).frames, 100);
        let decoder = MelExtractor::decoder();
        // 1 + (N + 768 - 1024) // 256
        assert_eq!(
            decoder.decoder_log_mel(&vec![0.1; 22_050]).frames,
            1 + (22_050 + 768 - 1024) / 256
        );
    }

    #[test]
    fn slaney_scale_is_continuous_at_1khz() {
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((mel_to_hz(hz_to_mel(4321.0)) - 4321.0).abs() < 1e-9);
    }
}
