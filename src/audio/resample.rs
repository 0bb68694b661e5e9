//! Sample-rate conversion with rubato's synchronous FFT resampler (fixed ratio, high quality,
//! start-up delay trimmed by `process_all`).

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

/// Samples that [`resample`] makes of `len` samples: `ceil(len * to / from)`.
pub fn output_len(len: usize, from: u32, to: u32) -> usize {
    if from == to {
        return len;
    }
    (len as u64 * to as u64).div_ceil(from as u64) as usize
}

/// Resamples mono `samples` from `from` Hz to `to` Hz. The output has
/// `ceil(len * to / from)` samples, aligned with the input.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Vec<f32> {
    if from == to || samples.is_empty() {
        return samples.to_vec();
    }
    let mut resampler = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Both)
        .expect("sample rates are non-zero");
    let input = InterleavedSlice::new(samples, 1, samples.len()).expect("buffer holds len frames");
    let output = resampler
        .process_all(&input, samples.len(), None)
        .expect("buffers are sized by rubato itself");
    output.take_data()
}
