//! Randomness owned by its user. libtorch's generators are process-wide and
//! `tch` exposes no `torch::Generator`, so nothing in this crate seeds or
//! draws from them: every random tensor (initial weights, Fourier
//! frequencies, training batches and noise) is drawn on the host from its
//! owner's own [`Rng`], seeded from `(seed, stream, k)`, and copied to the
//! device once. The numbers then depend only on the seed: the same on CPU and
//! CUDA, and two trainers in one process never interleave their draws.

use rand::SeedableRng;
use tch::{Device, Kind, Tensor};

use crate::error::Result;
use crate::solvers::Rng;

/// Stream of the per-sample training times (and their SDE coefficients).
pub(crate) const TIMES: u64 = 1;
/// Stream of the training batch: row indices, noise, label dropout.
pub(crate) const BATCH: u64 = 2;
/// Stream of the initial weights.
pub(crate) const INIT: u64 = 3;
/// Stream of the random Fourier time-embedding frequencies.
pub(crate) const FOURIER: u64 = 4;

/// Mixes a seed, a stream and a counter (a training step, say) into a new
/// seed (splitmix64 finaliser).
pub(crate) fn mix(seed: u64, stream: u64, k: u64) -> u64 {
    let mut z = seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A generator for draw `k` of `stream` under `seed`.
pub(crate) fn rng(seed: u64, stream: u64, k: u64) -> Rng {
    Rng::seed_from_u64(mix(seed, stream, k))
}

/// Host values as a tensor of `shape` and `kind` on `device`: one host→device copy.
///
/// # Errors
/// libtorch errors (a shape that does not fit the values, out of memory).
pub(crate) fn to_device<T: tch::kind::Element>(
    values: &[T],
    shape: &[i64],
    kind: Kind,
    device: Device,
) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(values)?.f_view(shape)?.f_to_kind(kind)?.f_to_device(device)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngCore;

    #[test]
    fn streams_and_counters_give_different_generators() {
        let first = |mut r: Rng| r.next_u64();
        assert_eq!(first(rng(7, TIMES, 3)), first(rng(7, TIMES, 3)));
        assert_ne!(first(rng(7, TIMES, 3)), first(rng(7, BATCH, 3)));
        assert_ne!(first(rng(7, TIMES, 3)), first(rng(7, TIMES, 4)));
        assert_ne!(first(rng(7, TIMES, 3)), first(rng(8, TIMES, 3)));
    }
}
