//! The matmul every model layer uses: `a [.., m, k] @ b [.., k, n]`, padded with zeros on the
//! GPU backends so that no product contracts over a length that is not a multiple of 16.
//!
//! Why: cubek 0.2 (burn 0.21's wgpu and CUDA backends) has double-buffered matmul kernels that
//! are wrong when the contracted length is not a multiple of 16, and autotune picks them when
//! they time fastest (benches/perf-notes.md, "double-buffered matmul"; the ignored test
//! `wgpu_backend::double_buffered_matmul_reproduction`). The forward product contracts over k;
//! under autodiff the gradient of `a` contracts over n and that of `b` over m. Zero rows and
//! columns add exact zeros, so the product is unchanged. The CPU backend is not affected and
//! is left alone.

use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

const MULTIPLE: usize = 16;

/// `a @ b` with the contracted lengths (k, and under autodiff also m and n, which the
/// gradients contract over) zero-padded to multiples of 16 on the cubecl backends; the result
/// is cut back to [.., m, n].
pub fn padded_matmul<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    let device = a.device();
    if !affected::<B>(&device) {
        return a.matmul(b);
    }
    let (m, k, n) = (a.dims()[D - 2], a.dims()[D - 1], b.dims()[D - 1]);
    // Under autodiff the gradient of b is a^T @ dy (over m), that of a is dy @ b^T (over n).
    let training = B::ad_enabled(&device);
    let pad_m = if training { padding(m) } else { 0 };
    let pad_n = if training { padding(n) } else { 0 };
    let pad_k = padding(k);
    if pad_m == 0 && pad_n == 0 && pad_k == 0 {
        return a.matmul(b);
    }
    let a = pad_axis(pad_axis(a, D - 2, pad_m), D - 1, pad_k);
    let b = pad_axis(pad_axis(b, D - 2, pad_k), D - 1, pad_n);
    let y = a.matmul(b);
    if pad_m == 0 && pad_n == 0 {
        y
    } else {
        y.narrow(D - 2, 0, m).narrow(D - 1, 0, n)
    }
}

fn padding(len: usize) -> usize {
    (MULTIPLE - len % MULTIPLE) % MULTIPLE
}

/// Whether `B` runs cubecl's kernels (wgpu, CUDA, with or without fusion and autodiff).
fn affected<B: Backend>(device: &B::Device) -> bool {
    B::name(device).contains("cubecl")
}

fn pad_axis<B: Backend, const D: usize>(x: Tensor<B, D>, axis: usize, pad: usize) -> Tensor<B, D> {
    if pad == 0 {
        return x;
    }
    let mut shape = x.dims();
    shape[axis] = pad;
    let zeros = Tensor::zeros(shape, (&x.device(), x.dtype()));
    Tensor::cat(vec![x, zeros], axis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::tensor::Distribution;

    type A = Autodiff<NdArray<f32>>;

    #[test]
    fn padding_reaches_the_next_multiple_of_16() {
        assert_eq!([0, 1, 15, 16, 17, 40].map(padding), [0, 15, 1, 0, 15, 8]);
    }

    /// The padded product and its gradients equal the plain ones (the padding itself, which
    /// the CPU backend skips, exercised through `pad_axis` directly).
    #[test]
    fn zero_padding_leaves_product_and_gradients_unchanged() {
        let device = Default::default();
        let normal = Distribution::Normal(0.0, 1.0);
        let a = Tensor::<A, 3>::random([2, 5, 7], normal, &device).require_grad();
        let b = Tensor::<A, 3>::random([1, 7, 3], normal, &device).require_grad();
        let plain = a.clone().matmul(b.clone());
        let padded = pad_axis(pad_axis(a.clone(), 1, 11), 2, 9)
            .matmul(pad_axis(pad_axis(b.clone(), 1, 9), 2, 13))
            .narrow(1, 0, 5)
            .narrow(2, 0, 3);
        let close = |x: Tensor<NdArray<f32>, 3>, y: Tensor<NdArray<f32>, 3>| {
            let (x, y) = (
                x.into_data().to_vec::<f32>().unwrap(),
                y.into_data().to_vec::<f32>().unwrap(),
            );
            assert_eq!(x.len(), y.len());
            x.iter().zip(&y).all(|(p, q)| (p - q).abs() <= 1e-6)
        };
        assert!(close(plain.clone().inner(), padded.clone().inner()));
        let weights = Tensor::<A, 3>::random([2, 5, 3], normal, &device);
        let g1 = (plain * weights.clone()).sum().backward();
        let g2 = (padded * weights).sum().backward();
        assert!(close(a.grad(&g1).unwrap(), a.grad(&g2).unwrap()));
        assert!(close(b.grad(&g1).unwrap(), b.grad(&g2).unwrap()));
    }

    #[test]
    fn the_cpu_backend_is_not_padded() {
        assert!(!affected::<A>(&Default::default()));
        assert!(!affected::<NdArray<f32>>(&Default::default()));
    }
}
