//! The training machinery both stages share: learning-rate schedules, step checkpoints with
//! atomic writes and pruning, and the metrics log.

pub mod adamw_state;
pub mod checkpoints;
pub mod decoder;
pub mod flow;
pub mod grads;
pub mod lm;
pub mod lm_backward;
pub mod metrics;
pub mod part;
pub mod plot;
pub mod recompute;
pub mod resume;
pub mod schedule;
pub mod step;
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
