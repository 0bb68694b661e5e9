//! The plan: what a recipe will do, derived from the recipe and the data scan (stages, steps,
//! parameter counts). The dry run prints it; the pipeline follows it.

use std::fmt::Write as _;

use crate::data::scan::Scan;
use crate::models::decoder_config::DecoderModelConfig;
use crate::models::glm4::Glm4Config;
use crate::recipe::training::{Length, TrainingConfig};
use crate::recipe::{FinetuneMode, Recipe, Stage};

/// Decoder mel frames per second of audio (22.05 kHz, hop 256).
const MEL_FRAMES_PER_SECOND: f64 = 22_050.0 / 256.0;

#[derive(Clone, Debug, PartialEq)]
pub struct StagePlan {
    pub stage: Stage,
    pub part: &'static str,
    pub trained: bool,
    pub steps: usize,
    pub steps_per_epoch: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub speaker: String,
    pub train_utterances: usize,
    pub validation_utterances: usize,
    pub character_seconds: f64,
    pub stages: Vec<StagePlan>,
    pub lm_parameters: Option<u64>,
    pub lm_trainable: Option<u64>,
    /// The decoder architecture as its config.yaml describes it.
    pub decoder_summary: Option<String>,
    pub notes: Vec<String>,
}

fn steps(train: &TrainingConfig, batches_per_epoch: usize) -> (usize, usize) {
    let per_epoch = batches_per_epoch
        .div_ceil(train.gradient_accumulation)
        .max(1);
    match train.length {
        Length::Steps(n) => (n, per_epoch),
        Length::Epochs(e) => (e * per_epoch, per_epoch),
    }
}

/// Utterances held out for evaluation out of `n`.
pub fn validation_count(n: usize, fraction: f64, min_items: usize) -> usize {
    if n < 2 {
        return 0;
    }
    ((n as f64 * fraction).round() as usize)
        .max(min_items)
        .min(n - 1)
}

impl Plan {
    pub fn new(recipe: &Recipe, scan: &Scan) -> Plan {
        let speaker = recipe.speaker().unwrap_or_default().to_string();
        let character: Vec<_> = scan
            .kept
            .iter()
            .filter(|k| k.utterance.speaker == speaker)
            .collect();
        let validation = validation_count(
            character.len(),
            recipe.data.validation.fraction,
            recipe.data.validation.min_items,
        );
        let train = character.len() - validation;
        let seconds: f64 = character.iter().map(|k| k.seconds).sum();
        let train_seconds = if character.is_empty() {
            0.0
        } else {
            seconds * train as f64 / character.len() as f64
        };
        let mut notes = Vec::new();
        if character.is_empty() {
            notes.push(format!("no usable utterance has speaker {speaker:?}: check `data.speaker` or the card's `speaker`"));
        }

        let lm_trained = !recipe.freeze.contains(&Stage::Lm);
        let decoder_trained = !recipe.freeze.contains(&Stage::Decoder);
        let (lm_steps, lm_per_epoch) =
            steps(&recipe.lm.train, train.div_ceil(recipe.lm.batch_size));
        let frames = train_seconds * MEL_FRAMES_PER_SECOND;
        let part = |name, cfg: &crate::recipe::DecoderPartConfig| {
            let batches = (frames / cfg.max_frames_per_batch as f64).ceil() as usize;
            let (steps, per_epoch) = steps(&cfg.train, batches);
            StagePlan {
                stage: Stage::Decoder,
                part: name,
                trained: decoder_trained,
                steps,
                steps_per_epoch: per_epoch,
            }
        };
        let stages = vec![
            StagePlan {
                stage: Stage::Lm,
                part: "lm",
                trained: lm_trained,
                steps: lm_steps,
                steps_per_epoch: lm_per_epoch,
            },
            part("flow", &recipe.decoder.flow),
            part("hift", &recipe.decoder.hift),
        ];

        let config = recipe
            .lm
            .base_model
            .as_ref()
            .map(|dir| Glm4Config::from_file(&dir.join("config.json")));
        let (lm_parameters, lm_trainable) = match config {
            Some(Ok(c)) => {
                let total = c.parameter_count();
                let trainable = match (lm_trained, recipe.lm.finetune) {
                    (false, _) => 0,
                    (true, FinetuneMode::Lora) => {
                        c.lora_parameter_count(recipe.lm.lora.rank, &recipe.lm.lora.targets)
                    }
                    (true, FinetuneMode::Full) => total,
                };
                (Some(total), Some(trainable))
            }
            Some(Err(e)) => {
                notes.push(format!("LM parameter count unavailable: {e}"));
                (None, None)
            }
            None => (None, None),
        };
        let decoder_summary = recipe
            .decoder
            .config
            .as_ref()
            .and_then(|path| DecoderModelConfig::from_file(path).ok())
            .map(|c| c.summary());
        Plan {
            decoder_summary,
            speaker,
            train_utterances: train,
            validation_utterances: validation,
            character_seconds: seconds,
            stages,
            lm_parameters,
            lm_trainable,
            notes,
        }
    }
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2} B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2} M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.1} k", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// The dataset summary and plan as the dry run prints them.
pub fn render(recipe: &Recipe, scan: &Scan, plan: &Plan) -> String {
    let mut s = String::new();
    let total_kept: f64 = scan.kept.iter().map(|k| k.seconds).sum();
    let _ = writeln!(s, "== dataset ==");
    let _ = writeln!(
        s,
        "utterances: {} kept ({:.3} h), {} rejected",
        scan.kept.len(),
        total_kept / 3600.0,
        scan.rejected.len()
    );
    for (reason, count) in scan.rejected_by_reason() {
        let _ = writeln!(s, "  rejected {reason}: {count}");
    }
    let _ = writeln!(
        s,
        "{:<16} {:>6} {:>9} {:>10}",
        "speaker", "kept", "rejected", "hours"
    );
    for (speaker, summary) in scan.per_speaker() {
        let marker = if speaker == plan.speaker {
            " <- character"
        } else {
            ""
        };
        let _ = writeln!(
            s,
            "{speaker:<16} {:>6} {:>9} {:>10.4}{marker}",
            summary.kept,
            summary.rejected,
            summary.seconds / 3600.0
        );
    }
    let _ = writeln!(
        s,
        "character {:?}: {} train / {} validation utterances, {:.4} h",
        plan.speaker,
        plan.train_utterances,
        plan.validation_utterances,
        plan.character_seconds / 3600.0
    );
    let _ = writeln!(s, "\n== plan ==");
    let _ = writeln!(
        s,
        "0. prepare: speech tokens and decoder mels into {}",
        recipe.data.cache_dir.display()
    );
    for (i, st) in plan.stages.iter().enumerate() {
        let what = if st.trained {
            format!(
                "train {} steps ({} per epoch)",
                st.steps, st.steps_per_epoch
            )
        } else {
            "frozen: kept as given".to_string()
        };
        let _ = writeln!(s, "{}. {:<8} {what}", i + 1, st.part);
    }
    let _ = writeln!(
        s,
        "{}. package: ARP-Model into {}",
        plan.stages.len() + 1,
        recipe.output_dir.display()
    );
    let _ = writeln!(s, "\n== parameters ==");
    match (plan.lm_parameters, plan.lm_trainable) {
        (Some(total), Some(trainable)) => {
            let mode = match recipe.lm.finetune {
                FinetuneMode::Lora => format!(
                    "LoRA r={} on {}",
                    recipe.lm.lora.rank,
                    recipe.lm.lora.targets.join(", ")
                ),
                FinetuneMode::Full => "full fine-tune".to_string(),
            };
            let _ = writeln!(
                s,
                "lm: {} total, {} trainable ({mode})",
                human(total),
                human(trainable)
            );
        }
        _ => {
            let _ = writeln!(s, "lm: unknown (no readable config.json)");
        }
    }
    if let Some(summary) = &plan.decoder_summary {
        let _ = writeln!(s, "decoder: {summary}");
    }
    for note in &plan.notes {
        let _ = writeln!(s, "note: {note}");
    }
    s
}
