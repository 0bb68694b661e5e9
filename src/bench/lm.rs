//! Stage-one steps as `train_lm` takes them (forward, causal LM loss, backward, clipping,
//! AdamW) on GLM-4 with random weights and random token batches.

use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Int, Tensor, TensorData};

use super::memory::Watch;
use super::{BenchSettings, Measurement};
use crate::models::glm4::config::Glm4Config;
use crate::models::glm4::finetune::prepare_for_finetune;
use crate::models::glm4::load::build_random;
use crate::models::glm4::model::ChatGlmModel;
use crate::models::params::named_params;
use crate::recipe::LmConfig;
use crate::rng::Rng;
use crate::train::lm_backward::{lm_grads, LmBackward};
use crate::train::step::accumulate_grads_and_step;

/// The stage-one shape and settings the baseline reproduces.
pub fn shape_json(
    c: &Glm4Config,
    lm: &LmConfig,
    s: &BenchSettings,
    dtype: &str,
) -> serde_json::Value {
    let mut config = c.clone();
    config.num_layers = s.layers;
    serde_json::json!({
        "config": config,
        "finetune": lm.finetune,
        "lora": lm.lora,
        "batch_size": s.batch_size,
        "seq_len": s.seq_len,
        "activation_checkpointing": lm.activation_checkpointing,
        "dtype": dtype,
        "optimizer": lm.train.optimizer,
        "clip_grad_norm": lm.train.clip_grad_norm,
        "seed": s.seed,
    })
}

/// Random ids in [0, vocab) for one step: ([batch, seq] ids, the same as labels).
fn random_batch<B: AutodiffBackend>(
    rng: &mut Rng,
    vocab: usize,
    batch: usize,
    seq: usize,
    device: &B::Device,
) -> (Tensor<B, 2, Int>, Tensor<B, 2, Int>) {
    let ids: Vec<i64> = (0..batch * seq)
        .map(|_| rng.below_or_equal(vocab - 1) as i64)
        .collect();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch, seq]), device);
    (ids.clone(), ids)
}

/// Runs `s.warmup + s.steps` steps; times the last `s.steps`.
#[allow(clippy::too_many_arguments)]
pub fn bench_lm<B: AutodiffBackend>(
    c: &Glm4Config,
    lm: &LmConfig,
    s: &BenchSettings,
    flops_per_step: f64,
    peak_tflops: Option<f64>,
    gpu: bool,
    shape: serde_json::Value,
    device: &B::Device,
) -> Result<Measurement, String> {
    let mut config = c.clone();
    config.num_layers = s.layers;
    let watch = Watch::start(gpu);
    B::seed(device, s.seed);
    let model: ChatGlmModel<B> =
        prepare_for_finetune(build_random(&config, device), lm, s.seed, device)?;
    let params = named_params(&model);
    let backward = LmBackward::for_recipe(lm.activation_checkpointing);
    let mut optimizer = crate::train::adamw(&lm.train.optimizer).init::<B, ChatGlmModel<B>>();
    let mut model = Some(model);
    let mut rng = Rng::for_step(s.seed, 0xBE7C, 0);
    let (times, losses) = super::timed_steps(s, "bench: stage one", |step| {
        let (ids, labels) = random_batch::<B>(
            &mut rng,
            config.padded_vocab_size,
            s.batch_size,
            s.seq_len,
            device,
        );
        let (stepped, outcome) = accumulate_grads_and_step(
            model.take().expect("the model is put back every step"),
            &mut optimizer,
            &params,
            1,
            |m, _, weight| {
                let seed = s.seed ^ step as u64;
                lm_grads(m, ids.clone(), labels.clone(), weight, seed, backward)
            },
            lm.train.optimizer.lr,
            lm.train.clip_grad_norm,
            false,
        );
        model = Some(stepped);
        B::sync(device).map_err(|e| format!("the device failed: {e}"))?;
        if !outcome.applied {
            return Err(format!(
                "stage-one bench step {step}: loss {} / gradient norm {} is not finite",
                outcome.loss, outcome.grad_norm
            ));
        }
        Ok(outcome.loss)
    })?;
    drop(model);
    Ok(Measurement::new(
        "lm",
        "tokens",
        s.batch_size * s.seq_len,
        s.warmup,
        times,
        losses,
        Some(flops_per_step),
        peak_tflops,
        watch.finish(),
        shape,
    ))
}
