//! Recipes: one YAML file per ARP-Model run. `Recipe::load` reads a file with its `extends`
//! chain and `--set` overrides, checks every key, type, value and path, and either returns a
//! fully resolved recipe or every problem at once (each naming file, line and key).

pub mod diagnostics;
pub mod layers;
pub mod node;
pub mod reader;
pub mod training;

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::backend::{DeviceSpec, Dtype};
use crate::character::Character;
use crate::data::buckets::ShapeBuckets;
use crate::yaml_enum;
use diagnostics::{Diagnostic, Diagnostics, RecipeErrors, Severity};
use node::Node;
use reader::Section;
use training::{Length, OptimizerKind, ScheduleKind, TrainingConfig, TrainingDefaults};

/// The two trainable stages of an ARP-Model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Stage one: GLM-4-Voice-9B fine-tuned on the character's interleaved text-audio replies.
    Lm,
    /// Stage two: GLM-4-Voice-Decoder (flow + HiFT) trained from scratch on the character's audio.
    Decoder,
}
yaml_enum!(Stage { "lm" => Stage::Lm, "decoder" => Stage::Decoder });

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Lm => "lm",
            Stage::Decoder => "decoder",
        }
    }
}

/// The acoustic-integrity filters of AudioRole's post-processing.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QualityFilters {
    pub min_seconds: f64,
    pub max_seconds: f64,
    /// Clips whose RMS level is below this (dBFS) are rejected as silent.
    pub min_rms_dbfs: f64,
    /// Clips with more than this share of samples at or above `clip_level` are rejected.
    pub max_clipped_fraction: f64,
    pub clip_level: f64,
    pub require_text: bool,
}

impl QualityFilters {
    /// The shipped base recipe's filters (recipes/base.yaml `data.filters`), for commands that
    /// check audio without a recipe (build-data).
    pub fn base() -> QualityFilters {
        QualityFilters {
            min_seconds: 0.5,
            max_seconds: 30.0,
            min_rms_dbfs: -50.0,
            max_clipped_fraction: 0.001,
            clip_level: 0.999,
            require_text: true,
        }
    }
}

/// The held-out part of the character's utterances.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ValidationSplit {
    /// Share of the character's utterances held out for evaluation.
    pub fraction: f64,
    pub min_items: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DataConfig {
    pub manifests: Vec<PathBuf>,
    pub cache_dir: PathBuf,
    /// A GLM-4-Voice speech tokenizer directory (config.json, model*.safetensors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speech_tokenizer: Option<PathBuf>,
    /// The manifest speaker label of the character (default: the card's `speaker`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
    pub filters: QualityFilters,
    pub validation: ValidationSplit,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinetuneMode {
    Lora,
    Full,
}
yaml_enum!(FinetuneMode { "lora" => FinetuneMode::Lora, "full" => FinetuneMode::Full });

/// The GLM-4-Voice linear layers a LoRA adapter can wrap.
pub const LORA_TARGETS: &[&str] = &["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"];

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoraConfig {
    pub rank: usize,
    pub alpha: f64,
    pub dropout: f64,
    pub targets: Vec<String>,
}

/// Stage one: fine-tuning GLM-4-Voice-9B.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LmConfig {
    /// A GLM-4-Voice-9B directory in the Hugging Face layout (config.json, safetensors shards).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_model: Option<PathBuf>,
    /// Directory with tokenizer.model / tokenizer.json (default: `base_model`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<PathBuf>,
    pub finetune: FinetuneMode,
    pub lora: LoraConfig,
    /// Parameter-name patterns (`*` wildcard) kept frozen in full fine-tuning.
    pub freeze_patterns: Vec<String>,
    pub max_seq_len: usize,
    pub batch_size: usize,
    pub activation_checkpointing: bool,
    #[serde(flatten)]
    pub train: TrainingConfig,
}

/// One part of the decoder (flow or HiFT) and how it trains.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecoderPartConfig {
    /// Batches are filled up to this many mel frames in total.
    pub max_frames_per_batch: usize,
    /// HiFT only: the vocoder trains on random crops of this many mel frames (x256 samples).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment_frames: Option<usize>,
    /// HiFT only: the discriminators' base width (32 = HiFi-GAN's and UnivNet's sizes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discriminator_channels: Option<usize>,
    #[serde(flatten)]
    pub train: TrainingConfig,
}

/// Stage two: GLM-4-Voice-Decoder trained from scratch.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecoderConfig {
    /// A GLM-4-Voice-Decoder `config.yaml` (HyperPyYAML) giving the flow and HiFT hyperparameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<PathBuf>,
    /// An existing decoder directory (flow.pt, hift.pt): kept as is when the stage is frozen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init: Option<PathBuf>,
    pub flow: DecoderPartConfig,
    pub hift: DecoderPartConfig,
}

/// A resolved recipe. It serializes to the same schema it is read from, with every default
/// filled in and every path absolute: that YAML is the "resolved recipe" a run records, and it
/// loads back as an equal recipe.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recipe {
    #[serde(skip)]
    pub file: PathBuf,
    /// A file only meant to be extended (like `base.yaml`): required keys may be absent.
    #[serde(skip)]
    pub template: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub output_dir: PathBuf,
    pub seed: u64,
    pub device: DeviceSpec,
    pub dtype: Dtype,
    /// Pad training batches to a few lengths so GPU kernels are tuned and compiled once.
    pub shape_buckets: ShapeBuckets,
    #[serde(
        serialize_with = "character_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub character: Option<Character>,
    pub data: DataConfig,
    pub lm: LmConfig,
    pub decoder: DecoderConfig,
    pub freeze: Vec<Stage>,
    /// The merged tree as written (before defaults).
    #[serde(skip)]
    pub tree: Node,
}

fn character_path<S: serde::Serializer>(card: &Option<Character>, s: S) -> Result<S::Ok, S::Error> {
    match card {
        Some(card) => card.file.serialize(s),
        None => s.serialize_none(),
    }
}

/// How to treat data and weight paths that do not exist (yet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathCheck {
    /// Missing inputs are errors: running a recipe.
    Strict,
    /// Missing inputs are warnings: `validate` of a recipe whose data the user has not brought yet.
    Lenient,
}

#[derive(Clone, Copy, PartialEq)]
enum PathKind {
    File,
    Dir,
}

/// A loaded recipe and its warnings.
pub struct Loaded {
    pub recipe: Recipe,
    pub warnings: Vec<Diagnostic>,
}

impl Recipe {
    /// Loads `file` with its `extends` chain and `overrides`; all problems or a recipe.
    pub fn load(
        file: &Path,
        overrides: &[String],
        paths: PathCheck,
    ) -> Result<Loaded, RecipeErrors> {
        let diags = Diagnostics::default();
        let recipe = layers::load_with_extends(file, &diags).and_then(|mut tree| {
            layers::apply_overrides(&mut tree, overrides, &diags);
            let recipe = read_recipe(file, tree, paths, &diags);
            Some(recipe)
        });
        let mut items = diags.into_vec();
        items.sort_by_key(|d| d.severity != Severity::Error);
        match recipe {
            Some(recipe) if !items.iter().any(|d| d.severity == Severity::Error) => Ok(Loaded {
                recipe,
                warnings: items,
            }),
            _ => Err(RecipeErrors(items)),
        }
    }

    /// The speaker label of the character's lines in the manifests.
    pub fn speaker(&self) -> Option<&str> {
        self.data
            .speaker
            .as_deref()
            .or(self.character.as_ref().map(|c| c.speaker.as_str()))
    }

    /// The resolved recipe as YAML: all layers merged, overrides applied, defaults filled in,
    /// paths absolute. It is itself a valid recipe.
    pub fn resolved_yaml(&self) -> String {
        serde_yaml::to_string(self).expect("recipes serialize to YAML")
    }
}

fn check_path(
    s: &Section,
    key: &'static str,
    path: &Path,
    kind: PathKind,
    paths: PathCheck,
    what: &str,
) {
    let problem = match (kind, path.exists(), path.is_dir()) {
        (_, false, _) => format!("{what} not found: {}", path.display()),
        (PathKind::File, true, true) => format!(
            "{what} must be a file, found a directory: {}",
            path.display()
        ),
        (PathKind::Dir, true, false) => format!("{what} must be a directory: {}", path.display()),
        _ => return,
    };
    missing_input(s, key, problem, paths);
}

/// An input that is not there: an error when running, a warning for `validate` without
/// `--strict` and for a dry run.
fn missing_input(s: &Section, key: &'static str, problem: String, paths: PathCheck) {
    let origin = s.origin_of(key);
    let key = s.key_path(key);
    let problem = match how_to_get(&key) {
        Some(hint) => format!("{problem}; {hint}"),
        None => problem,
    };
    match paths {
        PathCheck::Strict => s.diags().error(&origin, &key, problem),
        PathCheck::Lenient => s.diags().missing_input(&origin, &key, problem),
    }
}

/// Where an input comes from, for the message that says it is missing.
fn how_to_get(key: &str) -> Option<&'static str> {
    Some(match key {
        "data.manifests" => "build one with `arp-train build-data` (episodes + subtitles) or `arp-train import` (README: Data)",
        "data.speech_tokenizer" => "download THUDM/glm-4-voice-tokenizer there (README: Weights)",
        "lm.base_model" => "download THUDM/glm-4-voice-9b there (README: Weights)",
        "lm.tokenizer" => "the tokenizer files of THUDM/glm-4-voice-9b (README: Weights)",
        "decoder.config" => "THUDM/glm-4-voice-decoder's config.yaml (README: Weights)",
        "decoder.init" => "download THUDM/glm-4-voice-decoder there and convert its .pt files (README: Weights)",
        _ => return None,
    })
}

fn read_recipe(file: &Path, tree: Node, paths: PathCheck, diags: &Diagnostics) -> Recipe {
    let root = Section::new(&tree, "", diags);
    let template: bool = root.or("template", false);
    let description = root.opt::<String>("description");
    let output_dir = root.or(
        "output_dir",
        std::env::current_dir()
            .unwrap_or_default()
            .join("checkpoints")
            .join(
                file.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "run".into()),
            ),
    );
    let seed = root.or("seed", 42u64);
    let device = root.or("device", DeviceSpec::Auto);
    let dtype = root.or("dtype", Dtype::Auto);
    let shape_buckets = root.or("shape_buckets", ShapeBuckets::Auto);
    if device == DeviceSpec::Cpu && matches!(dtype, Dtype::Bf16 | Dtype::Fp16) {
        root.check(false, "dtype", format!("{dtype} is not supported on device `cpu` (burn-ndarray computes in fp32); use fp32 or auto"));
    }

    let character = match root.opt::<PathBuf>("character") {
        Some(path) => Character::load(&path, &root.origin_of("character"), diags),
        None => {
            if !template {
                root.check(
                    false,
                    "character",
                    "required key is missing (path to a character card)",
                );
            }
            None
        }
    };

    let data = read_data(&root.section("data"), &output_dir, template, paths);
    let lm = read_lm(&root.section("lm"), template, paths);
    let decoder = read_decoder(&root.section("decoder"), template, paths);
    let freeze: Vec<Stage> = root.or("freeze", Vec::new());
    root.check(
        freeze.len() < 2 || freeze[0] != freeze[1],
        "freeze",
        "lists a stage twice",
    );
    if !template {
        root.check(
            !(freeze.contains(&Stage::Lm) && freeze.contains(&Stage::Decoder)),
            "freeze",
            "freezes both stages: nothing would be trained",
        );
        if freeze.contains(&Stage::Decoder) && decoder.init.is_none() {
            root.check(false, "freeze", "freezing the decoder keeps an existing one: set `decoder.init` to a GLM-4-Voice-Decoder directory");
        }
    }
    root.finish();
    Recipe {
        file: file.to_path_buf(),
        template,
        description,
        output_dir,
        seed,
        device,
        dtype,
        shape_buckets,
        character,
        data,
        lm,
        decoder,
        freeze,
        tree,
    }
}

fn read_data(s: &Section, output_dir: &Path, template: bool, paths: PathCheck) -> DataConfig {
    let manifests: Vec<PathBuf> = s.or("manifests", Vec::new());
    if !template {
        s.check(
            !manifests.is_empty(),
            "manifests",
            "at least one manifest (JSONL) is required",
        );
    }
    for manifest in &manifests {
        check_path(s, "manifests", manifest, PathKind::File, paths, "manifest");
    }
    let f = s.section("filters");
    let filters = QualityFilters {
        min_seconds: f.or("min_seconds", 0.5),
        max_seconds: f.or("max_seconds", 30.0),
        min_rms_dbfs: f.or("min_rms_dbfs", -50.0),
        max_clipped_fraction: f.or("max_clipped_fraction", 0.001),
        clip_level: f.or("clip_level", 0.999),
        require_text: f.or("require_text", true),
    };
    f.check(
        filters.min_seconds >= 0.0,
        "min_seconds",
        format!("must be >= 0, found {}", filters.min_seconds),
    );
    f.positive("max_seconds", filters.max_seconds);
    f.check(
        filters.max_seconds > filters.min_seconds,
        "max_seconds",
        format!(
            "must be greater than min_seconds ({}), found {}",
            filters.min_seconds, filters.max_seconds
        ),
    );
    f.check(
        filters.min_rms_dbfs < 0.0,
        "min_rms_dbfs",
        format!(
            "is in dBFS and must be below 0, found {}",
            filters.min_rms_dbfs
        ),
    );
    f.in_range(
        "max_clipped_fraction",
        filters.max_clipped_fraction,
        0.0,
        1.0,
    );
    f.check(
        filters.clip_level > 0.0 && filters.clip_level <= 1.0,
        "clip_level",
        format!("must be in (0, 1], found {}", filters.clip_level),
    );
    f.finish();
    let v = s.section("validation");
    let validation = ValidationSplit {
        fraction: v.or("fraction", 0.05),
        min_items: v.or("min_items", 1usize),
    };
    v.check(
        (0.0..1.0).contains(&validation.fraction),
        "fraction",
        format!("must be in [0, 1), found {}", validation.fraction),
    );
    v.finish();
    let speech_tokenizer = s.opt::<PathBuf>("speech_tokenizer");
    match &speech_tokenizer {
        Some(dir) => {
            check_path(
                s,
                "speech_tokenizer",
                dir,
                PathKind::Dir,
                paths,
                "speech tokenizer directory",
            );
            let config = dir.join("config.json");
            if config.is_file() {
                if let Err(e) = crate::models::whisper_vq::WhisperVqConfig::from_file(&config) {
                    s.check(
                        false,
                        "speech_tokenizer",
                        format!("unusable tokenizer config: {e}"),
                    );
                }
            }
        }
        None if !template => {
            s.check(
                false,
                "speech_tokenizer",
                "required key is missing (a glm-4-voice-tokenizer directory)",
            );
        }
        None => {}
    }
    let data = DataConfig {
        manifests,
        speech_tokenizer,
        cache_dir: s.or("cache_dir", output_dir.join("cache")),
        speaker: s.opt("speaker"),
        filters,
        validation,
    };
    s.finish();
    data
}

/// The weights of `decoder.init`, checked from their headers (a frozen decoder is packaged as it
/// is, so this is the only check it gets before the run's end).
fn check_decoder_weights(
    s: &Section,
    dir: &Path,
    config: &crate::models::decoder::config::DecoderModelConfig,
    paths: PathCheck,
) {
    use crate::models::decoder::{check_dir, FLOW_FILE, HIFT_FILE};
    if let Some(absent) = [FLOW_FILE, HIFT_FILE]
        .into_iter()
        .find(|f| !dir.join(f).exists() && !dir.join(f.replace(".safetensors", ".pt")).exists())
    {
        let problem = format!("decoder weights not found: {}", dir.join(absent).display());
        return missing_input(s, "init", problem, paths);
    }
    if let Err(e) = check_dir(dir, config) {
        s.check(false, "init", format!("unusable decoder: {e}"));
    }
}

fn read_lm(s: &Section, template: bool, paths: PathCheck) -> LmConfig {
    let base_model = s.opt::<PathBuf>("base_model");
    match &base_model {
        Some(dir) => {
            check_path(
                s,
                "base_model",
                dir,
                PathKind::Dir,
                paths,
                "GLM-4-Voice-9B model directory",
            );
            if dir.is_dir() {
                check_path(
                    s,
                    "base_model",
                    &dir.join("config.json"),
                    PathKind::File,
                    paths,
                    "model config",
                );
            }
        }
        None if !template => {
            s.check(
                false,
                "base_model",
                "required key is missing (a GLM-4-Voice-9B directory in the Hugging Face layout)",
            );
        }
        None => {}
    }
    if let Some(dir) = base_model
        .as_ref()
        .filter(|d| d.join("config.json").is_file())
    {
        use crate::models::glm4::load::{check_checkpoint, shard_files};
        if let Err(e) = crate::models::glm4::Glm4Config::from_file(&dir.join("config.json")) {
            s.check(false, "base_model", format!("unusable model config: {e}"));
        } else if let Err(e) = shard_files(dir) {
            missing_input(s, "base_model", e, paths);
        } else if let Err(e) = check_checkpoint(dir) {
            s.check(false, "base_model", format!("unusable checkpoint: {e}"));
        }
    }
    let tokenizer = s.opt::<PathBuf>("tokenizer");
    if let Some(dir) = &tokenizer {
        check_path(
            s,
            "tokenizer",
            dir,
            PathKind::Dir,
            paths,
            "tokenizer directory",
        );
    }
    let l = s.section("lora");
    let lora = LoraConfig {
        rank: l.or("rank", 32usize),
        alpha: l.or("alpha", 32.0),
        dropout: l.or("dropout", 0.1),
        targets: l.or(
            "targets",
            LORA_TARGETS.iter().map(|t| t.to_string()).collect(),
        ),
    };
    l.at_least("rank", lora.rank, 1);
    l.positive("alpha", lora.alpha);
    l.check(
        (0.0..1.0).contains(&lora.dropout),
        "dropout",
        format!("must be in [0, 1), found {}", lora.dropout),
    );
    l.check(
        !lora.targets.is_empty(),
        "targets",
        "must name at least one layer",
    );
    for target in &lora.targets {
        if !LORA_TARGETS.contains(&target.as_str()) {
            let hint = diagnostics::suggest(target, LORA_TARGETS.iter().copied())
                .map(|t| format!(" (did you mean `{t}`?)"))
                .unwrap_or_default();
            l.check(
                false,
                "targets",
                format!(
                    "unknown layer {target:?}{hint}; choose from {}",
                    LORA_TARGETS.join(", ")
                ),
            );
        }
    }
    l.finish();
    let defaults = TrainingDefaults {
        optimizer: OptimizerKind::AdamW,
        lr: 1e-4,
        weight_decay: 0.01,
        schedule: ScheduleKind::Cosine,
        warmup_steps: 50,
        length: Length::Epochs(3),
        gradient_accumulation: 1,
        clip_grad_norm: Some(1.0),
        checkpoint_every: 100,
    };
    let lm = LmConfig {
        base_model,
        tokenizer,
        finetune: s.or("finetune", FinetuneMode::Lora),
        lora,
        freeze_patterns: s.or("freeze_patterns", Vec::new()),
        max_seq_len: s.or("max_seq_len", 2048usize),
        batch_size: s.or("batch_size", 1usize),
        activation_checkpointing: s.or("activation_checkpointing", true),
        train: TrainingConfig::read(s, &defaults),
    };
    s.at_least("max_seq_len", lm.max_seq_len, 16);
    s.at_least("batch_size", lm.batch_size, 1);
    s.finish();
    lm
}

fn read_decoder_part(
    s: &Section,
    lr: f64,
    schedule: ScheduleKind,
    warmup_steps: usize,
    clip: f64,
    accumulation: usize,
    vocoder: bool,
) -> DecoderPartConfig {
    let defaults = TrainingDefaults {
        optimizer: OptimizerKind::Adam,
        lr,
        weight_decay: 0.0,
        schedule,
        warmup_steps,
        length: Length::Steps(50_000),
        gradient_accumulation: accumulation,
        clip_grad_norm: Some(clip),
        checkpoint_every: 1000,
    };
    let part = DecoderPartConfig {
        max_frames_per_batch: s.or("max_frames_per_batch", 2000usize),
        segment_frames: vocoder.then(|| s.or("segment_frames", 32usize)),
        discriminator_channels: vocoder.then(|| s.or("discriminator_channels", 32usize)),
        train: TrainingConfig::read(s, &defaults),
    };
    s.at_least("max_frames_per_batch", part.max_frames_per_batch, 1);
    if let Some(n) = part.segment_frames {
        s.at_least("segment_frames", n, 8);
    }
    if let Some(n) = part.discriminator_channels {
        s.at_least("discriminator_channels", n, 1);
    }
    s.finish();
    part
}

fn read_decoder(s: &Section, template: bool, paths: PathCheck) -> DecoderConfig {
    let init = s.opt::<PathBuf>("init");
    if let Some(dir) = &init {
        check_path(s, "init", dir, PathKind::Dir, paths, "decoder directory");
    }
    let config = s
        .opt::<PathBuf>("config")
        .or_else(|| init.as_ref().map(|dir| dir.join("config.yaml")));
    if let Some(file) = config.as_ref().filter(|f| f.is_file()) {
        match crate::models::decoder::config::DecoderModelConfig::from_file(file) {
            Err(errors) => s.diags().extend(errors.0),
            Ok(model) => {
                if let Some(dir) = init.as_ref().filter(|d| d.is_dir()) {
                    check_decoder_weights(s, dir, &model, paths);
                }
            }
        }
    }
    match &config {
        Some(file) => check_path(
            s,
            if s.has("config") { "config" } else { "init" },
            file,
            PathKind::File,
            paths,
            "decoder config.yaml",
        ),
        None if !template => {
            s.check(false, "config", "required key is missing (a GLM-4-Voice-Decoder config.yaml, or `init` pointing at its directory)");
        }
        None => {}
    }
    // CosyVoice's published recipe: flow Adam 1e-3 with 2500 warmup steps and inverse-sqrt decay,
    // clip 5, accumulation 2; HiFT Adam 2e-4.
    let flow = read_decoder_part(
        &s.section("flow"),
        1e-3,
        ScheduleKind::InverseSqrt,
        2500,
        5.0,
        2,
        false,
    );
    let hift = read_decoder_part(
        &s.section("hift"),
        2e-4,
        ScheduleKind::Constant,
        0,
        5.0,
        1,
        true,
    );
    s.finish();
    DecoderConfig {
        config,
        init,
        flow,
        hift,
    }
}
