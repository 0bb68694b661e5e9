//! `flow.decoder.estimator`: the ConditionalDecoder U-Net (Matcha-TTS blocks) that predicts the
//! flow-matching velocity from x | mu | spks | cond. Names mirror the reference's nested lists:
//! `down_blocks.N.0` ResnetBlock1D, `down_blocks.N.1.M` transformer blocks, `down_blocks.N.2`
//! downsample (`.conv` when it is a Downsample1D); `mid_blocks.N.{0,1}`; `up_blocks.N.{0,1,2}`
//! (`.2.conv` for the ConvTranspose Upsample1D); `final_block`, `final_proj`, `time_mlp`.

use burn::module::Module;
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};

use crate::checkpoint::tensors::TensorError;
use crate::models::decoder::config::EstimatorConfig;
use crate::models::layers::{
    exact_gelu, mish, softmax_in_f32, Builder, Conv1d, ConvSpec, ConvTranspose1d, Fill, GroupNorm,
    LayerNorm, Linear,
};
use crate::models::padded_matmul::padded_matmul;

/// The estimator's own initialization: kaiming-normal (relu gain) weights and zero biases for
/// every Conv1d and Linear.
fn kaiming(fan_in: usize) -> (Fill, Fill) {
    (Fill::Normal((2.0 / fan_in as f64).sqrt()), Fill::Const(0.0))
}

fn conv<B: Backend>(b: &Builder<B>, name: &str, spec: ConvSpec) -> Result<Conv1d<B>, TensorError> {
    let (w, bias) = kaiming(spec.input * spec.kernel);
    Conv1d::with_fill(b, name, spec, w, bias)
}

fn linear<B: Backend>(
    b: &Builder<B>,
    name: &str,
    input: usize,
    output: usize,
    bias: bool,
) -> Result<Linear<B>, TensorError> {
    let (w, bias_fill) = kaiming(input);
    Linear::with_fill(b, name, input, output, bias, w, bias_fill)
}

/// `block.0` Conv1d k3 + `block.1` GroupNorm(8) + Mish, masked before and after.
#[derive(Module, Debug)]
pub struct Block1D<B: Backend> {
    pub conv: Conv1d<B>,
    pub norm: GroupNorm<B>,
}

impl<B: Backend> Block1D<B> {
    fn new(b: &Builder<B>, name: &str, input: usize, output: usize) -> Result<Self, TensorError> {
        Ok(Block1D {
            conv: conv(
                b,
                &format!("{name}.block.0"),
                ConvSpec::same(input, output, 3, 1),
            )?,
            norm: GroupNorm::new(b, &format!("{name}.block.1"), 8, output)?,
        })
    }

    fn forward(&self, x: Tensor<B, 3>, mask: Tensor<B, 3>) -> Tensor<B, 3> {
        mish(self.norm.forward(self.conv.forward(x * mask.clone()))) * mask
    }
}

#[derive(Module, Debug)]
pub struct ResnetBlock1D<B: Backend> {
    /// `mlp.1` (after a Mish).
    pub mlp: Linear<B>,
    pub block1: Block1D<B>,
    pub block2: Block1D<B>,
    pub res_conv: Conv1d<B>,
}

impl<B: Backend> ResnetBlock1D<B> {
    fn new(
        b: &Builder<B>,
        name: &str,
        input: usize,
        output: usize,
        time_dim: usize,
    ) -> Result<Self, TensorError> {
        Ok(ResnetBlock1D {
            mlp: linear(b, &format!("{name}.mlp.1"), time_dim, output, true)?,
            block1: Block1D::new(b, &format!("{name}.block1"), input, output)?,
            block2: Block1D::new(b, &format!("{name}.block2"), output, output)?,
            res_conv: conv(
                b,
                &format!("{name}.res_conv"),
                ConvSpec::new(input, output, 1),
            )?,
        })
    }

    fn forward(&self, x: Tensor<B, 3>, mask: Tensor<B, 3>, temb: Tensor<B, 2>) -> Tensor<B, 3> {
        let h = self.block1.forward(x.clone(), mask.clone())
            + self.mlp.forward_rows(mish(temb)).unsqueeze_dim(2);
        self.block2.forward(h, mask.clone()) + self.res_conv.forward(x * mask)
    }
}

#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    pub to_q: Linear<B>,
    pub to_k: Linear<B>,
    pub to_v: Linear<B>,
    /// `to_out.0`
    pub to_out: Linear<B>,
    pub heads: usize,
    pub head_dim: usize,
}

impl<B: Backend> Attention<B> {
    /// `bias` [b, t, t] is added to the scores: the reference passes its 0/1 mask product as a
    /// float attention mask, which the attention adds (valid pairs +1, pairs with padding +0).
    fn forward(&self, x: Tensor<B, 3>, bias: Tensor<B, 3>) -> Tensor<B, 3> {
        let [batch, time, _] = x.dims();
        let (h, dh) = (self.heads, self.head_dim);
        let split = |y: Tensor<B, 3>| y.reshape([batch, time, h, dh]).swap_dims(1, 2);
        let q = split(self.to_q.forward(x.clone()));
        let k = split(self.to_k.forward(x.clone()));
        let v = split(self.to_v.forward(x));
        let scores =
            padded_matmul(q, k.swap_dims(2, 3)) / (dh as f64).sqrt() + bias.unsqueeze_dim(1);
        let out = padded_matmul(softmax_in_f32(scores, 3), v)
            .swap_dims(1, 2)
            .reshape([batch, time, h * dh]);
        self.to_out.forward(out)
    }
}

/// diffusers' BasicTransformerBlock as Matcha configures it: self-attention and a GELU FFN
/// (`ff.net.0.proj`, `ff.net.2`), pre-LayerNorm (`norm1`, `norm3`).
#[derive(Module, Debug)]
pub struct TransformerBlock<B: Backend> {
    pub norm1: LayerNorm<B>,
    pub attn1: Attention<B>,
    pub norm3: LayerNorm<B>,
    pub ff_proj: Linear<B>,
    pub ff_out: Linear<B>,
}

impl<B: Backend> TransformerBlock<B> {
    fn new(
        b: &Builder<B>,
        name: &str,
        dim: usize,
        c: &EstimatorConfig,
    ) -> Result<Self, TensorError> {
        let inner = c.num_heads * c.attention_head_dim;
        Ok(TransformerBlock {
            norm1: LayerNorm::new(b, &format!("{name}.norm1"), dim)?,
            attn1: Attention {
                to_q: linear(b, &format!("{name}.attn1.to_q"), dim, inner, false)?,
                to_k: linear(b, &format!("{name}.attn1.to_k"), dim, inner, false)?,
                to_v: linear(b, &format!("{name}.attn1.to_v"), dim, inner, false)?,
                to_out: linear(b, &format!("{name}.attn1.to_out.0"), inner, dim, true)?,
                heads: c.num_heads,
                head_dim: c.attention_head_dim,
            },
            norm3: LayerNorm::new(b, &format!("{name}.norm3"), dim)?,
            ff_proj: linear(b, &format!("{name}.ff.net.0.proj"), dim, 4 * dim, true)?,
            ff_out: linear(b, &format!("{name}.ff.net.2"), 4 * dim, dim, true)?,
        })
    }

    fn forward(&self, x: Tensor<B, 3>, bias: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = x.clone() + self.attn1.forward(self.norm1.forward(x), bias);
        x.clone()
            + self
                .ff_out
                .forward(exact_gelu(self.ff_proj.forward(self.norm3.forward(x))))
    }
}

fn transformer_blocks<B: Backend>(
    b: &Builder<B>,
    name: &str,
    dim: usize,
    c: &EstimatorConfig,
) -> Result<Vec<TransformerBlock<B>>, TensorError> {
    (0..c.n_blocks)
        .map(|i| TransformerBlock::new(b, &format!("{name}.{i}"), dim, c))
        .collect()
}

/// Runs transformer blocks on [b, c, t] features (they work on [b, t, c]).
fn run_transformers<B: Backend>(
    blocks: &[TransformerBlock<B>],
    x: Tensor<B, 3>,
    mask: Tensor<B, 3>,
) -> Tensor<B, 3> {
    let bias = padded_matmul(mask.clone().swap_dims(1, 2), mask);
    let mut x = x.swap_dims(1, 2);
    for block in blocks {
        x = block.forward(x, bias.clone());
    }
    x.swap_dims(1, 2)
}

#[derive(Module, Debug)]
pub struct DownBlock<B: Backend> {
    pub resnet: ResnetBlock1D<B>,
    pub transformer_blocks: Vec<TransformerBlock<B>>,
    /// Downsample1D (stride 2) except in the last block, where it is a plain Conv1d k3.
    pub downsample: Conv1d<B>,
}

#[derive(Module, Debug)]
pub struct MidBlock<B: Backend> {
    pub resnet: ResnetBlock1D<B>,
    pub transformer_blocks: Vec<TransformerBlock<B>>,
}

#[derive(Module, Debug)]
pub struct UpBlock<B: Backend> {
    pub resnet: ResnetBlock1D<B>,
    pub transformer_blocks: Vec<TransformerBlock<B>>,
    /// Upsample1D (ConvTranspose1d k4 s2) except in the last block.
    pub upsample: Option<ConvTranspose1d<B>>,
    /// The last block's Conv1d k3.
    pub conv: Option<Conv1d<B>>,
}

#[derive(Module, Debug)]
pub struct ConditionalDecoder<B: Backend> {
    pub time_linear_1: Linear<B>,
    pub time_linear_2: Linear<B>,
    pub down_blocks: Vec<DownBlock<B>>,
    pub mid_blocks: Vec<MidBlock<B>>,
    pub up_blocks: Vec<UpBlock<B>>,
    pub final_block: Block1D<B>,
    pub final_proj: Conv1d<B>,
    pub in_channels: usize,
}

impl<B: Backend> ConditionalDecoder<B> {
    pub fn new(b: &Builder<B>, name: &str, c: &EstimatorConfig) -> Result<Self, TensorError> {
        let time_dim = c.channels[0] * 4;
        let mut down_blocks = Vec::new();
        let mut output = c.in_channels;
        for (i, &channels) in c.channels.iter().enumerate() {
            let (input, last) = (output, i + 1 == c.channels.len());
            output = channels;
            let n = format!("{name}.down_blocks.{i}");
            down_blocks.push(DownBlock {
                resnet: ResnetBlock1D::new(b, &format!("{n}.0"), input, output, time_dim)?,
                transformer_blocks: transformer_blocks(b, &format!("{n}.1"), output, c)?,
                downsample: if last {
                    conv(b, &format!("{n}.2"), ConvSpec::same(output, output, 3, 1))?
                } else {
                    conv(
                        b,
                        &format!("{n}.2.conv"),
                        ConvSpec::new(output, output, 3).stride(2, 1),
                    )?
                },
            });
        }
        let last = *c.channels.last().expect("estimator channels are not empty");
        let mid_blocks = (0..c.num_mid_blocks)
            .map(|i| {
                let n = format!("{name}.mid_blocks.{i}");
                Ok(MidBlock {
                    resnet: ResnetBlock1D::new(b, &format!("{n}.0"), last, last, time_dim)?,
                    transformer_blocks: transformer_blocks(b, &format!("{n}.1"), last, c)?,
                })
            })
            .collect::<Result<Vec<_>, TensorError>>()?;
        let mut ups: Vec<usize> = c.channels.iter().rev().copied().collect();
        ups.push(c.channels[0]);
        let mut up_blocks = Vec::new();
        for i in 0..ups.len() - 1 {
            let (output, last) = (ups[i + 1], i + 2 == ups.len());
            let n = format!("{name}.up_blocks.{i}");
            up_blocks.push(UpBlock {
                resnet: ResnetBlock1D::new(b, &format!("{n}.0"), ups[i] * 2, output, time_dim)?,
                transformer_blocks: transformer_blocks(b, &format!("{n}.1"), output, c)?,
                upsample: if last {
                    None
                } else {
                    Some(ConvTranspose1d::new(
                        b,
                        &format!("{n}.2.conv"),
                        ConvSpec::new(output, output, 4).stride(2, 1),
                    )?)
                },
                conv: if last {
                    Some(conv(
                        b,
                        &format!("{n}.2"),
                        ConvSpec::same(output, output, 3, 1),
                    )?)
                } else {
                    None
                },
            });
        }
        let channels = *ups.last().expect("at least one up block");
        Ok(ConditionalDecoder {
            time_linear_1: linear(
                b,
                &format!("{name}.time_mlp.linear_1"),
                c.in_channels,
                time_dim,
                true,
            )?,
            time_linear_2: linear(
                b,
                &format!("{name}.time_mlp.linear_2"),
                time_dim,
                time_dim,
                true,
            )?,
            down_blocks,
            mid_blocks,
            up_blocks,
            final_block: Block1D::new(b, &format!("{name}.final_block"), channels, channels)?,
            final_proj: conv(
                b,
                &format!("{name}.final_proj"),
                ConvSpec::new(channels, c.out_channels, 1),
            )?,
            in_channels: c.in_channels,
        })
    }

    /// Sinusoidal embedding of t [b] (scale 1000, `in_channels` wide) through the time MLP.
    /// The angles reach 1000 radians, where f16's spacing is 0.5: they and their sin/cos are
    /// computed in fp32 whatever the compute dtype, then cast to it.
    fn time_embedding(&self, t: Tensor<B, 1>) -> Tensor<B, 2> {
        let (dtype, device) = (t.dtype(), t.device());
        let half = self.in_channels / 2;
        let step = 10000f64.ln() / (half as f64 - 1.0);
        let freqs: Vec<f32> = (0..half)
            .map(|i| (-(i as f64) * step).exp() as f32)
            .collect();
        let freqs =
            Tensor::<B, 1>::from_data(TensorData::new(freqs, [half]), (&device, DType::F32));
        let angles = t.cast(DType::F32).unsqueeze_dim::<2>(1) * freqs.unsqueeze_dim(0) * 1000.0;
        let emb = Tensor::cat(vec![angles.clone().sin(), angles.cos()], 1).cast(dtype);
        self.time_linear_2
            .forward_rows(silu(self.time_linear_1.forward_rows(emb)))
    }

    /// x, mu, cond [b, 80, t], mask [b, 1, t], t [b], spks [b, 80] -> velocity [b, 80, t].
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        mask: Tensor<B, 3>,
        mu: Tensor<B, 3>,
        t: Tensor<B, 1>,
        spks: Tensor<B, 2>,
        cond: Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        let temb = self.time_embedding(t);
        let [batch, channels, time] = x.dims();
        let spks = spks.unsqueeze_dim::<3>(2).expand([batch, channels, time]);
        let mut x = Tensor::cat(vec![x, mu, spks, cond], 1);
        let mut masks = vec![mask.clone()];
        let mut hiddens = Vec::new();
        for block in &self.down_blocks {
            let m = masks.last().expect("one mask per level").clone();
            x = run_transformers(
                &block.transformer_blocks,
                block.resnet.forward(x, m.clone(), temb.clone()),
                m.clone(),
            );
            hiddens.push(x.clone());
            x = block.downsample.forward(x * m.clone());
            let [b, _, len] = m.dims();
            masks.push(m.slice([
                burn::tensor::Slice::from(0..b),
                burn::tensor::Slice::from(0..1),
                burn::tensor::Slice::from_range_stepped(0..len, 2),
            ]));
        }
        masks.pop();
        let m = masks.last().expect("one mask per level").clone();
        for block in &self.mid_blocks {
            x = run_transformers(
                &block.transformer_blocks,
                block.resnet.forward(x, m.clone(), temb.clone()),
                m.clone(),
            );
        }
        let mut m = m;
        for block in &self.up_blocks {
            m = masks.pop().expect("one mask per level");
            let skip = hiddens.pop().expect("one skip per level");
            let [b, c, len] = x.dims();
            let skip_len = skip.dims()[2];
            let x_cut = x.slice([0..b, 0..c, 0..skip_len.min(len)]);
            x = Tensor::cat(vec![x_cut, skip], 1);
            x = run_transformers(
                &block.transformer_blocks,
                block.resnet.forward(x, m.clone(), temb.clone()),
                m.clone(),
            );
            x = match (&block.upsample, &block.conv) {
                (Some(up), _) => up.forward(x * m.clone()),
                (None, Some(conv)) => conv.forward(x * m.clone()),
                (None, None) => unreachable!("an up block has an upsample or a conv"),
            };
        }
        let x = self.final_block.forward(x, m.clone());
        self.final_proj.forward(x * m) * mask
    }
}
