//! Gradient utilities shared by the trainers: the global L2 norm and in-place scaling (for
//! clipping), over parameters of any rank.

use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, ElementConversion, Tensor};

use crate::models::params::NamedParam;

/// sum(g^2) of one parameter's gradient, left on the device.
fn squares<B: AutodiffBackend>(
    grads: &GradientsParams,
    p: &NamedParam,
) -> Option<Tensor<B::InnerBackend, 1>> {
    macro_rules! try_rank {
        ($($d:literal),*) => {$(
            if let Some(g) = grads.get::<B::InnerBackend, $d>(p.id) {
                return Some(g.cast(DType::F32).powi_scalar(2).sum());
            }
        )*};
    }
    try_rank!(1, 2, 3, 4);
    None
}

/// Global L2 norm of the gradients of the trainable `params`. The squares are summed on the
/// device (in fp32) and read back once: one host sync per step, not one per parameter.
pub fn grad_norm<B: AutodiffBackend>(grads: &GradientsParams, params: &[NamedParam]) -> f64 {
    params
        .iter()
        .filter(|p| p.trainable)
        .filter_map(|p| squares::<B>(grads, p))
        .reduce(|a, b| a + b)
        .map_or(0.0, |total| total.into_scalar().elem::<f64>().sqrt())
}

/// Multiplies every gradient of `params` by `factor`.
pub fn scale_grads<B: AutodiffBackend>(
    grads: &mut GradientsParams,
    params: &[NamedParam],
    factor: f64,
) {
    for p in params.iter().filter(|p| p.trainable) {
        macro_rules! try_rank {
            ($($d:literal),*) => {$(
                if let Some(g) = grads.remove::<B::InnerBackend, $d>(p.id) {
                    grads.register(p.id, g * factor);
                    continue;
                }
            )*};
        }
        try_rank!(1, 2, 3, 4);
    }
}

/// Clips to `max` (when set) and returns the norm before clipping.
pub fn clip<B: AutodiffBackend>(
    grads: &mut GradientsParams,
    params: &[NamedParam],
    max: Option<f64>,
) -> f64 {
    let norm = grad_norm::<B>(grads, params);
    if let Some(max) = max {
        if norm.is_finite() && norm > max {
            scale_grads::<B>(grads, params, max / norm);
        }
    }
    norm
}
