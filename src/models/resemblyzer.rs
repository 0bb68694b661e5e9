//! Resemblyzer's VoiceEncoder (GE2E d-vector): a 3-layer LSTM over 40-band mel frames, the last
//! layer's final hidden state through Linear(256, 256) and ReLU, then L2 normalization. Tensor
//! names are PyTorch's (`lstm.weight_ih_l0`, ..., `linear.weight`), as
//! tools/data/resemblyzer_weights.py writes them.

use burn::module::{Module, Param};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::checkpoint::tensors::TensorError;
use crate::models::layers::{Builder, Fill, Linear};
use crate::models::padded_matmul::padded_matmul;

pub const MEL_CHANNELS: usize = 40;
pub const HIDDEN: usize = 256;
pub const EMBEDDING: usize = 256;
pub const LAYERS: usize = 3;

/// One LSTM layer; PyTorch packs the four gates (input, forget, cell, output) in that order.
#[derive(Module, Debug)]
pub struct LstmLayer<B: Backend> {
    pub weight_ih: Param<Tensor<B, 2>>,
    pub weight_hh: Param<Tensor<B, 2>>,
    pub bias_ih: Param<Tensor<B, 1>>,
    pub bias_hh: Param<Tensor<B, 1>>,
}

impl<B: Backend> LstmLayer<B> {
    fn load(b: &Builder<B>, layer: usize, input: usize) -> Result<Self, TensorError> {
        let name = |kind: &str| format!("lstm.{kind}_l{layer}");
        let fill = Fill::fan_in(HIDDEN);
        Ok(LstmLayer {
            weight_ih: b.param(&name("weight_ih"), [4 * HIDDEN, input], fill)?,
            weight_hh: b.param(&name("weight_hh"), [4 * HIDDEN, HIDDEN], fill)?,
            bias_ih: b.param(&name("bias_ih"), [4 * HIDDEN], fill)?,
            bias_hh: b.param(&name("bias_hh"), [4 * HIDDEN], fill)?,
        })
    }

    /// `x` [batch, time, input] -> every hidden state [batch, time, hidden].
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, time, _] = x.dims();
        let device = x.device();
        // The input projection of every step at once; only the recurrence is sequential.
        let bias = (self.bias_ih.val() + self.bias_hh.val()).unsqueeze::<3>();
        let projected = padded_matmul(x, self.weight_ih.val().transpose().unsqueeze()) + bias;
        let w_hh = self.weight_hh.val().transpose();
        let mut h = Tensor::<B, 2>::zeros([batch, HIDDEN], &device);
        let mut c = Tensor::<B, 2>::zeros([batch, HIDDEN], &device);
        let mut states = Vec::with_capacity(time);
        for t in 0..time {
            let gates = projected
                .clone()
                .slice([0..batch, t..t + 1])
                .reshape([batch, 4 * HIDDEN])
                + padded_matmul(h, w_hh.clone());
            let mut chunks = gates.chunk(4, 1).into_iter();
            let (i, f, g, o) = (
                sigmoid(chunks.next().expect("4 gates")),
                sigmoid(chunks.next().expect("4 gates")),
                chunks.next().expect("4 gates").tanh(),
                sigmoid(chunks.next().expect("4 gates")),
            );
            c = f * c + i * g;
            h = o * c.clone().tanh();
            states.push(h.clone().unsqueeze_dim::<3>(1));
        }
        Tensor::cat(states, 1)
    }
}

#[derive(Module, Debug)]
pub struct VoiceEncoder<B: Backend> {
    pub lstm: Vec<LstmLayer<B>>,
    pub linear: Linear<B>,
}

impl<B: Backend> VoiceEncoder<B> {
    pub fn load(b: &Builder<B>) -> Result<Self, TensorError> {
        let lstm = (0..LAYERS)
            .map(|l| LstmLayer::load(b, l, if l == 0 { MEL_CHANNELS } else { HIDDEN }))
            .collect::<Result<_, _>>()?;
        Ok(VoiceEncoder {
            lstm,
            linear: Linear::new(b, "linear", HIDDEN, EMBEDDING, true)?,
        })
    }

    /// `mels` [batch, frames, 40] -> L2-normalized embeddings [batch, 256].
    pub fn forward(&self, mels: Tensor<B, 3>) -> Tensor<B, 2> {
        let mut x = mels;
        for layer in &self.lstm {
            x = layer.forward(x);
        }
        let [batch, time, _] = x.dims();
        let last = x.slice([0..batch, time - 1..time]).reshape([batch, HIDDEN]);
        let raw = relu(self.linear.forward(last));
        let norm = raw
            .clone()
            .powf_scalar(2.0)
            .sum_dim(1)
            .sqrt()
            .clamp_min(1e-12);
        raw / norm
    }
}
