//! Training: the one loop every part runs in ([`driver`]), the parts that plug into it (stage
//! one's [`lm`], stage two's [`flow`] and [`vocoder`], assembled by [`decoder`]), and the
//! machinery they share: optimizer steps, learning-rate schedules, atomic checkpoints, resume
//! checks and the metrics log.

pub mod adamw_state;
pub mod checkpoints;
pub mod decoder;
pub mod driver;
pub mod flow;
pub mod gan;
pub mod grads;
pub mod lm;
pub mod lm_backward;
pub mod metrics;
pub mod plot;
pub mod recompute;
pub mod resume;
pub mod schedule;
pub mod stage_two;
pub mod step;
pub mod tensorboard;
pub mod vocoder;

/// The optimizer every stage uses, from a recipe's `optimizer` section. `adam` is AdamW with the
/// given weight decay (0 by default, which is Adam).
pub fn adamw(o: &crate::recipe::training::OptimizerConfig) -> burn::optim::AdamWConfig {
    burn::optim::AdamWConfig::new()
        .with_beta_1(o.betas[0] as f32)
        .with_beta_2(o.betas[1] as f32)
        .with_epsilon(o.eps as f32)
        .with_weight_decay(o.weight_decay as f32)
}

/// The optimizer of every part: AdamW over module `M`.
pub type Adam<M, B> = burn::optim::adaptor::OptimizerAdaptor<burn::optim::AdamW, M, B>;

/// `total / weight`, a held-out loss summed with weights (tokens, frames); NaN for no weight.
pub fn weighted_mean(total: f64, weight: usize) -> f64 {
    if weight == 0 {
        f64::NAN
    } else {
        total / weight as f64
    }
}
