//! Learning rate at an optimizer step (0-based), after linear warmup.

use crate::recipe::training::{ScheduleConfig, ScheduleKind};

/// The learning rate for optimizer step `step` (0-based) of `total` steps.
///
/// Warmup rises linearly to `base` over `warmup_steps` (step k gets base * (k+1) / warmup).
/// After it: `cosine` and `linear` decay from `base` to `min_lr_ratio * base` at the last step;
/// `constant` stays; `inverse_sqrt` is CosyVoice's WarmupLR: base * sqrt(warmup / (k+1)).
pub fn learning_rate(config: &ScheduleConfig, base: f64, step: usize, total: usize) -> f64 {
    let warmup = config.warmup_steps;
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let floor = base * config.min_lr_ratio;
    let decay_steps = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / decay_steps as f64).min(1.0);
    match config.kind {
        ScheduleKind::Constant => base,
        ScheduleKind::Cosine => {
            floor + (base - floor) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
        ScheduleKind::Linear => floor + (base - floor) * (1.0 - progress),
        ScheduleKind::InverseSqrt => base * (warmup.max(1) as f64 / (step + 1) as f64).sqrt(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: ScheduleKind, warmup: usize, min: f64) -> ScheduleConfig {
        ScheduleConfig {
            kind,
            warmup_steps: warmup,
            min_lr_ratio: min,
        }
    }

    #[test]
    fn warmup_then_cosine_to_the_floor() {
        let c = config(ScheduleKind::Cosine, 10, 0.1);
        assert!((learning_rate(&c, 1.0, 0, 110) - 0.1).abs() < 1e-12);
        assert!((learning_rate(&c, 1.0, 9, 110) - 1.0).abs() < 1e-12);
        assert!((learning_rate(&c, 1.0, 10, 110) - 1.0).abs() < 1e-12);
        assert!(
            (learning_rate(&c, 1.0, 60, 110) - 0.55).abs() < 1e-12,
            "halfway: floor + half the span"
        );
        assert!((learning_rate(&c, 1.0, 110, 110) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn other_shapes() {
        assert!(
            (learning_rate(&config(ScheduleKind::Linear, 0, 0.0), 2.0, 50, 100) - 1.0).abs()
                < 1e-12
        );
        assert_eq!(
            learning_rate(&config(ScheduleKind::Constant, 5, 0.0), 3.0, 77, 100),
            3.0
        );
        let inv = config(ScheduleKind::InverseSqrt, 2500, 0.0);
        assert!((learning_rate(&inv, 1e-3, 2499, 50_000) - 1e-3).abs() < 1e-15);
        assert!(
            (learning_rate(&inv, 1e-3, 9999, 50_000) - 5e-4).abs() < 1e-15,
            "a quarter of the steps: half the rate"
        );
    }
}
