//! GLM-4-Voice-Decoder (flow + HiFT) in burn against tools/fixtures/decoder_reference.py (PyTorch, f64):
//! a tiny random checkpoint with the reference state-dict names (HiFT with weight_g/weight_v),
//! each output within 1e-4 relative error (max |rust - reference| / max |reference|).

use std::path::PathBuf;

use arp_train::checkpoint::tensors::TensorStore;
use arp_train::models::decoder::config::DecoderModelConfig;
use arp_train::models::decoder::flow::Flow;
use arp_train::models::decoder::hift::source::{harmonic_waves, SourceNoise};
use arp_train::models::decoder::hift::Hift;
use arp_train::models::layers::Builder;
use arp_train::models::to_host_f32;
use burn::backend::NdArray;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::common::repo;

type B = NdArray<f32>;

fn fixture() -> PathBuf {
    repo().join("tests/fixtures/decoder")
}

struct Reference(TensorStore, Vec<u8>);

impl Reference {
    fn load() -> Self {
        let path = fixture().join("reference.safetensors");
        Reference(
            TensorStore::open(std::slice::from_ref(&path)).unwrap(),
            std::fs::read(&path).unwrap(),
        )
    }
    fn shape(&self, name: &str) -> Vec<usize> {
        self.0
            .shape(name)
            .unwrap_or_else(|| panic!("{name} in the fixture"))
            .to_vec()
    }
    fn f32(&self, name: &str) -> Vec<f32> {
        self.0.f32(name, &self.shape(name)).unwrap()
    }
    fn t<Bk: Backend, const D: usize>(&self, name: &str, device: &Bk::Device) -> Tensor<Bk, D> {
        let shape: [usize; D] = self.shape(name).try_into().unwrap();
        Tensor::from_data(TensorData::new(self.f32(name), shape), device)
    }
    fn ints(&self, name: &str) -> Vec<i64> {
        let st = safetensors::SafeTensors::deserialize(&self.1).unwrap();
        st.tensor(name)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64)
            .collect()
    }
}

fn relative_error(rust: &[f32], reference: &[f32]) -> f64 {
    assert_eq!(rust.len(), reference.len(), "lengths differ");
    let scale = reference.iter().fold(0f64, |m, &v| m.max(v.abs() as f64));
    let worst = rust
        .iter()
        .zip(reference)
        .fold(0f64, |m, (&a, &b)| m.max((a as f64 - b as f64).abs()));
    worst / scale
}

/// Checks one output within `tol` relative error; returns (label, error).
fn check(label: &str, rust: Vec<f32>, reference: Vec<f32>, tol: f64) -> (String, f64) {
    let err = relative_error(&rust, &reference);
    println!("{label}: relative error {err:.2e}");
    assert!(err < tol, "{label}: relative error {err:.3e} >= {tol:e}");
    (label.to_string(), err)
}

fn models<Bk: Backend>(device: &Bk::Device) -> (DecoderModelConfig, Flow<Bk>, Hift<Bk>) {
    let config = DecoderModelConfig::from_file(&fixture().join("config.yaml")).unwrap();
    let flow_store = TensorStore::open(&[fixture().join("flow.safetensors")]).unwrap();
    let flow = Flow::new(&Builder::<Bk>::load(&flow_store, device), &config.flow).unwrap();
    assert!(
        flow_store.unused().is_empty(),
        "unused flow tensors: {:?}",
        flow_store.unused()
    );
    let hift_store = TensorStore::open(&[fixture().join("hift.safetensors")]).unwrap();
    let hift = Hift::new(&Builder::<Bk>::load(&hift_store, device), &config.hift).unwrap();
    assert!(
        hift_store.unused().is_empty(),
        "unused hift tensors: {:?}",
        hift_store.unused()
    );
    (config, flow, hift)
}

#[test]
fn flow_matches_the_pytorch_reference() {
    flow_parity_on::<B>(1e-4, &Default::default());
}

#[test]
fn hift_matches_the_pytorch_reference() {
    hift_parity_on::<B>(1e-4, &Default::default());
}

/// The flow's reference checks on backend `B` (encoder, regulator, estimator on a padded
/// batch, loss, Euler solve), each within `tol` relative error: (label, error) of each.
pub fn flow_parity_on<Bk: Backend>(tol: f64, device: &Bk::Device) -> Vec<(String, f64)> {
    let r = Reference::load();
    let (_, flow, _) = models::<Bk>(device);
    let mut errors = Vec::new();
    let mut check = |label: &str, rust: Vec<f32>, reference: Vec<f32>| {
        errors.push(check(label, rust, reference, tol));
    };
    let tokens = Tensor::<Bk, 2, Int>::from_data(TensorData::new(r.ints("tokens"), [2, 8]), device);
    let token_lengths: Vec<usize> = r.ints("token_lens").iter().map(|&n| n as usize).collect();
    let mel_lengths: Vec<usize> = r.ints("mel_lens").iter().map(|&n| n as usize).collect();
    let (h, mu) = flow.encode(tokens, &token_lengths, &mel_lengths);
    check("encoder + projection", to_host_f32(h), r.f32("encoder_out"));
    check(
        "length regulator (mu)",
        to_host_f32(mu.clone()),
        r.f32("mu"),
    );

    let spks = flow.zero_speaker(2, device);
    check(
        "zero speaker term",
        to_host_f32(spks.clone()),
        r.f32("spks"),
    );
    let est = flow.estimator.forward(
        r.t::<Bk, 3>("est_x", device),
        r.t::<Bk, 3>("est_mask", device),
        mu.clone(),
        r.t::<Bk, 1>("est_t", device),
        spks.clone(),
        r.t::<Bk, 3>("est_cond", device),
    );
    assert_eq!(
        est.dtype(),
        <Bk::FloatElem as burn::tensor::Element>::dtype(),
        "computed in the backend's float type"
    );
    check(
        "estimator (padded batch)",
        to_host_f32(est),
        r.f32("estimator_out"),
    );

    let keep: Vec<bool> = r.ints("keep").iter().map(|&k| k != 0).collect();
    let loss = flow.cfm_loss(
        r.t::<Bk, 3>("x1", device),
        r.t::<Bk, 3>("est_mask", device),
        mu,
        spks,
        r.t::<Bk, 3>("est_cond", device),
        &r.f32("t_raw"),
        r.t::<Bk, 3>("z", device),
        &keep,
    );
    check("flow-matching loss", to_host_f32(loss), r.f32("flow_loss"));

    let tokens =
        Tensor::<Bk, 2, Int>::from_data(TensorData::new(r.ints("solve_tokens"), [1, 6]), device);
    let (_, mu1) = flow.encode(tokens, &[6], &[40]);
    check(
        "mu for the Euler solve",
        to_host_f32(mu1.clone()),
        r.f32("solve_mu"),
    );
    let out = flow.solve(
        mu1,
        Tensor::ones([1, 1, 40], device),
        flow.zero_speaker(1, device),
        Tensor::zeros([1, 80, 40], device),
        r.t::<Bk, 3>("solve_z", device),
        3,
    );
    check(
        "3 Euler steps with CFG 0.7",
        to_host_f32(out),
        r.f32("solve_out"),
    );
    errors
}

/// HiFT's reference checks on backend `B` (F0 predictor, harmonic source, waveform), each
/// within `tol` relative error.
pub fn hift_parity_on<Bk: Backend>(tol: f64, device: &Bk::Device) -> Vec<(String, f64)> {
    let r = Reference::load();
    let (config, _, hift) = models::<Bk>(device);
    let mut errors = Vec::new();
    let mut check = |label: &str, rust: Vec<f32>, reference: Vec<f32>| {
        errors.push(check(label, rust, reference, tol));
    };
    let mel: Tensor<Bk, 3> = r.t::<Bk, 3>("hift_mel", device);
    check(
        "F0 predictor",
        to_host_f32(hift.f0_predictor.forward(mel.clone())),
        r.f32("f0_pred"),
    );

    let f0 = r.f32("hift_f0");
    let phase: Vec<f64> = r.f32("hift_phase").iter().map(|&p| p as f64).collect();
    let draws = SourceNoise {
        phase,
        noise: r.f32("hift_noise"),
    };
    let samples = f0.len() * 256;
    let waves = harmonic_waves(&f0, 256, &config.hift, &draws);
    let waves = Tensor::<Bk, 3>::from_data(TensorData::new(waves, [1, 9, samples]), device);
    let source = hift.source(waves);
    check(
        "harmonic source",
        to_host_f32(source.clone()),
        r.f32("hift_source"),
    );
    check(
        "waveform for a fixed F0",
        to_host_f32(hift.decode(mel, source)),
        r.f32("hift_wave"),
    );
    errors
}

#[test]
fn saved_weights_keep_the_reference_names_and_values() {
    use arp_train::checkpoint::named::named_safetensors;
    let config = DecoderModelConfig::from_file(&fixture().join("config.yaml")).unwrap();
    let device = Default::default();
    for (file, is_flow) in [("flow.safetensors", true), ("hift.safetensors", false)] {
        let path = fixture().join(file);
        let store = TensorStore::open(std::slice::from_ref(&path)).unwrap();
        let builder = Builder::<B>::load(&store, &device);
        let bytes = if is_flow {
            let flow = Flow::new(&builder, &config.flow).unwrap();
            named_safetensors(&flow, &builder.into_names()).unwrap()
        } else {
            let hift = Hift::new(&builder, &config.hift).unwrap();
            named_safetensors(&hift, &builder.into_names()).unwrap()
        };
        let original = std::fs::read(&path).unwrap();
        let (a, b) = (
            safetensors::SafeTensors::deserialize(&original).unwrap(),
            safetensors::SafeTensors::deserialize(&bytes).unwrap(),
        );
        let mut names_a: Vec<String> = a.names().into_iter().map(String::from).collect();
        let mut names_b: Vec<String> = b.names().into_iter().map(String::from).collect();
        names_a.sort();
        names_b.sort();
        assert_eq!(names_a, names_b, "{file}: the same state-dict names");
        for name in &names_a {
            assert_eq!(
                a.tensor(name).unwrap().data(),
                b.tensor(name).unwrap().data(),
                "{file}: {name}"
            );
        }
    }
}

#[test]
fn folded_and_parametrized_weight_norm_layouts_load_alike() {
    // hift.pt files come with weight_g/weight_v (old torch), parametrizations.weight.original0/1
    // (new torch) or plain folded weights: all three give the same waveform.
    let r = Reference::load();
    let (config, _, hift) = models::<B>(&Default::default());
    let device = Default::default();
    let original = std::fs::read(fixture().join("hift.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&original).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut variants = Vec::new();
    for layout in ["parametrized", "folded"] {
        let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        let floats = |name: &str| -> Vec<f32> {
            st.tensor(name)
                .unwrap()
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect()
        };
        for name in st.names() {
            let shape = st.tensor(name).unwrap().shape().to_vec();
            if let Some(base) = name.strip_suffix(".weight_g") {
                let g = floats(name);
                let v = floats(&format!("{base}.weight_v"));
                let v_shape = st
                    .tensor(&format!("{base}.weight_v"))
                    .unwrap()
                    .shape()
                    .to_vec();
                if layout == "parametrized" {
                    tensors.push((
                        format!("{base}.parametrizations.weight.original0"),
                        shape,
                        g,
                    ));
                    tensors.push((
                        format!("{base}.parametrizations.weight.original1"),
                        v_shape,
                        v,
                    ));
                } else {
                    let per = v.len() / g.len();
                    let folded: Vec<f32> = v
                        .chunks(per)
                        .zip(&g)
                        .flat_map(|(row, &gain)| {
                            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
                            row.iter().map(move |x| x * gain / norm).collect::<Vec<_>>()
                        })
                        .collect();
                    tensors.push((format!("{base}.weight"), v_shape, folded));
                }
            } else if !name.ends_with(".weight_v") {
                tensors.push((name.to_string(), shape, floats(name)));
            }
        }
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
            .into_iter()
            .map(|(n, s, v)| (n, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
            .iter()
            .map(|(n, s, b)| {
                (
                    n.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                        .unwrap(),
                )
            })
            .collect();
        let path = dir.path().join(format!("{layout}.safetensors"));
        std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
        let store = TensorStore::open(&[path]).unwrap();
        variants.push(Hift::new(&Builder::<B>::load(&store, &device), &config.hift).unwrap());
    }
    let mel: Tensor<B, 3> = r.t::<B, 3>("hift_mel", &Default::default());
    let expected = to_host_f32(hift.f0_predictor.forward(mel.clone()));
    for variant in variants {
        let got = to_host_f32(variant.f0_predictor.forward(mel.clone()));
        assert!(relative_error(&got, &expected) < 1e-5);
        check(
            "F0 predictor from another weight-norm layout",
            got,
            r.f32("f0_pred"),
            1e-4,
        );
    }
}

#[test]
fn the_real_decoder_config_builds_and_runs_at_full_size() {
    // The released decoder's config.yaml (models/released/) with random weights of the real shape
    // (111 M + 20 M parameters): one flow Euler step on 10 tokens and HiFT on its mel.
    let path = repo().join("models/released/glm-4-voice-decoder/config.yaml");
    let config = DecoderModelConfig::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
    let device = Default::default();
    let flow = Flow::<B>::new(&Builder::random(1, &device), &config.flow).unwrap();
    let hift = Hift::<B>::new(&Builder::random(2, &device), &config.hift).unwrap();
    let tokens: Vec<u32> = (0..10).map(|i| i * 1500 + 7).collect();
    let mel = flow.synthesize(&tokens, 1, 0, &device);
    assert_eq!(
        mel.dims(),
        [1, 80, 68],
        "10 tokens at 12.5 Hz = 68 mel frames"
    );
    let mut rng = arp_train::rng::Rng::new(3);
    let (wave, f0) = arp_train::models::decoder::hift::vocode(&hift, &config.hift, mel, &mut rng);
    assert_eq!(wave.dims(), [1, 68 * 256]);
    assert_eq!(f0.dims(), [1, 68]);
    assert!(to_host_f32(wave)
        .iter()
        .all(|v| v.is_finite() && v.abs() <= 0.99));
}
