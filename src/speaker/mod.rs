//! Who is speaking: speaker encoders that turn an utterance into an embedding, and the cosine
//! geometry over embeddings. Two encoders: CAM++ (3D-Speaker, 192 values; build-data's default:
//! it separates real acted voices better, benches/perf-notes.md) and Resemblyzer (GE2E, 256
//! values; ARP-Eval's Acoustic Personalization, as the AudioRole paper measures it).

pub mod campplus;
pub mod embedding;
pub mod kind;
pub mod resemblyzer;
pub mod weights;

use std::path::Path;

use burn::tensor::backend::Backend;

use crate::audio::Audio;
pub use embedding::{centroid, cosine, normalized, Utterance};
pub use kind::EncoderKind;

/// A loaded speaker encoder of either kind.
pub enum Encoder<B: Backend> {
    CamPlusPlus(Box<campplus::CamPlusPlusEncoder<B>>),
    Resemblyzer(resemblyzer::Resemblyzer<B>),
}

impl<B: Backend> Encoder<B> {
    /// The `kind` encoder's weights from `path`.
    pub fn load(kind: EncoderKind, path: &Path, device: &B::Device) -> Result<Self, String> {
        Ok(match kind {
            EncoderKind::CamPlusPlus => {
                Encoder::CamPlusPlus(Box::new(campplus::CamPlusPlusEncoder::load(path, device)?))
            }
            EncoderKind::Resemblyzer => {
                Encoder::Resemblyzer(resemblyzer::Resemblyzer::load(path, device)?)
            }
        })
    }

    pub fn embed(&self, audio: &Audio) -> Utterance {
        match self {
            Encoder::CamPlusPlus(e) => e.embed(audio),
            Encoder::Resemblyzer(e) => e.embed(audio),
        }
    }
}
