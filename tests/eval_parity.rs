//! ARP-Eval parity against tools/fixtures/eval_reference.py (resemblyzer 0.1.4 + PyTorch, parselmouth,
//! librosa; committed as tests/fixtures/eval/reference.json):
//! - speaker embeddings: cosine(Rust, Python) >= 0.999 for every bundled clip;
//! - WADA-SNR within 0.5 dB, HNR within 1 dB of Praat, spectral flatness within 1e-3 of librosa,
//!   on the bundled clips and their noisy copies at 20/10/0 dB;
//! - same-speaker AP above cross-speaker AP for every speaker pair.

use std::collections::BTreeMap;

use arp_train::audio::read;
use arp_train::eval::quality;
use arp_train::speaker::cosine;
use arp_train::speaker::resemblyzer::Resemblyzer;
use burn::backend::NdArray;
use burn::tensor::backend::Backend;
use serde_json::Value;

use crate::common::repo;

fn reference() -> Value {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/eval/reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn rows<'a>(r: &'a Value, key: &str) -> &'a Vec<Value> {
    r[key].as_array().unwrap()
}

fn encoder() -> Resemblyzer<NdArray<f32>> {
    Resemblyzer::load(
        &crate::common::speaker_encoder_weights(),
        &Default::default(),
    )
    .unwrap()
}

#[test]
fn speaker_embeddings_match_resemblyzer() {
    speaker_parity_on::<NdArray<f32>>(&Default::default());
}

/// Resemblyzer's embedding of every bundled clip on backend `B`: cosine >= 0.999 and the same
/// number of partial windows. Returns the lowest cosine.
pub fn speaker_parity_on<B: Backend>(device: &B::Device) -> f64 {
    let r = reference();
    let encoder =
        Resemblyzer::<B>::load(&crate::common::speaker_encoder_weights(), device).unwrap();
    let mut worst = 1.0f64;
    for clip in rows(&r, "clips") {
        let path = repo().join(clip["path"].as_str().unwrap());
        let audio = read::read_mono(&path, None).unwrap();
        let ours = encoder.embed(&audio);
        let theirs: Vec<f32> = clip["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        let cos = cosine(&ours.embedding, &theirs);
        println!(
            "{}: cosine {cos:.6}, partials {} (python {}), voiced {:.3} s (python {:.3} s)",
            path.display(),
            ours.partials,
            clip["partials"],
            ours.voiced_seconds,
            clip["preprocessed_samples"].as_f64().unwrap() / 16_000.0
        );
        assert_eq!(ours.partials as u64, clip["partials"].as_u64().unwrap());
        worst = worst.min(cos);
    }
    println!("lowest cosine: {worst:.6}");
    assert!(worst >= 0.999, "lowest cosine {worst}");
    worst
}

#[test]
fn signal_metrics_match_praat_librosa_and_wada() {
    let r = reference();
    let (mut wada_err, mut hnr_err, mut flat_err) = (0f64, 0f64, 0f64);
    let all = rows(&r, "clips").iter().chain(rows(&r, "noisy"));
    let mut count = 0;
    for row in all {
        let path = repo().join(row["path"].as_str().unwrap());
        let audio = read::read_mono(&path, None).unwrap();
        let q = quality::measure(&audio);
        let (w, h, f) = (
            q.wada_snr_db.unwrap(),
            q.hnr_db.unwrap(),
            q.spectral_flatness.unwrap(),
        );
        let (rw, rh, rf) = (
            row["wada_snr_db"].as_f64().unwrap(),
            row["hnr_db"].as_f64().unwrap(),
            row["spectral_flatness"].as_f64().unwrap(),
        );
        println!(
            "{}: WADA {w:.3}/{rw:.3} dB, HNR {h:.3}/{rh:.3} dB, flatness {f:.5}/{rf:.5}",
            row["path"].as_str().unwrap()
        );
        wada_err = wada_err.max((w - rw).abs());
        hnr_err = hnr_err.max((h - rh).abs());
        flat_err = flat_err.max((f - rf).abs());
        count += 1;
    }
    println!(
        "{count} clips: max |error| WADA {wada_err:.4} dB, HNR {hnr_err:.4} dB, flatness {flat_err:.2e}"
    );
    assert_eq!(count, 36);
    assert!(wada_err <= 0.5, "WADA-SNR off by {wada_err} dB");
    assert!(hnr_err <= 1.0, "HNR off by {hnr_err} dB");
    assert!(flat_err <= 1e-3, "spectral flatness off by {flat_err}");
}

#[test]
fn same_speaker_similarity_beats_cross_speaker_for_every_pair() {
    let r = reference();
    let encoder = encoder();
    let mut by_speaker: BTreeMap<String, Vec<Vec<f32>>> = BTreeMap::new();
    for clip in rows(&r, "clips") {
        let audio = read::read_mono(&repo().join(clip["path"].as_str().unwrap()), None).unwrap();
        by_speaker
            .entry(clip["speaker"].as_str().unwrap().to_string())
            .or_default()
            .push(encoder.embed(&audio).embedding);
    }
    let names: Vec<&String> = by_speaker.keys().collect();
    let mean = |a: &str, b: &str| {
        let (xs, ys) = (&by_speaker[a], &by_speaker[b]);
        let mut sum = 0.0;
        let mut n = 0;
        for (i, x) in xs.iter().enumerate() {
            for (j, y) in ys.iter().enumerate() {
                if a == b && i == j {
                    continue;
                }
                sum += cosine(x, y);
                n += 1;
            }
        }
        sum / n as f64
    };
    println!(
        "mean cosine   {}",
        names.iter().map(|n| format!("{n:>7}")).collect::<String>()
    );
    for a in &names {
        let line: String = names
            .iter()
            .map(|b| format!("{:>7.3}", mean(a, b)))
            .collect();
        println!("{a:>12}  {line}");
    }
    for a in &names {
        for b in &names {
            if a != b {
                assert!(
                    mean(a, a) > mean(a, b) && mean(b, b) > mean(a, b),
                    "{a}/{b}: same {:.3} / {:.3}, cross {:.3}",
                    mean(a, a),
                    mean(b, b),
                    mean(a, b)
                );
            }
        }
    }
}
