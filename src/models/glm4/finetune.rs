//! What stage one trains: LoRA adapters on the recipe's targets (base frozen), or every weight
//! except those matching `lm.freeze_patterns`. Whatever is trained is held in fp32 (LoRA
//! matrices, full fine-tuning's master weights), so its gradients, their accumulation and
//! AdamW's moments are fp32 too; the frozen base stays in the compute dtype.

use burn::tensor::backend::Backend;

use super::load::add_lora;
use super::model::ChatGlmModel;
use crate::models::params::{glob_match, set_trainable, trainable_in_fp32};
use crate::recipe::{FinetuneMode, LmConfig};

/// Whether stage one trains the parameter `name` as the recipe sets it up.
pub fn is_trained(lm: &LmConfig, name: &str) -> bool {
    match lm.finetune {
        FinetuneMode::Lora => name.contains(".lora."),
        FinetuneMode::Full => !lm.freeze_patterns.iter().any(|p| glob_match(p, name)),
    }
}

/// Adds adapters when the recipe asks for LoRA (their random A matrices from `seed`), then
/// marks exactly the trainable parameters and keeps them in fp32.
pub fn prepare_for_finetune<B: Backend>(
    mut model: ChatGlmModel<B>,
    lm: &LmConfig,
    seed: u64,
    device: &B::Device,
) -> Result<ChatGlmModel<B>, String> {
    if lm.finetune == FinetuneMode::Lora {
        add_lora(
            &mut model,
            &lm.lora.targets,
            lm.lora.rank,
            lm.lora.alpha,
            lm.lora.dropout,
            seed,
            device,
        )?;
    }
    Ok(trainable_in_fp32(set_trainable(model, |name| {
        is_trained(lm, name)
    })))
}
