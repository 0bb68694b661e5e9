//! `flow.encoder`: CosyVoice's BlockConformerEncoder as GLM-4-Voice configures it (no conv
//! module, no macaron FFN, pre-norm): `embed.out` (Linear + LayerNorm), x * sqrt(d), espnet
//! relative-position self-attention with `pos_bias_u` / `pos_bias_v` under a block-causal mask,
//! swish FFN, `after_norm`. Names: `encoders.N.{self_attn.linear_{q,k,v,out,pos}, pos_bias_u,
//! pos_bias_v, feed_forward.w_1, feed_forward.w_2, norm_mha, norm_ff}`.

use burn::module::{Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, DType, Int, Tensor, TensorData};

use crate::checkpoint::tensors::TensorError;
use crate::models::decoder::config::EncoderConfig;
use crate::models::layers::{swish, Builder, Fill, LayerNorm, Linear};
use crate::models::padded_matmul::padded_matmul;

#[derive(Module, Debug)]
pub struct RelPositionAttention<B: Backend> {
    pub linear_q: Linear<B>,
    pub linear_k: Linear<B>,
    pub linear_v: Linear<B>,
    pub linear_out: Linear<B>,
    pub linear_pos: Linear<B>,
    /// [heads, d_k]
    pub pos_bias_u: Param<Tensor<B, 2>>,
    pub pos_bias_v: Param<Tensor<B, 2>>,
    pub heads: usize,
}

impl<B: Backend> RelPositionAttention<B> {
    fn new(b: &Builder<B>, name: &str, d: usize, heads: usize) -> Result<Self, TensorError> {
        let dk = d / heads;
        let xavier = Fill::Uniform((6.0 / (heads + dk) as f64).sqrt());
        Ok(RelPositionAttention {
            linear_q: Linear::new(b, &format!("{name}.linear_q"), d, d, true)?,
            linear_k: Linear::new(b, &format!("{name}.linear_k"), d, d, true)?,
            linear_v: Linear::new(b, &format!("{name}.linear_v"), d, d, true)?,
            linear_out: Linear::new(b, &format!("{name}.linear_out"), d, d, true)?,
            linear_pos: Linear::new(b, &format!("{name}.linear_pos"), d, d, false)?,
            pos_bias_u: b.param(&format!("{name}.pos_bias_u"), [heads, dk], xavier)?,
            pos_bias_v: b.param(&format!("{name}.pos_bias_v"), [heads, dk], xavier)?,
            heads,
        })
    }

    /// x [b, t, d], pos [1, 2t-1, d], blocked [b, t, t] (true = not allowed).
    fn forward(
        &self,
        x: Tensor<B, 3>,
        pos: Tensor<B, 3>,
        blocked: Tensor<B, 3, Bool>,
    ) -> Tensor<B, 3> {
        let [batch, time, d] = x.dims();
        let (h, dk) = (self.heads, d / self.heads);
        let split =
            |y: Tensor<B, 3>, n: usize, rows: usize| y.reshape([n, rows, h, dk]).swap_dims(1, 2);
        let q = self
            .linear_q
            .forward(x.clone())
            .reshape([batch, time, h, dk]);
        let k = split(self.linear_k.forward(x.clone()), batch, time);
        let v = split(self.linear_v.forward(x), batch, time);
        let p = split(self.linear_pos.forward(pos), 1, 2 * time - 1);
        let q_u = (q.clone() + self.pos_bias_u.val().unsqueeze()).swap_dims(1, 2);
        let q_v = (q + self.pos_bias_v.val().unsqueeze()).swap_dims(1, 2);
        let ac = padded_matmul(q_u, k.swap_dims(2, 3));
        // [b, h, t, 2t-1]; score (i, j) takes the row of relative position i - j, which is
        // row (t - 1) - i + j (espnet's rel_shift).
        let bd_full = padded_matmul(q_v, p.swap_dims(2, 3));
        let index: Vec<i64> = (0..time)
            .flat_map(|i| (0..time).map(move |j| (time - 1 - i + j) as i64))
            .collect();
        let index =
            Tensor::<B, 2, Int>::from_data(TensorData::new(index, [time, time]), &bd_full.device())
                .reshape([1, 1, time, time])
                .expand([batch, h, time, time]);
        let bd = bd_full.gather(3, index);
        let scores = (ac + bd) / (dk as f64).sqrt();
        let blocked = blocked.unsqueeze_dim::<4>(1).expand([batch, h, time, time]);
        // In fp32 (as autocast does): -1e9 is -inf in f16, and f16 sums lose small weights.
        let dtype = scores.dtype();
        let attn = softmax(scores.cast(DType::F32).mask_fill(blocked.clone(), -1e9), 3)
            .cast(dtype)
            .mask_fill(blocked, 0.0);
        let out = padded_matmul(attn, v)
            .swap_dims(1, 2)
            .reshape([batch, time, d]);
        self.linear_out.forward(out)
    }
}

#[derive(Module, Debug)]
pub struct FeedForward<B: Backend> {
    pub w_1: Linear<B>,
    pub w_2: Linear<B>,
}

#[derive(Module, Debug)]
pub struct ConformerLayer<B: Backend> {
    pub self_attn: RelPositionAttention<B>,
    pub feed_forward: FeedForward<B>,
    pub norm_ff: LayerNorm<B>,
    pub norm_mha: LayerNorm<B>,
}

impl<B: Backend> ConformerLayer<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        pos: Tensor<B, 3>,
        blocked: Tensor<B, 3, Bool>,
    ) -> Tensor<B, 3> {
        let x = x.clone()
            + self
                .self_attn
                .forward(self.norm_mha.forward(x), pos, blocked);
        let ff = &self.feed_forward;
        x.clone()
            + ff.w_2
                .forward(swish(ff.w_1.forward(self.norm_ff.forward(x))))
    }
}

/// `embed.out.0` (Linear) and `embed.out.1` (LayerNorm).
#[derive(Module, Debug)]
pub struct LinearEmbed<B: Backend> {
    pub linear: Linear<B>,
    pub norm: LayerNorm<B>,
}

#[derive(Module, Debug)]
pub struct BlockConformerEncoder<B: Backend> {
    pub embed: LinearEmbed<B>,
    pub encoders: Vec<ConformerLayer<B>>,
    pub after_norm: LayerNorm<B>,
    pub block_size: usize,
    pub d_model: usize,
}

impl<B: Backend> BlockConformerEncoder<B> {
    pub fn new(
        b: &Builder<B>,
        name: &str,
        input: usize,
        c: &EncoderConfig,
    ) -> Result<Self, TensorError> {
        let d = c.output_size;
        let encoders = (0..c.num_blocks)
            .map(|i| {
                let n = format!("{name}.encoders.{i}");
                Ok(ConformerLayer {
                    self_attn: RelPositionAttention::new(
                        b,
                        &format!("{n}.self_attn"),
                        d,
                        c.attention_heads,
                    )?,
                    feed_forward: FeedForward {
                        w_1: Linear::new(
                            b,
                            &format!("{n}.feed_forward.w_1"),
                            d,
                            c.linear_units,
                            true,
                        )?,
                        w_2: Linear::new(
                            b,
                            &format!("{n}.feed_forward.w_2"),
                            c.linear_units,
                            d,
                            true,
                        )?,
                    },
                    norm_ff: LayerNorm::new(b, &format!("{n}.norm_ff"), d)?,
                    norm_mha: LayerNorm::new(b, &format!("{n}.norm_mha"), d)?,
                })
            })
            .collect::<Result<Vec<_>, TensorError>>()?;
        Ok(BlockConformerEncoder {
            embed: LinearEmbed {
                linear: Linear::new(b, &format!("{name}.embed.out.0"), input, d, true)?,
                norm: LayerNorm::new(b, &format!("{name}.embed.out.1"), d)?,
            },
            encoders,
            after_norm: LayerNorm::new(b, &format!("{name}.after_norm"), d)?,
            block_size: c.block_size,
            d_model: d,
        })
    }

    /// x [b, t, input] with `lengths` valid rows each -> [b, t, d].
    pub fn forward(&self, x: Tensor<B, 3>, lengths: &[usize]) -> Tensor<B, 3> {
        let [batch, time, _] = x.dims();
        let device = x.device();
        let x =
            self.embed.norm.forward(self.embed.linear.forward(x)) * (self.d_model as f64).sqrt();
        let pos = relative_positions::<B>(time, self.d_model, &device);
        // Key j is visible to query i when j is a valid frame in i's block or an earlier one.
        let blocked: Vec<bool> = lengths
            .iter()
            .flat_map(|&n| {
                (0..time).flat_map(move |i| {
                    let end = (i / self.block_size + 1) * self.block_size;
                    (0..time).map(move |j| j >= n || j >= end)
                })
            })
            .collect();
        let blocked =
            Tensor::<B, 3, Bool>::from_data(TensorData::new(blocked, [batch, time, time]), &device);
        let mut x = x;
        for layer in &self.encoders {
            x = layer.forward(x, pos.clone(), blocked.clone());
        }
        self.after_norm.forward(x)
    }
}

/// espnet's relative positional encodings: 2t-1 rows for relative positions t-1, ..., -(t-1);
/// sin in even columns, cos in odd ones, frequencies 10000^(-2i/d).
fn relative_positions<B: Backend>(time: usize, d: usize, device: &B::Device) -> Tensor<B, 3> {
    let mut values = Vec::with_capacity((2 * time - 1) * d);
    for row in 0..2 * time - 1 {
        let rel = (time as f64 - 1.0) - row as f64;
        for col in 0..d {
            let i = (col / 2) * 2;
            let freq = (-(10000f64.ln()) * i as f64 / d as f64).exp();
            values.push(if col % 2 == 0 {
                (rel * freq).sin()
            } else {
                (rel * freq).cos()
            } as f32);
        }
    }
    Tensor::from_data(TensorData::new(values, [1, 2 * time - 1, d]), device)
}
