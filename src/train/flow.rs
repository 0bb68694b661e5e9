//! Stage two, part one: the flow (token -> mel) trained from scratch with CosyVoice's
//! conditional flow-matching objective: per utterance a cosine-scheduled t, Gaussian noise, a
//! prompt prefix of up to 80% of the target (or none, with probability 0.5) and CFG dropout,
//! all drawn on the host from (seed, step) so a resumed run repeats them exactly. Batches are
//! filled up to `decoder.flow.max_frames_per_batch` mel frames; the rest (accumulation,
//! clipping, the non-finite guard, checkpoints, held-out loss, metrics) as in stage one.

use std::path::Path;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use serde::Serialize;

use super::lm::Resume;
use super::metrics::MetricsLog;
use super::part::{
    fault_steps, finish, initial_eval, read_state, starting_point, total_steps, PartReport,
    PartState,
};
use super::resume::{check_resumable, ResumeSection};
use super::schedule::learning_rate;
use super::step::accumulate_and_step;
use crate::checkpoint::named::save_named;
use crate::checkpoint::tensors::TensorStore;
use crate::data::buckets::padded_len;
use crate::data::decoder_data::{frame_batches, DecoderData, Utterance};
use crate::models::decoder::{fresh_flow, Named, FLOW_FILE};
use crate::models::decoder_config::DecoderModelConfig;
use crate::models::flow::Flow;
use crate::models::layers::{length_mask, Builder};
use crate::models::params::named_params;
use crate::progress;
use crate::recipe::Recipe;
use crate::rng::Rng;

/// Random streams (so flow, vocoder and evaluation draws never coincide).
pub const FLOW_STREAM: u64 = 1;
pub const EVAL_STREAM: u64 = 99;

/// One training batch of the flow with its random draws.
struct FlowBatch<B: Backend> {
    tokens: Tensor<B, 2, Int>,
    token_lengths: Vec<usize>,
    mel_lengths: Vec<usize>,
    x1: Tensor<B, 3>,
    mask: Tensor<B, 3>,
    cond: Tensor<B, 3>,
    t_raw: Vec<f32>,
    z: Tensor<B, 3>,
    keep: Vec<bool>,
}

/// Mel frames and speech tokens per bucket step (see [`crate::data::buckets`]).
const FRAME_GRANULE: usize = 16;

fn flow_batch<B: Backend>(
    items: &[&Utterance],
    rng: &mut Rng,
    cfg_rate: f64,
    mel_bins: usize,
    buckets: bool,
    device: &B::Device,
) -> FlowBatch<B> {
    let batch = items.len();
    let longest_tokens = items.iter().map(|u| u.tokens.len()).max().unwrap_or(1);
    let longest_frames = items.iter().map(|u| u.frames).max().unwrap_or(1);
    let n = padded_len(longest_tokens, FRAME_GRANULE, buckets);
    let frames = padded_len(longest_frames, FRAME_GRANULE, buckets);
    let mut ids = vec![0i64; batch * n];
    let mut x1 = vec![0f32; batch * mel_bins * frames];
    let mut cond = vec![0f32; batch * mel_bins * frames];
    for (b, u) in items.iter().enumerate() {
        for (i, &t) in u.tokens.iter().enumerate() {
            ids[b * n + i] = t as i64;
        }
        // The prompt condition: none with probability 0.5, else the first U{0..0.8 len} frames.
        let prompt = if rng.uniform() < 0.5 {
            0
        } else {
            rng.below_or_equal((0.8 * u.frames as f64) as usize)
        };
        for c in 0..mel_bins {
            for f in 0..u.frames {
                let v = u.mel[c * u.frames + f];
                x1[(b * mel_bins + c) * frames + f] = v;
                if f < prompt {
                    cond[(b * mel_bins + c) * frames + f] = v;
                }
            }
        }
    }
    let t_raw: Vec<f32> = (0..batch).map(|_| rng.uniform() as f32).collect();
    let keep: Vec<bool> = (0..batch).map(|_| rng.uniform() > cfg_rate).collect();
    // The noise is drawn for the unpadded batch (so padding leaves the draws as they were) and
    // laid into the padded frames; padded frames are masked out of the loss.
    let drawn = rng.normals(batch * mel_bins * longest_frames);
    let mut z = vec![0f32; batch * mel_bins * frames];
    for (row, chunk) in drawn.chunks_exact(longest_frames).enumerate() {
        z[row * frames..row * frames + longest_frames].copy_from_slice(chunk);
    }
    let shape = [batch, mel_bins, frames];
    let mel_lengths: Vec<usize> = items.iter().map(|u| u.frames).collect();
    FlowBatch {
        tokens: Tensor::from_data(TensorData::new(ids, [batch, n]), device),
        token_lengths: items.iter().map(|u| u.tokens.len()).collect(),
        mask: length_mask::<B>(&mel_lengths, frames, device),
        mel_lengths,
        x1: Tensor::from_data(TensorData::new(x1, shape), device),
        cond: Tensor::from_data(TensorData::new(cond, shape), device),
        t_raw,
        z: Tensor::from_data(TensorData::new(z, shape), device),
        keep,
    }
}

/// The flow-matching loss of one batch of utterances, its random draws taken from `rng`;
/// `buckets`: pad the batch's tokens and frames to bucket sizes.
pub fn flow_loss<B: Backend>(
    flow: &Flow<B>,
    items: &[&Utterance],
    rng: &mut Rng,
    cfg_rate: f64,
    buckets: bool,
    device: &B::Device,
) -> Tensor<B, 1> {
    batch_loss(
        flow,
        flow_batch::<B>(items, rng, cfg_rate, flow.mel_bins, buckets, device),
    )
}

fn batch_loss<B: Backend>(flow: &Flow<B>, b: FlowBatch<B>) -> Tensor<B, 1> {
    let device = b.x1.device();
    let frames = b.x1.dims()[2];
    let (_, mu) = flow.encode_to(b.tokens, &b.token_lengths, &b.mel_lengths, frames);
    let spks = flow.zero_speaker(b.t_raw.len(), &device);
    flow.cfm_loss(b.x1, b.mask, mu, spks, b.cond, &b.t_raw, b.z, &b.keep)
}

/// The flow objective on held-out utterances with fixed draws (comparable across steps),
/// averaged over mel frames.
pub fn eval_flow<B: Backend>(
    flow: &Flow<B>,
    items: &[Utterance],
    max_frames: usize,
    seed: u64,
    cfg_rate: f64,
    buckets: bool,
    device: &B::Device,
) -> f64 {
    let lengths: Vec<usize> = items.iter().map(|u| u.frames).collect();
    let (mut total, mut frames) = (0.0, 0usize);
    for (i, batch) in frame_batches(&lengths, max_frames, seed).iter().enumerate() {
        let chosen: Vec<&Utterance> = batch.iter().map(|&j| &items[j]).collect();
        let mut rng = Rng::for_step(seed, EVAL_STREAM, i as u64);
        let n: usize = chosen.iter().map(|u| u.frames).sum();
        let loss: f64 = flow_loss(flow, &chosen, &mut rng, cfg_rate, buckets, device)
            .into_scalar()
            .elem();
        total += loss * n as f64;
        frames += n;
    }
    if frames == 0 {
        f64::NAN
    } else {
        total / frames as f64
    }
}

#[derive(Serialize)]
struct StepRecord {
    step: usize,
    epoch: usize,
    loss: f64,
    lr: f64,
    grad_norm: f64,
    mel_frames_per_second: f64,
    step_seconds: f64,
    skipped_steps: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_loss: Option<f64>,
}

/// Trains (or resumes, or just loads when finished) the flow in `stage_dir`.
pub fn train_flow<B: AutodiffBackend>(
    recipe: &Recipe,
    config: &DecoderModelConfig,
    data: &DecoderData,
    device: &B::Device,
    stage_dir: &Path,
    resume: &Resume,
) -> Result<(Named<Flow<B>>, PartReport), String> {
    let started = Instant::now();
    let part = &recipe.decoder.flow;
    let train_cfg = &part.train;
    let cfg_rate = config.flow.cfm.training_cfg_rate;
    let buckets = recipe.shape_buckets.enabled::<B>(device);
    let lengths: Vec<usize> = data.train.iter().map(|u| u.frames).collect();
    let batches_per_epoch = frame_batches(&lengths, part.max_frames_per_batch, recipe.seed).len();
    let total = total_steps(train_cfg, batches_per_epoch);
    let (checkpoints, from) = starting_point(stage_dir, part, resume)?;
    let o = &train_cfg.optimizer;
    let mut optimizer = super::adamw(o).init::<B, Flow<B>>();
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    let mut state = PartState::default();
    let Named { mut model, names } = match &from {
        None => fresh_flow::<B>(config, recipe.seed, device),
        Some(dir) => {
            check_resumable(
                recipe,
                &dir.join("recipe.resolved.yaml"),
                ResumeSection::Flow,
            )?;
            let store = TensorStore::open(&[dir.join(FLOW_FILE)]).map_err(|e| e.to_string())?;
            let builder = Builder::load(&store, device);
            let model =
                Flow::new(&builder, &config.flow).map_err(|e| format!("{}: {e}", dir.display()))?;
            let record = recorder
                .load(dir.join("optimizer"), device)
                .map_err(|e| format!("{}: optimizer state: {e}", dir.display()))?;
            optimizer = optimizer.load_record(record);
            state = read_state(dir)?;
            if state.step < total {
                tracing::info!(step = state.step, from = %dir.display(), "resuming the decoder flow");
            }
            Named {
                model,
                names: builder.into_names(),
            }
        }
    };
    let mut report = PartReport {
        steps: state.step,
        losses: state.losses.clone(),
        eval_losses: state.eval_losses.clone(),
        skipped_steps: state.skipped_steps,
        wall_seconds: 0.0,
        already_done: state.step >= total,
    };
    if report.already_done {
        return Ok((Named { model, names }, report));
    }
    let params = named_params(&model);
    let mut log = MetricsLog::open(&stage_dir.join("metrics.jsonl"), Some(state.step))
        .map_err(|e| e.to_string())?;
    let log_error = |e: std::io::Error| {
        format!(
            "cannot write {}: {e}",
            stage_dir.join("metrics.jsonl").display()
        )
    };
    let nan_steps = fault_steps("ARP_FAULT_FLOW_NAN_STEPS");
    let abort_in_checkpoint = fault_steps("ARP_FAULT_FLOW_ABORT_IN_CHECKPOINT");
    let save =
        |state: &PartState,
         model: &Flow<B>,
         optimizer: &burn::optim::adaptor::OptimizerAdaptor<burn::optim::AdamW, Flow<B>, B>,
         abort: bool| {
            checkpoints
                .save(state.step, |dir| {
                    save_named(model, &names, &dir.join(FLOW_FILE))?;
                    if abort {
                        std::process::abort();
                    }
                    super::checkpoints::write_record::<B, _>(
                        optimizer.to_record(),
                        &dir.join("optimizer"),
                    )?;
                    std::fs::write(dir.join("trainer_state.json"), serde_json::to_vec(state)?)?;
                    std::fs::write(dir.join("recipe.resolved.yaml"), recipe.resolved_yaml())
                })
                .map(|_| ())
        };
    let eval = |model: &Flow<B>| {
        (!data.validation.is_empty()).then(|| {
            eval_flow(
                &model.valid(),
                &data.validation,
                part.max_frames_per_batch,
                recipe.seed,
                cfg_rate,
                buckets,
                device,
            )
        })
    };
    initial_eval(&state, &mut report, &mut log, || eval(&model))?;
    let bar = progress::bar(total as u64, "decoder flow");
    bar.set_position(state.step as u64);
    let (mut step, mut epoch, mut first_group) = (state.step, state.epoch, state.next_group);
    let mut consecutive_bad = state.consecutive_bad;
    'epochs: while step < total {
        let batches = frame_batches(
            &lengths,
            part.max_frames_per_batch,
            recipe.seed.wrapping_add(epoch as u64),
        );
        let groups: Vec<&[Vec<usize>]> = batches.chunks(train_cfg.gradient_accumulation).collect();
        for (group_index, group) in groups.iter().enumerate().skip(first_group) {
            if step >= total {
                break 'epochs;
            }
            let step_start = Instant::now();
            let mut rng = Rng::for_step(recipe.seed, FLOW_STREAM, step as u64);
            let lr = learning_rate(&train_cfg.schedule, o.lr, step, total);
            let frames: usize = group.iter().flatten().map(|&i| data.train[i].frames).sum();
            let (stepped, outcome) = accumulate_and_step(
                model,
                &mut optimizer,
                &params,
                group.len(),
                |model, i| {
                    let items: Vec<&Utterance> = group[i].iter().map(|&j| &data.train[j]).collect();
                    flow_loss(model, &items, &mut rng, cfg_rate, buckets, device)
                },
                lr,
                train_cfg.clip_grad_norm,
                nan_steps.contains(&(step + 1)),
            );
            model = stepped;
            let (group_loss, norm) = (outcome.loss, outcome.grad_norm);
            let last_group = group_index + 1 == groups.len();
            let next = |step: usize,
                        losses: &[f64],
                        evals: &[(usize, f64)],
                        skipped: usize,
                        bad: usize| PartState {
                step,
                epoch: if last_group { epoch + 1 } else { epoch },
                next_group: if last_group { 0 } else { group_index + 1 },
                skipped_steps: skipped,
                consecutive_bad: bad,
                losses: losses.to_vec(),
                eval_losses: evals.to_vec(),
            };
            if !outcome.applied {
                consecutive_bad += 1;
                report.skipped_steps += 1;
                tracing::warn!(
                    step,
                    loss = group_loss,
                    grad_norm = norm,
                    "decoder flow: non-finite loss or gradient norm: step skipped"
                );
                if consecutive_bad >= train_cfg.max_nonfinite_steps {
                    bar.finish_and_clear();
                    save(
                        &next(
                            step + 1,
                            &report.losses,
                            &report.eval_losses,
                            report.skipped_steps,
                            0,
                        ),
                        &model,
                        &optimizer,
                        false,
                    )?;
                    return Err(format!(
                        "{consecutive_bad} consecutive decoder flow steps had a non-finite loss or gradient norm (last at step {step}); \
                         stopping with a checkpoint of the last good weights. Lower decoder.flow.optimizer.lr, check the data, or raise decoder.flow.max_nonfinite_steps"
                    ));
                }
                step += 1;
                bar.inc(1);
                continue;
            }
            consecutive_bad = 0;
            step += 1;
            report.losses.push(group_loss);
            let eval_loss = if step % train_cfg.eval_every == 0 || step == total {
                eval(&model)
            } else {
                None
            };
            if let Some(loss) = eval_loss {
                report.eval_losses.push((step, loss));
            }
            let seconds = step_start.elapsed().as_secs_f64();
            log.write(&StepRecord {
                step,
                epoch,
                loss: group_loss,
                lr,
                grad_norm: norm,
                mel_frames_per_second: frames as f64 / seconds.max(1e-9),
                step_seconds: seconds,
                skipped_steps: report.skipped_steps,
                eval_loss,
            })
            .map_err(log_error)?;
            let stopping = crate::stop::requested().is_some();
            if step % train_cfg.checkpoint_every == 0 || step == total || stopping {
                state = next(
                    step,
                    &report.losses,
                    &report.eval_losses,
                    report.skipped_steps,
                    0,
                );
                save(
                    &state,
                    &model,
                    &optimizer,
                    abort_in_checkpoint.contains(&step),
                )?;
            }
            bar.set_message(format!("loss {group_loss:.4}"));
            bar.inc(1);
            if step % train_cfg.log_every == 0 {
                tracing::info!(
                    step,
                    loss = group_loss,
                    lr,
                    grad_norm = norm,
                    "decoder flow"
                );
            }
            if stopping {
                bar.finish_and_clear();
                let dir = checkpoints.step_dir(step);
                return Err(crate::stop::stopped_training(
                    "stage two (flow)",
                    step,
                    total,
                    &dir,
                ));
            }
        }
        epoch += 1;
        first_group = 0;
    }
    bar.finish_and_clear();
    report.steps = step;
    finish(&mut report, stage_dir, "stage two: flow", started)?;
    Ok((Named { model, names }, report))
}
