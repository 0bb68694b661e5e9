//! Stage two: GLM-4-Voice-Decoder from scratch on the character's audio. The flow trains
//! first (`<stage>/flow/`), then the vocoder (`<stage>/hift/`); each part resumes from its own
//! checkpoints and is only loaded when already finished. The result is a decoder directory in
//! the GLM-4-Voice-Decoder layout: `<stage>/model/{config.yaml, flow.safetensors, hift.safetensors}`.

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;

use super::flow::train_flow;
use super::lm::Resume;
use super::part::PartReport;
use super::vocoder::train_vocoder;
use crate::data::decoder_data::DecoderData;
use crate::models::decoder::{read_config, save_decoder};
use crate::recipe::Recipe;

#[derive(Debug, Clone)]
pub struct DecoderReport {
    pub flow: PartReport,
    pub vocoder: PartReport,
    pub train_utterances: usize,
    pub validation_utterances: usize,
    pub seconds_of_audio: f64,
    pub model_dir: PathBuf,
}

pub fn train_decoder<B: AutodiffBackend>(
    recipe: &Recipe,
    device: &B::Device,
    stage_dir: &Path,
    resume: &Resume,
) -> Result<DecoderReport, String> {
    let config_file = recipe
        .decoder
        .config
        .as_ref()
        .ok_or("decoder.config is not set (a GLM-4-Voice-Decoder config.yaml)")?;
    let config = read_config(config_file)?;
    let data = DecoderData::load(recipe)?;
    tracing::info!(
        train = data.train.len(),
        held_out = data.validation.len(),
        seconds = data.seconds,
        "stage two data"
    );
    let (flow, flow_report) = train_flow::<B>(
        recipe,
        &config,
        &data,
        device,
        &stage_dir.join("flow"),
        resume,
    )?;
    let (hift, vocoder_report) = train_vocoder::<B>(
        recipe,
        &config,
        &data,
        device,
        &stage_dir.join("hift"),
        resume,
    )?;
    let model_dir = stage_dir.join("model");
    save_decoder(&model_dir, config_file, &flow, &hift)
        .map_err(|e| format!("cannot write {}: {e}", model_dir.display()))?;
    Ok(DecoderReport {
        flow: flow_report,
        vocoder: vocoder_report,
        train_utterances: data.train.len(),
        validation_utterances: data.validation.len(),
        seconds_of_audio: data.seconds,
        model_dir,
    })
}
