//! `flow.length_regulator`: CosyVoice's InterpolateRegulator. Token-rate features are stretched
//! to the mel length by nearest interpolation (PyTorch's rule: source = floor(dst * in / out)),
//! then `model.{3i}` Conv1d k3 + `model.{3i+1}` GroupNorm(1) + Mish per sampling ratio, and a
//! final `model.{3n}` Conv1d k1; padded frames are zeroed.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::checkpoint::tensors::TensorError;
use crate::models::layers::{length_mask, mish, Builder, Conv1d, ConvSpec, GroupNorm};

#[derive(Module, Debug)]
pub struct InterpolateRegulator<B: Backend> {
    pub convs: Vec<Conv1d<B>>,
    pub norms: Vec<GroupNorm<B>>,
    pub out: Conv1d<B>,
}

impl<B: Backend> InterpolateRegulator<B> {
    pub fn new(
        b: &Builder<B>,
        name: &str,
        channels: usize,
        ratios: usize,
    ) -> Result<Self, TensorError> {
        let mut convs = Vec::new();
        let mut norms = Vec::new();
        for i in 0..ratios {
            convs.push(Conv1d::new(
                b,
                &format!("{name}.model.{}", 3 * i),
                ConvSpec::same(channels, channels, 3, 1),
            )?);
            norms.push(GroupNorm::new(
                b,
                &format!("{name}.model.{}", 3 * i + 1),
                1,
                channels,
            )?);
        }
        let out = Conv1d::new(
            b,
            &format!("{name}.model.{}", 3 * ratios),
            ConvSpec::new(channels, channels, 1),
        )?;
        Ok(InterpolateRegulator { convs, norms, out })
    }

    /// h [b, tokens, c] -> [b, c, frames], zero past each item's mel length. `frames` is
    /// max(mel_lengths) as in the reference, or more for a batch padded to a bucket size (the
    /// stretch then spans the padded extents, as the reference's would for a longer batch).
    pub fn forward(&self, h: Tensor<B, 3>, mel_lengths: &[usize], frames: usize) -> Tensor<B, 3> {
        let [_, tokens, _] = h.dims();
        let device = h.device();
        let scale = tokens as f32 / frames as f32;
        let source: Vec<i64> = (0..frames)
            .map(|i| ((i as f32 * scale).floor() as usize).min(tokens - 1) as i64)
            .collect();
        let source = Tensor::<B, 1, Int>::from_data(TensorData::new(source, [frames]), &device);
        let mut x = h.select(1, source).swap_dims(1, 2);
        for (conv, norm) in self.convs.iter().zip(&self.norms) {
            x = mish(norm.forward(conv.forward(x)));
        }
        self.out.forward(x) * length_mask::<B>(mel_lengths, frames, &device)
    }
}
