//! The HiFT vocoder's GAN training step (CosyVoice's recipe). Each step takes random crops of
//! `segment_frames` mel frames (and their waveform and F0), generates audio from the predicted
//! F0's harmonic source, updates the discriminators on LSGAN + TPR losses, then the generator on
//! LSGAN + 2 feature matching + 45 mel L1 + 1 TPR + F0 L1 (F0 targets: YIN, in the cache).
//! The mel L1 is on log-mels of both waveforms (n_fft 1024, hop 256, 80 Slaney bands up to
//! 11.025 kHz, as CosyVoice's loss transform). Feature matching is HiFi-GAN's
//! (2 x sum of mean |r - g|); TPR (tau 0.04) uses the median of D(real) - D(fake) as a constant.

use std::collections::BTreeMap;

use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};

use super::grads::clip;
use super::Adam;
use crate::audio::mel::slaney_matrix;
use crate::data::decoder_data::Utterance;
use crate::models::decoder::config::HiftConfig;
use crate::models::decoder::hift::discriminators::{Discriminators, Judgement};
use crate::models::decoder::hift::{vocode, Hift};
use crate::models::decoder::Named;
use crate::models::layers::{conv1d, pad_reflect, Builder};
use crate::models::padded_matmul::padded_matmul;
use crate::models::params::{named_params, NamedParam};
use crate::models::to_host_f32;
use crate::recipe::DecoderPartConfig;
use crate::rng::Rng;

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
pub(super) struct Crops {
    pub(super) mel: Vec<f32>,
    pub(super) audio: Vec<f32>,
    f0: Vec<f32>,
    batch: usize,
    frames: usize,
}

pub(super) fn crops(items: &[&Utterance], frames: usize, hop: usize, rng: &mut Rng) -> Crops {
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

impl GanOutcome {
    /// The generator's mel L1: the vocoder's training curve.
    pub fn mel_l1(&self) -> f64 {
        self.parts[3]
    }

    /// Every other figure of the step, by its metrics name.
    pub fn terms(&self) -> BTreeMap<&'static str, f64> {
        let [adversarial, feature_matching, tpr, _, f0_l1] = self.parts;
        BTreeMap::from([
            ("generator_loss", self.generator_loss),
            ("discriminator_loss", self.discriminator_loss),
            ("adversarial", adversarial),
            ("feature_matching", feature_matching),
            ("tpr", tpr),
            ("f0_l1", f0_l1),
            ("discriminator_grad_norm", self.discriminator_grad_norm),
        ])
    }
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
