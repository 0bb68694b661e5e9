//! Stage-two steps as `train_flow` and `train_vocoder` take them, on fresh (random) weights of
//! the decoder config and synthetic utterances: the flow on batches filled to
//! `decoder.flow.max_frames_per_batch` mel frames, the vocoder's GAN step (discriminators, then
//! generator) on `max_frames_per_batch / segment_frames` crops.

use burn::tensor::backend::AutodiffBackend;

use super::memory::Watch;
use super::{BenchSettings, Measurement};
use crate::data::decoder_data::Utterance;
use crate::models::decoder::config::DecoderModelConfig;
use crate::models::decoder::flow::Flow;
use crate::models::decoder::fresh_flow;
use crate::models::decoder::fresh_hift;
use crate::models::params::named_params;
use crate::plan::steps::vocoder_crops;
use crate::recipe::Recipe;
use crate::rng::Rng;
use crate::train::flow::flow_loss;
use crate::train::gan::{discriminator_channels, fresh_discriminators, gan_batch, Gan, LossMel};
use crate::train::step::accumulate_and_step;

/// Mel frames of one synthetic utterance for the flow (about 4.6 s at 22.05 kHz / 256).
pub const FLOW_UTTERANCE_FRAMES: usize = 400;
const SAMPLE_RATE: f64 = 22050.0;
const HOP: usize = 256;

/// Utterances with random speech tokens, log-mels, audio and a 100-250 Hz F0.
pub fn synthetic_utterances(
    count: usize,
    frames: usize,
    token_rate: f64,
    vocab: usize,
    rng: &mut Rng,
) -> Vec<Utterance> {
    let tokens = ((frames as f64 * token_rate * HOP as f64 / SAMPLE_RATE).ceil() as usize).max(1);
    (0..count)
        .map(|i| Utterance {
            id: format!("bench-{i}"),
            tokens: (0..tokens)
                .map(|_| rng.below_or_equal(vocab - 1) as u32)
                .collect(),
            mel: rng
                .normals(80 * frames)
                .into_iter()
                .map(|v| v * 2.0 - 5.0)
                .collect(),
            frames,
            audio: rng
                .normals(frames * HOP)
                .into_iter()
                .map(|v| 0.1 * v)
                .collect(),
            f0: (0..frames)
                .map(|_| 100.0 + 150.0 * rng.uniform() as f32)
                .collect(),
        })
        .collect()
}

/// The flow's batch: (utterances, frames each) filling `max_frames`.
pub fn flow_batch_shape(max_frames: usize) -> (usize, usize) {
    let frames = FLOW_UTTERANCE_FRAMES.min(max_frames.max(1));
    ((max_frames / frames).max(1), frames)
}

pub fn flow_shape(config: &DecoderModelConfig, recipe: &Recipe) -> serde_json::Value {
    let part = &recipe.decoder.flow;
    let (utterances, frames) = flow_batch_shape(part.max_frames_per_batch);
    serde_json::json!({
        "config": config.flow,
        "utterances": utterances,
        "frames": frames,
        "dtype": "fp32",
        "optimizer": part.train.optimizer,
        "clip_grad_norm": part.train.clip_grad_norm,
    })
}

pub fn bench_flow<B: AutodiffBackend>(
    config: &DecoderModelConfig,
    recipe: &Recipe,
    s: &BenchSettings,
    gpu: bool,
    device: &B::Device,
) -> Result<Measurement, String> {
    let part = &recipe.decoder.flow;
    let (count, frames) = flow_batch_shape(part.max_frames_per_batch);
    let mut rng = Rng::for_step(s.seed, 0xF10, 0);
    let data = synthetic_utterances(
        count,
        frames,
        config.flow.input_frame_rate,
        config.flow.vocab_size,
        &mut rng,
    );
    let items: Vec<&Utterance> = data.iter().collect();
    let watch = Watch::start(gpu);
    let flow: Flow<B> = fresh_flow(config, s.seed, device).model;
    let params = named_params(&flow);
    let mut optimizer = crate::train::adamw(&part.train.optimizer).init::<B, Flow<B>>();
    let mut flow = Some(flow);
    let cfg_rate = config.flow.cfm.training_cfg_rate;
    let buckets = recipe.shape_buckets.enabled::<B>(device);
    let (times, losses) = super::timed_steps(s, "bench: decoder flow", |step| {
        let (stepped, outcome) = accumulate_and_step(
            flow.take().expect("the flow is put back every step"),
            &mut optimizer,
            &params,
            1,
            |m, _| flow_loss(m, &items, &mut rng, cfg_rate, buckets, device),
            part.train.optimizer.lr,
            part.train.clip_grad_norm,
            false,
        );
        flow = Some(stepped);
        B::sync(device).map_err(|e| format!("the device failed: {e}"))?;
        if !outcome.applied {
            return Err(format!(
                "flow bench step {step}: non-finite loss or gradient"
            ));
        }
        Ok(outcome.loss)
    })?;
    drop(flow);
    Ok(Measurement::new(
        "flow",
        "mel_frames",
        count * frames,
        s.warmup,
        times,
        losses,
        None,
        None,
        watch.finish(),
        flow_shape(config, recipe),
    ))
}

pub fn vocoder_shape(config: &DecoderModelConfig, recipe: &Recipe) -> serde_json::Value {
    let part = &recipe.decoder.hift;
    let (crops, segment) = vocoder_crops(part);
    serde_json::json!({
        "config": config.hift,
        "crops": crops,
        "segment_frames": segment,
        "discriminator_channels": discriminator_channels(part),
        "dtype": "fp32",
        "optimizer": part.train.optimizer,
        "clip_grad_norm": part.train.clip_grad_norm,
    })
}

pub fn bench_vocoder<B: AutodiffBackend>(
    config: &DecoderModelConfig,
    recipe: &Recipe,
    s: &BenchSettings,
    gpu: bool,
    device: &B::Device,
) -> Result<Measurement, String> {
    let part = &recipe.decoder.hift;
    let (count, segment) = vocoder_crops(part);
    let hop = config.hift.samples_per_frame();
    let mut rng = Rng::for_step(s.seed, 0x40C, 0);
    let data = synthetic_utterances(count, 2 * segment, 12.5, 16, &mut rng);
    let items: Vec<&Utterance> = data.iter().collect();
    let watch = Watch::start(gpu);
    let hift = fresh_hift::<B>(config, s.seed, device).model;
    let disc = fresh_discriminators::<B>(s.seed, discriminator_channels(part), device).model;
    let o = &part.train.optimizer;
    let mut gan = Some(Gan::new(
        hift,
        disc,
        crate::train::adamw(o).init(),
        crate::train::adamw(o).init(),
    ));
    let loss_mel = LossMel::<B>::new(device);
    let (times, losses) = super::timed_steps(s, "bench: decoder vocoder", |step| {
        let batch = gan_batch::<B>(&items, segment, hop, &mut rng, device);
        let (stepped, outcome) = gan.take().expect("the GAN is put back every step").step(
            batch,
            &config.hift,
            &loss_mel,
            &mut rng,
            o.lr,
            part.train.clip_grad_norm,
            false,
        );
        gan = Some(stepped);
        B::sync(device).map_err(|e| format!("the device failed: {e}"))?;
        if !outcome.applied {
            return Err(format!(
                "vocoder bench step {step}: non-finite loss or gradient"
            ));
        }
        Ok(outcome.parts[3])
    })?;
    drop(gan);
    Ok(Measurement::new(
        "vocoder",
        "mel_frames",
        count * segment,
        s.warmup,
        times,
        losses,
        None,
        None,
        watch.finish(),
        vocoder_shape(config, recipe),
    ))
}
