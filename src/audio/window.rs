//! Framing helpers shared by the STFT users (the mel recipes, spectral flatness, HiFT's STFT).

/// The periodic Hann window (`torch.hann_window`, `scipy.signal.get_window("hann", n)`).
pub fn hann_periodic(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos())
        .collect()
}

/// `samples` with `pad` zeros on both sides (librosa's centred `pad_mode="constant"`).
pub fn zero_pad(samples: &[f32], pad: usize) -> Vec<f64> {
    let mut padded = vec![0f64; samples.len() + 2 * pad];
    for (p, &x) in padded[pad..].iter_mut().zip(samples) {
        *p = x as f64;
    }
    padded
}
