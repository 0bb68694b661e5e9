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
    accumulate_grads_and_step(
        model,
        optimizer,
        params,
        micro_batches,
        |model, i, weight| backward(model, loss_of(model, i) * weight),
        lr,
        clip_norm,
        poison,
    )
}

/// A micro-batch's (weighted) loss and, when it is finite, its parameter gradients.
pub struct MicroBatchGrads {
    pub loss: f64,
    pub grads: GradientsParams,
}

/// The plain backward pass of `loss` (skipped when it is not finite).
pub fn backward<B: AutodiffBackend, M: AutodiffModule<B>>(
    model: &M,
    loss: Tensor<B, 1>,
) -> MicroBatchGrads {
    let value: f64 = loss.clone().into_scalar().elem();
    let grads = if value.is_finite() {
        GradientsParams::from_grads(loss.backward(), model)
    } else {
        GradientsParams::new()
    };
    MicroBatchGrads { loss: value, grads }
}

/// Like [`accumulate_and_step`], for trainers that compute gradients their own way:
/// `grads_of(model, i, weight)` returns micro-batch `i`'s loss times `weight` (1 / micro_batches)
/// and the gradients of that weighted loss.
#[allow(clippy::too_many_arguments)]
pub fn accumulate_grads_and_step<B, M, O>(
    model: M,
    optimizer: &mut O,
    params: &[NamedParam],
    micro_batches: usize,
    mut grads_of: impl FnMut(&M, usize, f64) -> MicroBatchGrads,
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
        let micro = grads_of(&model, i, 1.0 / micro_batches as f64);
        let value = if poison { f64::NAN } else { micro.loss };
        if !value.is_finite() {
            finite = false;
            break;
        }
        loss += value;
        accumulator.accumulate(&model, micro.grads);
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
