//! Gradient utilities shared by the trainers: the global L2 norm and in-place scaling (for
//! clipping), over parameters of any rank.

use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ElementConversion;

use crate::models::params::NamedParam;

fn squares<B: AutodiffBackend>(grads: &GradientsParams, p: &NamedParam) -> Option<f64> {
    macro_rules! try_rank {
        ($($d:literal),*) => {$(
            if let Some(g) = grads.get::<B::InnerBackend, $d>(p.id) {
                return Some(g.powi_scalar(2).sum().into_scalar().elem::<f64>());
            }
        )*};
    }
    try_rank!(1, 2, 3, 4);
    None
}

/// Global L2 norm of the gradients of the trainable `params`.
pub fn grad_norm<B: AutodiffBackend>(grads: &GradientsParams, params: &[NamedParam]) -> f64 {
    params
        .iter()
        .filter(|p| p.trainable)
        .filter_map(|p| squares::<B>(grads, p))
        .sum::<f64>()
        .sqrt()
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
