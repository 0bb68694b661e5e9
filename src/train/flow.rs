//! Stage two, part one: the flow (token -> mel) trained from scratch with CosyVoice's
//! conditional flow-matching objective: per utterance a cosine-scheduled t, Gaussian noise, a
//! prompt prefix of up to 80% of the target (or none, with probability 0.5) and CFG dropout,
//! all drawn on the host from (seed, step) so a resumed run repeats them exactly. Batches are
//! filled up to `decoder.flow.max_frames_per_batch` mel frames; the rest (accumulation,
//! clipping, the non-finite guard, checkpoints, held-out loss, metrics) is the
//! [training loop](super::driver)'s.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::AutodiffModule;
use burn::optim::Optimizer;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};

use super::driver::{self, Measured, Names, Part, Settings, Start, StepInput};
use super::resume::ResumeSection;
use super::stage_two::StageTwo;
use super::step::accumulate_and_step;
use super::Adam;
use crate::checkpoint::named::save_named;
use crate::checkpoint::tensors::TensorStore;
use crate::data::buckets::padded_len;
use crate::data::decoder_data::{frame_batches, DecoderData, Utterance};
use crate::faults::PartFaults;
use crate::models::decoder::flow::Flow;
use crate::models::decoder::{fresh_flow, Named, FLOW_FILE};
use crate::models::layers::{length_mask, Builder};
use crate::models::params::{named_params, NamedParam};
use crate::plan::steps;
use crate::recipe::Recipe;
use crate::report::PartReport;
use crate::rng::{Rng, EVAL_STREAM, FLOW_STREAM};

const NAMES: Names = Names {
    label: "decoder flow",
    part: "flow",
    resuming: "the decoder flow",
    steps: "decoder flow steps",
    title: "stage two (flow)",
    plot_title: "stage two: flow",
    recipe_key: "decoder.flow",
    loss: "loss",
    throughput: "mel_frames_per_second",
};

/// The optimizer state's file in a flow checkpoint.
const OPTIMIZER_FILE: &str = "optimizer";

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
    super::weighted_mean(total, frames)
}

/// The flow in the training loop: the model, its optimizer and the utterances.
struct FlowPart<'a, B: AutodiffBackend> {
    model: Flow<B>,
    names: Vec<String>,
    optimizer: Adam<Flow<B>, B>,
    params: Vec<NamedParam>,
    data: &'a DecoderData,
    recipe: &'a Recipe,
    cfg_rate: f64,
    buckets: bool,
    device: &'a B::Device,
}

impl<B: AutodiffBackend> Part for FlowPart<'_, B> {
    fn batches(&mut self, epoch: usize) -> Vec<Vec<usize>> {
        frame_batches(
            &self.data.train_mel_frames(),
            self.recipe.decoder.flow.max_frames_per_batch,
            self.recipe.seed.wrapping_add(epoch as u64),
        )
    }

    fn step(mut self, group: &[Vec<usize>], input: StepInput) -> (Self, Measured) {
        let mut rng = Rng::for_step(self.recipe.seed, FLOW_STREAM, input.step as u64);
        let train = &self.data.train;
        let frames = group.iter().flatten().map(|&i| train[i].frames).sum();
        let (cfg_rate, buckets, device) = (self.cfg_rate, self.buckets, self.device);
        let (model, outcome) = accumulate_and_step(
            self.model,
            &mut self.optimizer,
            &self.params,
            group.len(),
            |model, i| {
                let items: Vec<&Utterance> = group[i].iter().map(|&j| &train[j]).collect();
                flow_loss(model, &items, &mut rng, cfg_rate, buckets, device)
            },
            input.lr,
            self.recipe.decoder.flow.train.clip_grad_norm,
            input.poison,
        );
        self.model = model;
        let measured = Measured {
            outcome,
            work: frames,
            extra: BTreeMap::new(),
        };
        (self, measured)
    }

    fn evaluate(&self) -> Option<f64> {
        (!self.data.validation.is_empty()).then(|| {
            eval_flow(
                &self.model.valid(),
                &self.data.validation,
                self.recipe.decoder.flow.max_frames_per_batch,
                self.recipe.seed,
                self.cfg_rate,
                self.buckets,
                self.device,
            )
        })
    }

    fn save_weights(&self, dir: &Path) -> std::io::Result<()> {
        save_named(&self.model, &self.names, &dir.join(FLOW_FILE))
    }

    fn save_training_state(&self, dir: &Path) -> std::io::Result<()> {
        super::checkpoints::write_record::<B, _>(
            self.optimizer.to_record(),
            &dir.join(OPTIMIZER_FILE),
        )
    }
}

/// Trains (or resumes, or just loads when finished) the flow in `part_dir`.
pub fn train_flow<B: AutodiffBackend>(
    inputs: &StageTwo<B>,
    part_dir: &Path,
    faults: &PartFaults,
) -> Result<(Named<Flow<B>>, PartReport), String> {
    let (recipe, device) = (inputs.recipe, inputs.device);
    let part = &recipe.decoder.flow;
    let start = Start::open(
        part_dir,
        recipe,
        &part.train,
        ResumeSection::Flow,
        inputs.resume,
    )?;
    let mut optimizer = super::adamw(&part.train.optimizer).init::<B, Flow<B>>();
    let Named { model, names } = match &start.from {
        None => fresh_flow::<B>(inputs.config, recipe.seed, device),
        Some(dir) => {
            let store = TensorStore::open(&[dir.join(FLOW_FILE)]).map_err(|e| e.to_string())?;
            let builder = Builder::load(&store, device);
            let model = Flow::new(&builder, &inputs.config.flow)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            let record = BinFileRecorder::<FullPrecisionSettings>::new()
                .load(dir.join(OPTIMIZER_FILE), device)
                .map_err(|e| format!("{}: optimizer state: {e}", dir.display()))?;
            optimizer = optimizer.load_record(record);
            Named {
                model,
                names: builder.into_names(),
            }
        }
    };
    let flow = FlowPart {
        params: named_params(&model),
        model,
        names,
        optimizer,
        data: inputs.data,
        recipe,
        cfg_rate: inputs.config.flow.cfm.training_cfg_rate,
        buckets: recipe.shape_buckets.enabled::<B>(device),
        device,
    };
    let settings = Settings {
        names: &NAMES,
        recipe,
        train: &part.train,
        total_steps: steps::flow(part, &inputs.data.train_mel_frames()).total,
        dir: part_dir,
        faults,
    };
    let (flow, report) = driver::train(flow, start, &settings)?;
    let trained = Named {
        model: flow.model,
        names: flow.names,
    };
    Ok((trained, report))
}
