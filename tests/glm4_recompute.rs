//! Stage one's per-block recomputation and chunked loss (`lm.activation_checkpointing: true`)
//! against the plain backward on the tiny GLM-4 checkpoint: the same loss and the same gradient
//! of every trainable parameter to 1e-6 (relative to the gradient's largest entry), with LoRA
//! dropout on and with full fine-tuning (embedding, norms and output layer included).

use arp_train::models::glm4::load::{load_adapter, load_model};
use arp_train::models::glm4::ChatGlmModel;
use arp_train::models::params::{named_params, set_trainable};
use arp_train::train::lm_backward::{lm_grads, LmBackward};
use burn::backend::{Autodiff, NdArray};
use burn::module::ParamId;
use burn::nn::DropoutConfig;
use burn::optim::GradientsParams;

use crate::glm4::{fixture, ints, Expected};

type I = NdArray<f32>;
type A = Autodiff<I>;

fn flat(grads: &GradientsParams, id: ParamId) -> Option<Vec<f32>> {
    let host = |data: burn::tensor::TensorData| data.to_vec::<f32>().unwrap();
    grads
        .get::<I, 1>(id)
        .map(|g| host(g.into_data()))
        .or_else(|| grads.get::<I, 2>(id).map(|g| host(g.into_data())))
}

/// Compares both ways on `model`; returns the worst relative gradient difference.
fn compare(model: &ChatGlmModel<A>, chunk_tokens: usize) -> (f64, f64, f64) {
    let device = Default::default();
    let expected = Expected::load();
    let ids = ints::<A>(&expected, "input_ids", &device);
    let labels = ints::<A>(&expected, "labels", &device);
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
        let want = flat(&plain.grads, p.id).unwrap_or_else(|| panic!("{}: no plain grad", p.name));
        let got = flat(&recomputed.grads, p.id)
            .unwrap_or_else(|| panic!("{}: no recomputed gradient", p.name));
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())) as f64;
        let diff = got
            .iter()
            .zip(&want)
            .fold(0.0f32, |m, (a, b)| m.max((a - b).abs())) as f64;
        assert!(scale > 0.0, "{}: zero gradient", p.name);
        let relative = diff / scale;
        assert!(
            relative <= 1e-6,
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
    assert!((recomputed.loss - plain.loss).abs() <= 1e-6 * plain.loss.abs());
    (plain.loss, recomputed.loss, worst)
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
