//! The ChatGLM decoder in burn. Every struct field is one segment of a checkpoint tensor name,
//! so `transformer.encoder.layers.3.self_attention.query_key_value.weight` is
//! `model.transformer.encoder.layers[3].self_attention.query_key_value.weight`. Weights keep
//! PyTorch's layout (Linear weight [out, in]). Facts: ../shared/reference/glm-4-voice.md §1.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::activation::{log_softmax, silu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, DType, Int, Tensor, TensorData};

use crate::models::padded_matmul::padded_matmul;
use crate::models::params::named_param;

/// A LoRA adapter on one linear layer: `y += (alpha / r) * dropout(x) A^T B^T`. A is [r, in]
/// and B is [out, r], PEFT's `lora_A.weight` / `lora_B.weight`. A and B are fp32 whatever the
/// compute dtype (PEFT's `autocast_adapter_dtype`): the adapter's input is cast to fp32 and its
/// output back, so updates far below bf16/f16 resolution are kept.
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    pub lora_a: Param<Tensor<B, 2>>,
    pub lora_b: Param<Tensor<B, 2>>,
    pub scale: f64,
    pub dropout: Dropout,
}

impl<B: Backend> LoraAdapter<B> {
    /// `module` is the wrapped layer's name; the matrices are `{module}.lora.lora_a` / `_b`.
    pub fn new(
        module: &str,
        lora_a: Tensor<B, 2>,
        lora_b: Tensor<B, 2>,
        alpha: f64,
        dropout: f64,
    ) -> Self {
        let rank = lora_a.dims()[0] as f64;
        LoraAdapter {
            lora_a: named_param(&format!("{module}.lora.lora_a"), lora_a),
            lora_b: named_param(&format!("{module}.lora.lora_b"), lora_b),
            scale: alpha / rank,
            dropout: DropoutConfig::new(dropout).init(),
        }
    }

    fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let a = self.lora_a.val();
        let x = self.dropout.forward(in_dtype(x, a.dtype()));
        let down = padded_matmul(x, a.transpose().unsqueeze());
        let up = padded_matmul(down, self.lora_b.val().transpose().unsqueeze()) * self.scale;
        in_dtype(up, dtype)
    }
}

/// `tensor` in `dtype`: a no-op (no copy, no autodiff node) when it already is. Parameters kept
/// in fp32 for training (LoRA, full fine-tuning's master weights) meet activations in the
/// compute dtype through it.
fn in_dtype<B: Backend, const D: usize>(tensor: Tensor<B, D>, dtype: DType) -> Tensor<B, D> {
    if tensor.dtype() == dtype {
        tensor
    } else {
        tensor.cast(dtype)
    }
}

/// The float dtype the device computes in (its default: bf16/f16 in half precision).
pub fn compute_dtype<B: Backend>(device: &B::Device) -> DType {
    burn::tensor::get_device_settings::<B>(device)
        .float_dtype
        .into()
}

/// A linear layer with PyTorch's weight layout and an optional LoRA adapter, computed as
/// `x W^T + b + s (x A^T) B^T` (the merged weight is never formed during training).
#[derive(Module, Debug)]
pub struct Linear<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
    pub lora: Option<LoraAdapter<B>>,
}

impl<B: Backend> Linear<B> {
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let weight = in_dtype(self.weight.val(), dtype);
        let mut y = padded_matmul(x.clone(), weight.transpose().unsqueeze());
        if let Some(bias) = &self.bias {
            y = y + in_dtype(bias.val(), dtype).unsqueeze();
        }
        if let Some(lora) = &self.lora {
            y = y + lora.forward(x);
        }
        y
    }

    /// (in, out) features.
    pub fn shape(&self) -> (usize, usize) {
        let [out, input] = self.weight.dims();
        (input, out)
    }
}

/// RMSNorm, computed in fp32: `x * rsqrt(mean(x^2) + eps) * w`.
#[derive(Module, Debug)]
pub struct RmsNorm<B: Backend> {
    pub weight: Param<Tensor<B, 1>>,
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let dtype = x.dtype();
        let x32 = x.cast(DType::F32);
        let scale = (x32.clone().powi_scalar(2).mean_dim(2) + self.eps)
            .sqrt()
            .recip();
        (x32 * scale).cast(dtype) * in_dtype(self.weight.val(), dtype).unsqueeze()
    }
}

#[derive(Module, Debug)]
pub struct SelfAttention<B: Backend> {
    pub query_key_value: Linear<B>,
    pub dense: Linear<B>,
    pub heads: usize,
    pub groups: usize,
    pub head_dim: usize,
    pub rope_base: f64,
}

/// Keys and values of earlier positions, per layer: [batch, groups, positions, head_dim].
#[derive(Clone, Debug)]
pub struct LayerCache<B: Backend> {
    pub key: Tensor<B, 4>,
    pub value: Tensor<B, 4>,
}

/// What every layer of one forward pass shares, computed once per pass: the RoPE tables of
/// positions `past..past + time` and the causal mask (built on the device).
pub struct Positions<B: Backend> {
    /// [1, 1, time, rot / 2, 1]
    cos: Tensor<B, 5>,
    sin: Tensor<B, 5>,
    /// [1, 1, time, past + time]: true where query i (at position past + i) must not see key j.
    mask: Tensor<B, 4, Bool>,
}

impl<B: Backend> SelfAttention<B> {
    /// GLM RoPE angles for `time` positions from `past`: theta_i = base^(-2i / rot) over the
    /// rotated half (rot = head_dim / 2) of each head.
    pub fn positions(&self, time: usize, past: usize, device: &B::Device) -> Positions<B> {
        let rot = self.head_dim / 2;
        let mut cos = Vec::with_capacity(time * rot / 2);
        let mut sin = Vec::with_capacity(time * rot / 2);
        for t in 0..time {
            for i in 0..rot / 2 {
                let theta = self.rope_base.powf(-((2 * i) as f64) / rot as f64);
                let angle = (past + t) as f64 * theta;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        let shape = [1, 1, time, rot / 2, 1];
        let total = past + time;
        let rows = Tensor::<B, 1, Int>::arange(past as i64..total as i64, device)
            .reshape([time, 1])
            .expand([time, total]);
        let cols = Tensor::<B, 1, Int>::arange(0..total as i64, device)
            .reshape([1, total])
            .expand([time, total]);
        Positions {
            cos: Tensor::from_data(TensorData::new(cos, shape), device),
            sin: Tensor::from_data(TensorData::new(sin, shape), device),
            mask: cols.greater(rows).reshape([1, 1, time, total]),
        }
    }

    /// GLM RoPE: the first half of each head rotates, in interleaved pairs (x[2i], x[2i+1]);
    /// the second half passes through.
    fn rope(&self, x: Tensor<B, 4>, p: &Positions<B>) -> Tensor<B, 4> {
        let [batch, heads, time, dim] = x.dims();
        let rot = dim / 2;
        let cos = p.cos.clone().cast(x.dtype());
        let sin = p.sin.clone().cast(x.dtype());
        let rotated = x
            .clone()
            .narrow(3, 0, rot)
            .reshape([batch, heads, time, rot / 2, 2]);
        let even = rotated.clone().narrow(4, 0, 1);
        let odd = rotated.narrow(4, 1, 1);
        let out = Tensor::cat(
            vec![
                even.clone() * cos.clone() - odd.clone() * sin.clone(),
                odd * cos + even * sin,
            ],
            4,
        )
        .reshape([batch, heads, time, rot]);
        Tensor::cat(vec![out, x.narrow(3, rot, dim - rot)], 3)
    }

    fn forward(
        &self,
        x: Tensor<B, 3>,
        positions: &Positions<B>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let [batch, time, _] = x.dims();
        let (h, g, d) = (self.heads, self.groups, self.head_dim);
        let qkv = self.query_key_value.forward(x);
        let split = |start: usize, n: usize| {
            qkv.clone()
                .narrow(2, start * d, n * d)
                .reshape([batch, time, n, d])
                .swap_dims(1, 2)
        };
        let q = self.rope(split(0, h), positions);
        let mut k = self.rope(split(h, g), positions);
        let mut v = split(h + g, g);
        if let Some(cache) = cache {
            if cache.key.dims()[2] > 0 {
                k = Tensor::cat(vec![cache.key.clone(), k], 2);
                v = Tensor::cat(vec![cache.value.clone(), v], 2);
            }
            cache.key = k.clone();
            cache.value = v.clone();
        }
        let total = k.dims()[2];
        // Each KV group serves h / g consecutive query heads.
        let expand = |t: Tensor<B, 4>| {
            t.unsqueeze_dim::<5>(2)
                .repeat_dim(2, h / g)
                .reshape([batch, h, total, d])
        };
        let (k, v) = (expand(k), expand(v));
        let dtype = q.dtype();
        let scores = padded_matmul(q, k.swap_dims(2, 3)).cast(DType::F32) / (d as f64).sqrt();
        let scores = scores.mask_fill(positions.mask.clone(), f32::NEG_INFINITY);
        let context = padded_matmul(softmax(scores, 3).cast(dtype), v);
        self.dense
            .forward(context.swap_dims(1, 2).reshape([batch, time, h * d]))
    }
}

#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// [2 * ffn, hidden]: gate and up projections fused; SwiGLU = silu(first half) * second half.
    pub dense_h_to_4h: Linear<B>,
    pub dense_4h_to_h: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let up = self.dense_h_to_4h.forward(x);
        let half = up.dims()[2] / 2;
        let gate = silu(up.clone().narrow(2, 0, half));
        self.dense_4h_to_h.forward(gate * up.narrow(2, half, half))
    }
}

#[derive(Module, Debug)]
pub struct Block<B: Backend> {
    pub input_layernorm: RmsNorm<B>,
    pub self_attention: SelfAttention<B>,
    pub post_attention_layernorm: RmsNorm<B>,
    pub mlp: Mlp<B>,
}

impl<B: Backend> Block<B> {
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        positions: &Positions<B>,
        cache: Option<&mut LayerCache<B>>,
    ) -> Tensor<B, 3> {
        let x = x.clone()
            + self
                .self_attention
                .forward(self.input_layernorm.forward(x), positions, cache);
        x.clone() + self.mlp.forward(self.post_attention_layernorm.forward(x))
    }
}

#[derive(Module, Debug)]
pub struct WordEmbeddings<B: Backend> {
    /// [vocab, hidden]
    pub weight: Param<Tensor<B, 2>>,
}

#[derive(Module, Debug)]
pub struct Embedding<B: Backend> {
    pub word_embeddings: WordEmbeddings<B>,
}

#[derive(Module, Debug)]
pub struct Encoder<B: Backend> {
    pub layers: Vec<Block<B>>,
    pub final_layernorm: RmsNorm<B>,
}

#[derive(Module, Debug)]
pub struct Transformer<B: Backend> {
    pub embedding: Embedding<B>,
    pub encoder: Encoder<B>,
    /// [vocab, hidden], untied from the embedding.
    pub output_layer: Linear<B>,
}

/// GLM-4-Voice-9B: `transformer.*`.
#[derive(Module, Debug)]
pub struct ChatGlmModel<B: Backend> {
    pub transformer: Transformer<B>,
}

/// Per-layer KV cache for generation.
pub type KvCache<B> = Vec<LayerCache<B>>;

impl<B: Backend> ChatGlmModel<B> {
    /// ids [batch, time] -> logits [batch, time, vocab] (fp32).
    pub fn forward(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.forward_inner(ids, None)
    }

    /// Like `forward`, extending `cache` (positions continue after what it holds).
    pub fn forward_cached(&self, ids: Tensor<B, 2, Int>, cache: &mut KvCache<B>) -> Tensor<B, 3> {
        self.forward_inner(ids, Some(cache))
    }

    fn forward_inner(
        &self,
        ids: Tensor<B, 2, Int>,
        mut cache: Option<&mut KvCache<B>>,
    ) -> Tensor<B, 3> {
        let [batch, time] = ids.dims();
        let mut x = self.embed(ids);
        let past = cache
            .as_ref()
            .and_then(|c| c.first())
            .map_or(0, |c| c.key.dims()[2]);
        let layers = &self.transformer.encoder.layers;
        let positions = match layers.first() {
            Some(layer) => layer.self_attention.positions(time, past, &x.device()),
            None => return self.head(x),
        };
        for (index, layer) in layers.iter().enumerate() {
            let layer_cache = cache.as_mut().map(|c| {
                if c.len() <= index {
                    let empty = Tensor::zeros([batch, 1, 0, 1], &x.device());
                    c.push(LayerCache {
                        key: empty.clone(),
                        value: empty,
                    });
                }
                &mut c[index]
            });
            x = layer.forward(x, &positions, layer_cache);
        }
        self.head(x)
    }

    /// ids [batch, time] -> the first layer's input [batch, time, hidden], in the compute dtype
    /// (a trained table is fp32).
    pub fn embed(&self, ids: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        let [batch, time] = ids.dims();
        let dtype = compute_dtype::<B>(&ids.device());
        let table = self.transformer.embedding.word_embeddings.weight.val();
        let hidden = table.dims()[1];
        let rows = table
            .select(0, ids.reshape([batch * time]))
            .reshape([batch, time, hidden]);
        in_dtype(rows, dtype)
    }

    /// The RoPE tables and causal mask of positions `0..time` (None for a model without layers).
    pub fn positions(&self, time: usize, device: &B::Device) -> Option<Positions<B>> {
        let layer = self.transformer.encoder.layers.first()?;
        Some(layer.self_attention.positions(time, 0, device))
    }

    /// Final norm and output layer: hidden states -> fp32 logits.
    pub fn head(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = self.transformer.encoder.final_layernorm.forward(x);
        self.transformer.output_layer.forward(x).cast(DType::F32)
    }
}

/// Mean cross entropy of `logits[:, :-1]` against `labels[:, 1:]`, ignoring -100 (in fp32).
pub fn causal_lm_loss<B: Backend>(logits: Tensor<B, 3>, labels: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    let time = logits.dims()[1];
    let targets = labels.narrow(1, 1, time - 1);
    // 0/1 in the device's float type are exact; the sum is taken in fp32 (bf16 counts only to 256).
    let count = targets
        .clone()
        .not_equal_elem(IGNORE_INDEX)
        .float()
        .cast(DType::F32)
        .sum();
    nll_sum(logits.narrow(1, 0, time - 1), targets) / count
}

/// Label of positions the loss ignores (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

/// Summed negative log-likelihood (fp32) of `targets` [batch, time] under `logits`
/// [batch, time, vocab] (row t scores target t), skipping [`IGNORE_INDEX`].
pub fn nll_sum<B: Backend>(logits: Tensor<B, 3>, targets: Tensor<B, 2, Int>) -> Tensor<B, 1> {
    let [batch, time, vocab] = logits.dims();
    let logits = logits.reshape([batch * time, vocab]);
    let targets = targets.reshape([batch * time]);
    let keep = targets.clone().not_equal_elem(IGNORE_INDEX);
    let safe = targets.mask_fill(keep.clone().bool_not(), 0);
    let log_probs = log_softmax(logits.cast(DType::F32), 1);
    let picked = log_probs
        .gather(1, safe.unsqueeze_dim(1))
        .reshape([batch * time]);
    // `float()` takes the device's default float type (f16/bf16 in half precision).
    let keep = keep.float().cast(DType::F32);
    -(picked * keep).sum()
}
