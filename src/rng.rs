//! A small seeded random generator for training-time draws (flow-matching times and noise, CFG
//! dropout, prompt lengths, NSF phases). Draws are made on the host from (seed, step), so a
//! resumed run repeats them exactly and every backend sees the same numbers.

/// Streams of [`Rng::for_step`]: each kind of draw has its own, so no two ever coincide.
pub const FLOW_STREAM: u64 = 1;
pub const VOCODER_STREAM: u64 = 2;
/// The vocoder's per-epoch shuffle of utterances.
pub const VOCODER_SHUFFLE_STREAM: u64 = 12;
/// The flow's held-out draws (per batch).
pub const EVAL_STREAM: u64 = 99;
/// The vocoder's held-out draws (per utterance).
pub const VOCODER_EVAL_STREAM: u64 = 100;

/// xorshift64* seeded through splitmix64.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E3779B97F4A7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// A generator started at this raw (non-zero) state, without seeding through splitmix64.
    pub fn from_state(state: u64) -> Self {
        Rng(state.max(1))
    }

    /// A generator for one (seed, stream, step) triple.
    pub fn for_step(seed: u64, stream: u64, step: u64) -> Self {
        Rng::new(
            seed ^ stream.wrapping_mul(0xD1B54A32D192ED03) ^ step.wrapping_mul(0x9E3779B97F4A7C15),
        )
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545F4914F6CDD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [-bound, bound).
    pub fn symmetric(&mut self, bound: f64) -> f64 {
        (self.uniform() * 2.0 - 1.0) * bound
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Uniform integer in `0..=max`.
    pub fn below_or_equal(&mut self, max: usize) -> usize {
        ((self.uniform() * (max as f64 + 1.0)) as usize).min(max)
    }

    pub fn normals(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.normal() as f32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn normals_have_unit_variance_and_repeat() {
        let mut rng = Rng::new(7);
        let xs: Vec<f64> = (0..20000).map(|_| rng.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
        assert_eq!(
            Rng::for_step(1, 2, 3).uniform(),
            Rng::for_step(1, 2, 3).uniform()
        );
        assert_ne!(
            Rng::for_step(1, 2, 3).uniform(),
            Rng::for_step(1, 2, 4).uniform()
        );
    }
}
