//! The ARP-Model package: one directory per character (`<output_dir>/arp-model/`) holding what
//! the GLM-4-Voice stack loads, laid out like the published model repositories:
//!
//! ```text
//! arp-model/
//!   README.md               model card: recipe, data, steps, losses, scores, how to load it
//!   arp-model.json          manifest: character, trained stages, curves, files with SHA-256
//!   recipe.yaml             the resolved recipe that made it
//!   glm-4-voice-9b/         the LM (merged fine-tune, or the base when stage one was frozen),
//!                           Hugging Face layout with config, tokenizer and remote-code files
//!   adapter/                the PEFT LoRA adapter (stage one trained with LoRA)
//!   glm-4-voice-decoder/    config.yaml, flow.safetensors, hift.safetensors (GLM-4-Voice-Decoder)
//!   plots/                  loss curves of the trained stages
//! ```
//!
//! It is assembled in a temporary directory and renamed into place, so a crash leaves the
//! previous package (or none), never half of one.

pub mod card;
pub mod files;
pub mod scores;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::cache::stable_hash;
use crate::plan::Plan;
use crate::recipe::Recipe;
use crate::report::{CurveSummary, StageRecord};
use crate::run_dir::PACKAGE;
use files::FileEntry;

pub const MANIFEST: &str = "arp-model.json";
pub const CARD: &str = "README.md";
pub const RECIPE: &str = "recipe.yaml";
/// `arp-train eval`'s plot, once the package is scored.
pub const EVAL_PLOT: &str = "plots/eval.svg";
pub const LM_DIR: &str = "glm-4-voice-9b";
pub const ADAPTER_DIR: &str = "adapter";
pub const DECODER_DIR: &str = "glm-4-voice-decoder";
pub const FORMAT: &str = "arp-model-v1";

/// Where the package's LM comes from.
#[derive(Debug, Clone)]
pub enum LmSource {
    Trained {
        record: StageRecord,
        merged: PathBuf,
        adapter: Option<PathBuf>,
        plot: PathBuf,
    },
    /// `freeze: [lm]`: the base GLM-4-Voice-9B directory.
    Base(PathBuf),
}

/// Where the package's decoder comes from.
#[derive(Debug, Clone)]
pub enum DecoderSource {
    Trained {
        record: StageRecord,
        model: PathBuf,
        plots: Vec<(String, PathBuf)>,
    },
    /// `freeze: [decoder]`: the user's GLM-4-Voice-Decoder directory (`decoder.init`).
    Original(PathBuf),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct CharacterInfo {
    pub name: String,
    pub speaker: String,
    pub series: String,
    pub language: String,
    /// The persona block of the system prompt the LM was trained with.
    pub system_prompt: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Component {
    /// Directory in the package.
    pub dir: String,
    pub trained: bool,
    /// What it was made from: "fine-tuned from ...", "base model ...", "trained from scratch".
    pub source: String,
    #[serde(default)]
    pub curves: BTreeMap<String, CurveSummary>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DataInfo {
    pub train_utterances: usize,
    pub validation_utterances: usize,
    pub hours: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub name: String,
    pub character: CharacterInfo,
    pub lm: Component,
    /// The PEFT adapter directory, when stage one trained LoRA adapters.
    pub adapter: Option<String>,
    pub decoder: Component,
    pub data: DataInfo,
    /// The name of the GLM-4-Voice speech tokenizer directory the recipe used (not copied: it
    /// is not trained here).
    pub speech_tokenizer: Option<String>,
    /// ARP-Eval scores, once `arp-train eval` has scored the package.
    pub scores: Option<serde_json::Value>,
    /// Identifies the inputs the package was assembled from (a rerun with the same inputs skips).
    pub fingerprint: String,
    pub files: Vec<FileEntry>,
}

impl Manifest {
    pub fn trained_stages(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.lm.trained {
            out.push("lm");
        }
        if self.decoder.trained {
            out.push("decoder");
        }
        out
    }
}

/// The manifest of the package in `dir`, if `dir` is one.
pub fn open(dir: &Path) -> Result<Option<Manifest>, String> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not an ARP-Model manifest: {e}", path.display()))?;
    if manifest.format != FORMAT {
        return Err(format!(
            "{}: format {:?}, this build reads {FORMAT:?}",
            path.display(),
            manifest.format
        ));
    }
    Ok(Some(manifest))
}

pub fn package_dir(recipe: &Recipe) -> PathBuf {
    crate::run_dir::package_dir(&recipe.output_dir)
}

/// A digest of everything the package is made from: the stages' records (or the kept models'
/// paths) and the resolved recipe.
pub fn fingerprint(recipe: &Recipe, lm: &LmSource, decoder: &DecoderSource) -> String {
    let lm_part = match lm {
        LmSource::Trained { record, .. } => record.content_json(),
        LmSource::Base(dir) => format!("base {}", dir.display()),
    };
    let decoder_part = match decoder {
        DecoderSource::Trained { record, .. } => record.content_json(),
        DecoderSource::Original(dir) => format!("original {}", dir.display()),
    };
    stable_hash(&[
        FORMAT.as_bytes(),
        lm_part.as_bytes(),
        decoder_part.as_bytes(),
        recipe.resolved_yaml().as_bytes(),
    ])
}

/// True when the package in the run directory was assembled from these inputs and is intact.
pub fn up_to_date(recipe: &Recipe, lm: &LmSource, decoder: &DecoderSource) -> bool {
    let dir = package_dir(recipe);
    let Ok(Some(manifest)) = open(&dir) else {
        return false;
    };
    manifest.fingerprint == fingerprint(recipe, lm, decoder)
        && manifest
            .files
            .iter()
            .all(|f| std::fs::metadata(dir.join(&f.path)).is_ok_and(|m| m.len() == f.bytes))
}

/// Assembles `<output_dir>/arp-model/` (replacing an older one only once the new one is whole).
pub fn assemble(
    recipe: &Recipe,
    plan: &Plan,
    lm: &LmSource,
    decoder: &DecoderSource,
    abort_midway: bool,
) -> Result<Manifest, String> {
    let dir = package_dir(recipe);
    remove_stale_temporaries(&recipe.output_dir);
    if let DecoderSource::Original(init) = decoder {
        // A frozen decoder is never loaded by the run: its files may have changed since the
        // recipe was checked, and a package must not ship what `synth` would reject.
        let config_file = (recipe.decoder.config.clone())
            .unwrap_or_else(|| init.join(crate::models::decoder::CONFIG_FILE));
        let config = crate::models::decoder::read_config(&config_file)?;
        crate::models::decoder::check_dir(init, &config)
            .map_err(|e| format!("the frozen decoder {} is unusable: {e}", init.display()))?;
    }
    let card_info = recipe
        .character
        .as_ref()
        .ok_or("the recipe has no character")?;
    let mut manifest = Manifest {
        format: FORMAT.into(),
        name: format!("arp-model-{}", card_info.speaker),
        character: CharacterInfo {
            name: card_info.name.clone(),
            speaker: card_info.speaker.clone(),
            series: card_info.series.clone(),
            language: card_info.language.clone(),
            system_prompt: card_info.system_prompt.clone(),
        },
        lm: match lm {
            LmSource::Trained { record, .. } => Component {
                dir: LM_DIR.into(),
                trained: true,
                source: format!(
                    "fine-tuned from {} ({})",
                    base_name(recipe.lm.base_model.as_deref()),
                    match recipe.lm.finetune {
                        crate::recipe::FinetuneMode::Lora => format!(
                            "LoRA r={} alpha={} on {}, merged",
                            recipe.lm.lora.rank,
                            recipe.lm.lora.alpha,
                            recipe.lm.lora.targets.join(", ")
                        ),
                        crate::recipe::FinetuneMode::Full => "full fine-tune".into(),
                    }
                ),
                curves: record.curves.clone(),
            },
            LmSource::Base(dir) => Component {
                dir: LM_DIR.into(),
                trained: false,
                source: format!("base model {} (stage one frozen)", base_name(Some(dir))),
                curves: BTreeMap::new(),
            },
        },
        adapter: matches!(
            lm,
            LmSource::Trained {
                adapter: Some(_),
                ..
            }
        )
        .then(|| ADAPTER_DIR.to_string()),
        decoder: match decoder {
            DecoderSource::Trained { record, .. } => Component {
                dir: DECODER_DIR.into(),
                trained: true,
                source: "GLM-4-Voice-Decoder trained from scratch on the character's audio".into(),
                curves: record.curves.clone(),
            },
            DecoderSource::Original(dir) => Component {
                dir: DECODER_DIR.into(),
                trained: false,
                source: format!(
                    "original decoder {} (stage two frozen)",
                    base_name(Some(dir))
                ),
                curves: BTreeMap::new(),
            },
        },
        data: DataInfo {
            train_utterances: plan.train_utterances,
            validation_utterances: plan.validation_utterances,
            hours: plan.character_seconds / 3600.0,
        },
        // Its name, not the training machine's path: the package is copied to other machines.
        speech_tokenizer: recipe
            .data
            .speech_tokenizer
            .as_deref()
            .map(|p| base_name(Some(p))),
        scores: None,
        fingerprint: fingerprint(recipe, lm, decoder),
        files: Vec::new(),
    };
    crate::atomic::write_dir(&dir, |tmp| {
        match lm {
            LmSource::Trained {
                merged,
                adapter,
                plot,
                ..
            } => {
                files::copy_tree(merged, &tmp.join(LM_DIR), "packaging the LM")?;
                if let Some(adapter) = adapter {
                    files::copy_tree(adapter, &tmp.join(ADAPTER_DIR), "packaging the adapter")?;
                }
                copy_if_present(plot, &tmp.join("plots/lm-loss.svg"))?;
            }
            LmSource::Base(base) => {
                files::copy_tree(base, &tmp.join(LM_DIR), "packaging the base LM")?
            }
        }
        if abort_midway {
            // Test hook: a crash halfway through assembling the package.
            std::process::abort();
        }
        match decoder {
            DecoderSource::Trained { model, plots, .. } => {
                files::copy_tree(model, &tmp.join(DECODER_DIR), "packaging the decoder")?;
                for (name, plot) in plots {
                    copy_if_present(plot, &tmp.join("plots").join(format!("{name}-loss.svg")))?;
                }
            }
            DecoderSource::Original(init) => {
                files::copy_tree(init, &tmp.join(DECODER_DIR), "packaging the decoder")?
            }
        }
        std::fs::write(tmp.join(RECIPE), recipe.resolved_yaml())?;
        std::fs::write(tmp.join(CARD), card::render(&manifest, recipe))?;
        manifest.files = files::listing(tmp, &[MANIFEST])?;
        std::fs::write(
            tmp.join(MANIFEST),
            serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?,
        )
    })
    .map_err(|e| format!("cannot assemble the package {}: {e}", dir.display()))?;
    Ok(manifest)
}

fn copy_if_present(src: &Path, dst: &Path) -> std::io::Result<()> {
    if src.is_file() {
        files::copy_file(src, dst)?;
    }
    Ok(())
}

fn base_name(dir: Option<&Path>) -> String {
    dir.and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "-".into())
}

/// Temporaries of packages whose assembly was killed; an older package moved aside by a
/// replacement that was killed before its last rename is put back.
fn remove_stale_temporaries(output_dir: &Path) {
    let (tmp, old) = (format!(".{PACKAGE}.tmp-"), format!(".{PACKAGE}.old-"));
    let Ok(entries) = std::fs::read_dir(output_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(&tmp) {
            let _ = std::fs::remove_dir_all(entry.path());
        } else if name.starts_with(&old) {
            let current = output_dir.join(PACKAGE);
            if current.exists() {
                let _ = std::fs::remove_dir_all(entry.path());
            } else {
                let _ = std::fs::rename(entry.path(), current);
            }
        }
    }
}
