//! GLM-4-Voice's speech tokenizer: the WhisperVQ encoder (16 kHz audio -> 12.5 Hz token ids).
//! `config.rs` reads the tokenizer's config.json, `encoder.rs` mirrors the module tree of the
//! checkpoint, `tokenizer.rs` does what the reference's `extract_speech_token` does around it
//! (30 s segments, padding to whole tokens, log-mel, batching, keeping the valid tokens).

pub mod config;
pub mod encoder;
pub mod tokenizer;

pub use config::WhisperVqConfig;
pub use tokenizer::SpeechTokenizer;
