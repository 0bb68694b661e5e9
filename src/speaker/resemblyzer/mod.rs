//! Acoustic Personalization's speaker encoder: Resemblyzer's GE2E d-vector model and its own
//! preprocessing, reproducing `VoiceEncoder.embed_utterance(preprocess_wav(path))`.
//!
//! An utterance is cut into 1.6 s partial windows (160 mel frames) every 77 frames (rate 1.3 per
//! second); the last window is dropped when less than 75% of it holds audio, unless it is the
//! only one. The utterance embedding is the L2-normalized mean of the partial embeddings.

pub mod preprocess;

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::embedding::{normalized, Utterance};
use super::kind::EncoderKind;
use super::weights;
use crate::audio::mel::MelExtractor;
use crate::audio::Audio;
use crate::checkpoint::tensors::TensorStore;
use crate::models::layers::Builder;
use crate::models::resemblyzer::{VoiceEncoder, EMBEDDING, MEL_CHANNELS};

const PARTIAL_FRAMES: usize = 160;
const SAMPLES_PER_FRAME: usize = 160;
const PARTIALS_PER_SECOND: f64 = 1.3;
const MIN_COVERAGE: f64 = 0.75;

pub struct Resemblyzer<B: Backend> {
    model: VoiceEncoder<B>,
    mel: MelExtractor,
    device: B::Device,
}

impl<B: Backend> Resemblyzer<B> {
    pub fn load(path: &Path, device: &B::Device) -> Result<Self, String> {
        if !path.is_file() {
            return Err(weights::missing_message(
                EncoderKind::Resemblyzer,
                path,
                "--speaker-encoder",
            ));
        }
        let store = TensorStore::open(&[path.to_path_buf()]).map_err(|e| e.to_string())?;
        let model = VoiceEncoder::load(&Builder::load(&store, device))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Resemblyzer {
            model,
            mel: MelExtractor::speaker_encoder(),
            device: device.clone(),
        })
    }

    pub fn embed(&self, audio: &Audio) -> Utterance {
        let pre = preprocess::preprocess(audio);
        let mut wav = pre.samples;
        let voiced_seconds = wav.len() as f64 / preprocess::RATE as f64;
        let starts = partial_starts(wav.len());
        let last_end = (starts[starts.len() - 1] + PARTIAL_FRAMES) * SAMPLES_PER_FRAME;
        if last_end >= wav.len() {
            wav.resize(last_end, 0.0);
        }
        let (mel, _) = self.mel.power_mel_frames(&wav);
        let mut batch = Vec::with_capacity(starts.len() * PARTIAL_FRAMES * MEL_CHANNELS);
        for &s in &starts {
            batch.extend_from_slice(&mel[s * MEL_CHANNELS..(s + PARTIAL_FRAMES) * MEL_CHANNELS]);
        }
        let mels = Tensor::<B, 3>::from_data(
            TensorData::new(batch, [starts.len(), PARTIAL_FRAMES, MEL_CHANNELS]),
            &self.device,
        );
        let partial = crate::models::to_host_f32(self.model.forward(mels));
        let mut mean = vec![0f32; EMBEDDING];
        for row in partial.chunks_exact(EMBEDDING) {
            mean.iter_mut().zip(row).for_each(|(m, v)| *m += v);
        }
        Utterance {
            embedding: normalized(&mean),
            partials: starts.len(),
            voiced_seconds,
        }
    }
}

/// First mel frame of each partial window for a waveform of `samples` samples.
pub fn partial_starts(samples: usize) -> Vec<usize> {
    let frames = (samples + 1).div_ceil(SAMPLES_PER_FRAME);
    let step = ((preprocess::RATE as f64 / PARTIALS_PER_SECOND) / SAMPLES_PER_FRAME as f64).round()
        as usize;
    let steps = (frames as i64 - PARTIAL_FRAMES as i64 + step as i64 + 1).max(1) as usize;
    let mut starts: Vec<usize> = (0..steps).step_by(step).collect();
    let last = starts[starts.len() - 1] * SAMPLES_PER_FRAME;
    let coverage = (samples as f64 - last as f64) / (PARTIAL_FRAMES * SAMPLES_PER_FRAME) as f64;
    if coverage < MIN_COVERAGE && starts.len() > 1 {
        starts.pop();
    }
    starts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_windows_follow_resemblyzer() {
        // 1 s: one window (coverage is ignored for the only one).
        assert_eq!(partial_starts(16_000), vec![0]);
        // 2.5 s: windows at 0, 77 and 154; the last covers only (40000 - 24640) / 25600 = 0.6.
        assert_eq!(partial_starts(40_000), vec![0, 77]);
        // 1.8 s: the window at 77 would cover only 0.64 of itself and is dropped.
        assert_eq!(partial_starts(28_800), vec![0]);
        assert_eq!(partial_starts(0), vec![0]);
    }
}
