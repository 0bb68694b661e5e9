//! The training machinery both stages share: learning-rate schedules, step checkpoints with
//! atomic writes and pruning, and the metrics log.

pub mod checkpoints;
pub mod decoder;
pub mod flow;
pub mod grads;
pub mod lm;
pub mod metrics;
pub mod part;
pub mod plot;
pub mod resume;
pub mod vocoder;
pub mod schedule;
