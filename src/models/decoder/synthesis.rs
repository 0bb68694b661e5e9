//! Synthesis with a GLM-4-Voice-Decoder: speech codes -> mel (the flow, Euler steps) ->
//! 22.05 kHz waveform (HiFT), within a length one synthesis can hold in memory.

use std::path::Path;

use burn::tensor::backend::Backend;

use super::config::DecoderModelConfig;
use super::flow::Flow;
use super::hift::{vocode, Hift};
use super::{load_flow, load_hift, read_config, CONFIG_FILE};
use crate::rng::Rng;

/// The bytes one attention score matrix (every head, fp32) may take in one synthesis.
const MAX_ATTENTION_BYTES: f64 = 512.0 * 1024.0 * 1024.0;

/// The most speech codes one synthesis takes. The flow attends over every mel frame at once,
/// so its memory grows with the square of the length; this keeps one attention matrix (heads x
/// frames^2 fp32 scores) within 512 MiB: 1,188 codes (95 s of speech at 12.5 codes/s) with the
/// tiny decoder's 2 heads, 594 (47 s) with GLM-4-Voice-Decoder's 8. GLM-4-Voice itself decodes
/// a reply in blocks of tens of codes.
pub fn max_codes(config: &DecoderModelConfig) -> usize {
    let flow = &config.flow;
    let heads = flow
        .encoder
        .attention_heads
        .max(flow.estimator.num_heads)
        .max(1) as f64;
    let max_frames = (MAX_ATTENTION_BYTES / (4.0 * heads)).sqrt();
    crate::models::decoder::flow::tokens_for_mel_frames(max_frames, flow.input_frame_rate)
}

/// Refuses more codes than [`max_codes`], saying how long that is and what to do.
pub fn check_length(codes: usize, config: &DecoderModelConfig) -> Result<(), String> {
    let limit = max_codes(config);
    let minutes = |n: usize| n as f64 / config.flow.input_frame_rate / 60.0;
    if codes > limit {
        return Err(format!(
            "{codes} speech codes ({:.1} minutes of speech) are more than one synthesis takes: at most {limit} ({:.1} minutes), since the flow's attention memory grows with the square of the length; split the codes into parts and synthesize each",
            minutes(codes),
            minutes(limit)
        ));
    }
    Ok(())
}

/// A GLM-4-Voice-Decoder loaded for synthesis.
pub struct Decoder<B: Backend> {
    config: DecoderModelConfig,
    flow: Flow<B>,
    hift: Hift<B>,
}

/// The most Euler steps `synth` and `eval` take (GLM-4-Voice uses 10; past a few hundred the
/// solution no longer changes, and each step is a full flow forward).
pub const MAX_FLOW_STEPS: u64 = 1000;

impl<B: Backend> Decoder<B> {
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self, String> {
        let config = read_config(&dir.join(CONFIG_FILE))?;
        let flow = load_flow::<B>(dir, &config, device)?.model;
        let hift = load_hift::<B>(dir, &config, device)?.model;
        Ok(Decoder { config, flow, hift })
    }

    /// Speech codes -> 22.05 kHz samples (`steps` Euler steps; `seed` draws the flow's starting
    /// noise and the source's noise).
    pub fn synthesize(
        &self,
        codes: &[u32],
        steps: usize,
        seed: u64,
        device: &B::Device,
    ) -> Result<Vec<f32>, String> {
        if let Some(&bad) = codes
            .iter()
            .find(|&&c| c as usize >= self.config.flow.vocab_size)
        {
            return Err(format!(
                "speech code {bad} is outside the decoder's vocabulary of {}",
                self.config.flow.vocab_size
            ));
        }
        check_length(codes.len(), &self.config)?;
        let mel = self.flow.synthesize(codes, steps, seed, device);
        let mut rng = Rng::new(seed ^ 0x50_55_52_43_45);
        let (wave, _) = vocode(&self.hift, &self.config.hift, mel, &mut rng);
        Ok(crate::models::to_host_f32(wave))
    }
}
