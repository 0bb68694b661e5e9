//! Shape discipline for GPU kernels: training batches padded to a small set of sizes. CubeCL
//! backends (CUDA, wgpu) autotune and compile kernels per problem shape (matmul keys include the
//! power-of-two factors of m, n and k), so batches whose lengths change every step would re-tune
//! for most steps. Padding each length up to `granule` x {1, 2, 3, 4, 6, 8, 12, ...} keeps at
//! most two sizes per octave (at most a third of a batch is padding) and every size a multiple of
//! `granule`.

use burn::tensor::backend::Backend;

/// `shape_buckets` in a recipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShapeBuckets {
    /// On for the GPU-kernel backends (wgpu, CUDA), off on the CPU backend, where padding only
    /// costs time.
    Auto,
    On,
    Off,
}

crate::yaml_enum!(ShapeBuckets { "auto" => ShapeBuckets::Auto, "on" => ShapeBuckets::On, "off" => ShapeBuckets::Off });

impl serde::Serialize for ShapeBuckets {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            ShapeBuckets::Auto => "auto",
            ShapeBuckets::On => "on",
            ShapeBuckets::Off => "off",
        })
    }
}

impl ShapeBuckets {
    /// Whether batches on `device` of backend `B` are padded to bucket sizes.
    pub fn enabled<B: Backend>(self, device: &B::Device) -> bool {
        match self {
            ShapeBuckets::On => true,
            ShapeBuckets::Off => false,
            ShapeBuckets::Auto => B::name(device).contains("cubecl"),
        }
    }
}

/// The padded length of `len` positions: the smallest `granule * s` with s in {1, 2, 3, 4, 6, 8,
/// 12, 16, ...} (powers of two and three halves of them) that holds `len`.
pub fn bucket(len: usize, granule: usize) -> usize {
    let granule = granule.max(1);
    let units = len.div_ceil(granule).max(1);
    let mut size = 1usize;
    loop {
        if size >= units {
            return size * granule;
        }
        if size >= 2 && size / 2 * 3 >= units {
            return size / 2 * 3 * granule;
        }
        size *= 2;
    }
}

/// Padded length for one batch: `longest` itself when bucketing is off, else its bucket.
pub fn padded_len(longest: usize, granule: usize, enabled: bool) -> usize {
    if enabled {
        bucket(longest, granule)
    } else {
        longest
    }
}

#[cfg(test)]
mod tests {
    use super::bucket;

    #[test]
    fn buckets_are_few_and_hold_the_length() {
        let sizes: Vec<usize> = [1, 16, 17, 32, 33, 48, 49, 64, 65, 96, 97, 129, 1000]
            .iter()
            .map(|&n| bucket(n, 16))
            .collect();
        assert_eq!(
            sizes,
            [16, 16, 32, 32, 48, 48, 64, 64, 96, 96, 128, 192, 1024]
        );
        let distinct: std::collections::BTreeSet<usize> =
            (1..=4096).map(|n| bucket(n, 16)).collect();
        assert_eq!(distinct.len(), 16, "{distinct:?}");
        for n in 1..=4096 {
            let b = bucket(n, 16);
            assert!(
                b >= n && b % 16 == 0 && (b <= 32 || 3 * (b - n) <= b),
                "{n} -> {b}"
            );
        }
    }
}
