//! Stage two, part two: the HiFT vocoder trained from scratch as a GAN (CosyVoice's recipe).
//! Each step takes random crops of `segment_frames` mel frames (and their waveform and F0),
//! generates audio from the predicted F0's harmonic source, updates the discriminators on
//! LSGAN + TPR losses, then the generator on
//! LSGAN + 2 feature matching + 45 mel L1 + 1 TPR + F0 L1 (F0 targets: YIN, in the cache).
//! The mel L1 is on log-mels of both waveforms (n_fft 1024, hop 256, 80 Slaney bands up to
//! 11.025 kHz, as CosyVoice's loss transform); the held-out score is the same L1 on whole
//! utterances with fixed noise. Feature matching is HiFi-GAN's (2 x sum of mean |r - g|);
//! TPR (tau 0.04) uses the median of D(real) - D(fake) as a constant.

use std::path::Path;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::record::{BinFileRecorder, FullPrecisionSettings, Recorder};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};
use serde::Serialize;

use super::flow::EVAL_STREAM;
use super::grads::clip;
use super::lm::Resume;
use super::metrics::MetricsLog;
use super::part::{
    fault_steps, finish, initial_eval, read_state, starting_point, total_steps, PartReport,
    PartState,
};
use super::resume::{check_resumable, ResumeSection};
use super::schedule::learning_rate;
use crate::audio::mel::slaney_matrix;
use crate::checkpoint::named::save_named;
use crate::checkpoint::tensors::TensorStore;
use crate::data::decoder_data::{DecoderData, Utterance};
use crate::models::decoder::{fresh_hift, Named, HIFT_FILE};
use crate::models::decoder_config::{DecoderModelConfig, HiftConfig};
use crate::models::hift::discriminators::{Discriminators, Judgement};
use crate::models::hift::source::{harmonic_waves, SourceNoise};
use crate::models::hift::Hift;
use crate::models::layers::{conv1d, pad_reflect, Builder};
use crate::models::padded_matmul::padded_matmul;
use crate::models::params::{named_params, NamedParam};
use crate::models::to_host_f32;
use crate::progress;
use crate::recipe::{DecoderPartConfig, Recipe};
use crate::rng::Rng;

pub const VOCODER_STREAM: u64 = 2;
const DISCRIMINATORS_FILE: &str = "discriminators.safetensors";
const MEL_WEIGHT: f64 = 45.0;
const FEATURE_WEIGHT: f64 = 2.0;
const TPR_WEIGHT: f64 = 1.0;
const TPR_TAU: f64 = 0.04;
const F0_WEIGHT: f64 = 1.0;
/// log(1e-5): the log-mel of silence, used to pad crops past the end of an utterance.
const SILENT_MEL: f32 = -11.512925;

/// The differentiable log-mel of the mel loss.
pub struct LossMel<B: Backend> {
    basis: Tensor<B, 3>,
    filters: Tensor<B, 2>,
}

impl<B: Backend> LossMel<B> {
    pub fn new(device: &B::Device) -> Self {
        let (n_fft, bins) = (1024, 513);
        let mut basis = vec![0f32; 2 * bins * n_fft];
        for k in 0..bins {
            for n in 0..n_fft {
                let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * n as f64 / n_fft as f64).cos();
                let angle = 2.0 * std::f64::consts::PI * (k * n) as f64 / n_fft as f64;
                basis[k * n_fft + n] = (w * angle.cos()) as f32;
                basis[(bins + k) * n_fft + n] = (-w * angle.sin()) as f32;
            }
        }
        LossMel {
            basis: Tensor::from_data(TensorData::new(basis, [2 * bins, 1, n_fft]), device),
            filters: Tensor::from_data(
                TensorData::new(slaney_matrix(22050, n_fft, 80, 0.0, 11025.0), [80, bins]),
                device,
            ),
        }
    }

    /// wave [b, samples] -> ln(max(mel, 1e-5)) [b, 80, frames].
    pub fn log_mel(&self, wave: Tensor<B, 2>) -> Tensor<B, 3> {
        let spec = conv1d(
            pad_reflect(wave.unsqueeze_dim(1), 384, 384),
            self.basis.clone(),
            None,
            256,
            1,
        );
        let [batch, rows, frames] = spec.dims();
        let bins = rows / 2;
        let re = spec.clone().slice([0..batch, 0..bins, 0..frames]);
        let im = spec.slice([0..batch, bins..rows, 0..frames]);
        let magnitude = (re.powi_scalar(2) + im.powi_scalar(2) + 1e-9).sqrt();
        padded_matmul(self.filters.clone().unsqueeze::<3>(), magnitude)
            .clamp_min(1e-5)
            .log()
    }
}

/// Random crops: mel [b, 80, s], waveform [b, s * 256], F0 [b, s].
struct Crops {
    mel: Vec<f32>,
    audio: Vec<f32>,
    f0: Vec<f32>,
    batch: usize,
    frames: usize,
}

fn crops(items: &[&Utterance], frames: usize, hop: usize, rng: &mut Rng) -> Crops {
    let batch = items.len();
    let mut c = Crops {
        mel: vec![SILENT_MEL; batch * 80 * frames],
        audio: vec![0.0; batch * frames * hop],
        f0: vec![0.0; batch * frames],
        batch,
        frames,
    };
    for (b, u) in items.iter().enumerate() {
        let start = if u.frames > frames {
            rng.below_or_equal(u.frames - frames)
        } else {
            0
        };
        let take = frames.min(u.frames - start);
        for ch in 0..80 {
            for f in 0..take {
                c.mel[(b * 80 + ch) * frames + f] = u.mel[ch * u.frames + start + f];
            }
        }
        for f in 0..take {
            c.f0[b * frames + f] = u.f0[start + f];
        }
        for i in 0..frames * hop {
            if let Some(&s) = u.audio.get(start * hop + i) {
                c.audio[b * frames * hop + i] = s;
            }
        }
    }
    c
}

/// Audio from mel: F0 predicted from the mel, its harmonic source (noise from `rng`), the
/// generator. Returns (waveform [b, samples], predicted F0 [b, frames]).
pub fn vocode<B: Backend>(
    hift: &Hift<B>,
    c: &HiftConfig,
    mel: Tensor<B, 3>,
    rng: &mut Rng,
) -> (Tensor<B, 2>, Tensor<B, 2>) {
    let [batch, _, frames] = mel.dims();
    let hop = c.samples_per_frame();
    let harmonics = c.nb_harmonics + 1;
    let f0 = hift.f0_predictor.forward(mel.clone());
    let f0_host = to_host_f32(f0.clone());
    let mut waves = Vec::with_capacity(batch * harmonics * frames * hop);
    for b in 0..batch {
        let draws = SourceNoise::draw(rng, harmonics, frames * hop);
        waves.extend(harmonic_waves(
            &f0_host[b * frames..(b + 1) * frames],
            hop,
            c,
            &draws,
        ));
    }
    let waves = Tensor::from_data(
        TensorData::new(waves, [batch, harmonics, frames * hop]),
        &mel.device(),
    );
    (hift.decode(mel, hift.source(waves)), f0)
}

fn mean<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, 1> {
    x.mean()
}

fn scalar<B: Backend>(x: &Tensor<B, 1>) -> f64 {
    x.clone().into_scalar().elem()
}

/// sum over sub-discriminators of mean((1 - D(real))^2) + mean(D(fake)^2).
fn discriminator_loss<B: Backend>(real: &[Judgement<B>], fake: &[Judgement<B>]) -> Tensor<B, 1> {
    real.iter()
        .zip(fake)
        .map(|(r, f)| {
            mean(r.score.clone().neg().add_scalar(1.0).powi_scalar(2))
                + mean(f.score.clone().powi_scalar(2))
        })
        .reduce(|a, b| a + b)
        .expect("at least one discriminator")
}

fn generator_loss<B: Backend>(fake: &[Judgement<B>]) -> Tensor<B, 1> {
    fake.iter()
        .map(|f| mean(f.score.clone().neg().add_scalar(1.0).powi_scalar(2)))
        .reduce(|a, b| a + b)
        .expect("at least one discriminator")
}

fn feature_loss<B: Backend>(real: &[Judgement<B>], fake: &[Judgement<B>]) -> Tensor<B, 1> {
    let mut total: Option<Tensor<B, 1>> = None;
    for (r, f) in real.iter().zip(fake) {
        for (a, b) in r.features.iter().zip(&f.features) {
            let l = mean((a.clone() - b.clone()).abs());
            total = Some(match total {
                Some(t) => t + l,
                None => l,
            });
        }
    }
    total.expect("features") * 2.0
}

/// Truncated pointwise relativistic loss (HiFTNet / StyleTTS 2), median as a constant.
fn tpr_loss<B: Backend>(real: &[Judgement<B>], fake: &[Judgement<B>]) -> Tensor<B, 1> {
    let mut total: Option<Tensor<B, 1>> = None;
    for (r, f) in real.iter().zip(fake) {
        let diff = r.score.clone() - f.score.clone();
        let mut values = to_host_f32(diff.clone());
        values.sort_by(|a, b| a.total_cmp(b));
        let median = values[(values.len() - 1) / 2] as f64;
        let below = diff.clone().lower_elem(median).float();
        let count = below.clone().sum();
        let squared = (diff.sub_scalar(median).powi_scalar(2) * below).sum();
        let relative = squared / count.clamp_min(1.0);
        let term = relative
            .clone()
            .neg()
            .add_scalar(TPR_TAU)
            .clamp_min(0.0)
            .neg()
            .add_scalar(TPR_TAU);
        total = Some(match total {
            Some(t) => t + term,
            None => term,
        });
    }
    total.expect("at least one discriminator")
}

/// A vocoder step's batch: (crops, mel frames per crop).
pub fn crop_batch(part: &DecoderPartConfig) -> (usize, usize) {
    let segment = part.segment_frames.unwrap_or(32);
    ((part.max_frames_per_batch / segment).max(1), segment)
}

/// The discriminators' base width (32: the published sizes).
pub fn discriminator_channels(part: &DecoderPartConfig) -> usize {
    part.discriminator_channels.unwrap_or(32)
}

/// Fresh discriminators of a run seeded with `seed`.
pub fn fresh_discriminators<B: Backend>(
    seed: u64,
    channels: usize,
    device: &B::Device,
) -> Named<Discriminators<B>> {
    let b = Builder::random(seed ^ 0xD15C, device);
    let model = Discriminators::new(&b, channels).expect("random weights cannot be missing");
    Named {
        model,
        names: b.into_names(),
    }
}

/// One step's crops on the device: mel [b, 80, s], waveform [b, s * hop], F0 target [b, s].
pub struct GanBatch<B: Backend> {
    mel: Tensor<B, 3>,
    real: Tensor<B, 2>,
    f0_target: Tensor<B, 2>,
}

impl<B: Backend> GanBatch<B> {
    /// Mel frames in the batch.
    pub fn frames(&self) -> usize {
        let [batch, _, frames] = self.mel.dims();
        batch * frames
    }
}

/// Random crops of `segment` frames from `items` (start points from `rng`).
pub fn gan_batch<B: Backend>(
    items: &[&Utterance],
    segment: usize,
    hop: usize,
    rng: &mut Rng,
    device: &B::Device,
) -> GanBatch<B> {
    let c = crops(items, segment, hop, rng);
    GanBatch {
        mel: Tensor::from_data(TensorData::new(c.mel, [c.batch, 80, c.frames]), device),
        real: Tensor::from_data(TensorData::new(c.audio, [c.batch, c.frames * hop]), device),
        f0_target: Tensor::from_data(TensorData::new(c.f0, [c.batch, c.frames]), device),
    }
}

/// What one GAN step measured. `parts`: adversarial, feature matching, TPR, mel L1, F0 L1
/// (NaN when the discriminators' step failed).
#[derive(Clone, Copy, Debug)]
pub struct GanOutcome {
    pub discriminator_loss: f64,
    pub discriminator_grad_norm: f64,
    pub generator_loss: f64,
    pub generator_grad_norm: f64,
    pub parts: [f64; 5],
    /// Both updates were applied (every loss and norm finite).
    pub applied: bool,
}

/// The generator, the discriminators and their optimizers, stepped together.
pub struct Gan<B: AutodiffBackend> {
    pub hift: Hift<B>,
    pub disc: Discriminators<B>,
    pub opt_g: Adam<Hift<B>, B>,
    pub opt_d: Adam<Discriminators<B>, B>,
    g_params: Vec<NamedParam>,
    d_params: Vec<NamedParam>,
}

impl<B: AutodiffBackend> Gan<B> {
    pub fn new(
        hift: Hift<B>,
        disc: Discriminators<B>,
        opt_g: Adam<Hift<B>, B>,
        opt_d: Adam<Discriminators<B>, B>,
    ) -> Self {
        Gan {
            g_params: named_params(&hift),
            d_params: named_params(&disc),
            hift,
            disc,
            opt_g,
            opt_d,
        }
    }

    /// The discriminators step on real vs detached generated audio; then the generator, judged
    /// by the updated discriminators against constant judgements of the real audio. `poison`
    /// (a test hook) makes the discriminators' loss NaN.
    #[allow(clippy::too_many_arguments)]
    pub fn step(
        mut self,
        batch: GanBatch<B>,
        c: &HiftConfig,
        loss_mel: &LossMel<B>,
        rng: &mut Rng,
        lr: f64,
        clip_norm: Option<f64>,
        poison: bool,
    ) -> (Self, GanOutcome) {
        let GanBatch {
            mel,
            real,
            f0_target,
        } = batch;
        let (fake, f0_pred) = vocode(&self.hift, c, mel, rng);
        let d_real = self.disc.forward(real.clone());
        let d_fake = self.disc.forward(fake.clone().detach());
        let mut d_loss =
            discriminator_loss(&d_real, &d_fake) + tpr_loss(&d_real, &d_fake) * TPR_WEIGHT;
        if poison {
            d_loss = d_loss * f64::NAN;
        }
        let d_value = scalar(&d_loss);
        let mut d_grads = GradientsParams::from_grads(d_loss.backward(), &self.disc);
        let d_norm = if d_value.is_finite() {
            clip::<B>(&mut d_grads, &self.d_params, clip_norm)
        } else {
            f64::NAN
        };
        let mut outcome = GanOutcome {
            discriminator_loss: d_value,
            discriminator_grad_norm: d_norm,
            generator_loss: f64::NAN,
            generator_grad_norm: f64::NAN,
            parts: [f64::NAN; 5],
            applied: false,
        };
        if !(d_value.is_finite() && d_norm.is_finite()) {
            return (self, outcome);
        }
        self.disc = self.opt_d.step(lr, self.disc, d_grads);
        let d_real_const: Vec<Judgement<B>> = self
            .disc
            .valid()
            .forward(real.clone().inner())
            .into_iter()
            .map(|j| Judgement {
                score: Tensor::from_inner(j.score),
                features: j.features.into_iter().map(Tensor::from_inner).collect(),
            })
            .collect();
        let d_fake = self.disc.forward(fake.clone());
        let adversarial = generator_loss(&d_fake);
        let features = feature_loss(&d_real_const, &d_fake);
        let tpr = tpr_loss(&d_real_const, &d_fake);
        let mel_l1 = (loss_mel.log_mel(fake) - loss_mel.log_mel(real))
            .abs()
            .mean();
        let f0_l1 = (f0_pred - f0_target).abs().mean();
        outcome.parts = [
            scalar(&adversarial),
            scalar(&features),
            scalar(&tpr),
            scalar(&mel_l1),
            scalar(&f0_l1),
        ];
        let g_loss = adversarial
            + features * FEATURE_WEIGHT
            + tpr * TPR_WEIGHT
            + mel_l1 * MEL_WEIGHT
            + f0_l1 * F0_WEIGHT;
        outcome.generator_loss = scalar(&g_loss);
        let mut grads = GradientsParams::from_grads(g_loss.backward(), &self.hift);
        if !outcome.generator_loss.is_finite() {
            return (self, outcome);
        }
        outcome.generator_grad_norm = clip::<B>(&mut grads, &self.g_params, clip_norm);
        if !outcome.generator_grad_norm.is_finite() {
            return (self, outcome);
        }
        self.hift = self.opt_g.step(lr, self.hift, grads);
        outcome.applied = true;
        (self, outcome)
    }
}

/// Mean |log-mel(generated) - log-mel(reference)| over held-out utterances (whole utterances,
/// fixed noise), weighted by frames.
pub fn eval_vocoder<B: Backend>(
    hift: &Hift<B>,
    c: &HiftConfig,
    items: &[Utterance],
    loss_mel: &LossMel<B>,
    seed: u64,
    device: &B::Device,
) -> f64 {
    let (mut total, mut frames) = (0.0, 0usize);
    for (i, u) in items.iter().enumerate() {
        let mut rng = Rng::for_step(seed, EVAL_STREAM + 1, i as u64);
        let crop = crops(&[u], u.frames, c.samples_per_frame(), &mut rng);
        let mel = Tensor::<B, 3>::from_data(TensorData::new(crop.mel, [1, 80, u.frames]), device);
        let real = Tensor::<B, 2>::from_data(
            TensorData::new(crop.audio, [1, u.frames * c.samples_per_frame()]),
            device,
        );
        let (fake, _) = vocode(hift, c, mel, &mut rng);
        let l1: f64 = (loss_mel.log_mel(fake) - loss_mel.log_mel(real))
            .abs()
            .mean()
            .into_scalar()
            .elem();
        total += l1 * u.frames as f64;
        frames += u.frames;
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
    /// The generator's mel L1 (the `loss` curve of this part).
    loss: f64,
    generator_loss: f64,
    discriminator_loss: f64,
    adversarial: f64,
    feature_matching: f64,
    tpr: f64,
    f0_l1: f64,
    lr: f64,
    grad_norm: f64,
    discriminator_grad_norm: f64,
    mel_frames_per_second: f64,
    step_seconds: f64,
    skipped_steps: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_loss: Option<f64>,
}

pub type Adam<M, B> = burn::optim::adaptor::OptimizerAdaptor<burn::optim::AdamW, M, B>;

/// Trains (or resumes, or just loads when finished) the vocoder in `stage_dir`.
pub fn train_vocoder<B: AutodiffBackend>(
    recipe: &Recipe,
    config: &DecoderModelConfig,
    data: &DecoderData,
    device: &B::Device,
    stage_dir: &Path,
    resume: &Resume,
) -> Result<(Named<Hift<B>>, PartReport), String> {
    let started = Instant::now();
    let part = &recipe.decoder.hift;
    let train_cfg = &part.train;
    if train_cfg.gradient_accumulation != 1 {
        return Err("decoder.hift.gradient_accumulation must be 1: the GAN alternates discriminator and generator updates every batch".into());
    }
    let c = &config.hift;
    let hop = c.samples_per_frame();
    let (batch_size, segment) = crop_batch(part);
    let batches_per_epoch = data.train.len().div_ceil(batch_size);
    let total = total_steps(train_cfg, batches_per_epoch);
    let (checkpoints, from) = starting_point(stage_dir, part, resume)?;
    let o = &train_cfg.optimizer;
    let mut opt_g: Adam<Hift<B>, B> = super::adamw(o).init();
    let mut opt_d: Adam<Discriminators<B>, B> = super::adamw(o).init();
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    let channels = discriminator_channels(part);
    let mut state = PartState::default();
    let (generator, discriminators) = match &from {
        None => (
            fresh_hift::<B>(config, recipe.seed, device),
            fresh_discriminators::<B>(recipe.seed, channels, device),
        ),
        Some(dir) => {
            check_resumable(
                recipe,
                &dir.join("recipe.resolved.yaml"),
                ResumeSection::Hift,
            )?;
            let open = |file: &str| TensorStore::open(&[dir.join(file)]).map_err(|e| e.to_string());
            let (gs, ds) = (open(HIFT_FILE)?, open(DISCRIMINATORS_FILE)?);
            let (gb, db) = (Builder::load(&gs, device), Builder::load(&ds, device));
            let g = Hift::new(&gb, c).map_err(|e| format!("{}: {e}", dir.display()))?;
            let d = Discriminators::new(&db, channels)
                .map_err(|e| format!("{}: {e}", dir.display()))?;
            let load = |name: &str| {
                recorder
                    .load(dir.join(name), device)
                    .map_err(|e| format!("{}: {name}: {e}", dir.display()))
            };
            opt_g = opt_g.load_record(load("optimizer_generator")?);
            opt_d = opt_d.load_record(load("optimizer_discriminators")?);
            state = read_state(dir)?;
            if state.step < total {
                tracing::info!(step = state.step, from = %dir.display(), "resuming the decoder vocoder");
            }
            (
                Named {
                    model: g,
                    names: gb.into_names(),
                },
                Named {
                    model: d,
                    names: db.into_names(),
                },
            )
        }
    };
    let Named {
        model: hift,
        names: g_names,
    } = generator;
    let Named {
        model: disc,
        names: d_names,
    } = discriminators;
    let mut report = PartReport {
        steps: state.step,
        losses: state.losses.clone(),
        eval_losses: state.eval_losses.clone(),
        skipped_steps: state.skipped_steps,
        wall_seconds: 0.0,
        already_done: state.step >= total,
    };
    if report.already_done {
        return Ok((
            Named {
                model: hift,
                names: g_names,
            },
            report,
        ));
    }
    let mut gan = Gan::new(hift, disc, opt_g, opt_d);
    let loss_mel = LossMel::<B>::new(device);
    let eval_mel = LossMel::<B::InnerBackend>::new(device);
    let mut log = MetricsLog::open(&stage_dir.join("metrics.jsonl"), Some(state.step))
        .map_err(|e| e.to_string())?;
    let log_error = |e: std::io::Error| {
        format!(
            "cannot write {}: {e}",
            stage_dir.join("metrics.jsonl").display()
        )
    };
    let nan_steps = fault_steps("ARP_FAULT_HIFT_NAN_STEPS");
    let abort_in_checkpoint = fault_steps("ARP_FAULT_HIFT_ABORT_IN_CHECKPOINT");
    let save = |state: &PartState, gan: &Gan<B>, abort: bool| {
        checkpoints
            .save(state.step, |dir| {
                save_named(&gan.hift, &g_names, &dir.join(HIFT_FILE))?;
                if abort {
                    std::process::abort();
                }
                save_named(&gan.disc, &d_names, &dir.join(DISCRIMINATORS_FILE))?;
                super::checkpoints::write_record::<B, _>(
                    gan.opt_g.to_record(),
                    &dir.join("optimizer_generator"),
                )?;
                super::checkpoints::write_record::<B, _>(
                    gan.opt_d.to_record(),
                    &dir.join("optimizer_discriminators"),
                )?;
                std::fs::write(dir.join("trainer_state.json"), serde_json::to_vec(state)?)?;
                std::fs::write(dir.join("recipe.resolved.yaml"), recipe.resolved_yaml())
            })
            .map(|_| ())
    };
    let eval = |hift: &Hift<B>| {
        (!data.validation.is_empty()).then(|| {
            eval_vocoder(
                &hift.valid(),
                c,
                &data.validation,
                &eval_mel,
                recipe.seed,
                device,
            )
        })
    };
    initial_eval(&state, &mut report, &mut log, || eval(&gan.hift))?;
    let bar = progress::bar(total as u64, "decoder vocoder");
    bar.set_position(state.step as u64);
    let (mut step, mut epoch, mut first_batch) = (state.step, state.epoch, state.next_group);
    let mut consecutive_bad = state.consecutive_bad;
    'epochs: while step < total {
        // A seeded shuffle of the utterances per epoch, cut into batches.
        let mut order: Vec<usize> = (0..data.train.len()).collect();
        let mut shuffle = Rng::for_step(recipe.seed, VOCODER_STREAM + 10, epoch as u64);
        for i in (1..order.len()).rev() {
            order.swap(i, shuffle.below_or_equal(i));
        }
        let batches: Vec<&[usize]> = order.chunks(batch_size).collect();
        for (batch_index, batch) in batches.iter().enumerate().skip(first_batch) {
            if step >= total {
                break 'epochs;
            }
            let step_start = Instant::now();
            let mut rng = Rng::for_step(recipe.seed, VOCODER_STREAM, step as u64);
            let items: Vec<&Utterance> = batch.iter().map(|&i| &data.train[i]).collect();
            let crop = gan_batch::<B>(&items, segment, hop, &mut rng, device);
            let crop_frames = crop.frames();
            let last_batch = batch_index + 1 == batches.len();
            let next =
                |step: usize, losses: &[f64], evals: &[(usize, f64)], skipped: usize| PartState {
                    step,
                    epoch: if last_batch { epoch + 1 } else { epoch },
                    next_group: if last_batch { 0 } else { batch_index + 1 },
                    skipped_steps: skipped,
                    consecutive_bad: 0,
                    losses: losses.to_vec(),
                    eval_losses: evals.to_vec(),
                };
            let lr = learning_rate(&train_cfg.schedule, o.lr, step, total);
            let (stepped, outcome) = gan.step(
                crop,
                c,
                &loss_mel,
                &mut rng,
                lr,
                train_cfg.clip_grad_norm,
                nan_steps.contains(&(step + 1)),
            );
            gan = stepped;
            let GanOutcome {
                discriminator_loss: d_value,
                discriminator_grad_norm: d_norm,
                generator_loss: g_value,
                generator_grad_norm: g_norm,
                parts: values,
                ..
            } = outcome;
            if !outcome.applied {
                consecutive_bad += 1;
                report.skipped_steps += 1;
                tracing::warn!(
                    step,
                    generator_loss = g_value,
                    discriminator_loss = d_value,
                    "decoder vocoder: non-finite loss or gradient norm: step skipped"
                );
                if consecutive_bad >= train_cfg.max_nonfinite_steps {
                    bar.finish_and_clear();
                    save(
                        &next(
                            step + 1,
                            &report.losses,
                            &report.eval_losses,
                            report.skipped_steps,
                        ),
                        &gan,
                        false,
                    )?;
                    return Err(format!(
                        "{consecutive_bad} consecutive decoder vocoder steps had a non-finite loss or gradient norm (last at step {step}); \
                         stopping with a checkpoint of the last good weights. Lower decoder.hift.optimizer.lr, check the data, or raise decoder.hift.max_nonfinite_steps"
                    ));
                }
                step += 1;
                bar.inc(1);
                continue;
            }
            consecutive_bad = 0;
            step += 1;
            let [adv, fm, tpr_v, mel_v, f0_v] = values;
            report.losses.push(mel_v);
            let eval_loss = if step % train_cfg.eval_every == 0 || step == total {
                eval(&gan.hift)
            } else {
                None
            };
            if let Some(loss) = eval_loss {
                report.eval_losses.push((step, loss));
            }
            let seconds = step_start.elapsed().as_secs_f64();
            log.write(&StepRecord {
                step,
                loss: mel_v,
                generator_loss: g_value,
                discriminator_loss: d_value,
                adversarial: adv,
                feature_matching: fm,
                tpr: tpr_v,
                f0_l1: f0_v,
                lr,
                grad_norm: g_norm,
                discriminator_grad_norm: d_norm,
                mel_frames_per_second: crop_frames as f64 / seconds.max(1e-9),
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
                );
                save(&state, &gan, abort_in_checkpoint.contains(&step))?;
            }
            bar.set_message(format!("mel L1 {mel_v:.3}"));
            bar.inc(1);
            if step % train_cfg.log_every == 0 {
                tracing::info!(
                    step,
                    mel_l1 = mel_v,
                    generator_loss = g_value,
                    discriminator_loss = d_value,
                    "decoder vocoder"
                );
            }
            if stopping {
                bar.finish_and_clear();
                let dir = checkpoints.step_dir(step);
                return Err(crate::stop::stopped_training(
                    "stage two (vocoder)",
                    step,
                    total,
                    &dir,
                ));
            }
        }
        epoch += 1;
        first_batch = 0;
    }
    bar.finish_and_clear();
    report.steps = step;
    finish(&mut report, stage_dir, "stage two: vocoder mel L1", started)?;
    Ok((
        Named {
            model: gan.hift,
            names: g_names,
        },
        report,
    ))
}
