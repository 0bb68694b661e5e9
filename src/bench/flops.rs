//! Model FLOPs of a stage-one training step, the convention MFU figures use (Megatron-LM,
//! PaLM): 2 FLOPs per multiply-add, recomputation from activation checkpointing not counted,
//! attention scores counted over the full square (causal masking not subtracted).
//!
//! Per token, with N the parameters of the matrix multiplies (every linear layer and the
//! output layer; the embedding is a lookup):
//! - forward 2N, backward through the activations 2N, weight gradients 2N for what trains:
//!   full fine-tuning 6N; LoRA 4N on the frozen base plus 6 N_lora for the adapters.
//! - attention (Q K^T and A V): forward 4 L s (h d) per token for sequence length s, backward
//!   twice that.

use crate::models::glm4::config::Glm4Config;
use crate::recipe::{FinetuneMode, LmConfig};

/// Matrix-multiply parameters of the base model (with `layers` layers).
pub fn matmul_params(c: &Glm4Config, layers: usize) -> f64 {
    let linear = |name| c.linear_shape(name).map_or(0, |(i, o)| i * o) as f64;
    let per_layer = linear("query_key_value")
        + linear("dense")
        + linear("dense_h_to_4h")
        + linear("dense_4h_to_h");
    layers as f64 * per_layer + (c.hidden_size * c.padded_vocab_size) as f64
}

/// Model FLOPs of one training step over `batch` sequences of `seq_len` tokens.
pub fn lm_step_flops(
    c: &Glm4Config,
    lm: &LmConfig,
    layers: usize,
    batch: usize,
    seq_len: usize,
) -> f64 {
    let tokens = (batch * seq_len) as f64;
    let n = matmul_params(c, layers);
    let dense = match lm.finetune {
        FinetuneMode::Full => 6.0 * n,
        FinetuneMode::Lora => {
            let mut per_layer = c.clone();
            per_layer.num_layers = layers;
            let n_lora = per_layer.lora_parameter_count(lm.lora.rank, &lm.lora.targets) as f64;
            4.0 * n + 6.0 * n_lora
        }
    };
    let attention_forward =
        4.0 * layers as f64 * seq_len as f64 * (c.num_attention_heads * c.kv_channels) as f64;
    tokens * (dense + 3.0 * attention_forward)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glm_4_voice_9b_has_8_8_billion_matmul_parameters() {
        let c = crate::models::released::glm4_voice_9b();
        let n = matmul_params(&c, c.num_layers);
        // ../shared/reference/trainers.md: N = 8.8 B matmul parameters.
        assert!((8.7e9..8.9e9).contains(&n), "{n}");
    }
}
