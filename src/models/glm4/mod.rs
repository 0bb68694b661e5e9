//! GLM-4-Voice-9B (ChatGLM architecture): `config.rs` reads the user's config.json, `model.rs`
//! mirrors the checkpoint's module tree (`transformer.embedding...`, `transformer.encoder.
//! layers.N...`, `transformer.output_layer`), `load.rs` fills it from the Hugging Face shards.

pub mod config;
pub mod export;
pub mod finetune;
pub mod generation;
pub mod load;
pub mod model;
pub mod tokenizer;

pub use config::Glm4Config;
pub use model::ChatGlmModel;
