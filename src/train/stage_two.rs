//! What both of stage two's parts (flow, vocoder) train from.

use burn::tensor::backend::Backend;

use super::driver::Resume;
use crate::data::decoder_data::DecoderData;
use crate::models::decoder::config::DecoderModelConfig;
use crate::recipe::Recipe;

pub struct StageTwo<'a, B: Backend> {
    pub recipe: &'a Recipe,
    /// The decoder architecture (`decoder.config`).
    pub config: &'a DecoderModelConfig,
    /// The character's utterances, split.
    pub data: &'a DecoderData,
    pub device: &'a B::Device,
    pub resume: &'a Resume,
}
