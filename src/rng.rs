//! Randomness owned by its user. libtorch's generators are process-wide and
//! `tch` exposes no `torch::Generator`, so nothing in this crate seeds or
//! draws from them: every random tensor (initial weights, Fourier
//! frequencies, training batches and noise) is drawn on the host from its
//! owner's own [`Rng`], seeded from `(seed, stream, k)`, and copied to the
//! device once. The numbers then depend only on the seed: the same on CPU and
//! CUDA, and two trainers in one process never interleave their draws.
//! Sampling runs draw their noise the same way, counter-based per sample
//! ([`crate::solvers::RowNoise`]).

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
// Stream 5 keys a sampling run's per-sample noise (`scoresde_solvers::RowNoise`).
/// Stream of the training dropout masks.
pub(crate) const DROPOUT: u64 = 6;

/// Mixes a seed, a stream and a counter (a training step, say) into a new
/// seed (splitmix64 finaliser, [`scoresde_solvers::noise::mix`]).
pub(crate) fn mix(seed: u64, stream: u64, k: u64) -> u64 {
    crate::solvers::noise::mix(seed, k, stream)
}

/// A generator for draw `k` of `stream` under `seed`.
pub(crate) fn rng(seed: u64, stream: u64, k: u64) -> Rng {
    Rng::seed_from_u64(mix(seed, stream, k))
}

/// An inverted-dropout mask of `shape` on `device`: each entry `1 / (1 - p)`
/// with probability `1 - p`, else 0, from a counter-based generator computed
/// on the device (entry `i` is splitmix64 of `seed + (i + 1) * golden`, its
/// top 24 bits a uniform), so no host draw the size of an activation and no
/// libtorch generator: the mask depends on `(seed, i)` only, the same on
/// every device. Integer products wrap (two's complement), as splitmix64 needs.
///
/// # Errors
/// libtorch errors (out of memory).
pub(crate) fn dropout_mask(shape: &[i64], p: f64, seed: u64, device: Device) -> Result<Tensor> {
    let n: i64 = shape.iter().product();
    let golden = 0x9E37_79B9_7F4A_7C15u64 as i64;
    // z >>> k (logical): arithmetic shift, then clear the sign-extended bits.
    let shr = |z: &Tensor, k: i64| -> std::result::Result<Tensor, tch::TchError> {
        z.f_bitwise_right_shift_tensor_scalar(k)?.f_bitwise_and((1i64 << (64 - k)) - 1)
    };
    let mut z =
        Tensor::f_arange_start(1, n + 1, (Kind::Int64, device))?.f_mul_scalar(golden)?.f_add_scalar(seed as i64)?;
    z = z.f_bitwise_xor_tensor(&shr(&z, 30)?)?.f_mul_scalar(0xBF58_476D_1CE4_E5B9u64 as i64)?;
    z = z.f_bitwise_xor_tensor(&shr(&z, 27)?)?.f_mul_scalar(0x94D0_49BB_1331_11EBu64 as i64)?;
    z = z.f_bitwise_xor_tensor(&shr(&z, 31)?)?;
    let u = shr(&z, 40)?.f_to_kind(Kind::Float)?.f_mul_scalar(1.0 / (1u64 << 24) as f64)?;
    Ok(u.f_ge(p)?.f_to_kind(Kind::Float)?.f_mul_scalar(1.0 / (1.0 - p))?.f_view(shape)?)
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

    #[test]
    fn dropout_mask_is_splitmix_and_keeps_one_minus_p() {
        let m = dropout_mask(&[4, 5000], 0.25, 42, Device::Cpu).unwrap();
        assert_eq!(m.size(), [4, 5000]);
        // Entry i is splitmix64 of 42 + (i + 1) * golden: the host reference.
        let host: Vec<f32> = (0..20_000u64)
            .map(|i| {
                let mut z = 42u64.wrapping_add((i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                let u = (z >> 40) as f64 / (1u64 << 24) as f64;
                if u >= 0.25 {
                    1.0 / 0.75
                } else {
                    0.0
                }
            })
            .collect();
        assert_eq!(Vec::<f32>::try_from(m.reshape([-1])).unwrap(), host);
        // Kept share 0.75, sd sqrt(0.75 * 0.25 / 20000) = 0.0031: within 5 sd.
        let kept = host.iter().filter(|&&v| v > 0.0).count() as f64 / 20_000.0;
        assert!((kept - 0.75).abs() < 5.0 * 0.0031, "{kept}");
        assert!(!dropout_mask(&[100], 0.5, 1, Device::Cpu)
            .unwrap()
            .equal(&dropout_mask(&[100], 0.5, 2, Device::Cpu).unwrap()));
    }
}
