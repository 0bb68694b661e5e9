//! One optimizer step, shared by the trainers and `arp-train bench`: gradients of each
//! micro-batch's loss accumulated, the global norm clipped, and the update applied only when the
//! loss and the norm are finite.

use burn::module::AutodiffModule;
use burn::optim::{GradientsAccumulator, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{ElementConversion, Tensor};

use super::grads::clip;
use crate::models::params::NamedParam;

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepOutcome {
    /// Sum over micro-batches of loss / micro-batches (the mean loss of the step).
    pub loss: f64,
    /// Global gradient norm before clipping (NaN when a loss was not finite).
    pub grad_norm: f64,
    /// false: a loss or the gradient norm was not finite, and the weights were left as they were.
    pub applied: bool,
}

/// Accumulates the gradients of `loss_of(model, i)` for `i in 0..micro_batches` (each loss
/// divided by `micro_batches`), clips them to `clip_norm` and steps `optimizer` at `lr`.
/// Stops at the first non-finite loss. `poison` (a test hook) makes every loss NaN.
#[allow(clippy::too_many_arguments)]
pub fn accumulate_and_step<B, M, O>(
    model: M,
    optimizer: &mut O,
    params: &[NamedParam],
    micro_batches: usize,
    mut loss_of: impl FnMut(&M, usize) -> Tensor<B, 1>,
    lr: f64,
    clip_norm: Option<f64>,
    poison: bool,
) -> (M, StepOutcome)
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    O: Optimizer<M, B>,
{
    let mut accumulator = GradientsAccumulator::<M>::new();
    let mut loss = 0.0;
    let mut finite = true;
    for i in 0..micro_batches {
        let mut micro = loss_of(&model, i) / micro_batches as f64;
        if poison {
            micro = micro * f64::NAN;
        }
        let value: f64 = micro.clone().into_scalar().elem();
        if !value.is_finite() {
            finite = false;
            break;
        }
        loss += value;
        accumulator.accumulate(
            &model,
            GradientsParams::from_grads(micro.backward(), &model),
        );
    }
    let mut grads = accumulator.grads();
    let grad_norm = if finite {
        clip::<B>(&mut grads, params, clip_norm)
    } else {
        f64::NAN
    };
    if !finite || !grad_norm.is_finite() {
        return (
            model,
            StepOutcome {
                loss,
                grad_norm,
                applied: false,
            },
        );
    }
    let model = optimizer.step(lr, model, grads);
    (
        model,
        StepOutcome {
            loss,
            grad_norm,
            applied: true,
        },
    )
}
