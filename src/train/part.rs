//! What stage two's two parts (flow, vocoder) share around their different steps: the trainer
//! state saved in checkpoints, the report, where a run starts (fresh, resumed, or already
//! finished), the step-0 evaluation, fault-injection hooks for tests, and the closing plot.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::checkpoints::{Checkpoints, COMPLETE_MARKER};
use super::lm::Resume;
use super::metrics::MetricsLog;
use crate::recipe::training::{Length, TrainingConfig};
use crate::recipe::DecoderPartConfig;

/// Where a part's run stands, saved in every checkpoint (`trainer_state.json`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub struct PartState {
    pub step: usize,
    pub epoch: usize,
    /// Index of the next batch group of `epoch`.
    pub next_group: usize,
    pub skipped_steps: usize,
    pub consecutive_bad: usize,
    pub losses: Vec<f64>,
    pub eval_losses: Vec<(usize, f64)>,
}

/// What a finished part reports.
#[derive(Debug, Clone, PartialEq)]
pub struct PartReport {
    pub steps: usize,
    pub losses: Vec<f64>,
    pub eval_losses: Vec<(usize, f64)>,
    pub skipped_steps: usize,
    pub wall_seconds: f64,
    /// True when the part was already finished and only loaded.
    pub already_done: bool,
}

/// `ARP_FAULT_<PART>_NAN_STEPS=3,4`, `ARP_FAULT_<PART>_ABORT_IN_CHECKPOINT=8` (test hooks).
pub fn fault_steps(var: &str) -> Vec<usize> {
    std::env::var(var)
        .map(|v| v.split(',').filter_map(|s| s.trim().parse().ok()).collect())
        .unwrap_or_default()
}

pub fn total_steps(train: &TrainingConfig, batches_per_epoch: usize) -> usize {
    match train.length {
        Length::Steps(n) => n,
        Length::Epochs(e) => {
            e * batches_per_epoch
                .div_ceil(train.gradient_accumulation)
                .max(1)
        }
    }
}

/// Opens a part's checkpoint directory and decides what to start from.
pub fn starting_point(
    stage_dir: &Path,
    part: &DecoderPartConfig,
    resume: &Resume,
) -> Result<(Checkpoints, Option<PathBuf>), String> {
    let checkpoints = Checkpoints::open(stage_dir, part.train.keep_last_n)
        .map_err(|e| format!("{}: {e}", stage_dir.display()))?;
    let from = match resume {
        Resume::Latest => checkpoints.latest().map(|(_, dir)| dir),
        Resume::From(dir) => Some(dir.clone()),
    };
    if let Some(dir) = &from {
        if !dir.join(COMPLETE_MARKER).is_file() {
            return Err(format!("{} is not a complete checkpoint", dir.display()));
        }
    }
    Ok((checkpoints, from))
}

pub fn read_state(dir: &Path) -> Result<PartState, String> {
    let text = std::fs::read_to_string(dir.join("trainer_state.json"))
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: trainer_state.json: {e}", dir.display()))
}

/// The held-out score before any training (step 0 of the curve), for a fresh run.
pub fn initial_eval(
    state: &PartState,
    report: &mut PartReport,
    log: &mut MetricsLog,
    eval: impl FnOnce() -> Option<f64>,
) -> Result<(), String> {
    if state.step == 0 {
        if let Some(loss) = eval() {
            report.eval_losses.push((0, loss));
            log.write(&serde_json::json!({ "step": 0, "eval_loss": loss }))
                .map_err(|e| format!("cannot write {}: {e}", log.path().display()))?;
        }
    }
    Ok(())
}

/// Writes the part's `loss.svg` and stamps the report's wall time.
pub fn finish(
    report: &mut PartReport,
    stage_dir: &Path,
    title: &str,
    started: Instant,
) -> Result<(), String> {
    let curve: Vec<(usize, f64)> = report
        .losses
        .iter()
        .enumerate()
        .map(|(i, l)| (i + 1, *l))
        .collect();
    let plot = stage_dir.join("loss.svg");
    super::plot::write_loss_svg(&plot, title, &curve, &report.eval_losses)
        .map_err(|e| format!("cannot write {}: {e}", plot.display()))?;
    report.wall_seconds = started.elapsed().as_secs_f64();
    Ok(())
}
