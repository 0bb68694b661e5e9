//! Stage one's per-block recomputation and chunked loss (`lm.activation_checkpointing: true`)
//! against the plain backward on the tiny GLM-4 checkpoint: the same loss and the same gradient
//! of every trainable parameter to 1e-6 (relative to the gradient's largest entry), with LoRA
//! dropout on and with full fine-tuning (embedding, norms and output layer included).

use arp_train::models::glm4::load::{load_adapter, load_model};
use arp_train::models::glm4::ChatGlmModel;
use arp_train::models::params::{named_params, set_trainable};
use arp_train::models::to_host_f32;
use arp_train::train::lm_backward::{lm_grads, LmBackward};
use burn::backend::{Autodiff, NdArray};
use burn::module::ParamId;
use burn::nn::DropoutConfig;
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;

use crate::glm4::{fixture, ints, Expected};

type A = Autodiff<NdArray<f32>>;

pub fn flat<A: AutodiffBackend>(grads: &GradientsParams, id: ParamId) -> Option<Vec<f32>> {
    grads
        .get::<A::InnerBackend, 1>(id)
        .map(to_host_f32)
        .or_else(|| grads.get::<A::InnerBackend, 2>(id).map(to_host_f32))
}

/// Computes the fixture batch's loss and gradients both ways on `model` and checks that every
/// trainable parameter's gradient agrees within `tolerance` (relative to its largest entry) and
/// the loss within `tolerance` (relative). Returns (plain loss, recomputed loss, worst difference).
pub fn compare_on<A: AutodiffBackend>(
    model: &ChatGlmModel<A>,
    chunk_tokens: usize,
    tolerance: f64,
    device: &A::Device,
) -> (f64, f64, f64) {
    let expected = Expected::load();
    let ids = ints::<A>(&expected, "input_ids", device);
    let labels = ints::<A>(&expected, "labels", device);
    let weight = 0.5;
    let plain = lm_grads(
        model,
        ids.clone(),
        labels.clone(),
        weight,
        11,
        LmBackward::Plain,
    );
    let recomputed = lm_grads(
        model,
        ids,
        labels,
        weight,
        11,
        LmBackward::Recompute {
            loss_chunk_tokens: chunk_tokens,
        },
    );
    let mut worst = 0.0f64;
    let mut compared = 0;
    for p in named_params(model).iter().filter(|p| p.trainable) {
        let want =
            flat::<A>(&plain.grads, p.id).unwrap_or_else(|| panic!("{}: no plain grad", p.name));
        let got = flat::<A>(&recomputed.grads, p.id)
            .unwrap_or_else(|| panic!("{}: no recomputed gradient", p.name));
        assert!(got.iter().all(|v| v.is_finite()), "{}: not finite", p.name);
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
        let diff = got
            .iter()
            .zip(&want)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs())) as f64;
        assert!(scale > 0.0, "{}: zero gradient", p.name);
        let relative = diff / scale;
        assert!(
            relative <= tolerance,
            "{}: relative difference {relative:e}",
            p.name
        );
        worst = worst.max(relative);
        compared += 1;
    }
    assert!(compared > 0);
    println!(
        "loss {} (plain {}), worst gradient difference {worst:e} over {compared} parameters",
        recomputed.loss, plain.loss
    );
    assert!((recomputed.loss - plain.loss).abs() <= tolerance * plain.loss.abs());
    (plain.loss, recomputed.loss, worst)
}

fn compare(model: &ChatGlmModel<A>, chunk_tokens: usize) -> (f64, f64, f64) {
    compare_on(model, chunk_tokens, 1e-6, &Default::default())
}

#[test]
fn recomputation_and_chunked_loss_match_the_plain_backward_with_lora_dropout() {
    let device = Default::default();
    let (mut model, _) = load_model::<A>(&fixture().join("model"), &device).unwrap();
    load_adapter(&mut model, &fixture().join("adapter"), &device).unwrap();
    let model = set_trainable(model, |name| name.contains(".lora."));
    let (without_dropout, _, _) = compare(&model, 5);
    let mut model = model;
    for block in model.transformer.encoder.layers.iter_mut() {
        let a = &mut block.self_attention;
        let m = &mut block.mlp;
        for linear in [
            &mut a.query_key_value,
            &mut a.dense,
            &mut m.dense_h_to_4h,
            &mut m.dense_4h_to_h,
        ] {
            linear.lora.as_mut().unwrap().dropout = DropoutConfig::new(0.3).init();
        }
    }
    // One chunk per token, and chunks longer than the sequence.
    let (with_dropout, _, _) = compare(&model, 1);
    compare(&model, 10_000);
    assert!(
        (with_dropout - without_dropout).abs() > 1e-4,
        "dropout changed the loss: {with_dropout} vs {without_dropout}"
    );
}

#[test]
fn recomputation_and_chunked_loss_match_the_plain_backward_in_full_finetuning() {
    let device = Default::default();
    let (model, _) = load_model::<A>(&fixture().join("model"), &device).unwrap();
    let model = set_trainable(model, |_| true);
    compare(&model, 7);
}
