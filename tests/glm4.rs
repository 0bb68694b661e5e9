//! GLM-4-Voice-9B in burn against tools/fixtures/glm4_reference.py (numpy): a tiny random checkpoint in
//! the sharded Hugging Face layout; logits within 1e-4 relative error, loss within 1e-5, greedy
//! tokens identical; the same with a PEFT LoRA adapter whose B is non-zero; broken checkpoints.

use std::path::{Path, PathBuf};

use arp_train::models::glm4::generation::{generate, Sampling};
use arp_train::models::glm4::load::{load_adapter, load_model};
use arp_train::models::glm4::model::causal_lm_loss;
use arp_train::models::glm4::ChatGlmModel;
use arp_train::models::to_host_f32;
use burn::backend::NdArray;
use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Int, Tensor, TensorData};
use safetensors::SafeTensors;

use crate::common::{copy_dir, repo};

type B = NdArray<f32>;

pub fn fixture() -> PathBuf {
    repo().join("tests/fixtures/glm4")
}

pub struct Expected {
    bytes: Vec<u8>,
}

impl Expected {
    pub fn load() -> Self {
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

pub fn ints<B: Backend>(expected: &Expected, name: &str, device: &B::Device) -> Tensor<B, 2, Int> {
    let (shape, values) = expected.i32(name);
    let values: Vec<i64> = values.into_iter().map(i64::from).collect();
    Tensor::from_data(TensorData::new(values, [shape[0], shape[1]]), device)
}

/// How close a backend must come to the reference: logits (relative to the largest), loss
/// (absolute); greedy tokens are always identical.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub logits: f32,
    pub loss: f64,
}

pub const FP32: Tolerance = Tolerance {
    logits: 1e-4,
    loss: 1e-5,
};

/// Logits, loss and 8 greedy tokens (KV cache) of `model` against the reference's `prefix`
/// entries. Returns (logits relative error, loss error).
fn check<B: Backend>(
    model: &ChatGlmModel<B>,
    expected: &Expected,
    prefix: &str,
    tol: Tolerance,
    device: &B::Device,
) -> (f32, f64) {
    // The weights are in the backend's float type (the logits are fp32 by design).
    assert_eq!(
        model.transformer.output_layer.weight.val().dtype(),
        <B::FloatElem as burn::tensor::Element>::dtype(),
        "weights in the backend's float type"
    );
    let logits = model.forward(ints::<B>(expected, "input_ids", device));
    let got = to_host_f32(logits.clone());
    let want = expected.f32(&format!("{prefix}logits"));
    assert_eq!(got.len(), want.len());
    let err = relative_error(&got, &want);
    assert!(err <= tol.logits, "{prefix}logits: relative error {err:e}");
    let loss: f64 = causal_lm_loss(logits, ints::<B>(expected, "labels", device))
        .into_scalar()
        .elem();
    let want_loss = expected.f64(&format!("{prefix}loss"));
    assert!(
        (loss - want_loss).abs() <= tol.loss,
        "{prefix}loss {loss} vs {want_loss}"
    );
    let prompt: Vec<u32> = expected
        .i32("greedy_prompt")
        .1
        .into_iter()
        .map(|t| t as u32)
        .collect();
    let greedy = generate(model, &prompt, 8, &[], Sampling::Greedy, device);
    let want_greedy: Vec<u32> = expected
        .i32(&format!("{prefix}greedy"))
        .1
        .into_iter()
        .map(|t| t as u32)
        .collect();
    assert_eq!(greedy, want_greedy, "{prefix}greedy tokens");
    println!("{prefix}: logits relative error {err:e}, loss {loss:.7} (reference {want_loss:.7})");
    (err, (loss - want_loss).abs())
}

/// The reference checks on backend `B`, without and with the PEFT adapter: ((logits error,
/// loss error) base, the same with LoRA).
pub fn parity_on<B: Backend>(tol: Tolerance, device: &B::Device) -> [(f32, f64); 2] {
    let expected = Expected::load();
    let (mut model, config) = load_model::<B>(&fixture().join("model"), device).unwrap();
    assert_eq!(
        (
            config.num_layers,
            config.kv_groups(),
            config.padded_vocab_size
        ),
        (2, 2, 600)
    );
    let base = check(&model, &expected, "", tol, device);
    let adapter = load_adapter(&mut model, &fixture().join("adapter"), device).unwrap();
    assert_eq!(adapter.r, 4);
    [base, check(&model, &expected, "lora_", tol, device)]
}

#[test]
fn matches_the_reference_with_and_without_lora() {
    parity_on::<B>(FP32, &Default::default());
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

    // Fewer layers in config.json than in the checkpoint: an error, not a smaller model.
    copy_dir(&fixture().join("model"), &model);
    let config_path = model.join("config.json");
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    let layers = config["num_layers"].as_u64().unwrap();
    config["num_layers"] = (layers - 1).into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let err = load(&model);
    assert!(
        err.contains(&format!(
            "at least {layers} layers but config.json says num_layers = {}",
            layers - 1
        )),
        "{err}"
    );

    std::fs::write(model.join("config.json"), r#"{"hidden_size": 64}"#).unwrap();
    let err = load(&model);
    assert!(
        err.contains("config.json") && err.contains("missing field"),
        "{err}"
    );
}

fn relative_error(got: &[f32], want: &[f32]) -> f32 {
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max)
        / scale
}

fn logits_of(model: &ChatGlmModel<B>, expected: &Expected) -> Vec<f32> {
    model
        .forward(ints::<B>(expected, "input_ids", &Default::default()))
        .into_data()
        .into_vec::<f32>()
        .unwrap()
}

#[test]
fn parameter_names_are_the_checkpoint_names() {
    use arp_train::models::params::named_params;
    let (model, _) = load_model::<B>(&fixture().join("model"), &Default::default()).unwrap();
    let names: Vec<String> = named_params(&model).into_iter().map(|p| p.name).collect();
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixture().join("model/model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let mut expected: Vec<String> = index["weight_map"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !k.ends_with("inv_freq"))
        .cloned()
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected);
    assert_eq!(names[0], "transformer.embedding.word_embeddings.weight");
}

#[test]
fn lora_training_touches_only_the_adapters() {
    use arp_train::models::glm4::load::add_lora;
    use arp_train::models::params::{named_params, set_trainable, PathStack};
    use burn::backend::Autodiff;
    use burn::module::{ModuleVisitor, Param};
    type A = Autodiff<NdArray<f32>>;
    let device = Default::default();
    let expected = Expected::load();
    let (mut model, _) = load_model::<A>(&fixture().join("model"), &device).unwrap();
    let targets: Vec<String> = ["query_key_value", "dense_4h_to_h"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    add_lora(&mut model, &targets, 4, 8.0, 0.0, 7, &device).unwrap();
    let model = set_trainable(model, |name| name.contains(".lora."));
    let params = named_params(&model);
    let trainable: usize = params.iter().filter(|p| p.trainable).map(|p| p.numel).sum();
    // 2 layers x (query_key_value 64 -> 128, dense_4h_to_h 96 -> 64): A [4, in] + B [out, 4].
    assert_eq!(trainable, 2 * (4 * (64 + 128) + 4 * (96 + 64)));
    // Fresh adapters (B = 0) leave the base model's output unchanged.
    let (base, _) = load_model::<B>(&fixture().join("model"), &Default::default()).unwrap();
    let ids = |e: &Expected| {
        let (shape, values) = e.i32("input_ids");
        Tensor::<A, 2, Int>::from_data(
            TensorData::new(
                values.into_iter().map(i64::from).collect::<Vec<_>>(),
                [shape[0], shape[1]],
            ),
            &device,
        )
    };
    let logits = model.forward(ids(&expected));
    assert!(
        relative_error(
            &logits.clone().into_data().into_vec::<f32>().unwrap(),
            &logits_of(&base, &expected)
        ) < 1e-6
    );
    let labels = {
        let (shape, values) = expected.i32("labels");
        Tensor::<A, 2, Int>::from_data(
            TensorData::new(
                values.into_iter().map(i64::from).collect::<Vec<_>>(),
                [shape[0], shape[1]],
            ),
            &device,
        )
    };
    let grads = causal_lm_loss(logits, labels).backward();
    struct Check<'a>(
        &'a <A as burn::tensor::backend::AutodiffBackend>::Gradients,
        PathStack,
        Vec<(String, bool)>,
    );
    impl ModuleVisitor<A> for Check<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.1.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.1.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
            self.2
                .push((self.1.name(), param.val().grad(self.0).is_some()));
        }
    }
    let mut check = Check(&grads, PathStack::default(), Vec::new());
    burn::module::Module::visit(&model, &mut check);
    assert_eq!(check.2.len(), 17 + 2 * 2 * 2);
    for (name, has_grad) in &check.2 {
        // Every adapter matrix has a gradient (A's is zero in value while B is zero); no base weight has one.
        assert_eq!(*has_grad, name.contains(".lora."), "{name}");
    }
}

#[test]
fn merged_and_adapter_exports_reload_to_the_same_logits() {
    use arp_train::models::glm4::export::{save_adapter, save_merged, AdapterInfo, ExportDtype};
    let expected = Expected::load();
    let want = expected.f32("lora_logits");
    let dir = tempfile::tempdir().unwrap();
    let load_with_adapter = || {
        let (mut model, _) =
            load_model::<B>(&fixture().join("model"), &Default::default()).unwrap();
        load_adapter(&mut model, &fixture().join("adapter"), &Default::default()).unwrap();
        model
    };

    // Adapter: PEFT's names and shapes, and the same logits after reloading.
    let adapter_dir = dir.path().join("adapter");
    let info = AdapterInfo {
        rank: 4,
        alpha: 8.0,
        dropout: 0.0,
        targets: arp_train::recipe::LORA_TARGETS
            .iter()
            .map(|s| s.to_string())
            .collect(),
        base_model: fixture().join("model"),
    };
    save_adapter(&load_with_adapter(), &info, &adapter_dir).unwrap();
    let shapes = |path: PathBuf| -> Vec<(String, Vec<usize>)> {
        let bytes = std::fs::read(path).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut v: Vec<_> = st
            .tensors()
            .into_iter()
            .map(|(n, t)| (n, t.shape().to_vec()))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        shapes(adapter_dir.join("adapter_model.safetensors")),
        shapes(fixture().join("adapter/adapter_model.safetensors"))
    );
    let (mut reloaded, _) = load_model::<B>(&fixture().join("model"), &Default::default()).unwrap();
    load_adapter(&mut reloaded, &adapter_dir, &Default::default()).unwrap();
    assert!(relative_error(&logits_of(&reloaded, &expected), &want) <= 1e-4);

    // Merged, fp32, in small shards: the LoRA logits without any adapter.
    let merged = dir.path().join("merged");
    save_merged(
        load_with_adapter(),
        &fixture().join("model"),
        &merged,
        ExportDtype::F32,
        200_000,
    )
    .unwrap();
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(merged.join("model.safetensors.index.json")).unwrap(),
    )
    .unwrap();
    let files: std::collections::BTreeSet<&str> = index["weight_map"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        files.len() >= 2
            && files
                .iter()
                .all(|f| f.starts_with("model-0000") && merged.join(f).is_file()),
        "{files:?}"
    );
    assert!(merged.join("config.json").is_file());
    let (model, config) = load_model::<B>(&merged, &Default::default()).unwrap();
    assert_eq!(config.num_layers, 2);
    let err = relative_error(&logits_of(&model, &expected), &want);
    assert!(err <= 1e-4, "merged fp32: relative error {err:e}");

    // Merged, bf16 (the default for real exports): within bf16 rounding.
    let merged16 = dir.path().join("merged-bf16");
    save_merged(
        load_with_adapter(),
        &fixture().join("model"),
        &merged16,
        ExportDtype::Bf16,
        usize::MAX,
    )
    .unwrap();
    let bytes = std::fs::read(merged16.join("model-00001-of-00001.safetensors")).unwrap();
    assert_eq!(
        SafeTensors::deserialize(&bytes)
            .unwrap()
            .tensor("transformer.output_layer.weight")
            .unwrap()
            .dtype(),
        safetensors::Dtype::BF16
    );
    let (model, _) = load_model::<B>(&merged16, &Default::default()).unwrap();
    let err16 = relative_error(&logits_of(&model, &expected), &want);
    println!("merged export: fp32 relative error {err:e}, bf16 {err16:e}");
    assert!(err16 <= 3e-2, "merged bf16: relative error {err16:e}");
}

#[test]
fn recipe_finetune_modes_choose_the_trainable_parameters() {
    use arp_train::models::glm4::finetune::prepare_for_finetune;
    use arp_train::models::params::named_params;
    use arp_train::recipe::{PathCheck, Recipe};
    use burn::backend::Autodiff;
    type A = Autodiff<NdArray<f32>>;
    let device = Default::default();
    let recipe = |sets: &[&str]| {
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        Recipe::load(&repo().join("recipes/tiny.yaml"), &sets, PathCheck::Lenient)
            .unwrap()
            .recipe
    };
    let trainable = |sets: &[&str]| -> Vec<String> {
        let (model, _) = load_model::<A>(&fixture().join("model"), &device).unwrap();
        let model = prepare_for_finetune(model, &recipe(sets).lm, 7, &device).unwrap();
        named_params(&model)
            .into_iter()
            .filter(|p| p.trainable)
            .map(|p| p.name)
            .collect()
    };
    let lora = trainable(&["lm.lora.targets=[dense]"]);
    assert_eq!(lora.len(), 4, "A and B on `dense` in 2 layers: {lora:?}");
    assert!(lora
        .iter()
        .all(|n| n.contains("self_attention.dense.lora.")));
    let full = trainable(&[
        "lm.finetune=full",
        "lm.freeze_patterns=[transformer.embedding.*, '*layernorm*']",
    ]);
    assert_eq!(
        full.len(),
        17 - 1 - 5,
        "all but the embedding and the five norms: {full:?}"
    );
    assert!(!full
        .iter()
        .any(|n| n.contains("layernorm") || n.contains("embedding")));
}

/// Gradients of the reference loss for the PEFT adapter's LoRA matrices (A and B non-zero) when
/// only they require grad, as training sets them: (name, values) in module order.
pub fn lora_gradients_on<A: burn::tensor::backend::AutodiffBackend>(
    device: &A::Device,
) -> Vec<(String, Vec<f32>)> {
    use arp_train::models::params::{set_trainable, PathStack};
    use burn::module::{ModuleVisitor, Param};
    let expected = Expected::load();
    let (mut model, _) = load_model::<A>(&fixture().join("model"), device).unwrap();
    load_adapter(&mut model, &fixture().join("adapter"), device).unwrap();
    let model = set_trainable(model, |name| name.contains(".lora."));
    let logits = model.forward(ints::<A>(&expected, "input_ids", device));
    let grads = causal_lm_loss(logits, ints::<A>(&expected, "labels", device)).backward();
    struct Collect<'a, A: burn::tensor::backend::AutodiffBackend>(
        &'a A::Gradients,
        PathStack,
        Vec<(String, Vec<f32>)>,
    );
    impl<A: burn::tensor::backend::AutodiffBackend> ModuleVisitor<A> for Collect<'_, A> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.1.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.1.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
            let name = self.1.name();
            if name.contains(".lora.") {
                let grad = param
                    .val()
                    .grad(self.0)
                    .expect("every LoRA matrix has a gradient");
                self.2.push((name, to_host_f32(grad)));
            }
        }
    }
    let mut collect = Collect::<A>(&grads, PathStack::default(), Vec::new());
    burn::module::Module::visit(&model, &mut collect);
    collect.2
}
