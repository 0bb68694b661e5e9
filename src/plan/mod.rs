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
use crate::models::released;
use crate::recipe::training::Length;
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
    /// Epochs, when the recipe counts the part's length in them.
    pub epochs: Option<usize>,
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
        if recipe.data.manifests.iter().all(|m| !m.is_file()) {
            notes.push(
                "no manifest is there yet: the data and the steps it gives are unknown".to_string(),
            );
        } else if character.is_empty() {
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
        let stage = |stage, part, trained, steps: PartSteps| {
            let train = match part {
                "lm" => &recipe.lm.train,
                "flow" => &recipe.decoder.flow.train,
                _ => &recipe.decoder.hift.train,
            };
            StagePlan {
                stage,
                part,
                trained,
                steps: steps.total,
                steps_per_epoch: steps.per_epoch,
                epochs: match train.length {
                    Length::Epochs(e) => Some(e),
                    Length::Steps(_) => None,
                },
            }
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

        let config = recipe.lm.base_model.as_ref().map(|dir| {
            let file = dir.join("config.json");
            if file.exists() {
                return Glm4Config::from_file(&file);
            }
            notes.push(format!(
                "lm: {} is not there yet: sized from the released GLM-4-Voice-9B's config ({})",
                file.display(),
                released::GLM4_VOICE_9B_CONFIG
            ));
            Ok(released::glm4_voice_9b())
        });
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
            .and_then(|path| {
                if path.exists() {
                    return DecoderModelConfig::from_file(path).ok();
                }
                notes.push(format!(
                    "decoder: {} is not there yet: sized from the released GLM-4-Voice-Decoder's config ({})",
                    path.display(),
                    released::DECODER_CONFIG
                ));
                Some(released::decoder())
            })
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
        let what = match (st.trained, st.epochs) {
            (true, Some(epochs)) if plan.train_utterances == 0 => {
                format!("train {epochs} epochs (the steps follow from the data: none yet)")
            }
            (true, None) if plan.train_utterances == 0 => format!("train {} steps", st.steps),
            (true, _) => format!(
                "train {} steps ({} per epoch)",
                st.steps, st.steps_per_epoch
            ),
            (false, _) => "frozen: kept as given".to_string(),
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
    #[test]
    fn real_decoder_sizes_match_the_published_ones() {
        let config = crate::models::released::decoder();
        let (flow, hift) = super::decoder_parameters(&config).unwrap();
        println!("flow {flow}, hift {hift}");
        // ../shared/reference/glm-4-voice.md: flow ~111 M, HiFT ~20 M parameters.
        assert!((105_000_000..118_000_000).contains(&flow), "{flow}");
        assert!((18_000_000..23_000_000).contains(&hift), "{hift}");
    }
}
