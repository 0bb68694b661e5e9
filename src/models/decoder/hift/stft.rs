//! HiFT's short STFT and its inverse (n_fft 16, hop 4, periodic Hann, centered with reflection),
//! as fixed linear maps: the forward transform is a strided convolution with windowed DFT rows,
//! the inverse a matmul with the one-sided inverse DFT, windowing, overlap-add and division by
//! the window-square envelope (torch.stft / torch.istft with `center=True`).

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

use crate::audio::window::hann_periodic;
use crate::models::layers::{conv1d, overlap_add, pad_reflect};
use crate::models::padded_matmul::padded_matmul;

/// x [b, samples] -> [b, n_fft + 2, samples / hop + 1]: real parts of bins 0..=n/2, then the
/// imaginary parts.
pub fn stft<B: Backend>(x: Tensor<B, 2>, n_fft: usize, hop: usize) -> Tensor<B, 3> {
    let bins = n_fft / 2 + 1;
    let window = hann_periodic(n_fft);
    let mut basis = Vec::with_capacity(2 * bins * n_fft);
    for part in 0..2 {
        for k in 0..bins {
            for (n, w) in window.iter().enumerate() {
                let angle = 2.0 * std::f64::consts::PI * (k * n) as f64 / n_fft as f64;
                basis.push(
                    (if part == 0 {
                        w * angle.cos()
                    } else {
                        -w * angle.sin()
                    }) as f32,
                );
            }
        }
    }
    let device = x.device();
    let basis = Tensor::<B, 3>::from_data(TensorData::new(basis, [2 * bins, 1, n_fft]), &device);
    let padded = pad_reflect(x.unsqueeze_dim(1), n_fft / 2, n_fft / 2);
    conv1d(padded, basis, None, hop, 1)
}

/// spec [b, n_fft + 2, frames] (real then imaginary parts) -> [b, hop * (frames - 1)].
pub fn istft<B: Backend>(spec: Tensor<B, 3>, n_fft: usize, hop: usize) -> Tensor<B, 2> {
    let bins = n_fft / 2 + 1;
    let [batch, _, frames] = spec.dims();
    let window = hann_periodic(n_fft);
    // Row n: (1/N) sum_k c_k (Re_k cos(2 pi k n / N) - Im_k sin(2 pi k n / N)), c = 1 at DC and
    // Nyquist, else 2; times the synthesis window.
    let mut basis = Vec::with_capacity(n_fft * 2 * bins);
    for (n, w) in window.iter().enumerate() {
        for part in 0..2 {
            for k in 0..bins {
                let c = if k == 0 || 2 * k == n_fft { 1.0 } else { 2.0 };
                let angle = 2.0 * std::f64::consts::PI * (k * n) as f64 / n_fft as f64;
                let v = if part == 0 { angle.cos() } else { -angle.sin() };
                basis.push((w * c * v / n_fft as f64) as f32);
            }
        }
    }
    let device = spec.device();
    let basis = Tensor::<B, 2>::from_data(TensorData::new(basis, [n_fft, 2 * bins]), &device);
    let frames_t = padded_matmul(basis.unsqueeze::<3>(), spec).reshape([batch, 1, n_fft, frames]);
    let full = overlap_add(frames_t, hop).reshape([batch, (frames - 1) * hop + n_fft]);
    let mut envelope = vec![0f64; (frames - 1) * hop + n_fft];
    for f in 0..frames {
        for (n, w) in window.iter().enumerate() {
            envelope[f * hop + n] += w * w;
        }
    }
    let start = n_fft / 2;
    let len = hop * (frames - 1);
    let inverse: Vec<f32> = envelope[start..start + len]
        .iter()
        .map(|&e| if e > 1e-11 { (1.0 / e) as f32 } else { 0.0 })
        .collect();
    let inverse = Tensor::<B, 2>::from_data(TensorData::new(inverse, [1, len]), &device);
    full.slice([0..batch, start..start + len]) * inverse
}
