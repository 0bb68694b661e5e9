//! Data-preparation throughput and the real speech tokenizer's CPU cost.
//!
//!     cargo bench --bench speech_tokenizer
//!
//! 1. `arp-train prepare` of the tiny recipe (tiny tokenizer; decode, filters, resampling, mels,
//!    tokens, cache writes) into a fresh cache: seconds of audio per second, best of 3.
//! 2. The real-size WhisperVQ encoder (GLM-4-Voice-Tokenizer's shape: d 1280, 20 heads, ffn 5120,
//!    16 layers, 16384 codes; random weights, no checkpoint needed) on one 30 s segment on the
//!    CPU backend, extrapolated to an hour of audio (120 segments).
//!    Set ARP_BENCH_SKIP_REAL=1 to skip it (it needs ~4 GB of memory and a minute).

use std::path::{Path, PathBuf};
use std::time::Instant;

use arp_train::checkpoint::tensors::{TensorError, TensorSource};
use arp_train::commands::prepare::{prepare, PrepareArgs};
use arp_train::commands::Exit;
use arp_train::models::whisper_vq::config::WhisperVqConfig;
use arp_train::models::whisper_vq::encoder::{Loader, WhisperVqEncoder};
use arp_train::models::whisper_vq::SpeechTokenizer;
use burn::backend::NdArray;

/// Deterministic uniform weights scaled by fan-in; layer-norm weights 1, biases 0.
struct RandomWeights;

impl TensorSource for RandomWeights {
    fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, TensorError> {
        let n: usize = shape.iter().product();
        if name.contains("layer_norm") && name.ends_with("weight") {
            return Ok(vec![1.0; n]);
        }
        if name.ends_with("bias") {
            return Ok(vec![0.0; n]);
        }
        let fan_in: usize = shape.iter().skip(1).product::<usize>().max(1);
        let scale = (3.0 / fan_in as f64).sqrt() as f32;
        let mut state = 0x9E3779B97F4A7C15u64 ^ n as u64;
        Ok((0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect())
    }
}

fn real_config() -> WhisperVqConfig {
    serde_json::from_value(serde_json::json!({
        "d_model": 1280, "encoder_attention_heads": 20, "encoder_ffn_dim": 5120, "num_mel_bins": 128,
        "max_source_positions": 1500, "pooling_kernel_size": 4, "pooling_type": "avg", "pooling_position": 16,
        "quantize_vocab_size": 16384, "quantize_position": 16, "quantize_causal_block_size": 200,
        "encoder_causal_convolution": true
    }))
    .expect("valid config")
}

fn prepare_throughput(repo: &Path) -> (f64, f64) {
    let run = |cache: &Path| {
        let start = Instant::now();
        let exit = prepare(PrepareArgs {
            recipe: repo.join("recipes/tiny.yaml"),
            overrides: vec![format!("data.cache_dir={}", cache.display())],
            device: None,
        });
        assert!(matches!(exit, Exit::Ok), "prepare failed: {exit:?}");
        start.elapsed().as_secs_f64()
    };
    // A first run warms the file cache; each timed run fills a fresh dataset cache.
    run(tempfile::tempdir().unwrap().path());
    let mut best = f64::INFINITY;
    let mut audio_seconds = 0.0;
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        best = best.min(run(dir.path()));
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap())
                .unwrap();
        audio_seconds = report["hours"].as_f64().unwrap() * 3600.0;
    }
    (audio_seconds, best)
}

fn main() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let (audio, wall) = prepare_throughput(&repo);
    println!("prepare, tiny recipe, cpu: {audio:.1} s of audio in {wall:.2} s = {:.1} s of audio per second", audio / wall);

    if std::env::var("ARP_BENCH_SKIP_REAL").is_ok() {
        return;
    }
    type B = NdArray<f32>;
    let device = Default::default();
    let config = real_config();
    let loader = Loader::<B> {
        store: &RandomWeights,
        prefix: String::new(),
        device,
    };
    let start = Instant::now();
    let encoder =
        WhisperVqEncoder::load(&loader, &config).expect("random weights of the right shapes");
    println!(
        "real-size encoder built from random weights in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let tokenizer = SpeechTokenizer::from_encoder(encoder, &Default::default());
    let segment: Vec<f32> = (0..30 * 16_000)
        .map(|i| 0.1 * ((i as f32) * 0.013).sin() * ((i as f32) * 0.0007).cos())
        .collect();
    let start = Instant::now();
    let tokens = tokenizer.tokenize(&[&segment]);
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(tokens[0].len(), 375);
    println!(
        "real-size WhisperVQ encoder (16 layers, d 1280), cpu backend: one 30 s segment in {seconds:.1} s = {:.2} x real time; about {:.1} h of compute per hour of audio",
        30.0 / seconds,
        seconds * 120.0 / 3600.0
    );
}
