//! GLM-4-Voice-9B in burn against tools/glm4_reference.py (numpy): a tiny random checkpoint in
//! the sharded Hugging Face layout; logits within 1e-4 relative error, loss within 1e-5, greedy
//! tokens identical; the same with a PEFT LoRA adapter whose B is non-zero; broken checkpoints.

use std::path::{Path, PathBuf};

use arp_train::models::glm4::generation::{generate, Sampling};
use arp_train::models::glm4::load::{load_adapter, load_model};
use arp_train::models::glm4::model::causal_lm_loss;
use arp_train::models::glm4::ChatGlmModel;
use burn::backend::NdArray;
use burn::tensor::{Int, Tensor, TensorData};
use safetensors::SafeTensors;

use crate::common::repo;

type B = NdArray<f32>;

fn fixture() -> PathBuf {
    repo().join("tests/fixtures/glm4")
}

struct Expected {
    bytes: Vec<u8>,
}

impl Expected {
    fn load() -> Self {
        Expected {
            bytes: std::fs::read(fixture().join("expected.safetensors")).unwrap(),
        }
    }
    fn view(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).unwrap()
    }
    fn f32(&self, name: &str) -> Vec<f32> {
        self.view()
            .tensor(name)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }
    fn f64(&self, name: &str) -> f64 {
        f64::from_le_bytes(
            self.view().tensor(name).unwrap().data()[..8]
                .try_into()
                .unwrap(),
        )
    }
    fn i32(&self, name: &str) -> (Vec<usize>, Vec<i32>) {
        let view = self.view();
        let t = view.tensor(name).unwrap();
        (
            t.shape().to_vec(),
            t.data()
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
        )
    }
}

fn ints(expected: &Expected, name: &str) -> Tensor<B, 2, Int> {
    let (shape, values) = expected.i32(name);
    let values: Vec<i64> = values.into_iter().map(i64::from).collect();
    Tensor::from_data(
        TensorData::new(values, [shape[0], shape[1]]),
        &Default::default(),
    )
}

fn check(model: &ChatGlmModel<B>, expected: &Expected, prefix: &str) {
    let logits = model.forward(ints(expected, "input_ids"));
    let got = logits.clone().into_data().into_vec::<f32>().unwrap();
    let want = expected.f32(&format!("{prefix}logits"));
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let err = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max)
        / scale;
    assert!(err <= 1e-4, "{prefix}logits: relative error {err:e}");
    let loss = causal_lm_loss(logits, ints(expected, "labels")).into_scalar() as f64;
    let want_loss = expected.f64(&format!("{prefix}loss"));
    assert!(
        (loss - want_loss).abs() <= 1e-5,
        "{prefix}loss {loss} vs {want_loss}"
    );
    let prompt: Vec<u32> = expected
        .i32("greedy_prompt")
        .1
        .into_iter()
        .map(|t| t as u32)
        .collect();
    let greedy = generate(
        model,
        &prompt,
        8,
        &[],
        Sampling::Greedy,
        &Default::default(),
    );
    let want_greedy: Vec<u32> = expected
        .i32(&format!("{prefix}greedy"))
        .1
        .into_iter()
        .map(|t| t as u32)
        .collect();
    assert_eq!(greedy, want_greedy, "{prefix}greedy tokens");
    println!("{prefix}: logits relative error {err:e}, loss {loss:.7} (reference {want_loss:.7})");
}

#[test]
fn matches_the_reference_with_and_without_lora() {
    let expected = Expected::load();
    let (mut model, config) =
        load_model::<B>(&fixture().join("model"), &Default::default()).unwrap();
    assert_eq!(
        (
            config.num_layers,
            config.kv_groups(),
            config.padded_vocab_size
        ),
        (2, 2, 600)
    );
    check(&model, &expected, "");
    let adapter =
        load_adapter(&mut model, &fixture().join("adapter"), &Default::default()).unwrap();
    assert_eq!(adapter.r, 4);
    check(&model, &expected, "lora_");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[test]
fn broken_checkpoints_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    let load = |path: &Path| {
        load_model::<B>(path, &Default::default())
            .err()
            .expect("must fail")
    };

    copy_dir(&fixture().join("model"), &model);
    std::fs::remove_file(model.join("model-00002-of-00002.safetensors")).unwrap();
    let err = load(&model);
    assert!(
        err.contains("model-00002-of-00002.safetensors") && err.contains("is missing"),
        "{err}"
    );

    copy_dir(&fixture().join("model"), &model);
    let shard = model.join("model-00002-of-00002.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() - 1000]).unwrap();
    let err = load(&model);
    assert!(
        err.contains("model-00002-of-00002.safetensors is not a valid safetensors file"),
        "{err}"
    );

    copy_dir(&fixture().join("model"), &model);
    let bytes = std::fs::read(&shard).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::tensor::TensorView)> = st.tensors();
    let at = tensors
        .iter()
        .position(|(n, _)| n == "transformer.encoder.final_layernorm.weight")
        .unwrap();
    let wrong = vec![0u8; 4 * 32];
    tensors[at].1 =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![32], &wrong).unwrap();
    safetensors::serialize_to_file(tensors, None, &shard).unwrap();
    let err = load(&model);
    assert!(
        err.contains("`transformer.encoder.final_layernorm.weight`")
            && err.contains("shape [32], expected [64]"),
        "{err}"
    );

    std::fs::write(model.join("config.json"), r#"{"hidden_size": 64}"#).unwrap();
    let err = load(&model);
    assert!(
        err.contains("config.json") && err.contains("missing field"),
        "{err}"
    );
}
