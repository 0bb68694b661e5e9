//! The run directory's layout: every directory and file a run writes under `output_dir`, named
//! in one place (the package's own files are in [`crate::package`], a checkpoint's pointer and
//! marker in [`crate::train::checkpoints`]).
//!
//! ```text
//! <output_dir>/
//!   .arp-train.lock            the running process (run_lock)
//!   cache/                     prepared clips (default data.cache_dir)
//!   reports/data-rejections.jsonl
//!   lm/                        stage one: a part directory, plus merged/ and adapter/
//!   decoder/                   stage two: flow/ and hift/ part directories, plus model/
//!   arp-model/                 the package
//!   plots.html                 every loss.svg of the run on one page
//! ```
//!
//! A part directory holds `metrics.jsonl`, its TensorBoard event file, `loss.svg`, `step-NNNNNN/` checkpoints (each with
//! `trainer_state.json` and `recipe.resolved.yaml` beside the part's weights), and, for a stage,
//! `done.json` once the stage finished.

use std::path::{Path, PathBuf};

pub const LM: &str = "lm";
pub const DECODER: &str = "decoder";
/// Stage two's parts, inside [`DECODER`].
pub const FLOW: &str = "flow";
pub const HIFT: &str = "hift";
pub const PACKAGE: &str = "arp-model";
pub const CACHE: &str = "cache";
/// `arp-train eval`'s default output directory for a recipe's run, and its plot.
pub const EVAL: &str = "eval";
pub const EVAL_PLOT: &str = "eval.svg";

/// Stage one's exports, inside [`LM`].
pub const MERGED: &str = "merged";
pub const ADAPTER: &str = "adapter";
/// Stage two's decoder in the GLM-4-Voice-Decoder layout, inside [`DECODER`].
pub const DECODER_MODEL: &str = "model";

/// In a part directory.
pub const METRICS: &str = "metrics.jsonl";
pub const LOSS_PLOT: &str = "loss.svg";
/// In the run directory: a page showing every part's `loss.svg` (and eval's plot), reloading
/// itself so it stays live in a browser.
pub const PLOT_INDEX: &str = "plots.html";
/// In a stage directory: the stage's closing record ([`crate::report::StageRecord`]).
pub const DONE_RECORD: &str = "done.json";

/// In a checkpoint.
pub const TRAINER_STATE: &str = "trainer_state.json";
pub const RESOLVED_RECIPE: &str = "recipe.resolved.yaml";

pub fn lm_dir(output_dir: &Path) -> PathBuf {
    output_dir.join(LM)
}

pub fn decoder_dir(output_dir: &Path) -> PathBuf {
    output_dir.join(DECODER)
}

pub fn package_dir(output_dir: &Path) -> PathBuf {
    output_dir.join(PACKAGE)
}

/// The prepare step's per-line rejections.
pub fn rejections_file(output_dir: &Path) -> PathBuf {
    output_dir.join("reports").join("data-rejections.jsonl")
}
