//! What training leaves behind for the rest of the program: the reports the trainers return
//! (one per part, [`PartReport`], and per stage), and a stage's closing record,
//! `<output>/<stage>/done.json`, written (atomically) only after the stage's outputs are
//! complete, so its presence means "finished". The record keeps the settings the result depends
//! on (to tell whether a rerun of the recipe may skip the stage) and the curves' summary that the
//! package's model card and sweep tables report. The pipeline writes records, the package and
//! the sweep summary read them; none of them reaches into the trainers for these types.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::run_dir;

pub const FORMAT: &str = "arp-train-stage-v1";

/// What one trained part (lm, flow, vocoder) reports.
#[derive(Debug, Clone, PartialEq)]
pub struct PartReport {
    pub steps: usize,
    pub losses: Vec<f64>,
    pub eval_losses: Vec<(usize, f64)>,
    pub skipped_steps: usize,
    pub wall_seconds: f64,
    /// Seconds the part trained, over every invocation (from its checkpoints).
    pub train_seconds: f64,
    /// True when the part was already finished and only loaded.
    pub already_done: bool,
}

/// What stage one reports: its curve, its data and its exports.
#[derive(Debug, Clone, PartialEq)]
pub struct LmReport {
    pub curve: PartReport,
    pub train_samples: usize,
    pub validation_samples: usize,
    pub padding_share: f64,
    pub truncated_samples: usize,
    pub dropped_too_long: usize,
    pub adapter_dir: Option<PathBuf>,
    pub merged_dir: PathBuf,
}

/// What stage two reports: both parts' curves, its data and the decoder directory.
#[derive(Debug, Clone)]
pub struct DecoderReport {
    pub flow: PartReport,
    pub vocoder: PartReport,
    pub train_utterances: usize,
    pub validation_utterances: usize,
    pub seconds_of_audio: f64,
    pub model_dir: PathBuf,
}

/// What "final loss" means wherever arp-train reports one.
pub const FINAL_LOSS: &str = "mean of the last 5 steps";

/// The end of one training curve.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CurveSummary {
    pub steps: usize,
    pub skipped_steps: usize,
    pub first_loss: Option<f64>,
    /// Mean of the last five logged training losses.
    pub final_loss: Option<f64>,
    pub first_eval_loss: Option<f64>,
    pub final_eval_loss: Option<f64>,
    pub final_eval_step: Option<usize>,
}

impl CurveSummary {
    pub fn new(steps: usize, skipped: usize, losses: &[f64], evals: &[(usize, f64)]) -> Self {
        let tail = &losses[losses.len().saturating_sub(5)..];
        CurveSummary {
            steps,
            skipped_steps: skipped,
            first_loss: losses.first().copied(),
            final_loss: (!tail.is_empty()).then(|| tail.iter().sum::<f64>() / tail.len() as f64),
            first_eval_loss: evals.first().map(|e| e.1),
            final_eval_loss: evals.last().map(|e| e.1),
            final_eval_step: evals.last().map(|e| e.0),
        }
    }

    /// The curve as every summary prints it (the run's closing lines; the card and the sweep
    /// table show the same `final_loss`):
    /// `train 9.079 -> 4.179 (final: mean of the last 5 steps), held-out 8.967 -> 8.588 at step 120`.
    pub fn describe(&self) -> String {
        let number = |v: Option<f64>| v.map_or("-".to_string(), crate::progress::sig4);
        let held_out = match (self.first_eval_loss, self.final_eval_loss) {
            (Some(first), Some(last)) => format!(
                ", held-out {} -> {} at step {}",
                number(Some(first)),
                number(Some(last)),
                self.final_eval_step.unwrap_or(0)
            ),
            _ => String::new(),
        };
        format!(
            "train {} -> {} (final: {FINAL_LOSS}){held_out}",
            number(self.first_loss),
            number(self.final_loss)
        )
    }

    pub fn of_part(part: &PartReport) -> Self {
        Self::new(
            part.steps,
            part.skipped_steps,
            &part.losses,
            &part.eval_losses,
        )
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StageRecord {
    pub format: String,
    /// `lm` or `decoder`.
    pub stage: String,
    /// The recipe settings the result depends on (`lm.lora.rank`, `data.manifests`, ...).
    pub identity: BTreeMap<String, String>,
    /// One curve per trained part: `lm`, or `flow` and `vocoder`.
    pub curves: BTreeMap<String, CurveSummary>,
    pub train_items: usize,
    pub validation_items: usize,
    /// Seconds of the character's audio the stage trained on (stage two).
    pub seconds_of_audio: Option<f64>,
    /// Outputs, relative to the stage directory, that must exist for the stage to count as done.
    pub outputs: Vec<String>,
    /// Wall time of the invocation that finished the stage (not part of any package).
    pub wall_seconds: f64,
    /// Seconds each part trained over all invocations (not part of any package).
    #[serde(default)]
    pub train_seconds: BTreeMap<String, f64>,
    /// Each time the stage was continued after finishing with other optimizer, schedule or
    /// length settings (`--continue-finished`): the steps it had and the changed settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub continued: Vec<String>,
}

impl StageRecord {
    /// `identity`: the recipe settings the stage's result depends on.
    pub fn from_lm(
        identity: BTreeMap<String, String>,
        report: &LmReport,
        stage_dir: &Path,
    ) -> Self {
        let mut outputs = vec![relative(&report.merged_dir, stage_dir)];
        if let Some(adapter) = &report.adapter_dir {
            outputs.push(relative(adapter, stage_dir));
        }
        StageRecord {
            format: FORMAT.into(),
            stage: "lm".into(),
            identity,
            curves: BTreeMap::from([("lm".to_string(), CurveSummary::of_part(&report.curve))]),
            train_items: report.train_samples,
            validation_items: report.validation_samples,
            seconds_of_audio: None,
            outputs,
            wall_seconds: report.curve.wall_seconds,
            train_seconds: BTreeMap::from([("lm".to_string(), report.curve.train_seconds)]),
            continued: Vec::new(),
        }
    }

    pub fn from_decoder(
        identity: BTreeMap<String, String>,
        report: &DecoderReport,
        stage_dir: &Path,
        wall_seconds: f64,
    ) -> Self {
        StageRecord {
            format: FORMAT.into(),
            stage: "decoder".into(),
            identity,
            curves: BTreeMap::from([
                ("flow".to_string(), CurveSummary::of_part(&report.flow)),
                (
                    "vocoder".to_string(),
                    CurveSummary::of_part(&report.vocoder),
                ),
            ]),
            train_items: report.train_utterances,
            validation_items: report.validation_utterances,
            seconds_of_audio: Some(report.seconds_of_audio),
            outputs: vec![relative(&report.model_dir, stage_dir)],
            wall_seconds,
            train_seconds: BTreeMap::from([
                ("flow".to_string(), report.flow.train_seconds),
                ("vocoder".to_string(), report.vocoder.train_seconds),
            ]),
            continued: Vec::new(),
        }
    }

    pub fn write(&self, stage_dir: &Path) -> Result<(), String> {
        let path = stage_dir.join(run_dir::DONE_RECORD);
        let json = serde_json::to_vec_pretty(self).expect("records serialize");
        crate::atomic::write(&path, &json)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    }

    /// The record in `stage_dir`, if the stage finished there (an unreadable one is an error).
    pub fn read(stage_dir: &Path) -> Result<Option<Self>, String> {
        let path = stage_dir.join(run_dir::DONE_RECORD);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let record: StageRecord = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}: not a stage record ({e}); move it away to let the stage run again",
                path.display()
            )
        })?;
        if record.format != FORMAT {
            return Err(format!(
                "{}: format {:?}, this build writes {FORMAT:?}",
                path.display(),
                record.format
            ));
        }
        Ok(Some(record))
    }

    /// Outputs the record names that are missing now.
    pub fn missing_outputs(&self, stage_dir: &Path) -> Vec<PathBuf> {
        self.outputs
            .iter()
            .map(|o| stage_dir.join(o))
            .filter(|p| !p.exists())
            .collect()
    }

    /// What the record says without its times: the same for an interrupted-and-resumed stage
    /// as for an uninterrupted one (packages fingerprint this).
    pub fn content_json(&self) -> String {
        let mut copy = self.clone();
        copy.wall_seconds = 0.0;
        copy.train_seconds.clear();
        serde_json::to_string(&copy).expect("records serialize")
    }
}

fn relative(path: &Path, base: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}
