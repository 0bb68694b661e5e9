//! The neural source filter's sine generator (no trainable parameters; the reference runs it
//! without gradients): F0 per mel frame is repeated to the sample rate, harmonic k (1-based)
//! has phase 2 pi cumsum(k f0 / sr) mod 1 plus a random start phase (0 for the fundamental),
//! amplitude `nsf_alpha` where voiced (f0 > threshold), plus Gaussian noise of std `nsf_sigma`
//! voiced / `nsf_alpha / 3` unvoiced. Computed on the host in f64 from seeded draws.

use crate::models::decoder::config::HiftConfig;
use crate::rng::Rng;

/// The random draws of one source: a start phase per harmonic and unit-normal noise.
pub struct SourceNoise {
    /// [harmonics] in (-pi, pi); the fundamental's is 0.
    pub phase: Vec<f64>,
    /// [harmonics * samples]
    pub noise: Vec<f32>,
}

impl SourceNoise {
    pub fn draw(rng: &mut Rng, harmonics: usize, samples: usize) -> Self {
        let phase = (0..harmonics)
            .map(|k| {
                if k == 0 {
                    0.0
                } else {
                    (rng.uniform() * 2.0 - 1.0) * std::f64::consts::PI
                }
            })
            .collect();
        SourceNoise {
            phase,
            noise: rng.normals(harmonics * samples),
        }
    }
}

/// Harmonic waves [harmonics, frames * upsample] for one F0 track (Hz per frame).
pub fn harmonic_waves(
    f0: &[f32],
    upsample: usize,
    c: &HiftConfig,
    draws: &SourceNoise,
) -> Vec<f32> {
    let harmonics = c.nb_harmonics + 1;
    let samples = f0.len() * upsample;
    let sr = c.sampling_rate as f64;
    let mut out = vec![0f32; harmonics * samples];
    for k in 0..harmonics {
        let mut cycles = 0f64;
        for i in 0..samples {
            let f = f0[i / upsample] as f64;
            cycles = (cycles + f * (k + 1) as f64 / sr).fract();
            let voiced = f > c.nsf_voiced_threshold;
            let sine = c.nsf_alpha * (2.0 * std::f64::consts::PI * cycles + draws.phase[k]).sin();
            let amp = if voiced {
                c.nsf_sigma
            } else {
                c.nsf_alpha / 3.0
            };
            let noise = amp * draws.noise[k * samples + i] as f64;
            out[k * samples + i] = ((if voiced { sine } else { 0.0 }) + noise) as f32;
        }
    }
    out
}
