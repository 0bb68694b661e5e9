//! The bench's results: a table on stdout and a JSON file that tools/bench/bench_reference.py reads
//! (to build the same shapes) and compares against.

use std::fmt::Write;

use serde::Serialize;

use super::{BenchSettings, Measurement};

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// `arp-train` (the baseline writes `pytorch`).
    pub tool: String,
    pub version: String,
    /// The resolved device, e.g. `cuda:0` or `cpu`.
    pub device: String,
    /// The GPU's name when known.
    pub device_name: Option<String>,
    /// Dense 16-bit peak used for MFU (TFLOP/s).
    pub peak_tflops: Option<f64>,
    pub recipe: String,
    pub settings: BenchSettings,
    pub stages: Vec<Measurement>,
}

fn gib(bytes: Option<u64>) -> String {
    bytes.map_or("-".into(), |b| {
        format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
    })
}

/// One line per stage: step time, throughput, TFLOP/s, MFU, peak memory.
pub fn table(report: &BenchReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<8} {:>10} {:>14} {:>13} {:>9} {:>7} {:>11}  loss (first -> last)",
        "stage", "step (s)", "throughput", "unit/s", "TFLOP/s", "MFU", "peak mem"
    );
    for m in &report.stages {
        let unit = if m.unit == "tokens" {
            "tokens"
        } else {
            "mel frames"
        };
        let _ = writeln!(
            s,
            "{:<8} {:>10.4} {:>14.1} {:>13} {:>9} {:>7} {:>11}  {:.4} -> {:.4}",
            m.stage,
            m.median_step_seconds,
            m.throughput,
            unit,
            m.achieved_tflops.map_or("-".into(), |t| format!("{t:.2}")),
            m.mfu.map_or("-".into(), |f| format!("{:.1}%", 100.0 * f)),
            gib(m.peak_memory_bytes),
            m.losses.first().copied().unwrap_or(f64::NAN),
            m.losses.last().copied().unwrap_or(f64::NAN),
        );
    }
    s
}
