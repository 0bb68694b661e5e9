//! Stage one: fine-tune GLM-4-Voice on the character's samples (LoRA or full), step by step:
//! length-bucketed batches in a seeded order, AdamW, warmup + decay, gradient accumulation,
//! global-norm clipping, a non-finite guard, held-out evaluation, a JSONL metrics log, and the
//! PEFT adapter + merged model at the end.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use serde::Serialize;

use serde::Deserialize;

use super::checkpoints::Checkpoints;
use super::lm_backward::{lm_grads, LmBackward};
use super::metrics::MetricsLog;
use super::part::fault_steps;
use super::resume::{check_resumable, ResumeSection};
use super::schedule::learning_rate;
use super::step::accumulate_grads_and_step;
use crate::data::buckets::padded_len;
use crate::data::cache::stable_hash;
use crate::data::samples::{
    build_from_cache, length_bucketed_batches, Sample, SampleBuilder, IGNORE,
};
use crate::models::glm4::export::save_weights;
use crate::models::glm4::export::{
    save_adapter, save_merged, AdapterInfo, ExportDtype, DEFAULT_MAX_SHARD_BYTES,
};
use crate::models::glm4::finetune::{is_trained, prepare_for_finetune};
use crate::models::glm4::load::{load_adapter, load_model, load_model_keeping_fp32};
use crate::models::glm4::model::{causal_lm_loss, ChatGlmModel};
use crate::models::glm4::tokenizer::GlmTokenizer;
use crate::models::params::{named_params, set_trainable};
use crate::plan::validation_count;
use crate::progress;
use crate::recipe::training::Length;
use crate::recipe::{FinetuneMode, Recipe};

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

/// One line of `metrics.jsonl`.
#[derive(Serialize)]
struct StepRecord {
    step: usize,
    epoch: usize,
    loss: f64,
    lr: f64,
    grad_norm: f64,
    tokens_per_second: f64,
    step_seconds: f64,
    skipped_steps: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_loss: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LmReport {
    pub steps: usize,
    pub train_samples: usize,
    pub validation_samples: usize,
    pub losses: Vec<f64>,
    pub eval_losses: Vec<(usize, f64)>,
    pub skipped_steps: usize,
    pub padding_share: f64,
    pub truncated_samples: usize,
    pub dropped_too_long: usize,
    pub wall_seconds: f64,
    pub adapter_dir: Option<PathBuf>,
    pub merged_dir: PathBuf,
}

/// Where a run stands, saved in every checkpoint (`trainer_state.json`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct TrainerState {
    step: usize,
    epoch: usize,
    /// Index of the next batch group of `epoch` (groups before it are done).
    next_group: usize,
    skipped_steps: usize,
    consecutive_bad: usize,
    losses: Vec<f64>,
    eval_losses: Vec<(usize, f64)>,
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
    if count == 0 {
        f64::NAN
    } else {
        weighted / count as f64
    }
}

/// What a stage starts from. Checkpoints of other settings are refused by
/// [`check_resumable`](super::resume::check_resumable), so resuming never mixes two runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Resume {
    /// The newest complete checkpoint of the stage directory, if any.
    Latest,
    /// This checkpoint directory.
    From(PathBuf),
}

/// Trains stage one as the recipe says; the prepared cache must exist (`arp-train prepare`).
pub fn train_lm<B: AutodiffBackend>(
    recipe: &Recipe,
    device: &B::Device,
    stage_dir: &Path,
    resume: &Resume,
) -> Result<LmReport, String> {
    let started = Instant::now();
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
    // Held-out split: the samples whose seeded hash of the id is smallest.
    let mut order: Vec<&Sample> = set.samples.iter().collect();
    order.sort_by_key(|s| stable_hash(&[s.id.as_bytes(), &recipe.seed.to_le_bytes()]));
    let n_val = validation_count(
        order.len(),
        recipe.data.validation.fraction,
        recipe.data.validation.min_items,
    );
    let (validation, train) = order.split_at(n_val);
    let mut train: Vec<&Sample> = train.to_vec();
    train.sort_by(|a, b| a.id.cmp(&b.id));
    let lengths: Vec<usize> = train.iter().map(|s| s.input_ids.len()).collect();
    let token_padding = Padding {
        pad: tokenizer.token_id("<|user|>")?,
        buckets: recipe.shape_buckets.enabled::<B>(device),
        max_len: lm.max_seq_len,
    };

    let train_cfg = &lm.train;
    let checkpoints = Checkpoints::open(stage_dir, train_cfg.keep_last_n)
        .map_err(|e| format!("{}: {e}", stage_dir.display()))?;
    let resume_from = match resume {
        Resume::Latest => checkpoints.latest().map(|(_, dir)| dir),
        Resume::From(dir) => Some(dir.clone()),
    };
    let o = &train_cfg.optimizer;
    let mut optimizer = super::adamw(o).init::<B, ChatGlmModel<B>>();
    let trained = |name: &str| is_trained(lm, name);
    let mut state = TrainerState {
        step: 0,
        epoch: 0,
        next_group: 0,
        skipped_steps: 0,
        consecutive_bad: 0,
        losses: Vec::new(),
        eval_losses: Vec::new(),
    };
    let mut model = match &resume_from {
        None => prepare_for_finetune(
            load_model_keeping_fp32::<B>(base_dir, device, &trained)?.0,
            lm,
            recipe.seed,
            device,
        )?,
        Some(dir) => {
            if !dir.join(super::checkpoints::COMPLETE_MARKER).is_file() {
                return Err(format!("{} is not a complete checkpoint", dir.display()));
            }
            check_resumable(recipe, &dir.join("recipe.resolved.yaml"), ResumeSection::Lm)?;
            let model = match lm.finetune {
                FinetuneMode::Lora => {
                    let (mut model, _) = load_model::<B>(base_dir, device)?;
                    load_adapter(&mut model, &dir.join("adapter"), device)?;
                    set_trainable(model, trained)
                }
                FinetuneMode::Full => prepare_for_finetune(
                    load_model_keeping_fp32::<B>(&dir.join("weights"), device, &trained)?.0,
                    lm,
                    recipe.seed,
                    device,
                )?,
            };
            optimizer = super::adamw_state::load(optimizer, &named_params(&model), dir, device)?;
            let text = std::fs::read_to_string(dir.join("trainer_state.json"))
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            state = serde_json::from_str(&text)
                .map_err(|e| format!("{}: trainer_state.json: {e}", dir.display()))?;
            tracing::info!(step = state.step, from = %dir.display(), "resuming stage one");
            model
        }
    };
    let params = named_params(&model);
    let backward = LmBackward::for_recipe(lm.activation_checkpointing);
    let batches_per_epoch = lengths.len().div_ceil(lm.batch_size);
    let steps_per_epoch = batches_per_epoch
        .div_ceil(train_cfg.gradient_accumulation)
        .max(1);
    let total_steps = match train_cfg.length {
        Length::Steps(n) => n,
        Length::Epochs(e) => e * steps_per_epoch,
    };

    let mut log = MetricsLog::open(&stage_dir.join("metrics.jsonl"), Some(state.step))
        .map_err(|e| e.to_string())?;
    let bar = progress::bar(total_steps as u64, "stage one");
    bar.set_position(state.step as u64);
    // Test hooks: `ARP_FAULT_NAN_STEPS=3,4` makes those steps' loss NaN;
    // `ARP_FAULT_ABORT_IN_CHECKPOINT=8` aborts halfway through writing that step's checkpoint.
    let nan_steps = fault_steps("ARP_FAULT_NAN_STEPS");
    let abort_in_checkpoint = fault_steps("ARP_FAULT_ABORT_IN_CHECKPOINT");
    let mut report = LmReport {
        steps: 0,
        train_samples: train.len(),
        validation_samples: validation.len(),
        losses: state.losses.clone(),
        eval_losses: state.eval_losses.clone(),
        skipped_steps: state.skipped_steps,
        padding_share: 0.0,
        truncated_samples: set.truncated_samples,
        dropped_too_long: set.too_long.len(),
        wall_seconds: 0.0,
        adapter_dir: None,
        merged_dir: stage_dir.join("merged"),
    };
    let save_checkpoint = |state: &TrainerState,
                           model: &ChatGlmModel<B>,
                           optimizer: &_,
                           abort: bool|
     -> Result<(), String> {
        let optimizer: &burn::optim::adaptor::OptimizerAdaptor<
            burn::optim::AdamW,
            ChatGlmModel<B>,
            B,
        > = optimizer;
        checkpoints
            .save(state.step, |dir| {
                match lm.finetune {
                    FinetuneMode::Lora => {
                        save_adapter(model, &adapter_info(recipe, base_dir), &dir.join("adapter"))?
                    }
                    FinetuneMode::Full => save_weights(
                        model,
                        base_dir,
                        &dir.join("weights"),
                        ExportDtype::F32,
                        DEFAULT_MAX_SHARD_BYTES,
                    )?,
                }
                if abort {
                    // Test hook: a crash in the middle of writing a checkpoint.
                    std::process::abort();
                }
                super::adamw_state::save(optimizer, &params, &dir.join(super::adamw_state::FILE))?;
                std::fs::write(dir.join("trainer_state.json"), serde_json::to_vec(state)?)?;
                std::fs::write(dir.join("recipe.resolved.yaml"), recipe.resolved_yaml())
            })
            .map(|_| ())
    };
    let held_out_loss = |model: &ChatGlmModel<B>| {
        mean_loss(
            &model.valid(),
            validation,
            lm.batch_size,
            token_padding,
            device,
        )
    };
    // The starting point of the eval curve.
    if state.step == 0 && !validation.is_empty() {
        let loss = held_out_loss(&model);
        report.eval_losses.push((0, loss));
        state.eval_losses = report.eval_losses.clone();
        log.write(&serde_json::json!({ "step": 0, "eval_loss": loss }))
            .map_err(|e| format!("cannot write {}: {e}", log.path().display()))?;
    }
    let mut consecutive_bad = state.consecutive_bad;
    let mut step = state.step;
    let mut epoch = state.epoch;
    let mut first_group = state.next_group;
    'epochs: while step < total_steps {
        let (batches, padding) = length_bucketed_batches(
            &lengths,
            lm.batch_size,
            8,
            recipe.seed.wrapping_add(epoch as u64),
        );
        report.padding_share = padding;
        let groups: Vec<&[Vec<usize>]> = batches.chunks(train_cfg.gradient_accumulation).collect();
        for (group_index, group) in groups.iter().enumerate().skip(first_group) {
            if step >= total_steps {
                break 'epochs;
            }
            let step_start = Instant::now();
            // Dropout draws depend only on (seed, step, micro-batch, layer): a resumed run
            // repeats them.
            let step_seed = recipe.seed ^ (step as u64).wrapping_mul(0x9E3779B97F4A7C15);
            let lr = learning_rate(&train_cfg.schedule, o.lr, step, total_steps);
            let tokens: usize = group
                .iter()
                .flatten()
                .map(|&i| train[i].input_ids.len())
                .sum();
            let (stepped, outcome) = accumulate_grads_and_step(
                model,
                &mut optimizer,
                &params,
                group.len(),
                |model, i, weight| {
                    let samples: Vec<&Sample> = group[i].iter().map(|&j| train[j]).collect();
                    let (ids, labels, _) = batch_tensors::<B>(&samples, token_padding, device);
                    let seed = step_seed ^ (i as u64 + 1).wrapping_mul(0xBF58476D1CE4E5B9);
                    lm_grads(model, ids, labels, weight, seed, backward)
                },
                lr,
                train_cfg.clip_grad_norm,
                nan_steps.contains(&(step + 1)),
            );
            model = stepped;
            let (group_loss, norm) = (outcome.loss, outcome.grad_norm);
            if !outcome.applied {
                consecutive_bad += 1;
                report.skipped_steps += 1;
                tracing::warn!(
                    step,
                    loss = group_loss,
                    grad_norm = norm,
                    "non-finite loss or gradient norm: step skipped"
                );
                if consecutive_bad >= train_cfg.max_nonfinite_steps {
                    bar.finish_and_clear();
                    // The skipped steps left the weights untouched: save them, past the bad batches.
                    let last_group = group_index + 1 == groups.len();
                    let last_good = TrainerState {
                        step: step + 1,
                        epoch: if last_group { epoch + 1 } else { epoch },
                        next_group: if last_group { 0 } else { group_index + 1 },
                        skipped_steps: report.skipped_steps,
                        consecutive_bad: 0,
                        losses: report.losses.clone(),
                        eval_losses: report.eval_losses.clone(),
                    };
                    save_checkpoint(&last_good, &model, &optimizer, false)?;
                    return Err(format!(
                        "{consecutive_bad} consecutive steps had a non-finite loss or gradient norm (last at step {step}); \
                         stopping with a checkpoint of the last good weights. Lower the learning rate, check the data, or raise lm.max_nonfinite_steps"
                    ));
                }
                step += 1;
                bar.inc(1);
                continue;
            }
            consecutive_bad = 0;
            step += 1;
            report.losses.push(group_loss);
            let mut eval_loss = None;
            if step % train_cfg.eval_every == 0 || step == total_steps {
                if !validation.is_empty() {
                    let loss = held_out_loss(&model);
                    report.eval_losses.push((step, loss));
                    eval_loss = Some(loss);
                }
            }
            let seconds = step_start.elapsed().as_secs_f64();
            let record = StepRecord {
                step,
                epoch,
                loss: group_loss,
                lr,
                grad_norm: norm,
                tokens_per_second: tokens as f64 / seconds.max(1e-9),
                step_seconds: seconds,
                skipped_steps: report.skipped_steps,
                eval_loss,
            };
            log.write(&record)
                .map_err(|e| format!("cannot write {}: {e}", log.path().display()))?;
            let stopping = crate::stop::requested().is_some();
            if step % train_cfg.checkpoint_every == 0 || step == total_steps || stopping {
                let last_group = group_index + 1 == groups.len();
                state = TrainerState {
                    step,
                    epoch: if last_group { epoch + 1 } else { epoch },
                    next_group: if last_group { 0 } else { group_index + 1 },
                    skipped_steps: report.skipped_steps,
                    consecutive_bad,
                    losses: report.losses.clone(),
                    eval_losses: report.eval_losses.clone(),
                };
                save_checkpoint(
                    &state,
                    &model,
                    &optimizer,
                    abort_in_checkpoint.contains(&step),
                )?;
            }
            bar.set_message(format!("loss {group_loss:.4}"));
            bar.inc(1);
            if step % train_cfg.log_every == 0 {
                tracing::info!(step, loss = group_loss, lr, grad_norm = norm, "stage one");
            }
            if stopping {
                bar.finish_and_clear();
                let dir = checkpoints.step_dir(step);
                return Err(crate::stop::stopped_training(
                    "stage one (lm)",
                    step,
                    total_steps,
                    &dir,
                ));
            }
        }
        epoch += 1;
        first_group = 0;
    }
    bar.finish_and_clear();
    report.steps = step;

    if lm.finetune == FinetuneMode::Lora {
        let adapter = stage_dir.join("adapter");
        let info = AdapterInfo {
            rank: lm.lora.rank,
            alpha: lm.lora.alpha,
            dropout: lm.lora.dropout,
            targets: lm.lora.targets.clone(),
            base_model: base_dir.clone(),
        };
        save_adapter(&model, &info, &adapter)
            .map_err(|e| format!("cannot write {}: {e}", adapter.display()))?;
        report.adapter_dir = Some(adapter);
    }
    save_merged(
        model.valid(),
        base_dir,
        &report.merged_dir,
        ExportDtype::Bf16,
        DEFAULT_MAX_SHARD_BYTES,
    )
    .map_err(|e| format!("cannot write {}: {e}", report.merged_dir.display()))?;
    let train_curve: Vec<(usize, f64)> = report
        .losses
        .iter()
        .enumerate()
        .map(|(i, l)| (i + 1, *l))
        .collect();
    let plot = stage_dir.join("loss.svg");
    super::plot::write_loss_svg(&plot, "stage one (lm)", &train_curve, &report.eval_losses)
        .map_err(|e| format!("cannot write {}: {e}", plot.display()))?;
    report.wall_seconds = started.elapsed().as_secs_f64();
    Ok(report)
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
