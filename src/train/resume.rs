//! Whether a checkpoint may be resumed with the current recipe: model and data settings of the
//! stage must match (listed when they do not); cadence, optimizer, schedule and length (steps,
//! epochs) may change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::recipe::Recipe;

/// The recipe section a stage's checkpoints depend on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ResumeSection {
    Lm,
    /// Stage two's flow: `decoder.config`, `decoder.init` and `decoder.flow`.
    Flow,
    /// Stage two's vocoder: `decoder.config`, `decoder.init` and `decoder.hift`.
    Hift,
}

/// Keys that may differ between a checkpoint and its resumption. A run given more steps
/// continues to them; [`super::driver::train`] refuses a checkpoint past the new total.
const FREE_KEYS: [&str; 9] = [
    "checkpoint_every",
    "keep_last_n",
    "eval_every",
    "log_every",
    "max_nonfinite_steps",
    "optimizer",
    "schedule",
    "steps",
    "epochs",
];

/// Keys that never change what a finished stage produced (how often it logged or saved).
const CADENCE_KEYS: [&str; 5] = [
    "checkpoint_every",
    "keep_last_n",
    "eval_every",
    "log_every",
    "max_nonfinite_steps",
];

fn strip(value: &mut serde_json::Value, keys: &[&str]) {
    if let Some(map) = value.as_object_mut() {
        for key in keys {
            map.remove(*key);
        }
    }
}

fn identity(recipe: &Recipe, section: ResumeSection, free: &[&str]) -> serde_json::Value {
    let stage = match section {
        ResumeSection::Lm => {
            let mut lm = serde_json::to_value(&recipe.lm).expect("recipes serialize");
            strip(&mut lm, free);
            lm
        }
        ResumeSection::Flow | ResumeSection::Hift => {
            let (keep, drop) = if section == ResumeSection::Flow {
                ("flow", "hift")
            } else {
                ("hift", "flow")
            };
            let mut decoder = serde_json::to_value(&recipe.decoder).expect("recipes serialize");
            if let Some(map) = decoder.as_object_mut() {
                map.remove(drop);
                if let Some(part) = map.get_mut(keep) {
                    strip(part, free);
                }
            }
            decoder
        }
    };
    // Where the prepared cache lives does not change what trains on it (its entries are keyed by
    // the audio and the tokenizer), so a moved cache does not orphan a run.
    let mut data = serde_json::to_value(&recipe.data).expect("recipes serialize");
    strip(&mut data, &["cache_dir"]);
    serde_json::json!({
        "seed": recipe.seed,
        "character": recipe.character.as_ref().map(|c| c.file.display().to_string()),
        "data": data,
        "stage": stage,
    })
}

fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

/// Everything a finished stage's result depends on, as flat `key -> value` pairs named as in
/// the recipe (`lm.lora.rank`, `decoder.flow.steps`, `data.cache_dir`, ...): the seed, the
/// character, the data, and the stage's section without its cadence keys.
pub fn finished_identity(recipe: &Recipe, section: ResumeSection) -> BTreeMap<String, String> {
    flat_identity(recipe, section, &CADENCE_KEYS)
}

fn flat_identity(
    recipe: &Recipe,
    section: ResumeSection,
    free: &[&str],
) -> BTreeMap<String, String> {
    let mut flat = BTreeMap::new();
    flatten("", &identity(recipe, section, free), &mut flat);
    let prefix = match section {
        ResumeSection::Lm => "lm.",
        ResumeSection::Flow | ResumeSection::Hift => "decoder.",
    };
    flat.into_iter()
        .map(|(k, v)| (k.replacen("stage.", prefix, 1), v))
        .collect()
}

/// `  key: <then_label> A / now B` for every key whose value differs.
pub fn differences(
    then: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
    then_label: &str,
) -> Vec<String> {
    let keys: BTreeSet<&String> = then.keys().chain(now.keys()).collect();
    keys.into_iter()
        .filter(|k| then.get(*k) != now.get(*k))
        .map(|k| {
            format!(
                "  {k}: {then_label} {} / now {}",
                then.get(k).map_or("-", String::as_str),
                now.get(k).map_or("-", String::as_str)
            )
        })
        .collect()
}

/// Refuses a checkpoint made with different model or data settings, listing the differences;
/// changed optimizer or schedule settings are allowed with a warning.
pub fn check_resumable(
    current: &Recipe,
    checkpoint_recipe: &Path,
    section: ResumeSection,
) -> Result<(), String> {
    let saved = Recipe::load(checkpoint_recipe, &[], crate::recipe::PathCheck::Lenient)
        .map_err(|e| {
            format!(
                "cannot read the checkpoint's recipe {}: {e}",
                checkpoint_recipe.display()
            )
        })?
        .recipe;
    let diffs = differences(
        &flat_identity(&saved, section, &FREE_KEYS),
        &flat_identity(current, section, &FREE_KEYS),
        "checkpoint",
    );
    if !diffs.is_empty() {
        return Err(format!(
            "cannot resume from {}: the recipe's model or data settings differ from the checkpoint's:\n{}\n\
             (start a new run with another output_dir, or restore these settings)",
            checkpoint_recipe.parent().unwrap_or(checkpoint_recipe).display(),
            diffs.join("\n")
        ));
    }
    let (then, now) = match section {
        ResumeSection::Lm => (&saved.lm.train, &current.lm.train),
        ResumeSection::Flow => (&saved.decoder.flow.train, &current.decoder.flow.train),
        ResumeSection::Hift => (&saved.decoder.hift.train, &current.decoder.hift.train),
    };
    if then.optimizer != now.optimizer || then.schedule != now.schedule || then.length != now.length
    {
        tracing::warn!("resuming with changed optimizer, schedule or length settings; the loss curve will not match an uninterrupted run");
    }
    Ok(())
}
