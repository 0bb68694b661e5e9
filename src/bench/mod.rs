//! `arp-train bench`: the speed of both stages' training steps on random weights of the recipe's
//! model shapes (no checkpoint and no data needed), so the same command measures the tiny CPU
//! models in CI and GLM-4-Voice-9B on a GPU. Each stage runs warm-up steps, then timed steps
//! that end in a device sync; it reports the median step time, throughput (tokens or mel
//! frames per second), model FLOPs and MFU where they are defined, and peak memory.
//! `tools/bench/bench_reference.py` reads the JSON this writes and times the same steps in PyTorch.

pub mod decoder;
pub mod flops;
pub mod lm;
pub mod memory;
pub mod report;

use std::time::Instant;

use serde::Serialize;

/// How many steps to run and how big each is (the recipe gives the rest).
#[derive(Clone, Debug, Serialize)]
pub struct BenchSettings {
    /// Untimed steps first (kernel compilation, autotuning, allocator warm-up).
    pub warmup: usize,
    /// Timed steps.
    pub steps: usize,
    /// Stage one: tokens per sequence.
    pub seq_len: usize,
    /// Stage one: sequences per step.
    pub batch_size: usize,
    /// Stage one: transformer layers built (the config's count unless fewer are asked for).
    pub layers: usize,
    pub seed: u64,
}

/// One stage's timings and what they mean.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    /// `lm`, `flow` or `vocoder`.
    pub stage: String,
    /// What `per_step` counts: `tokens` or `mel_frames`.
    pub unit: String,
    pub per_step: usize,
    pub warmup_steps: usize,
    pub step_seconds: Vec<f64>,
    pub median_step_seconds: f64,
    /// `per_step / median_step_seconds`.
    pub throughput: f64,
    /// Model FLOPs of one step (no recomputation counted); stage one only.
    pub flops_per_step: Option<f64>,
    pub achieved_tflops: Option<f64>,
    /// `achieved_tflops / peak`, when the device's peak is known.
    pub mfu: Option<f64>,
    pub peak_memory_bytes: Option<u64>,
    /// How the memory was measured.
    pub memory_source: String,
    /// The loss of every step (warm-up included): finite, and the same work as the baseline's.
    pub losses: Vec<f64>,
    /// Everything the PyTorch baseline needs to build the same model and batches.
    pub shape: serde_json::Value,
}

impl Measurement {
    /// Fills the timing fields from `step_seconds` (timed steps only).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stage: &str,
        unit: &str,
        per_step: usize,
        warmup_steps: usize,
        step_seconds: Vec<f64>,
        losses: Vec<f64>,
        flops_per_step: Option<f64>,
        peak_tflops: Option<f64>,
        memory: memory::Peak,
        shape: serde_json::Value,
    ) -> Self {
        let median = median(&step_seconds);
        let achieved = flops_per_step.map(|f| f / median / 1e12);
        Measurement {
            stage: stage.into(),
            unit: unit.into(),
            per_step,
            warmup_steps,
            median_step_seconds: median,
            throughput: per_step as f64 / median,
            flops_per_step,
            achieved_tflops: achieved,
            mfu: achieved.zip(peak_tflops).map(|(a, p)| a / p),
            peak_memory_bytes: memory.bytes,
            memory_source: memory.source,
            step_seconds,
            losses,
            shape,
        }
    }
}

/// The median (mean of the middle two for an even count); NaN for none.
pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

/// Runs `s.warmup + s.steps` steps (each returns its loss and ends in a device sync) under a
/// progress bar; returns the timed steps' seconds and every step's loss.
pub fn timed_steps(
    s: &BenchSettings,
    label: &'static str,
    mut step: impl FnMut(usize) -> Result<f64, String>,
) -> Result<(Vec<f64>, Vec<f64>), String> {
    let bar = crate::progress::bar((s.warmup + s.steps) as u64, label);
    let (mut times, mut losses) = (Vec::new(), Vec::new());
    for i in 0..s.warmup + s.steps {
        let start = Instant::now();
        let loss = step(i)?;
        let seconds = start.elapsed().as_secs_f64();
        losses.push(loss);
        if i >= s.warmup {
            times.push(seconds);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((times, losses))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
