//! Audio -> speech tokens, as GLM-4-Voice's `extract_speech_token` does it: split 16 kHz audio
//! into 30 s segments, zero-pad each to a whole number of tokens (1280 samples), compute the
//! Whisper log-mel of the padded segment, encode, and keep the tokens that start inside the
//! real audio. Segments are encoded one padded length at a time, so a segment's tokens never
//! depend on what else is in its batch.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use super::config::WhisperVqConfig;
use super::encoder::{Loader, WhisperVqEncoder};
use crate::audio::mel::MelExtractor;
use crate::checkpoint::tensors::TensorStore;

/// Seconds of audio per encoder segment (Whisper's window).
pub const SEGMENT_SECONDS: usize = 30;
const RATE: usize = 16_000;

/// Tensors a real tokenizer checkpoint carries that the encoder does not use.
fn expected_unused(name: &str, config: &WhisperVqConfig) -> bool {
    let local = name.strip_prefix("model.encoder.").unwrap_or(name);
    if let Some(rest) = local.strip_prefix("layers.") {
        let index: usize = rest
            .split('.')
            .next()
            .and_then(|i| i.parse().ok())
            .unwrap_or(0);
        return index >= config.quantize_position;
    }
    local.starts_with("layer_norm.")
        || local.starts_with("embed_positions2.")
        || local.starts_with("ema_")
        || name.starts_with("model.decoder.")
        || name.starts_with("proj_out.")
}

pub struct SpeechTokenizer<B: Backend> {
    pub encoder: WhisperVqEncoder<B>,
    mel: MelExtractor,
    device: B::Device,
    /// Segments encoded together at most.
    pub max_batch: usize,
}

/// One segment's result.
pub struct SegmentCodes {
    pub features: Vec<f32>,
    pub tokens: Vec<u32>,
}

impl<B: Backend> SpeechTokenizer<B> {
    /// Loads a `glm-4-voice-tokenizer` directory: `config.json` and `model*.safetensors`
    /// (tensor names with or without the `model.encoder.` prefix).
    pub fn load(dir: &Path, device: &B::Device) -> Result<Self, String> {
        let config = WhisperVqConfig::from_file(&dir.join("config.json"))?;
        if config.num_mel_bins != 128 {
            return Err(format!(
                "{}: num_mel_bins {} (GLM-4-Voice's tokenizer reads the 128-bin Whisper mel)",
                dir.display(),
                config.num_mel_bins
            ));
        }
        let store = TensorStore::open_dir(dir, "model").map_err(|e| e.to_string())?;
        let prefix = if store.contains("model.encoder.conv1.weight") {
            "model.encoder."
        } else if store.contains("conv1.weight") {
            ""
        } else {
            return Err(format!("{}: no `model.encoder.conv1.weight` or `conv1.weight`: not a WhisperVQ tokenizer checkpoint", dir.display()));
        };
        let loader = Loader::<B> {
            store: &store,
            prefix: prefix.to_string(),
            device: device.clone(),
        };
        let encoder = WhisperVqEncoder::load(&loader, &config).map_err(|e| e.to_string())?;
        let extra: Vec<String> = store
            .unused()
            .into_iter()
            .filter(|n| !expected_unused(n, &config))
            .collect();
        if !extra.is_empty() {
            tracing::warn!(count = extra.len(), first = %extra[0], "unexpected tensors in the speech tokenizer checkpoint were ignored");
        }
        Ok(Self::from_encoder(encoder, device))
    }

    /// Wraps an encoder built elsewhere (e.g. from random weights of the real shape).
    pub fn from_encoder(encoder: WhisperVqEncoder<B>, device: &B::Device) -> Self {
        SpeechTokenizer {
            encoder,
            mel: MelExtractor::whisper(),
            device: device.clone(),
            max_batch: 16,
        }
    }

    pub fn config(&self) -> &WhisperVqConfig {
        &self.encoder.config
    }

    /// Tokens of each clip (16 kHz mono), in order.
    pub fn tokenize(&self, clips: &[&[f32]]) -> Vec<Vec<u32>> {
        self.encode(clips)
            .into_iter()
            .map(|segments| segments.into_iter().flat_map(|s| s.tokens).collect())
            .collect()
    }

    /// Per clip, its 30 s segments' features and tokens.
    pub fn encode(&self, clips: &[&[f32]]) -> Vec<Vec<SegmentCodes>> {
        let per_token = self.config().samples_per_token();
        // (clip, segment index, samples), grouped by padded length.
        let mut groups: BTreeMap<usize, Vec<(usize, usize, &[f32])>> = BTreeMap::new();
        let mut counts = vec![0usize; clips.len()];
        for (clip, samples) in clips.iter().enumerate() {
            for (k, segment) in samples.chunks(SEGMENT_SECONDS * RATE).enumerate() {
                groups
                    .entry(segment.len().div_ceil(per_token) * per_token)
                    .or_default()
                    .push((clip, k, segment));
                counts[clip] += 1;
            }
        }
        let mut out: Vec<Vec<Option<SegmentCodes>>> = counts
            .iter()
            .map(|&n| (0..n).map(|_| None).collect())
            .collect();
        for (padded_len, items) in groups {
            for batch in items.chunks(self.max_batch) {
                let codes = self.encode_batch(padded_len, batch.iter().map(|(_, _, s)| *s));
                for ((clip, k, _), code) in batch.iter().zip(codes) {
                    out[*clip][*k] = Some(code);
                }
            }
        }
        out.into_iter()
            .map(|segments| {
                segments
                    .into_iter()
                    .map(|s| s.expect("every segment encoded"))
                    .collect()
            })
            .collect()
    }

    fn encode_batch<'s>(
        &self,
        padded_len: usize,
        segments: impl Iterator<Item = &'s [f32]>,
    ) -> Vec<SegmentCodes> {
        let per_token = self.config().samples_per_token();
        let mut mels = Vec::new();
        let mut lengths = Vec::new();
        let mut frames = 0;
        for segment in segments {
            let mut padded = segment.to_vec();
            padded.resize(padded_len, 0.0);
            let mel = self.mel.whisper_log_mel(&padded);
            frames = mel.frames;
            mels.extend(mel.data);
            lengths.push(segment.len());
        }
        let batch = lengths.len();
        let n_mels = self.config().num_mel_bins;
        let input =
            Tensor::<B, 3>::from_data(TensorData::new(mels, [batch, n_mels, frames]), &self.device);
        let valid_frames: Vec<usize> = lengths.iter().map(|n| n.div_ceil(160)).collect();
        let encoded = self.encoder.forward(input, &valid_frames);
        let [_, tokens_per_item, d] = encoded.features.dims();
        let features = crate::models::to_host_f32(encoded.features);
        let tokens = encoded
            .tokens
            .into_data()
            .convert::<i64>()
            .into_vec::<i64>()
            .expect("integer tokens");
        lengths
            .iter()
            .enumerate()
            .map(|(b, &n)| {
                let keep = n.div_ceil(per_token).min(tokens_per_item);
                let start = b * tokens_per_item;
                SegmentCodes {
                    features: features[start * d..(start + keep) * d].to_vec(),
                    tokens: tokens[start..start + keep]
                        .iter()
                        .map(|&t| t as u32)
                        .collect(),
                }
            })
            .collect()
    }
}
