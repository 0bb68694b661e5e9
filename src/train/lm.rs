//! Stage one: fine-tune GLM-4-Voice on the character's samples (LoRA or full) in the
//! [training loop](super::driver): length-bucketed batches in a seeded order, gradient
//! accumulation with per-block recomputation, the causal LM loss on the reply's tokens, and
//! the PEFT adapter + merged model at the end.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};

use super::driver::{self, Measured, Names, Part, Resume, Settings, Start, StepInput};
use super::lm_backward::{lm_grads, LmBackward};
use super::resume::ResumeSection;
use super::step::accumulate_grads_and_step;
use super::Adam;
use crate::data::buckets::padded_len;
use crate::data::samples::{
    build_from_cache, length_bucketed_batches, Sample, SampleBuilder, IGNORE,
};
use crate::data::split::train_and_held_out;
use crate::faults::PartFaults;
use crate::models::glm4::export::{
    save_adapter, save_merged, save_weights, AdapterInfo, ExportDtype, DEFAULT_MAX_SHARD_BYTES,
};
use crate::models::glm4::finetune::{is_trained, prepare_for_finetune};
use crate::models::glm4::load::{load_adapter, load_model, load_model_keeping_fp32};
use crate::models::glm4::model::{causal_lm_loss, ChatGlmModel};
use crate::models::glm4::tokenizer::GlmTokenizer;
use crate::models::params::{named_params, set_trainable, NamedParam};
use crate::plan::steps;
use crate::recipe::{FinetuneMode, Recipe};
use crate::report::LmReport;
use crate::run_dir;

const NAMES: Names = Names {
    label: "stage one",
    part: "lm",
    resuming: "stage one",
    steps: "steps",
    title: "stage one (lm)",
    plot_title: "stage one (lm)",
    recipe_key: "lm",
    loss: "loss",
    throughput: "tokens_per_second",
};

/// How a batch's token rows are padded: with `pad` on the right (labels ignored there, and the
/// causal mask keeps real positions from seeing it), to the longest sample or, with shape
/// buckets on, to its bucket (capped at `max_len`).
#[derive(Clone, Copy)]
struct Padding {
    pad: u32,
    buckets: bool,
    max_len: usize,
}

/// Token positions per bucket step (see [`crate::data::buckets`]).
const TOKEN_GRANULE: usize = 16;

/// Batches of samples held out in memory as token tensors.
fn batch_tensors<B: Backend>(
    samples: &[&Sample],
    padding: Padding,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>, usize) {
    let Padding { pad, .. } = padding;
    let natural = samples.iter().map(|s| s.input_ids.len()).max().unwrap_or(0);
    let longest = padded_len(natural, TOKEN_GRANULE, padding.buckets)
        .min(padding.max_len)
        .max(natural);
    let mut ids = Vec::with_capacity(samples.len() * longest);
    let mut labels = Vec::with_capacity(samples.len() * longest);
    let mut targets = 0;
    for s in samples {
        ids.extend(s.input_ids.iter().map(|&t| t as i64));
        ids.extend(std::iter::repeat_n(pad as i64, longest - s.input_ids.len()));
        labels.extend(s.labels.iter().copied());
        labels.extend(std::iter::repeat_n(IGNORE, longest - s.labels.len()));
        targets += s.labels.iter().filter(|&&l| l != IGNORE).count();
    }
    let shape = [samples.len(), longest];
    (
        Tensor::from_data(TensorData::new(ids, shape), device),
        Tensor::from_data(TensorData::new(labels, shape), device),
        targets,
    )
}

fn mean_loss<B: Backend>(
    model: &ChatGlmModel<B>,
    samples: &[&Sample],
    batch: usize,
    padding: Padding,
    device: &B::Device,
) -> f64 {
    let (mut weighted, mut count) = (0.0, 0usize);
    for chunk in samples.chunks(batch.max(1)) {
        let (ids, labels, targets) = batch_tensors::<B>(chunk, padding, device);
        let loss: f64 = burn::tensor::ElementConversion::elem(
            causal_lm_loss(model.forward(ids), labels).into_scalar(),
        );
        weighted += loss * targets as f64;
        count += targets;
    }
    super::weighted_mean(weighted, count)
}

/// Stage one in the training loop: the model, its optimizer and the samples.
struct LmPart<'a, B: AutodiffBackend> {
    model: ChatGlmModel<B>,
    optimizer: Adam<ChatGlmModel<B>, B>,
    params: Vec<NamedParam>,
    train: Vec<&'a Sample>,
    validation: Vec<&'a Sample>,
    padding: Padding,
    backward: LmBackward,
    recipe: &'a Recipe,
    base_dir: &'a Path,
    device: &'a B::Device,
    /// Share of padding in the latest epoch's batches.
    padding_share: f64,
}

impl<B: AutodiffBackend> Part for LmPart<'_, B> {
    fn batches(&mut self, epoch: usize) -> Vec<Vec<usize>> {
        let lengths: Vec<usize> = self.train.iter().map(|s| s.input_ids.len()).collect();
        let seed = self.recipe.seed.wrapping_add(epoch as u64);
        let (batches, padding) =
            length_bucketed_batches(&lengths, self.recipe.lm.batch_size, 8, seed);
        self.padding_share = padding;
        batches
    }

    fn step(mut self, group: &[Vec<usize>], input: StepInput) -> (Self, Measured) {
        // Dropout draws depend only on (seed, step, micro-batch, layer): a resumed run
        // repeats them.
        let step_seed = self.recipe.seed ^ (input.step as u64).wrapping_mul(0x9E3779B97F4A7C15);
        let tokens = group
            .iter()
            .flatten()
            .map(|&i| self.train[i].input_ids.len())
            .sum();
        let (train, padding, backward, device) =
            (&self.train, self.padding, self.backward, self.device);
        let (model, outcome) = accumulate_grads_and_step(
            self.model,
            &mut self.optimizer,
            &self.params,
            group.len(),
            |model, i, weight| {
                let samples: Vec<&Sample> = group[i].iter().map(|&j| train[j]).collect();
                let (ids, labels, _) = batch_tensors::<B>(&samples, padding, device);
                let seed = step_seed ^ (i as u64 + 1).wrapping_mul(0xBF58476D1CE4E5B9);
                lm_grads(model, ids, labels, weight, seed, backward)
            },
            input.lr,
            self.recipe.lm.train.clip_grad_norm,
            input.poison,
        );
        self.model = model;
        let measured = Measured {
            outcome,
            work: tokens,
            extra: BTreeMap::new(),
        };
        (self, measured)
    }

    fn evaluate(&self) -> Option<f64> {
        (!self.validation.is_empty()).then(|| {
            mean_loss(
                &self.model.valid(),
                &self.validation,
                self.recipe.lm.batch_size,
                self.padding,
                self.device,
            )
        })
    }

    fn save_weights(&self, dir: &Path) -> std::io::Result<()> {
        match self.recipe.lm.finetune {
            FinetuneMode::Lora => save_adapter(
                &self.model,
                &adapter_info(self.recipe, self.base_dir),
                &dir.join(run_dir::ADAPTER),
            ),
            FinetuneMode::Full => save_weights(
                &self.model,
                self.base_dir,
                &dir.join(FULL_WEIGHTS),
                ExportDtype::F32,
                DEFAULT_MAX_SHARD_BYTES,
            ),
        }
    }

    fn save_training_state(&self, dir: &Path) -> std::io::Result<()> {
        super::adamw_state::save(
            &self.optimizer,
            &self.params,
            &dir.join(super::adamw_state::FILE),
        )
    }
}

/// A full fine-tune's checkpointed weights (fp32, in the base model's layout).
const FULL_WEIGHTS: &str = "weights";

/// Trains stage one as the recipe says; the prepared cache must exist (`arp-train prepare`).
pub fn train_lm<B: AutodiffBackend>(
    recipe: &Recipe,
    device: &B::Device,
    stage_dir: &Path,
    resume: &Resume,
    faults: &PartFaults,
) -> Result<LmReport, String> {
    let lm = &recipe.lm;
    let base_dir = lm.base_model.as_ref().ok_or("lm.base_model is not set")?;
    let tokenizer = GlmTokenizer::load(lm.tokenizer.as_ref().unwrap_or(base_dir))?;
    let card = recipe
        .character
        .as_ref()
        .ok_or("the recipe has no character")?;
    let speaker = recipe
        .speaker()
        .ok_or("no speaker for the character")?
        .to_string();
    let builder = SampleBuilder {
        tokenizer: &tokenizer,
        persona: &card.system_prompt,
        max_seq_len: lm.max_seq_len,
    };
    let set = build_from_cache(&recipe.data.cache_dir, &speaker, &builder)?;
    if set.samples.is_empty() {
        return Err(format!(
            "no stage-one samples for speaker {speaker:?} in {}",
            recipe.data.cache_dir.display()
        ));
    }
    let (train, validation) = train_and_held_out(
        set.samples.iter().collect(),
        |s: &&Sample| s.id.as_str(),
        recipe.seed,
        &recipe.data.validation,
    );
    let padding = Padding {
        pad: tokenizer.token_id("<|user|>")?,
        buckets: recipe.shape_buckets.enabled::<B>(device),
        max_len: lm.max_seq_len,
    };

    let start = Start::open(stage_dir, recipe, &lm.train, ResumeSection::Lm, resume)?;
    let mut optimizer = super::adamw(&lm.train.optimizer).init::<B, ChatGlmModel<B>>();
    let trained = |name: &str| is_trained(lm, name);
    let model = match &start.from {
        None => prepare_for_finetune(
            load_model_keeping_fp32::<B>(base_dir, device, &trained)?.0,
            lm,
            recipe.seed,
            device,
        )?,
        Some(dir) => {
            let model = match lm.finetune {
                FinetuneMode::Lora => {
                    let (mut model, _) = load_model::<B>(base_dir, device)?;
                    load_adapter(&mut model, &dir.join(run_dir::ADAPTER), device)?;
                    set_trainable(model, trained)
                }
                FinetuneMode::Full => prepare_for_finetune(
                    load_model_keeping_fp32::<B>(&dir.join(FULL_WEIGHTS), device, &trained)?.0,
                    lm,
                    recipe.seed,
                    device,
                )?,
            };
            optimizer = super::adamw_state::load(optimizer, &named_params(&model), dir, device)?;
            model
        }
    };
    let (train_samples, validation_samples) = (train.len(), validation.len());
    let part = LmPart {
        params: named_params(&model),
        model,
        optimizer,
        train,
        validation,
        padding,
        backward: LmBackward::for_recipe(lm.activation_checkpointing),
        recipe,
        base_dir,
        device,
        padding_share: 0.0,
    };
    let settings = Settings {
        names: &NAMES,
        recipe,
        train: &lm.train,
        total_steps: steps::lm(recipe, train_samples).total,
        dir: stage_dir,
        faults,
    };
    let (part, curve) = driver::train(part, start, &settings)?;
    let mut report = LmReport {
        curve,
        train_samples,
        validation_samples,
        padding_share: part.padding_share,
        truncated_samples: set.truncated_samples,
        dropped_too_long: set.too_long.len(),
        adapter_dir: None,
        merged_dir: stage_dir.join(run_dir::MERGED),
    };
    export(&part, &mut report, stage_dir)?;
    Ok(report)
}

/// The exports of a trained stage one into `report`'s directories: the PEFT adapter (LoRA) and
/// the merged model.
fn export<B: AutodiffBackend>(
    part: &LmPart<'_, B>,
    report: &mut LmReport,
    stage_dir: &Path,
) -> Result<(), String> {
    if part.recipe.lm.finetune == FinetuneMode::Lora {
        let adapter = stage_dir.join(run_dir::ADAPTER);
        save_adapter(
            &part.model,
            &adapter_info(part.recipe, part.base_dir),
            &adapter,
        )
        .map_err(|e| format!("cannot write {}: {e}", adapter.display()))?;
        report.adapter_dir = Some(adapter);
    }
    save_merged(
        part.model.valid(),
        part.base_dir,
        &report.merged_dir,
        ExportDtype::Bf16,
        DEFAULT_MAX_SHARD_BYTES,
    )
    .map_err(|e| format!("cannot write {}: {e}", report.merged_dir.display()))
}

fn adapter_info(recipe: &Recipe, base_dir: &Path) -> AdapterInfo {
    let lora = &recipe.lm.lora;
    AdapterInfo {
        rank: lora.rank,
        alpha: lora.alpha,
        dropout: lora.dropout,
        targets: lora.targets.clone(),
        base_model: base_dir.to_path_buf(),
    }
}
