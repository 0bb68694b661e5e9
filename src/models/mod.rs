//! Model definitions. Each file mirrors its reference module tree.

pub mod decoder_config;
pub mod glm4;
pub mod params;
pub mod whisper_vq;
