//! The plan: what a recipe will do, derived from the recipe and the data scan (stages, steps,
//! parameter counts). The dry run prints it; the pipeline follows it.

pub mod memory;
pub mod steps;

use std::fmt::Write as _;

use crate::data::scan::{Kept, Scan};
use crate::data::speaker_names;
use crate::data::split::train_and_held_out;
use crate::models::decoder::config::DecoderModelConfig;
use crate::models::glm4::Glm4Config;
use crate::recipe::{FinetuneMode, Recipe, Stage};
use crate::run_dir;
pub use memory::MemoryEstimate;
use steps::PartSteps;

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
    pub lm_memory: Option<MemoryEstimate>,
    /// The decoder architecture as its config.yaml describes it.
    pub decoder_summary: Option<String>,
    pub notes: Vec<String>,
}

/// Parameter counts of the flow and HiFT a decoder config describes (built as placeholders,
/// nothing allocated).
pub fn decoder_parameters(c: &DecoderModelConfig) -> Option<(usize, usize)> {
    #[cfg(feature = "cpu")]
    {
        use crate::models::layers::Builder;
        type B = burn::backend::NdArray<f32>;
        let device = Default::default();
        let b = Builder::<B>::counting(&device);
        crate::models::decoder::flow::Flow::new(&b, &c.flow).ok()?;
        let flow = b.counted();
        let b = Builder::<B>::counting(&device);
        crate::models::decoder::hift::Hift::new(&b, &c.hift).ok()?;
        Some((flow, b.counted()))
    }
    #[cfg(not(feature = "cpu"))]
    {
        let _ = c;
        None
    }
}

impl Plan {
    pub fn new(recipe: &Recipe, scan: &Scan) -> Plan {
        let speaker = recipe.speaker().unwrap_or_default().to_string();
        let character: Vec<_> = scan
            .kept
            .iter()
            .filter(|k| speaker_names::same(&k.utterance.speaker, &speaker))
            .collect();
        fn split<'a>(items: Vec<&'a Kept>, recipe: &Recipe) -> (Vec<&'a Kept>, Vec<&'a Kept>) {
            train_and_held_out(
                items,
                |k| k.utterance.id.as_str(),
                recipe.seed,
                &recipe.data.validation,
            )
        }
        let (train, held_out) = split(character.clone(), recipe);
        // A fold from +0.0: an empty f64 `sum()` is -0.0, printed "-0.000 h".
        let seconds: f64 = character.iter().fold(0.0, |total, k| total + k.seconds);
        let mut notes = Vec::new();
        if character.is_empty() {
            notes.push(format!("no usable utterance has speaker {speaker:?}: check `data.speaker` or the card's `speaker`"));
        }

        // Stage two trains on utterances with at least two mel frames, split among themselves.
        let (decoder_train, _) = split(
            character
                .iter()
                .copied()
                .filter(|k| k.decoder_mel_frames >= 2)
                .collect(),
            recipe,
        );
        let mel_frames: Vec<usize> = decoder_train.iter().map(|k| k.decoder_mel_frames).collect();
        let stage = |stage, part, trained, steps: PartSteps| StagePlan {
            stage,
            part,
            trained,
            steps: steps.total,
            steps_per_epoch: steps.per_epoch,
        };
        let lm_trained = !recipe.freeze.contains(&Stage::Lm);
        let decoder_trained = !recipe.freeze.contains(&Stage::Decoder);
        let stages = vec![
            stage(Stage::Lm, "lm", lm_trained, steps::lm(recipe, train.len())),
            stage(
                Stage::Decoder,
                "flow",
                decoder_trained,
                steps::flow(&recipe.decoder.flow, &mel_frames),
            ),
            stage(
                Stage::Decoder,
                "hift",
                decoder_trained,
                steps::vocoder(&recipe.decoder.hift, decoder_train.len()),
            ),
        ];

        let config = recipe
            .lm
            .base_model
            .as_ref()
            .map(|dir| Glm4Config::from_file(&dir.join("config.json")));
        let (lm_parameters, lm_trainable, lm_memory) = match config {
            Some(Ok(c)) => {
                let total = c.parameter_count();
                let trainable = match (lm_trained, recipe.lm.finetune) {
                    (false, _) => 0,
                    (true, FinetuneMode::Lora) => {
                        c.lora_parameter_count(recipe.lm.lora.rank, &recipe.lm.lora.targets)
                    }
                    (true, FinetuneMode::Full) => total,
                };
                let memory = MemoryEstimate::new(&c, recipe, total, trainable);
                (Some(total), Some(trainable), Some(memory))
            }
            Some(Err(e)) => {
                notes.push(format!("LM parameter count unavailable: {e}"));
                (None, None, None)
            }
            None => (None, None, None),
        };
        let decoder_summary = recipe
            .decoder
            .config
            .as_ref()
            .and_then(|path| DecoderModelConfig::from_file(path).ok())
            .map(|c| match decoder_parameters(&c) {
                Some((flow, hift)) => format!(
                    "{}\ndecoder parameters: flow {}, hift {} (trained from scratch)",
                    c.summary(),
                    human(flow as u64),
                    human(hift as u64)
                ),
                None => c.summary(),
            });
        Plan {
            lm_memory,
            decoder_summary,
            speaker,
            train_utterances: train.len(),
            validation_utterances: held_out.len(),
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
    let total_kept: f64 = scan.kept.iter().fold(0.0, |total, k| total + k.seconds);
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
        let marker = if speaker_names::same(&speaker, &plan.speaker) {
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
        run_dir::package_dir(&recipe.output_dir).display()
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
    if let Some(m) = &plan.lm_memory {
        let _ = writeln!(s, "{}", m.render());
    }
    if let Some(summary) = &plan.decoder_summary {
        let _ = writeln!(s, "decoder: {summary}");
    }
    for note in &plan.notes {
        let _ = writeln!(s, "note: {note}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_decoder_sizes_match_the_published_ones() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/reference/glm-4-voice-decoder/config.yaml");
        let config = DecoderModelConfig::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let (flow, hift) = super::decoder_parameters(&config).unwrap();
        println!("flow {flow}, hift {hift}");
        // ../shared/reference/glm-4-voice.md: flow ~111 M, HiFT ~20 M parameters.
        assert!((105_000_000..118_000_000).contains(&flow), "{flow}");
        assert!((18_000_000..23_000_000).contains(&hift), "{hift}");
    }
}
