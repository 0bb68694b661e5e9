//! The WhisperVQ encoder in burn. Struct fields are the checkpoint's tensor names (after the
//! optional `model.encoder.` prefix): `conv1`, `conv2`, `embed_positions`, `layers.N.{self_attn.
//! {q,k,v,out}_proj, self_attn_layer_norm, fc1, fc2, final_layer_norm}`, `codebook`. Weights
//! keep PyTorch's layouts (Linear weight [out, in], Conv1d weight [out, in, kernel]).

use burn::tensor::activation::{gelu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};

use super::config::{AttentionPattern, PoolingType, WhisperVqConfig};
use crate::checkpoint::tensors::{TensorError, TensorSource};
use crate::models::padded_matmul::padded_matmul;

/// Reads tensors under a name prefix onto a device.
pub struct Loader<'a, B: Backend> {
    pub store: &'a dyn TensorSource,
    pub prefix: String,
    pub device: B::Device,
}

impl<B: Backend> Loader<'_, B> {
    pub fn tensor<const D: usize>(
        &self,
        name: &str,
        shape: [usize; D],
    ) -> Result<Tensor<B, D>, TensorError> {
        let values = self.store.f32(&format!("{}{name}", self.prefix), &shape)?;
        Ok(Tensor::from_data(
            TensorData::new(values, shape),
            &self.device,
        ))
    }
}

pub struct Linear<B: Backend> {
    /// [out, in]
    pub weight: Tensor<B, 2>,
    pub bias: Option<Tensor<B, 1>>,
}

impl<B: Backend> Linear<B> {
    fn load(
        l: &Loader<B>,
        name: &str,
        input: usize,
        output: usize,
        bias: bool,
    ) -> Result<Self, TensorError> {
        Ok(Linear {
            weight: l.tensor(&format!("{name}.weight"), [output, input])?,
            bias: if bias {
                Some(l.tensor(&format!("{name}.bias"), [output])?)
            } else {
                None
            },
        })
    }

    /// x [.., in] -> [.., out]
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let y = padded_matmul(x, self.weight.clone().transpose().unsqueeze());
        match &self.bias {
            Some(b) => y + b.clone().unsqueeze(),
            None => y,
        }
    }
}

pub struct LayerNorm<B: Backend> {
    pub weight: Tensor<B, 1>,
    pub bias: Tensor<B, 1>,
}

impl<B: Backend> LayerNorm<B> {
    const EPS: f64 = 1e-5;

    fn load(l: &Loader<B>, name: &str, dim: usize) -> Result<Self, TensorError> {
        Ok(LayerNorm {
            weight: l.tensor(&format!("{name}.weight"), [dim])?,
            bias: l.tensor(&format!("{name}.bias"), [dim])?,
        })
    }

    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let (var, mean) = x.clone().var_mean_bias(2);
        let normed = (x - mean) / (var + Self::EPS).sqrt();
        normed * self.weight.clone().unsqueeze() + self.bias.clone().unsqueeze()
    }
}

/// Conv1d with PyTorch's weight layout; `causal` pads kernel-1 zeros on the left only.
pub struct Conv1d<B: Backend> {
    /// [out, in, kernel]
    pub weight: Tensor<B, 3>,
    pub bias: Tensor<B, 1>,
    stride: usize,
    causal: bool,
}

impl<B: Backend> Conv1d<B> {
    fn load(
        l: &Loader<B>,
        name: &str,
        input: usize,
        output: usize,
        stride: usize,
        causal: bool,
    ) -> Result<Self, TensorError> {
        // Whisper's two convolutions have kernel 3.
        Ok(Conv1d {
            weight: l.tensor(&format!("{name}.weight"), [output, input, 3])?,
            bias: l.tensor(&format!("{name}.bias"), [output])?,
            stride,
            causal,
        })
    }

    /// x [batch, in, time] -> [batch, out, time']. Computed as one matmul over the K shifted
    /// copies of the input (im2col): burn-ndarray's direct conv1d is orders of magnitude slower
    /// for Whisper's 128 x 3000 inputs, and the matmul form is as fast on GPU backends.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, channels, time] = x.dims();
        let [out_channels, _, kernel] = self.weight.dims();
        let (left, right) = if self.causal {
            (kernel - 1, 0)
        } else {
            (kernel / 2, kernel / 2)
        };
        let out_time = (time + left + right - kernel) / self.stride + 1;
        // Enough zeros on the right that every shifted view spans stride * out_time samples.
        let padded_len = kernel - 1 + self.stride * out_time;
        let device = x.device();
        let mut parts = vec![Tensor::zeros([batch, channels, left], &device), x];
        let tail = padded_len.saturating_sub(time + left);
        if tail > 0 {
            parts.push(Tensor::zeros([batch, channels, tail], &device));
        }
        let padded = Tensor::cat(parts, 2);
        let shifted: Vec<Tensor<B, 3>> = (0..kernel)
            .map(|k| {
                let view = padded.clone().narrow(2, k, self.stride * out_time);
                view.reshape([batch, channels, out_time, self.stride])
                    .narrow(3, 0, 1)
                    .reshape([batch, channels, out_time])
            })
            .collect();
        // [batch, kernel * channels, out_time], kernel-major to match the weight's permutation.
        let columns = Tensor::cat(shifted, 1);
        let weight =
            self.weight
                .clone()
                .swap_dims(1, 2)
                .reshape([1, out_channels, kernel * channels]);
        padded_matmul(weight, columns) + self.bias.clone().reshape([1, out_channels, 1])
    }
}

pub struct SelfAttention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub out_proj: Linear<B>,
    heads: usize,
}

impl<B: Backend> SelfAttention<B> {
    /// x [batch, time, d]; `allowed` [batch, 1, time, time] (true = may attend).
    fn forward(&self, x: Tensor<B, 3>, allowed: Tensor<B, 4, Bool>) -> Tensor<B, 3> {
        let [batch, time, d] = x.dims();
        let head_dim = d / self.heads;
        let split = |t: Tensor<B, 3>| {
            t.reshape([batch, time, self.heads, head_dim])
                .swap_dims(1, 2)
        };
        let q = split(self.q_proj.forward(x.clone())) * (head_dim as f64).powf(-0.5);
        let k = split(self.k_proj.forward(x.clone()));
        let v = split(self.v_proj.forward(x));
        let scores =
            padded_matmul(q, k.swap_dims(2, 3)).mask_fill(allowed.bool_not(), f32::NEG_INFINITY);
        let context = padded_matmul(softmax(scores, 3), v)
            .swap_dims(1, 2)
            .reshape([batch, time, d]);
        self.out_proj.forward(context)
    }
}

pub struct EncoderLayer<B: Backend> {
    pub self_attn: SelfAttention<B>,
    pub self_attn_layer_norm: LayerNorm<B>,
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
    pub final_layer_norm: LayerNorm<B>,
}

impl<B: Backend> EncoderLayer<B> {
    fn load(l: &Loader<B>, index: usize, c: &WhisperVqConfig) -> Result<Self, TensorError> {
        let p = |name: &str| format!("layers.{index}.{name}");
        let d = c.d_model;
        Ok(EncoderLayer {
            self_attn: SelfAttention {
                q_proj: Linear::load(l, &p("self_attn.q_proj"), d, d, true)?,
                k_proj: Linear::load(l, &p("self_attn.k_proj"), d, d, false)?,
                v_proj: Linear::load(l, &p("self_attn.v_proj"), d, d, true)?,
                out_proj: Linear::load(l, &p("self_attn.out_proj"), d, d, true)?,
                heads: c.encoder_attention_heads,
            },
            self_attn_layer_norm: LayerNorm::load(l, &p("self_attn_layer_norm"), d)?,
            fc1: Linear::load(l, &p("fc1"), d, c.encoder_ffn_dim, true)?,
            fc2: Linear::load(l, &p("fc2"), c.encoder_ffn_dim, d, true)?,
            final_layer_norm: LayerNorm::load(l, &p("final_layer_norm"), d)?,
        })
    }

    fn forward(&self, x: Tensor<B, 3>, allowed: Tensor<B, 4, Bool>) -> Tensor<B, 3> {
        let x = x.clone()
            + self
                .self_attn
                .forward(self.self_attn_layer_norm.forward(x), allowed);
        let h = self.fc2.forward(gelu(
            self.fc1.forward(self.final_layer_norm.forward(x.clone())),
        ));
        x + h
    }
}

/// Output of the encoder for a batch of equally long inputs.
pub struct Encoded<B: Backend> {
    /// Pre-quantization features [batch, tokens, d_model].
    pub features: Tensor<B, 3>,
    /// Nearest codebook entries [batch, tokens].
    pub tokens: Tensor<B, 2, Int>,
}

pub struct WhisperVqEncoder<B: Backend> {
    pub conv1: Conv1d<B>,
    pub conv2: Conv1d<B>,
    /// `embed_positions.weight` [max_source_positions, d_model]
    pub embed_positions: Tensor<B, 2>,
    /// Only the first `quantize_position` layers of the checkpoint run.
    pub layers: Vec<EncoderLayer<B>>,
    /// `codebook.weight` [quantize_vocab_size, d_model]
    pub codebook: Tensor<B, 2>,
    pub config: WhisperVqConfig,
}

impl<B: Backend> WhisperVqEncoder<B> {
    pub fn load(l: &Loader<B>, c: &WhisperVqConfig) -> Result<Self, TensorError> {
        let d = c.d_model;
        let causal = c.encoder_causal_convolution;
        Ok(WhisperVqEncoder {
            conv1: Conv1d::load(l, "conv1", c.num_mel_bins, d, 1, causal)?,
            conv2: Conv1d::load(l, "conv2", d, d, 2, causal)?,
            embed_positions: l.tensor("embed_positions.weight", [c.max_source_positions, d])?,
            layers: (0..c.quantize_position)
                .map(|i| EncoderLayer::load(l, i, c))
                .collect::<Result<_, _>>()?,
            codebook: l.tensor("codebook.weight", [c.quantize_vocab_size, d])?,
            config: c.clone(),
        })
    }

    /// mel [batch, n_mels, frames] (frames a multiple of 2 x pooling); `valid_frames[b]`: how many
    /// 100 Hz frames of item b are real audio (the rest is padding, masked as keys).
    pub fn forward(&self, mel: Tensor<B, 3>, valid_frames: &[usize]) -> Encoded<B> {
        let device = mel.device();
        let x = gelu(self.conv1.forward(mel));
        let x = gelu(self.conv2.forward(x)).swap_dims(1, 2); // [batch, time, d]
        let time = x.dims()[1];
        let mut x = x + self
            .embed_positions
            .clone()
            .slice([0..time])
            .unsqueeze::<3>();
        // Frame t at 50 Hz is real when frame 2t at 100 Hz is.
        let mut valid: Vec<usize> = valid_frames.iter().map(|&n| n.div_ceil(2)).collect();
        let mut pooled = false;
        let pool = self.config.pooling();
        for (index, layer) in self.layers.iter().enumerate() {
            let frames = x.dims()[1];
            let allowed =
                attention_mask::<B>(self.config.attention(pooled), &valid, frames, &device);
            x = layer.forward(x, allowed);
            if index + 1 == self.config.pooling_position
                && self.config.pooling_kernel_size.is_some()
            {
                x = pool_time(x, pool, self.config.pooling_type);
                valid = valid.iter().map(|&n| n.div_ceil(pool)).collect();
                pooled = true;
            }
        }
        let tokens = nearest_code(x.clone(), self.codebook.clone());
        Encoded {
            features: x,
            tokens,
        }
    }
}

/// Pools `pool` consecutive frames (zero-padding the end to a whole number of windows).
fn pool_time<B: Backend>(x: Tensor<B, 3>, pool: usize, kind: PoolingType) -> Tensor<B, 3> {
    let [batch, time, d] = x.dims();
    let padded = time.div_ceil(pool) * pool;
    let x = if padded > time {
        let zeros = Tensor::zeros([batch, padded - time, d], &x.device());
        Tensor::cat(vec![x, zeros], 1)
    } else {
        x
    };
    let windows = x.reshape([batch, padded / pool, pool, d]);
    let out = match kind {
        PoolingType::Avg => windows.mean_dim(2),
        PoolingType::Max => windows.max_dim(2),
    };
    out.reshape([batch, padded / pool, d])
}

/// Index of the nearest codebook row (squared L2) for every frame: argmin of |c|^2 - 2 x.c
/// (|x|^2 is the same for every code).
fn nearest_code<B: Backend>(x: Tensor<B, 3>, codebook: Tensor<B, 2>) -> Tensor<B, 2, Int> {
    let [batch, time, _] = x.dims();
    let code_norms = codebook
        .clone()
        .powi_scalar(2)
        .sum_dim(1)
        .reshape([1, 1, codebook.dims()[0]]);
    let dots = padded_matmul(x, codebook.transpose().unsqueeze());
    let distances = code_norms - dots * 2.0;
    distances.argmin(2).reshape([batch, time])
}

/// allowed[b, 0, i, j]: may frame i attend to frame j of item b.
fn attention_mask<B: Backend>(
    pattern: AttentionPattern,
    valid: &[usize],
    frames: usize,
    device: &B::Device,
) -> Tensor<B, 4, Bool> {
    let mut data = Vec::with_capacity(valid.len() * frames * frames);
    for &n in valid {
        for i in 0..frames {
            for j in 0..frames {
                data.push(match pattern {
                    AttentionPattern::Causal => j <= i,
                    AttentionPattern::BlockCausal(block) => {
                        (j <= i || i / block == j / block) && j < n
                    }
                    AttentionPattern::Full => j < n,
                });
            }
        }
    }
    Tensor::from_data(
        TensorData::new(data, [valid.len(), 1, frames, frames]),
        device,
    )
}
