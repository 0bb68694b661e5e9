//! Stage two: GLM-4-Voice-Decoder from scratch on the character's audio. The flow trains
//! first (`<stage>/flow/`), then the vocoder (`<stage>/hift/`); each part resumes from its own
//! checkpoints and is only loaded when already finished. The result is a decoder directory in
//! the GLM-4-Voice-Decoder layout: `<stage>/model/{config.yaml, flow.safetensors, hift.safetensors}`.

use std::path::Path;

use burn::tensor::backend::AutodiffBackend;

use super::driver::Resume;
use super::flow::train_flow;
use super::stage_two::StageTwo;
use super::vocoder::train_vocoder;
use crate::data::decoder_data::DecoderData;
use crate::faults::Faults;
use crate::models::decoder::{read_config, save_decoder};
use crate::recipe::Recipe;
use crate::report::DecoderReport;
use crate::run_dir;

pub fn train_decoder<B: AutodiffBackend>(
    recipe: &Recipe,
    device: &B::Device,
    stage_dir: &Path,
    resume: &Resume,
    faults: &Faults,
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
    let inputs = StageTwo {
        recipe,
        config: &config,
        data: &data,
        device,
        resume,
    };
    let (flow, flow_report) =
        train_flow::<B>(&inputs, &stage_dir.join(run_dir::FLOW), &faults.flow)?;
    let (hift, vocoder_report) =
        train_vocoder::<B>(&inputs, &stage_dir.join(run_dir::HIFT), &faults.hift)?;
    let model_dir = stage_dir.join(run_dir::DECODER_MODEL);
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
