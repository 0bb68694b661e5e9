//! How much device memory stage one needs, estimated from the model config and the recipe.

use crate::models::glm4::Glm4Config;
use crate::recipe::{FinetuneMode, Recipe};

/// Device memory stage one needs per step, estimated from the config and the recipe (bytes):
/// - weights in the training dtype;
/// - trainable parameters with fp32 gradients and two fp32 Adam moments (plus an fp32 master
///   copy when full fine-tuning in 16 bits);
/// - the activations kept through the step: with `lm.activation_checkpointing` (per-block
///   recomputation) each block's input, without it every block's activations and the whole
///   sequence's logits;
/// - the largest transient: one block's recomputation or one loss chunk's logits.
///
/// The per-block and per-logit factors are fitted to `arp-train bench` peaks on the CPU (fp32, at
/// the 9B width and a mid-size shape; benches/stage-one-memory/, benches/perf-notes.md), and a
/// test keeps the estimate within 25% of every one of those peaks.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryEstimate {
    pub dtype_bytes: u64,
    pub weights: u64,
    pub trainable_state: u64,
    pub kept_activations: u64,
    pub working_set: u64,
}

/// What one GLM-4 block's recomputation holds under autodiff: units of [tokens, hidden] tensors
/// in the training dtype, plus units of the fp32 [heads, tokens, tokens] attention scores (the
/// attention is unfused). Fitted on the mid-size shape at seq 2048 and 4096, where the block
/// outweighs the loss chunk; the scores dominate.
const BLOCK_HIDDEN_UNITS: f64 = 8.0;
const BLOCK_SCORE_UNITS: f64 = 5.0;
/// fp32 [chunk tokens, vocab] tensors alive while a loss chunk is differentiated (logits,
/// log-softmax, their gradients and copies). Fitted at the 9B width, where they dominate.
const LOSS_LOGIT_UNITS: f64 = 10.0;
/// What the process holds besides tensors (program, allocator).
const RUNTIME_BYTES: f64 = 100.0 * (1 << 20) as f64;

impl MemoryEstimate {
    pub fn new(c: &Glm4Config, recipe: &Recipe, total: u64, trainable: u64) -> Self {
        use crate::backend::Dtype;
        use crate::train::lm_backward::LOSS_CHUNK_TOKENS;
        let dtype_bytes: u64 = match recipe.dtype {
            Dtype::Fp32 => 4,
            Dtype::Auto if recipe.device == crate::backend::DeviceSpec::Cpu => 4,
            _ => 2,
        };
        let tokens = (recipe.lm.max_seq_len * recipe.lm.batch_size) as f64;
        let (s, h, a, l) = (
            recipe.lm.max_seq_len as f64,
            c.hidden_size as f64,
            c.num_attention_heads as f64,
            c.num_layers as f64,
        );
        let d = dtype_bytes as f64;
        let block = tokens * h * d * BLOCK_HIDDEN_UNITS + tokens * s * a * 4.0 * BLOCK_SCORE_UNITS;
        let logits = |n: f64| n * c.padded_vocab_size as f64 * 4.0 * LOSS_LOGIT_UNITS;
        // burn-ndarray copies a transposed operand before multiplying (`x W^T`), so the CPU
        // holds one extra copy of the largest weight (the output layer) while it runs.
        let transposed_copy = if recipe.device == crate::backend::DeviceSpec::Cpu {
            let largest = c.padded_vocab_size.max(2 * c.ffn_hidden_size) as f64 * h;
            largest * d
        } else {
            0.0
        };
        let (kept, working) = if recipe.lm.activation_checkpointing {
            let chunk = tokens.min(LOSS_CHUNK_TOKENS as f64);
            (l * tokens * h * d, block.max(logits(chunk)))
        } else {
            (l * block, logits(tokens))
        };
        // Trained parameters are fp32 (LoRA matrices, or full fine-tuning's master weights in
        // place of the base's); their gradients and both AdamW moments are fp32 too.
        let full = recipe.lm.finetune == FinetuneMode::Full;
        let frozen = if full { total - trainable } else { total };
        // Full fine-tuning in half precision casts each master weight to the compute dtype
        // where it is used; the matmul's backward keeps that copy: all of them without
        // recomputation, one block's (and the output layer's) with it.
        let cast_copies = if full && dtype_bytes == 2 {
            if recipe.lm.activation_checkpointing {
                (c.parameter_count() as f64 / l.max(1.0)) * d + c.padded_vocab_size as f64 * h * d
            } else {
                trainable as f64 * d
            }
        } else {
            0.0
        };
        MemoryEstimate {
            dtype_bytes,
            weights: frozen * dtype_bytes + trainable * 4,
            trainable_state: trainable * (4 + 8),
            kept_activations: kept as u64,
            working_set: (working + transposed_copy + cast_copies + RUNTIME_BYTES) as u64,
        }
    }

    pub fn total(&self) -> u64 {
        self.weights + self.trainable_state + self.kept_activations + self.working_set
    }

    pub fn render(&self) -> String {
        let gib = |x: u64| x as f64 / (1u64 << 30) as f64;
        format!(
            "lm memory estimate per step: {:.1} GiB = weights {:.1} (frozen at {} bytes/param, trained in fp32) + trainable state {:.1} + kept activations {:.1} + working set {:.1}",
            gib(self.total()),
            gib(self.weights),
            self.dtype_bytes,
            gib(self.trainable_state),
            gib(self.kept_activations),
            gib(self.working_set)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(c: &Glm4Config, sets: &[&str], rank: usize) -> MemoryEstimate {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        let loaded = Recipe::load(
            &root.join("recipes/tiny.yaml"),
            &sets,
            crate::recipe::PathCheck::Lenient,
        )
        .unwrap();
        let recipe = loaded.recipe;
        let trainable = match recipe.lm.finetune {
            FinetuneMode::Lora => c.lora_parameter_count(rank, &recipe.lm.lora.targets),
            FinetuneMode::Full => c.parameter_count(),
        };
        MemoryEstimate::new(c, &recipe, c.parameter_count(), trainable)
    }

    /// Every stage-one peak committed under benches/stage-one-memory/ (arp-train bench JSON)
    /// is within 25% of the estimate for its shape.
    #[test]
    fn the_estimate_is_within_25_percent_of_the_measured_peaks() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/stage-one-memory");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let report: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let lm = &report["stages"][0];
            let shape = &lm["shape"];
            let c: Glm4Config = serde_json::from_value(shape["config"].clone()).unwrap();
            let checkpointing = shape["activation_checkpointing"].as_bool().unwrap();
            let sets = [
                format!("lm.max_seq_len={}", shape["seq_len"]),
                format!("lm.batch_size={}", shape["batch_size"]),
                format!("lm.activation_checkpointing={checkpointing}"),
                format!("dtype={}", shape["dtype"].as_str().unwrap()),
            ];
            let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
            let rank = shape["lora"]["rank"].as_u64().unwrap() as usize;
            let m = estimate(&c, &sets, rank);
            let measured = lm["peak_memory_bytes"].as_f64().unwrap();
            let ratio = m.total() as f64 / measured;
            println!(
                "{}: estimate / measured = {ratio:.3} ({})",
                path.display(),
                m.render()
            );
            assert!(
                (0.75..=1.25).contains(&ratio),
                "{}: {ratio}",
                path.display()
            );
            checked += 1;
        }
        assert!(checked >= 3, "{checked} measurements in {}", dir.display());
    }

    #[test]
    fn real_9b_lora_at_2048_tokens_in_bf16_fits_a_48_gb_gpu() {
        let c = crate::models::released::glm4_voice_9b();
        let bf16 = ["device=cuda", "dtype=bf16", "lm.max_seq_len=2048"];
        let lora = estimate(&c, &bf16, 32);
        let gib = |m: &MemoryEstimate| m.total() as f64 / (1u64 << 30) as f64;
        println!("LoRA: {}", lora.render());
        // The bf16 base and the fp32 adapter, whose gradient and two moments are fp32 too.
        let adapter = lora.trainable_state / 12;
        assert!(adapter > 0);
        assert_eq!(lora.weights, 2 * 9_542_557_696 + 4 * adapter);
        assert!(gib(&lora) < 40.0, "{}", lora.render());
        // Without recomputation every block's activations stay: far beyond one GPU.
        let plain = estimate(
            &c,
            &[bf16.as_slice(), &["lm.activation_checkpointing=false"]].concat(),
            32,
        );
        assert!(gib(&plain) > 2.0 * gib(&lora), "{}", plain.render());
        // Full fine-tuning: fp32 master weights, gradients and moments (16 B/param), plus the
        // bf16 copies of one block's weights and the output layer while they are used.
        let full = estimate(&c, &[bf16.as_slice(), &["lm.finetune=full"]].concat(), 32);
        println!("full: {}", full.render());
        assert_eq!(full.weights, 4 * 9_542_557_696);
        assert_eq!(full.trainable_state, 12 * 9_542_557_696);
    }
}
