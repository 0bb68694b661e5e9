//! Stage one: fine-tune GLM-4-Voice on the character's samples (LoRA or full), step by step:
//! length-bucketed batches in a seeded order, AdamW, warmup + decay, gradient accumulation,
//! global-norm clipping, a non-finite guard, held-out evaluation, a JSONL metrics log, and the
//! PEFT adapter + merged model at the end.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use serde::Serialize;

use super::metrics::MetricsLog;
use super::schedule::learning_rate;
use crate::data::cache::stable_hash;
use crate::data::samples::{
    build_from_cache, length_bucketed_batches, Sample, SampleBuilder, IGNORE,
};
use crate::models::glm4::export::{
    save_adapter, save_merged, AdapterInfo, ExportDtype, DEFAULT_MAX_SHARD_BYTES,
};
use crate::models::glm4::finetune::prepare_for_finetune;
use crate::models::glm4::load::load_model;
use crate::models::glm4::model::{causal_lm_loss, ChatGlmModel};
use crate::models::glm4::tokenizer::GlmTokenizer;
use crate::models::params::named_params;
use crate::plan::validation_count;
use crate::progress;
use crate::recipe::training::Length;
use crate::recipe::{FinetuneMode, Recipe};

/// Batches of samples held out in memory as token tensors.
fn batch_tensors<B: Backend>(
    samples: &[&Sample],
    pad: u32,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>, usize) {
    let longest = samples.iter().map(|s| s.input_ids.len()).max().unwrap_or(0);
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

/// Global L2 norm of the gradients of `params` (1-D and 2-D parameters).
fn grad_norm<B: AutodiffBackend>(
    grads: &GradientsParams,
    params: &[crate::models::params::NamedParam],
) -> f64 {
    let mut total = 0.0f64;
    for p in params.iter().filter(|p| p.trainable) {
        let squares = if let Some(g) = grads.get::<B::InnerBackend, 2>(p.id) {
            g.powi_scalar(2).sum().into_scalar()
        } else if let Some(g) = grads.get::<B::InnerBackend, 1>(p.id) {
            g.powi_scalar(2).sum().into_scalar()
        } else {
            continue;
        };
        total += burn::tensor::ElementConversion::elem::<f64>(squares);
    }
    total.sqrt()
}

/// Multiplies every gradient by `factor`.
fn scale_grads<B: AutodiffBackend>(
    grads: &mut GradientsParams,
    params: &[crate::models::params::NamedParam],
    factor: f64,
) {
    for p in params.iter().filter(|p| p.trainable) {
        if let Some(g) = grads.remove::<B::InnerBackend, 2>(p.id) {
            grads.register(p.id, g * factor);
        } else if let Some(g) = grads.remove::<B::InnerBackend, 1>(p.id) {
            grads.register(p.id, g * factor);
        }
    }
}

fn mean_loss<B: Backend>(
    model: &ChatGlmModel<B>,
    samples: &[&Sample],
    batch: usize,
    pad: u32,
    device: &B::Device,
) -> f64 {
    let (mut weighted, mut count) = (0.0, 0usize);
    for chunk in samples.chunks(batch.max(1)) {
        let (ids, labels, targets) = batch_tensors::<B>(chunk, pad, device);
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

/// Trains stage one as the recipe says; the prepared cache must exist (`arp-train prepare`).
pub fn train_lm<B: AutodiffBackend>(
    recipe: &Recipe,
    device: &B::Device,
    stage_dir: &Path,
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
    let pad = tokenizer.token_id("<|user|>")?;

    let (model, _) = load_model::<B>(base_dir, device)?;
    let mut model = prepare_for_finetune(model, lm, device)?;
    let params = named_params(&model);
    let train_cfg = &lm.train;
    let o = &train_cfg.optimizer;
    let mut optimizer = AdamWConfig::new()
        .with_beta_1(o.betas[0] as f32)
        .with_beta_2(o.betas[1] as f32)
        .with_epsilon(o.eps as f32)
        .with_weight_decay(o.weight_decay as f32)
        .init::<B, ChatGlmModel<B>>();
    let batches_per_epoch = lengths.len().div_ceil(lm.batch_size);
    let steps_per_epoch = batches_per_epoch
        .div_ceil(train_cfg.gradient_accumulation)
        .max(1);
    let total_steps = match train_cfg.length {
        Length::Steps(n) => n,
        Length::Epochs(e) => e * steps_per_epoch,
    };

    let mut log =
        MetricsLog::open(&stage_dir.join("metrics.jsonl"), Some(0)).map_err(|e| e.to_string())?;
    let bar = progress::bar(total_steps as u64, "stage one");
    let mut report = LmReport {
        steps: 0,
        train_samples: train.len(),
        validation_samples: validation.len(),
        losses: Vec::new(),
        eval_losses: Vec::new(),
        skipped_steps: 0,
        padding_share: 0.0,
        truncated_samples: set.truncated_samples,
        dropped_too_long: set.too_long.len(),
        wall_seconds: 0.0,
        adapter_dir: None,
        merged_dir: stage_dir.join("merged"),
    };
    let mut consecutive_bad = 0;
    let mut step = 0;
    let mut epoch = 0;
    'epochs: while step < total_steps {
        let (batches, padding) = length_bucketed_batches(
            &lengths,
            lm.batch_size,
            8,
            recipe.seed.wrapping_add(epoch as u64),
        );
        report.padding_share = padding;
        for group in batches.chunks(train_cfg.gradient_accumulation) {
            if step >= total_steps {
                break 'epochs;
            }
            let step_start = Instant::now();
            // Dropout draws depend only on (seed, step): a resumed run repeats them.
            B::seed(
                device,
                recipe.seed ^ (step as u64).wrapping_mul(0x9E3779B97F4A7C15),
            );
            let mut accumulator = GradientsAccumulator::<ChatGlmModel<B>>::new();
            let mut group_loss = 0.0;
            let mut tokens = 0usize;
            let mut finite = true;
            for batch in group {
                let samples: Vec<&Sample> = batch.iter().map(|&i| train[i]).collect();
                let (ids, labels, _) = batch_tensors::<B>(&samples, pad, device);
                tokens += samples.iter().map(|s| s.input_ids.len()).sum::<usize>();
                let loss = causal_lm_loss(model.forward(ids), labels) / group.len() as f64;
                let value: f64 = burn::tensor::ElementConversion::elem(loss.clone().into_scalar());
                if !value.is_finite() {
                    finite = false;
                    break;
                }
                group_loss += value;
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                accumulator.accumulate(&model, grads);
            }
            let mut grads = accumulator.grads();
            let norm = if finite {
                grad_norm::<B>(&grads, &params)
            } else {
                f64::NAN
            };
            if !finite || !norm.is_finite() {
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
                    return Err(format!(
                        "{consecutive_bad} consecutive steps had a non-finite loss or gradient norm (last at step {step}); \
                         stopping. Lower the learning rate, check the data, or raise lm.max_nonfinite_steps"
                    ));
                }
                step += 1;
                bar.inc(1);
                continue;
            }
            consecutive_bad = 0;
            if let Some(max) = train_cfg.clip_grad_norm {
                if norm > max {
                    scale_grads::<B>(&mut grads, &params, max / norm);
                }
            }
            let lr = learning_rate(&train_cfg.schedule, o.lr, step, total_steps);
            model = optimizer.step(lr, model, grads);
            step += 1;
            report.losses.push(group_loss);
            let mut eval_loss = None;
            if step % train_cfg.eval_every == 0 || step == total_steps {
                if !validation.is_empty() {
                    let loss = mean_loss(&model.valid(), validation, lm.batch_size, pad, device);
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
            bar.set_message("stage one");
            bar.inc(1);
            if step % train_cfg.log_every == 0 {
                tracing::info!(step, loss = group_loss, lr, grad_norm = norm, "stage one");
            }
        }
        epoch += 1;
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
    report.wall_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
