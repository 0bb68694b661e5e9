//! The one integration-test binary (one link step for all tests): each file is a module.

mod common;

mod audio_formats;
mod audio_frontend;
mod bench;
mod build_data;
mod cli;
mod data_scan;
mod decoder;
mod eval_cli;
mod eval_parity;
mod generate;
mod glm4;
mod glm4_precision;
mod glm4_recompute;
mod glm4_tokenizer;
mod hardening;
mod import;
mod layout;
mod pipeline;
mod prepare;
mod recipes;
mod samples;
mod speaker_encoders;
mod speech_tokenizer;
mod tensorboard;
mod train_decoder;
mod train_lm;
mod wgpu_backend;
