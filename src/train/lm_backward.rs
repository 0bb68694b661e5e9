//! Stage one's gradients for one micro-batch, in one of two ways with the same result:
//! - `Plain`: one forward under autodiff and one backward (every activation kept);
//! - `Recompute` (`lm.activation_checkpointing: true`): the GLM-4 blocks recomputed one at a
//!   time in the backward ([`super::recompute`]), and the causal LM loss taken over chunks of
//!   tokens, each chunk's logits built, differentiated and freed before the next, so the
//!   [tokens, 168,960] fp32 logits of the whole sequence never exist.
//!
//! Dropout (LoRA's) draws from a seed per (micro-batch, layer), set before each block's forward
//! and again before its recomputation, so both see the same masks, and both ways agree.

use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, ElementConversion, Int, Tensor};

use super::recompute::{backward_through, forward_keeping_inputs, vjp};
use super::step::{backward, MicroBatchGrads};
use crate::models::glm4::model::{nll_sum, Block, ChatGlmModel, Positions, IGNORE_INDEX};

/// How the gradients are computed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LmBackward {
    Plain,
    /// Per-block recomputation, and the loss over chunks of at most `loss_chunk_tokens`
    /// token positions (over the whole batch).
    Recompute {
        loss_chunk_tokens: usize,
    },
}

/// Token positions per loss chunk: a chunk's fp32 logits are 0.35 GB at GLM-4-Voice's 168,960
/// vocabulary, and a few such tensors (log-softmax, gradient) are alive at once.
pub const LOSS_CHUNK_TOKENS: usize = 512;

impl LmBackward {
    /// What `lm.activation_checkpointing` asks for.
    pub fn for_recipe(activation_checkpointing: bool) -> Self {
        if activation_checkpointing {
            LmBackward::Recompute {
                loss_chunk_tokens: LOSS_CHUNK_TOKENS,
            }
        } else {
            LmBackward::Plain
        }
    }
}

/// The dropout seed of `layer` in the micro-batch whose seed is `seed`.
fn layer_seed(seed: u64, layer: usize) -> u64 {
    seed ^ (layer as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03)
}

/// Whether any LoRA adapter of the model drops out.
fn has_dropout<B: AutodiffBackend>(model: &ChatGlmModel<B>) -> bool {
    model.transformer.encoder.layers.iter().any(|block| {
        let attention = &block.self_attention;
        let mlp = &block.mlp;
        [
            &attention.query_key_value,
            &attention.dense,
            &mlp.dense_h_to_4h,
            &mlp.dense_4h_to_h,
        ]
        .iter()
        .any(|linear| linear.lora.as_ref().is_some_and(|l| l.dropout.prob > 0.0))
    })
}

/// Block `layer`'s forward; with dropout (`seed` set), its masks drawn from the layer's seed.
fn block_forward<B: AutodiffBackend>(
    block: &Block<B>,
    x: Tensor<B, 3>,
    positions: &Positions<B>,
    seed: Option<u64>,
    layer: usize,
) -> Tensor<B, 3> {
    if let Some(seed) = seed {
        B::seed(&x.device(), layer_seed(seed, layer));
    }
    block.forward(x, positions, None)
}

/// The causal LM loss of `ids` against `labels` (mean over the counted targets) times `weight`,
/// and the gradients of that weighted loss.
pub fn lm_grads<B: AutodiffBackend>(
    model: &ChatGlmModel<B>,
    ids: Tensor<B, 2, Int>,
    labels: Tensor<B, 2, Int>,
    weight: f64,
    dropout_seed: u64,
    how: LmBackward,
) -> MicroBatchGrads {
    let dropout_seed = has_dropout(model).then_some(dropout_seed);
    match how {
        LmBackward::Plain => backward(model, plain_loss(model, ids, labels, dropout_seed) * weight),
        LmBackward::Recompute { loss_chunk_tokens } => {
            recomputed_grads(model, ids, labels, weight, dropout_seed, loss_chunk_tokens)
        }
    }
}

/// The mean causal LM loss with the tape kept whole (dropout seeded as in the recomputation).
pub fn plain_loss<B: AutodiffBackend>(
    model: &ChatGlmModel<B>,
    ids: Tensor<B, 2, Int>,
    labels: Tensor<B, 2, Int>,
    dropout_seed: Option<u64>,
) -> Tensor<B, 1> {
    let time = ids.dims()[1];
    let device = ids.device();
    let mut x = model.embed(ids);
    if let Some(positions) = model.positions(time, &device) {
        for (layer, block) in model.transformer.encoder.layers.iter().enumerate() {
            x = block_forward(block, x, &positions, dropout_seed, layer);
        }
    }
    crate::models::glm4::model::causal_lm_loss(model.head(x), labels)
}

fn recomputed_grads<B: AutodiffBackend>(
    model: &ChatGlmModel<B>,
    ids: Tensor<B, 2, Int>,
    labels: Tensor<B, 2, Int>,
    weight: f64,
    dropout_seed: Option<u64>,
    loss_chunk_tokens: usize,
) -> MicroBatchGrads {
    let [batch, time] = ids.dims();
    let device = ids.device();
    let counted: i64 = labels
        .clone()
        .narrow(1, 1, time - 1)
        .not_equal_elem(IGNORE_INDEX)
        .int()
        .sum()
        .into_scalar()
        .elem();
    let mut accumulator = GradientsAccumulator::<ChatGlmModel<B>>::new();
    let mut keep = |grads: GradientsParams| accumulator.accumulate(model, grads);

    let embedded = model.embed(ids.clone()).inner();
    let layers = &model.transformer.encoder.layers;
    let positions = model.positions(time, &device);
    let forward = |layer: usize, block: &Block<B>, x: Tensor<B, 3>| {
        let positions = positions
            .as_ref()
            .expect("a model with layers has positions");
        block_forward(block, x, positions, dropout_seed, layer)
    };
    let (inputs, last) = forward_keeping_inputs(layers, embedded, forward);

    // The head and loss over chunks of positions: position t predicts labels[:, t + 1].
    let scale = weight / counted as f64;
    let rows = (loss_chunk_tokens / batch).max(1);
    // The loss is fp32 whatever the compute dtype (`nll_sum`), and so is its seed.
    let seed = Tensor::<B::InnerBackend, 1>::ones([1], &device).cast(DType::F32);
    let mut chunk_losses = Vec::new();
    let mut last_grad = Vec::new();
    for start in (0..time - 1).step_by(rows) {
        let len = rows.min(time - 1 - start);
        let targets = labels.clone().narrow(1, start + 1, len);
        let (grad, params) = vjp(
            model,
            last.clone().narrow(1, start, len),
            seed.clone(),
            |m: &ChatGlmModel<B>, h: Tensor<B, 3>| {
                let chunk_loss = nll_sum(m.head(h), targets) * scale;
                chunk_losses.push(chunk_loss.clone().inner());
                chunk_loss
            },
        );
        keep(params);
        last_grad.push(grad);
    }
    // The last position predicts nothing.
    last_grad.push(last.narrow(1, time - 1, 1).zeros_like());
    let upstream = Tensor::cat(last_grad, 1);

    let embedded_grad = backward_through(layers, inputs, upstream, forward, &mut keep);
    let table = &model.transformer.embedding.word_embeddings.weight;
    if table.is_require_grad() {
        let embedded = model.embed(ids);
        let mut grads = (embedded * Tensor::from_inner(embedded_grad))
            .sum()
            .backward();
        keep(GradientsParams::from_module(&mut grads, model));
    }
    let loss: f64 = if chunk_losses.is_empty() {
        0.0
    } else {
        Tensor::cat(chunk_losses, 0).sum().into_scalar().elem()
    };
    MicroBatchGrads {
        loss,
        grads: if loss.is_finite() {
            accumulator.grads()
        } else {
            GradientsParams::new()
        },
    }
}
