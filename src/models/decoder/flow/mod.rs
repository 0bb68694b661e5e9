//! `flow`: GLM-4-Voice-Decoder's token-to-mel model (CosyVoice's MaskedDiffWithXvec with a
//! ConditionalCFM). State-dict names: `input_embedding`, `spk_embed_affine_layer`, `encoder.*`,
//! `encoder_proj`, `length_regulator.*`, `decoder.estimator.*`. Facts:
//! ../shared/reference/glm-4-voice.md section 5.

pub mod encoder;
pub mod estimator;
pub mod regulator;

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::checkpoint::tensors::TensorError;
use crate::models::decoder::config::FlowConfig;
use crate::models::layers::{length_mask, Builder, Fill, Linear};
use encoder::BlockConformerEncoder;
use estimator::ConditionalDecoder;
use regulator::InterpolateRegulator;

#[derive(Module, Debug)]
pub struct Flow<B: Backend> {
    /// [vocab, input_size]
    pub input_embedding: Param<Tensor<B, 2>>,
    pub spk_embed_affine_layer: Linear<B>,
    pub encoder: BlockConformerEncoder<B>,
    pub encoder_proj: Linear<B>,
    pub length_regulator: InterpolateRegulator<B>,
    pub estimator: ConditionalDecoder<B>,
    pub sigma_min: f64,
    pub inference_cfg_rate: f64,
    pub input_frame_rate: f64,
    pub mel_bins: usize,
}

/// Mel frames of `tokens` speech tokens: tokens / frame rate * 22050 / 256 (the reference's rule).
pub fn mel_frames_for_tokens(tokens: usize, frame_rate: f64) -> usize {
    (tokens as f64 / frame_rate * 22050.0 / 256.0) as usize
}

/// The tokens whose mel fits in `frames` (the inverse of [`mel_frames_for_tokens`]).
pub fn tokens_for_mel_frames(frames: f64, frame_rate: f64) -> usize {
    (frames * 256.0 / 22050.0 * frame_rate) as usize
}

impl<B: Backend> Flow<B> {
    pub fn new(b: &Builder<B>, c: &FlowConfig) -> Result<Self, TensorError> {
        let mel = c.output_size;
        Ok(Flow {
            input_embedding: b.param(
                "input_embedding.weight",
                [c.vocab_size, c.input_size],
                Fill::Normal(1.0),
            )?,
            spk_embed_affine_layer: Linear::new(
                b,
                "spk_embed_affine_layer",
                c.spk_embed_dim,
                mel,
                true,
            )?,
            encoder: BlockConformerEncoder::new(b, "encoder", c.input_size, &c.encoder)?,
            encoder_proj: Linear::new(b, "encoder_proj", c.encoder.output_size, mel, true)?,
            length_regulator: InterpolateRegulator::new(
                b,
                "length_regulator",
                mel,
                c.regulator_sampling_ratios.len(),
            )?,
            estimator: ConditionalDecoder::new(b, "decoder.estimator", &c.estimator)?,
            sigma_min: c.cfm.sigma_min,
            inference_cfg_rate: c.cfm.inference_cfg_rate,
            input_frame_rate: c.input_frame_rate,
            mel_bins: mel,
        })
    }

    /// Token ids [b, n] (`token_lengths` valid each) -> (encoder output projected to mel
    /// channels [b, n, 80], mu [b, 80, max(mel_lengths)]).
    pub fn encode(
        &self,
        tokens: Tensor<B, 2, Int>,
        token_lengths: &[usize],
        mel_lengths: &[usize],
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let frames = mel_lengths.iter().copied().max().unwrap_or(0);
        self.encode_to(tokens, token_lengths, mel_lengths, frames)
    }

    /// [`encode`](Self::encode) with mu padded to `frames` (a batch's bucket size).
    pub fn encode_to(
        &self,
        tokens: Tensor<B, 2, Int>,
        token_lengths: &[usize],
        mel_lengths: &[usize],
        frames: usize,
    ) -> (Tensor<B, 3>, Tensor<B, 3>) {
        let [batch, n] = tokens.dims();
        let device = tokens.device();
        let embedding = self.input_embedding.val();
        let width = embedding.dims()[1];
        let x = embedding
            .select(0, tokens.reshape([batch * n]))
            .reshape([batch, n, width]);
        let valid = length_mask::<B>(token_lengths, n, &device).swap_dims(1, 2);
        let h = self
            .encoder_proj
            .forward(self.encoder.forward(x * valid, token_lengths));
        let mu = self
            .length_regulator
            .forward(h.clone(), mel_lengths, frames);
        (h, mu)
    }

    /// The speaker term for a zero speaker embedding (GLM-4-Voice never passes one): the
    /// normalized zero vector is zero, so this is the affine layer's bias, [b, 80].
    pub fn zero_speaker(&self, batch: usize, device: &B::Device) -> Tensor<B, 2> {
        let dim = self.spk_embed_affine_layer.weight.dims()[1];
        self.spk_embed_affine_layer
            .forward(Tensor::zeros([batch, dim], device))
    }

    /// The conditional flow-matching loss for given draws: `t_raw` [b] in [0, 1) before the
    /// cosine schedule, noise `z` like `x1`, and `keep[i] = false` for samples whose mu, speaker
    /// and prompt condition are dropped (classifier-free guidance training).
    #[allow(clippy::too_many_arguments)]
    pub fn cfm_loss(
        &self,
        x1: Tensor<B, 3>,
        mask: Tensor<B, 3>,
        mu: Tensor<B, 3>,
        spks: Tensor<B, 2>,
        cond: Tensor<B, 3>,
        t_raw: &[f32],
        z: Tensor<B, 3>,
        keep: &[bool],
    ) -> Tensor<B, 1> {
        let device = x1.device();
        let batch = t_raw.len();
        let t: Vec<f32> = t_raw
            .iter()
            .map(|&t| (1.0 - (t as f64 * 0.5 * std::f64::consts::PI).cos()) as f32)
            .collect();
        let t = Tensor::<B, 1>::from_data(TensorData::new(t, [batch]), &device);
        let t3 = t.clone().reshape([batch, 1, 1]);
        let sigma = 1.0 - self.sigma_min;
        let y = (t3.clone().mul_scalar(-sigma) + 1.0) * z.clone() + t3 * x1.clone();
        let u = x1 - z * sigma;
        let keep: Vec<f32> = keep.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
        let keep = Tensor::<B, 1>::from_data(TensorData::new(keep, [batch]), &device);
        let keep3 = keep.clone().reshape([batch, 1, 1]);
        let pred = self.estimator.forward(
            y,
            mask.clone(),
            mu * keep3.clone(),
            t,
            spks * keep.reshape([batch, 1]),
            cond * keep3,
        );
        let channels = u.dims()[1] as f64;
        let squared = ((pred - u) * mask.clone()).powi_scalar(2).sum();
        squared / (mask.sum() * channels)
    }

    /// Euler integration of the velocity field from noise `z` over `steps` steps of the cosine
    /// schedule, with classifier-free guidance v = (1 + r) v(mu) - r v(0).
    pub fn solve(
        &self,
        mu: Tensor<B, 3>,
        mask: Tensor<B, 3>,
        spks: Tensor<B, 2>,
        cond: Tensor<B, 3>,
        z: Tensor<B, 3>,
        steps: usize,
    ) -> Tensor<B, 3> {
        let batch = mu.dims()[0];
        let device = mu.device();
        let schedule: Vec<f64> = (0..=steps)
            .map(|i| 1.0 - (i as f64 / steps as f64 * 0.5 * std::f64::consts::PI).cos())
            .collect();
        let rate = self.inference_cfg_rate;
        let mut x = z;
        for i in 0..steps {
            let t = Tensor::<B, 1>::from_data(
                TensorData::new(vec![schedule[i] as f32; batch], [batch]),
                &device,
            );
            let mut v = self.estimator.forward(
                x.clone(),
                mask.clone(),
                mu.clone(),
                t.clone(),
                spks.clone(),
                cond.clone(),
            );
            if rate > 0.0 {
                let v0 = self.estimator.forward(
                    x.clone(),
                    mask.clone(),
                    mu.zeros_like(),
                    t,
                    spks.zeros_like(),
                    cond.zeros_like(),
                );
                v = v * (1.0 + rate) - v0 * rate;
            }
            x = x + v * (schedule[i + 1] - schedule[i]);
        }
        x
    }

    /// Mel [1, 80, frames] for one utterance's tokens, from noise drawn with `seed`.
    pub fn synthesize(
        &self,
        tokens: &[u32],
        steps: usize,
        seed: u64,
        device: &B::Device,
    ) -> Tensor<B, 3> {
        let n = tokens.len();
        let frames = mel_frames_for_tokens(n, self.input_frame_rate);
        let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, n]), device);
        let (_, mu) = self.encode(ids, &[n], &[frames]);
        let mut rng = crate::rng::Rng::new(seed);
        let z = Tensor::from_data(
            TensorData::new(
                rng.normals(self.mel_bins * frames),
                [1, self.mel_bins, frames],
            ),
            device,
        );
        let mask = Tensor::ones([1, 1, frames], device);
        let cond = Tensor::zeros([1, self.mel_bins, frames], device);
        self.solve(mu, mask, self.zero_speaker(1, device), cond, z, steps)
    }
}
