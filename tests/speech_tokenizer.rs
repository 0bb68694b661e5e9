//! The WhisperVQ speech tokenizer against tools/fixtures/whisper_vq_reference.py (numpy): the tiny
//! checkpoint in the real layout, pre-quantization features within 1e-4 and token ids equal on
//! at least 99.9% of frames, for every 16 kHz corpus clip and a 35 s input (two segments).

use std::collections::BTreeSet;
use std::path::PathBuf;

use arp_train::audio::read;
use arp_train::models::whisper_vq::SpeechTokenizer;
use burn::backend::NdArray;
use burn::tensor::backend::Backend;
use safetensors::SafeTensors;

use crate::common::repo;

type B = NdArray<f32>;

pub fn tiny_tokenizer_dir() -> PathBuf {
    repo().join("models/tiny/glm-4-voice-tokenizer")
}

/// The reference script's inputs: every distinct 16 kHz file of the manifest (sorted by its
/// manifest path), then `long-35s`: those clips joined twice, cut at 35 s.
fn inputs() -> Vec<(String, Vec<f32>)> {
    let corpus = repo().join("data/tiny-lab");
    let manifest = std::fs::read_to_string(corpus.join("manifest.jsonl")).unwrap();
    let paths: BTreeSet<String> = manifest
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["audio"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut out = Vec::new();
    for rel in paths {
        let audio = read::read_mono(&corpus.join(&rel), None).unwrap();
        if audio.rate == 16_000 {
            let name = PathBuf::from(&rel)
                .file_stem()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.push((name, audio.samples));
        }
    }
    let joined: Vec<f32> = out
        .iter()
        .chain(out.iter())
        .flat_map(|(_, s)| s.iter().copied())
        .collect();
    out.push(("long-35s".into(), joined[..35 * 16_000].to_vec()));
    out
}

#[test]
fn matches_the_numpy_reference() {
    parity_on::<B>(&Default::default(), usize::MAX);
}

/// The reference check on backend `B` for the first `clips` inputs (all: every clip and the
/// two-segment 35 s input): features within 1e-4 (max abs), at least 99.9% of tokens
/// identical. Returns (worst feature error, share of identical tokens).
pub fn parity_on<B: Backend>(device: &B::Device, clips: usize) -> (f32, f64) {
    let tokenizer = SpeechTokenizer::<B>::load(&tiny_tokenizer_dir(), device).unwrap();
    let bytes =
        std::fs::read(repo().join("tests/fixtures/whisper_vq/reference.safetensors")).unwrap();
    let reference = SafeTensors::deserialize(&bytes).unwrap();
    let mut inputs = inputs();
    assert_eq!(inputs.len(), 15);
    inputs.truncate(clips);
    let clips: Vec<&[f32]> = inputs.iter().map(|(_, s)| s.as_slice()).collect();
    let encoded = tokenizer.encode(&clips);
    let (mut worst, mut same, mut total) = (0.0f32, 0usize, 0usize);
    for ((name, samples), segments) in inputs.iter().zip(&encoded) {
        let features: Vec<f32> = segments
            .iter()
            .flat_map(|s| s.features.iter().copied())
            .collect();
        let tokens: Vec<u32> = segments
            .iter()
            .flat_map(|s| s.tokens.iter().copied())
            .collect();
        let expected_features = reference.tensor(&format!("features/{name}")).unwrap();
        let expected_tokens = reference.tensor(&format!("tokens/{name}")).unwrap();
        let ef: Vec<f32> = expected_features
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        let et: Vec<u32> = expected_tokens
            .data()
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as u32)
            .collect();
        assert_eq!(tokens.len(), et.len(), "{name}: token count");
        assert_eq!(
            tokens.len(),
            samples.len().div_ceil(1280).max(1) + if name == "long-35s" { 1 } else { 0 }
                - usize::from(name == "long-35s"),
            "{name}: 12.5 tokens per second"
        );
        let err = features
            .iter()
            .zip(&ef)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err <= 1e-4, "{name}: features max abs error {err:e}");
        worst = worst.max(err);
        same += tokens.iter().zip(&et).filter(|(a, b)| a == b).count();
        total += et.len();
    }
    let share = same as f64 / total as f64;
    println!("speech tokenizer: {total} tokens, {:.4}% identical, features worst max abs error {worst:e}", share * 100.0);
    assert!(share >= 0.999, "identical tokens: {share}");
    if inputs.len() == 15 {
        assert_eq!(encoded.last().unwrap().len(), 2, "35 s is two segments");
    }
    (worst, share)
}

#[test]
fn batching_does_not_change_tokens() {
    let mut tokenizer =
        SpeechTokenizer::<B>::load(&tiny_tokenizer_dir(), &Default::default()).unwrap();
    let inputs = inputs();
    let clips: Vec<&[f32]> = inputs.iter().take(6).map(|(_, s)| s.as_slice()).collect();
    let together = tokenizer.tokenize(&clips);
    tokenizer.max_batch = 1;
    let alone: Vec<Vec<u32>> = clips
        .iter()
        .map(|c| tokenizer.tokenize(&[c])[0].clone())
        .collect();
    assert_eq!(together, alone);
}

#[test]
fn checkpoint_problems_are_named() {
    let dir = tempfile::tempdir().unwrap();
    // A config but no weights.
    std::fs::copy(
        tiny_tokenizer_dir().join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let err = SpeechTokenizer::<B>::load(dir.path(), &Default::default())
        .err()
        .unwrap();
    assert!(
        err.contains("no safetensors files matching model*.safetensors"),
        "{err}"
    );
    // Weights without a tensor the encoder needs, and one with the wrong shape.
    let bytes = std::fs::read(tiny_tokenizer_dir().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut kept: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != "model.encoder.layers.1.fc2.bias")
        .collect();
    let path = dir.path().join("model.safetensors");
    safetensors::serialize_to_file(kept.clone(), None, &path).unwrap();
    let err = SpeechTokenizer::<B>::load(dir.path(), &Default::default())
        .err()
        .unwrap();
    assert!(
        err.contains("tensor `model.encoder.layers.1.fc2.bias` is missing from"),
        "{err}"
    );
    let conv = kept
        .iter()
        .position(|(n, _)| n == "model.encoder.conv1.bias")
        .unwrap();
    let data = vec![0u8; 4 * 7];
    kept[conv].1 =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![7], &data).unwrap();
    safetensors::serialize_to_file(kept, None, &path).unwrap();
    let err = SpeechTokenizer::<B>::load(dir.path(), &Default::default())
        .err()
        .unwrap();
    assert!(
        err.contains("tensor `model.encoder.conv1.bias`")
            && err.contains("has shape [7], expected [32]"),
        "{err}"
    );
}

#[test]
fn tensor_names_without_the_model_encoder_prefix_load_the_same() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        tiny_tokenizer_dir().join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    let bytes = std::fs::read(tiny_tokenizer_dir().join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    // The encoder-only layout: `conv1.weight`, `layers.0...`, no decoder tensors.
    let stripped: Vec<(String, safetensors::tensor::TensorView)> = st
        .tensors()
        .into_iter()
        .filter_map(|(n, v)| n.strip_prefix("model.encoder.").map(|s| (s.to_string(), v)))
        .collect();
    safetensors::serialize_to_file(stripped, None, &dir.path().join("model.safetensors")).unwrap();
    let plain = SpeechTokenizer::<B>::load(dir.path(), &Default::default()).unwrap();
    let prefixed = SpeechTokenizer::<B>::load(&tiny_tokenizer_dir(), &Default::default()).unwrap();
    let clip = &inputs()[3].1;
    assert_eq!(plain.tokenize(&[clip]), prefixed.tokenize(&[clip]));
}
