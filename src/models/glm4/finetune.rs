//! What stage one trains: LoRA adapters on the recipe's targets (base frozen), or every weight
//! except those matching `lm.freeze_patterns`.

use burn::tensor::backend::Backend;

use super::load::add_lora;
use super::model::ChatGlmModel;
use crate::models::params::{glob_match, set_trainable};
use crate::recipe::{FinetuneMode, LmConfig};

/// Adds adapters when the recipe asks for LoRA (their random A matrices from `seed`), then
/// marks exactly the trainable parameters.
pub fn prepare_for_finetune<B: Backend>(
    mut model: ChatGlmModel<B>,
    lm: &LmConfig,
    seed: u64,
    device: &B::Device,
) -> Result<ChatGlmModel<B>, String> {
    match lm.finetune {
        FinetuneMode::Lora => {
            add_lora(
                &mut model,
                &lm.lora.targets,
                lm.lora.rank,
                lm.lora.alpha,
                lm.lora.dropout,
                seed,
                device,
            )?;
            Ok(set_trainable(model, |name| name.contains(".lora.")))
        }
        FinetuneMode::Full => {
            let patterns = lm.freeze_patterns.clone();
            Ok(set_trainable(model, move |name| {
                !patterns.iter().any(|p| glob_match(p, name))
            }))
        }
    }
}
