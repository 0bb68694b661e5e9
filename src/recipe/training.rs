//! The training keys every stage shares (stage one, flow, HiFT): optimizer, schedule, length,
//! accumulation, clipping, checkpoint/eval/log cadence, the non-finite guard.

use serde::Serialize;

use super::reader::Section;
use crate::yaml_enum;

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    AdamW,
    Adam,
}
yaml_enum!(OptimizerKind { "adamw" => OptimizerKind::AdamW, "adam" => OptimizerKind::Adam });

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OptimizerConfig {
    #[serde(rename = "name")]
    pub kind: OptimizerKind,
    pub lr: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleKind {
    /// Linear warmup, then cosine decay to `min_lr_ratio * lr`.
    Cosine,
    /// Linear warmup, then linear decay to `min_lr_ratio * lr`.
    Linear,
    /// Linear warmup, then constant.
    Constant,
    /// Linear warmup, then `lr * sqrt(warmup / step)` (CosyVoice's WarmupLR for the decoder).
    InverseSqrt,
}
yaml_enum!(ScheduleKind {
    "cosine" => ScheduleKind::Cosine,
    "linear" => ScheduleKind::Linear,
    "constant" => ScheduleKind::Constant,
    "inverse_sqrt" => ScheduleKind::InverseSqrt,
});

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ScheduleConfig {
    #[serde(rename = "name")]
    pub kind: ScheduleKind,
    pub warmup_steps: usize,
    pub min_lr_ratio: f64,
}

/// How long a stage trains: optimizer steps, or passes over the data (written as the key
/// `steps: N` or `epochs: N` in the stage's section).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Length {
    Steps(usize),
    Epochs(usize),
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrainingConfig {
    pub optimizer: OptimizerConfig,
    pub schedule: ScheduleConfig,
    #[serde(flatten)]
    pub length: Length,
    pub gradient_accumulation: usize,
    /// Global gradient-norm bound; `None` (written as 0) disables clipping.
    #[serde(serialize_with = "zero_when_none")]
    pub clip_grad_norm: Option<f64>,
    pub checkpoint_every: usize,
    pub keep_last_n: usize,
    pub eval_every: usize,
    pub log_every: usize,
    /// Consecutive non-finite steps after which the run stops.
    pub max_nonfinite_steps: usize,
}

/// Per-stage defaults (the paper's and CosyVoice's published settings).
pub struct TrainingDefaults {
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub weight_decay: f64,
    pub schedule: ScheduleKind,
    pub warmup_steps: usize,
    pub length: Length,
    pub gradient_accumulation: usize,
    pub clip_grad_norm: Option<f64>,
    pub checkpoint_every: usize,
}

impl TrainingConfig {
    /// Reads the shared keys from `s` (the stage's own section).
    pub fn read(s: &Section, d: &TrainingDefaults) -> TrainingConfig {
        let o = s.section("optimizer");
        let optimizer = OptimizerConfig {
            kind: o.or("name", d.optimizer),
            lr: o.positive("lr", o.or("lr", d.lr)),
            betas: o.or("betas", [0.9, 0.999]),
            eps: o.positive("eps", o.or("eps", 1e-8)),
            weight_decay: o.or("weight_decay", d.weight_decay),
        };
        for (i, beta) in optimizer.betas.iter().enumerate() {
            o.check(
                (0.0..1.0).contains(beta),
                "betas",
                format!("beta{} must be in [0, 1), found {beta}", i + 1),
            );
        }
        o.check(
            optimizer.weight_decay >= 0.0,
            "weight_decay",
            format!("must be >= 0, found {}", optimizer.weight_decay),
        );
        o.finish();

        let sc = s.section("schedule");
        let schedule = ScheduleConfig {
            kind: sc.or("name", d.schedule),
            warmup_steps: sc.or("warmup_steps", d.warmup_steps),
            min_lr_ratio: sc.or("min_lr_ratio", 0.0),
        };
        sc.in_range("min_lr_ratio", schedule.min_lr_ratio, 0.0, 1.0);
        sc.finish();

        let length = match (s.opt::<usize>("steps"), s.opt::<usize>("epochs")) {
            (Some(_), Some(_)) => {
                let epochs_at = s.origin_of("epochs");
                s.check(false, "steps", format!(
                    "set either `steps` or `epochs`, not both (`epochs` is set at {epochs_at}; to replace an inherited one, set it to null)"
                ));
                d.length
            }
            (Some(steps), None) => Length::Steps(s.at_least("steps", steps, 1)),
            (None, Some(epochs)) => Length::Epochs(s.at_least("epochs", epochs, 1)),
            (None, None) => d.length,
        };
        // 0 turns clipping off (null would mean "the default").
        let clip_grad_norm = match s.opt::<f64>("clip_grad_norm") {
            None => d.clip_grad_norm,
            Some(v) => {
                s.check(
                    v >= 0.0,
                    "clip_grad_norm",
                    format!("must be >= 0 (0 disables clipping), found {v}"),
                );
                (v > 0.0).then_some(v)
            }
        };
        let checkpoint_every = s.or("checkpoint_every", d.checkpoint_every);
        let config = TrainingConfig {
            optimizer,
            schedule,
            length,
            gradient_accumulation: s.or("gradient_accumulation", d.gradient_accumulation),
            clip_grad_norm,
            checkpoint_every,
            keep_last_n: s.or("keep_last_n", 3),
            // The held-out loss is measured where checkpoints are written unless set apart.
            eval_every: s.or("eval_every", checkpoint_every),
            log_every: s.or("log_every", 10),
            max_nonfinite_steps: s.or("max_nonfinite_steps", 5),
        };
        s.at_least("gradient_accumulation", config.gradient_accumulation, 1);
        s.at_least("checkpoint_every", config.checkpoint_every, 1);
        s.at_least("keep_last_n", config.keep_last_n, 1);
        s.at_least("eval_every", config.eval_every, 1);
        s.at_least("log_every", config.log_every, 1);
        s.at_least("max_nonfinite_steps", config.max_nonfinite_steps, 1);
        config
    }
}

fn zero_when_none<S: serde::Serializer>(value: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(value.unwrap_or(0.0))
}
