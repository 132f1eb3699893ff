//! The state/backend trait: the handful of array operations every integrator needs.
//!
//! Integrators are generic over [`State`], so the same code runs on ndarray
//! arrays (f32 or f64, any dimensionality, samples along axis 0) and, with
//! this crate's cargo feature `tch` ([`crate::tensor`]), on `tch::Tensor`s on
//! any device. Coefficients are
//! always `f64` computed on the host; implementations cast them to the element
//! type. No operation converts between backends.

use ndarray::{Array, Axis, Dimension, RemoveAxis, ScalarOperand, Zip};
use ndarray_rand::RandomExt;
use num_traits::{Float, FromPrimitive};
use rand::Rng as _;
use rand_distr::{Distribution, StandardNormal};

use crate::error::{Error, Result};
use crate::x0_guard::{check_level, interpolate, quantile_position};

/// The random number generator every noise source uses: small, fast, seedable,
/// and identical on every platform.
pub type Rng = rand_xoshiro::Xoshiro256PlusPlus;

/// A batch of samples that integrators can update.
///
/// The leading axis indexes samples; every other axis is one sample's data.
///
/// Not `Clone` or `Sync`: `tch::Tensor` is neither (its `Clone` would be
/// ambiguous between a shallow and a deep copy); [`State::duplicate`] is the
/// deep copy integrators use.
pub trait State: Send + 'static {
    /// The full shape, leading axis first.
    fn shape(&self) -> Vec<usize>;

    /// An independent deep copy (same shape, values and device).
    fn duplicate(&self) -> Self
    where
        Self: Sized;

    /// Number of samples (length of the leading axis).
    fn batch_size(&self) -> usize {
        self.shape().first().copied().unwrap_or(0)
    }

    /// `self <- a * self + b * x`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `x` has another shape.
    fn axpby(&mut self, a: f64, b: f64, x: &Self) -> Result<()>;

    /// `self <- a * self + b * x + c * y`, in one pass.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `x` or `y` has another shape.
    fn axpbypcz(&mut self, a: f64, b: f64, x: &Self, c: f64, y: &Self) -> Result<()>;

    /// `self <- a * self`.
    fn scale(&mut self, a: f64);

    /// Mean over samples of each sample's Euclidean norm.
    fn mean_sample_norm(&self) -> f64;

    /// True when every element is finite.
    fn all_finite(&self) -> bool;

    /// The machine epsilon of the element type: the gap between 1 and the next
    /// representable number (`f64`: 2.2e-16, `f32`: 1.2e-7). Results are
    /// rounded to half of it, relatively, so no relative tolerance below it
    /// can be met ([`crate::OdeDopri5`] rejects one).
    fn epsilon(&self) -> f64;

    /// The scaled root-mean-square norm of an error estimate `self` used by
    /// adaptive step-size control (Hairer, Nørsett & Wanner, *Solving ODEs I*,
    /// eq. II.4.11): `sqrt(mean_i (e_i / (atol + rtol max(|y0_i|, |y1_i|)))^2)`,
    /// the mean over every element of the batch, computed in f64. NaN if any
    /// term is NaN.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `y0` or `y1` has another shape.
    fn error_norm(&self, y0: &Self, y1: &Self, rtol: f64, atol: f64) -> Result<f64>;

    /// Per sample, the scaled root-mean-square norm of an error estimate `self` with the
    /// mixed tolerance of Jolicoeur-Martineau et al. (2021, "Gotta Go Fast", Alg. 1):
    /// `sqrt(mean_j (e_ij / max(atol, rtol max(|y0_ij|, |y1_ij|)))^2)` over the elements
    /// `j` of sample `i` (every axis but the leading one), in f64; 0 for a sample with no
    /// elements, NaN if any of its terms is NaN. Used by [`crate::AdaptiveSde`].
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] when `y0` or `y1` has another shape; backend failures.
    fn sample_error_norms(&self, y0: &Self, y1: &Self, rtol: f64, atol: f64) -> Result<Vec<f64>>;

    /// Per sample, the standard deviation of its elements (every axis but the leading one,
    /// population form: divided by the number of elements), in f64; 0 for a sample with no
    /// elements. Used by CFG rescale ([`crate::ClassifierFreeGuided::with_rescale`]).
    ///
    /// # Errors
    /// Backend failures.
    fn sample_stds(&self) -> Result<Vec<f64>>;

    /// Multiplies sample `i` by `factors[i]`.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] unless there is one factor per sample; backend failures.
    fn scale_samples(&mut self, factors: &[f64]) -> Result<()>;

    /// Standard normal draws of the same shape (and device) as `self`.
    fn randn_like(&self, rng: &mut Rng) -> Self;

    /// Standard normal draws of the same shape, precision (and device) as
    /// `self` where sample `i` (row `i` of the leading axis) is drawn from
    /// `rngs[i]` alone, its elements in row-major order ([`fill_rows`]): a
    /// row's values do not depend on the other rows. Used by
    /// [`crate::noise::RowNoise`].
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] unless there is one generator per sample;
    /// backend failures.
    fn randn_rows_like(&self, rngs: &mut [Rng]) -> Result<Self>
    where
        Self: Sized;

    /// For each sample, the `p`-quantile of the absolute values of all its elements
    /// (every axis but the leading one), interpolated linearly between order statistics
    /// as numpy and `torch.quantile` do by default; computed in f64 on the host from the
    /// two order statistics. A NaN counts as larger than every number (as `torch.sort`
    /// orders it); a sample with no elements gives 0. Used by [`crate::X0Guard`].
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `p` lies in `[0, 1]`; backend failures.
    fn abs_quantiles(&self, p: f64) -> Result<Vec<f64>>;

    /// Clips sample `i` to `[-bounds[i], bounds[i]]` and, when `rescale`, divides it by
    /// `bounds[i]`. NaN elements stay NaN. Used by [`crate::X0Guard`].
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] unless there is one bound per sample; backend failures.
    fn clip_samples(&mut self, bounds: &[f64], rescale: bool) -> Result<()>;
}

/// Fills `values` (rows of `values.len() / rngs.len()` elements, one per
/// generator) with standard normals, row `i` drawn in order from `rngs[i]`
/// alone; rows in parallel. The one definition of a per-row draw, shared by
/// every backend.
///
/// # Errors
/// [`Error::ShapeMismatch`] when `values` does not split into one row per generator.
pub fn fill_rows<F: Send>(values: &mut [F], rngs: &mut [Rng]) -> Result<()>
where
    StandardNormal: Distribution<F>,
{
    use rayon::prelude::*;
    let rows = rngs.len();
    if rows == 0 || values.len() % rows != 0 {
        if values.is_empty() && rows == 0 {
            return Ok(());
        }
        return Err(Error::ShapeMismatch {
            what: "per-row normals (one generator per sample)",
            expected: vec![rows],
            got: vec![values.len()],
        });
    }
    let per_row = values.len() / rows;
    if per_row > 0 {
        values
            .par_chunks_mut(per_row)
            .zip(rngs.par_iter_mut())
            .with_min_len((RANDN_BLOCK / per_row).max(1))
            .for_each(|(row, r)| row.iter_mut().for_each(|v| *v = r.sample(StandardNormal)));
    }
    Ok(())
}

/// Arrays at least this long are updated in parallel (rayon).
pub const PAR_MIN_LEN: usize = 1 << 16;

/// Elements per independently seeded block of large Gaussian draws.
pub const RANDN_BLOCK: usize = 4096;

/// Element types the ndarray backend supports (`f32` and `f64`).
pub trait Element:
    Float + FromPrimitive + ScalarOperand + Send + Sync + std::fmt::Debug + std::fmt::Display + 'static
where
    StandardNormal: Distribution<Self>,
{
    /// `e^x` for `x <= 0`, written so the compiler vectorises it (the mixture
    /// kernel's softmax): Cody–Waite reduction `x = n ln 2 + r`, `|r| <= ln 2 / 2`,
    /// a Taylor polynomial for `e^r` (degree 12 for f64, 7 for f32; truncation
    /// below half an ulp) and `2^n` assembled in the exponent bits. NaN
    /// propagates; results that would be subnormal flush to 0. Within 4 ulp of
    /// the standard library's `exp` (tested).
    fn exp_nonpositive(self) -> Self;
}

impl Element for f64 {
    #[inline(always)]
    fn exp_nonpositive(self) -> f64 {
        const LN2_HI: f64 = 6.931_471_803_691_238e-1;
        const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
        // 1.5 * 2^52: adding it rounds to an integer held in the low mantissa bits.
        const MAGIC: f64 = 6_755_399_441_055_744.0;
        let x = self;
        let xc = x.max(-708.0);
        let t = xc * std::f64::consts::LOG2_E + MAGIC;
        let n = t - MAGIC;
        let r = (xc - n * LN2_HI) - n * LN2_LO;
        let mut p = 1.0 / 479_001_600.0;
        for c in [
            1.0 / 39_916_800.0,
            1.0 / 3_628_800.0,
            1.0 / 362_880.0,
            1.0 / 40_320.0,
            1.0 / 5_040.0,
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ] {
            p = p * r + c;
        }
        let y = p * f64::from_bits(t.to_bits().wrapping_add(1023) << 52);
        // `x - xc` is 0, or NaN for a NaN input (max() dropped it).
        if x < -708.0 {
            0.0
        } else {
            y + (x - xc)
        }
    }
}

impl Element for f32 {
    #[inline(always)]
    fn exp_nonpositive(self) -> f32 {
        // Cephes' split of ln 2 (LN2_HI has trailing zero bits).
        const LN2_HI: f32 = 0.693_359_4;
        const LN2_LO: f32 = -2.121_944_4e-4;
        const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
        let x = self;
        let xc = x.max(-87.0);
        let t = xc * std::f32::consts::LOG2_E + MAGIC;
        let n = t - MAGIC;
        let r = (xc - n * LN2_HI) - n * LN2_LO;
        let mut p = 1.0 / 5_040.0;
        for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = p * r + c;
        }
        let y = p * f32::from_bits(t.to_bits().wrapping_add(127) << 23);
        if x < -87.0 {
            0.0
        } else {
            y + (x - xc)
        }
    }
}

fn cast<F: Element>(v: f64) -> F
where
    StandardNormal: Distribution<F>,
{
    F::from_f64(v).unwrap_or_else(F::nan)
}

fn same_shape<F, D: Dimension>(what: &'static str, a: &Array<F, D>, b: &Array<F, D>) -> Result<()> {
    if a.shape() == b.shape() {
        Ok(())
    } else {
        Err(Error::ShapeMismatch { what, expected: a.shape().to_vec(), got: b.shape().to_vec() })
    }
}

impl<F: Element, D: Dimension + RemoveAxis + 'static> State for Array<F, D>
where
    StandardNormal: Distribution<F>,
{
    fn shape(&self) -> Vec<usize> {
        self.shape().to_vec()
    }

    fn duplicate(&self) -> Self {
        self.clone()
    }

    fn axpby(&mut self, a: f64, b: f64, x: &Self) -> Result<()> {
        same_shape("axpby", self, x)?;
        let (a, b) = (cast::<F>(a), cast::<F>(b));
        let zip = Zip::from(self).and(x);
        if x.len() >= PAR_MIN_LEN {
            zip.par_for_each(|s, &x| *s = a * *s + b * x);
        } else {
            zip.for_each(|s, &x| *s = a * *s + b * x);
        }
        Ok(())
    }

    fn axpbypcz(&mut self, a: f64, b: f64, x: &Self, c: f64, y: &Self) -> Result<()> {
        same_shape("axpbypcz", self, x)?;
        same_shape("axpbypcz", self, y)?;
        let (a, b, c) = (cast::<F>(a), cast::<F>(b), cast::<F>(c));
        let zip = Zip::from(self).and(x).and(y);
        if x.len() >= PAR_MIN_LEN {
            zip.par_for_each(|s, &x, &y| *s = a * *s + b * x + c * y);
        } else {
            zip.for_each(|s, &x, &y| *s = a * *s + b * x + c * y);
        }
        Ok(())
    }

    fn scale(&mut self, a: f64) {
        let a = cast::<F>(a);
        self.mapv_inplace(|v| v * a);
    }

    fn mean_sample_norm(&self) -> f64 {
        let n = self.len_of(Axis(0));
        if n == 0 {
            return 0.0;
        }
        let total: f64 = self
            .axis_iter(Axis(0))
            .map(|row| row.iter().map(|v| v.to_f64().unwrap_or(f64::NAN).powi(2)).sum::<f64>().sqrt())
            .sum();
        total / n as f64
    }

    fn all_finite(&self) -> bool {
        self.iter().all(|v| v.is_finite())
    }

    fn epsilon(&self) -> f64 {
        F::epsilon().to_f64().unwrap_or(f64::EPSILON)
    }

    fn error_norm(&self, y0: &Self, y1: &Self, rtol: f64, atol: f64) -> Result<f64> {
        same_shape("error_norm", self, y0)?;
        same_shape("error_norm", self, y1)?;
        if self.is_empty() {
            return Ok(0.0);
        }
        let f = |v: &F| v.to_f64().unwrap_or(f64::NAN);
        let mut sum = 0.0f64;
        Zip::from(self).and(y0).and(y1).for_each(|e, a, b| {
            let scale = atol + rtol * f(a).abs().max(f(b).abs());
            sum += (f(e) / scale).powi(2);
        });
        Ok((sum / self.len() as f64).sqrt())
    }

    fn sample_error_norms(&self, y0: &Self, y1: &Self, rtol: f64, atol: f64) -> Result<Vec<f64>> {
        same_shape("sample_error_norms", self, y0)?;
        same_shape("sample_error_norms", self, y1)?;
        let f = |v: &F| v.to_f64().unwrap_or(f64::NAN);
        Ok(self
            .axis_iter(Axis(0))
            .zip(y0.axis_iter(Axis(0)))
            .zip(y1.axis_iter(Axis(0)))
            .map(|((e, a), b)| {
                if e.is_empty() {
                    return 0.0;
                }
                let mut sum = 0.0f64;
                Zip::from(&e).and(&a).and(&b).for_each(|e, a, b| {
                    let scale = atol.max(rtol * f(a).abs().max(f(b).abs()));
                    sum += (f(e) / scale).powi(2);
                });
                (sum / e.len() as f64).sqrt()
            })
            .collect())
    }

    fn sample_stds(&self) -> Result<Vec<f64>> {
        Ok(self
            .axis_iter(Axis(0))
            .map(|row| {
                if row.is_empty() {
                    return 0.0;
                }
                let n = row.len() as f64;
                let v: Vec<f64> = row.iter().map(|x| x.to_f64().unwrap_or(f64::NAN)).collect();
                let mean = v.iter().sum::<f64>() / n;
                (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt()
            })
            .collect())
    }

    fn scale_samples(&mut self, factors: &[f64]) -> Result<()> {
        let n = self.len_of(Axis(0));
        if factors.len() != n {
            return Err(Error::ShapeMismatch {
                what: "scale_samples factors",
                expected: vec![n],
                got: vec![factors.len()],
            });
        }
        for (mut row, &c) in self.axis_iter_mut(Axis(0)).zip(factors) {
            let c = cast::<F>(c);
            row.mapv_inplace(|v| v * c);
        }
        Ok(())
    }

    fn abs_quantiles(&self, p: f64) -> Result<Vec<f64>> {
        check_level(p)?;
        Ok(self
            .axis_iter(Axis(0))
            .map(|row| {
                let mut v: Vec<f64> = row.iter().map(|x| x.to_f64().unwrap_or(f64::NAN).abs()).collect();
                if v.is_empty() {
                    return 0.0;
                }
                v.sort_unstable_by(f64::total_cmp);
                let (lo, hi, frac) = quantile_position(v.len(), p);
                interpolate(v[lo], v[hi], frac)
            })
            .collect())
    }

    fn clip_samples(&mut self, bounds: &[f64], rescale: bool) -> Result<()> {
        let n = self.len_of(Axis(0));
        if bounds.len() != n {
            return Err(Error::ShapeMismatch {
                what: "clip_samples bounds",
                expected: vec![n],
                got: vec![bounds.len()],
            });
        }
        for (mut row, &b) in self.axis_iter_mut(Axis(0)).zip(bounds) {
            let b = cast::<F>(b);
            // Comparisons, not `max`/`min`, which would replace a NaN by the bound.
            row.mapv_inplace(|v| {
                if v > b {
                    b
                } else if v < -b {
                    -b
                } else {
                    v
                }
            });
            if rescale {
                row.mapv_inplace(|v| v / b);
            }
        }
        Ok(())
    }

    /// Small arrays draw straight from `rng`. Large ones take one key from
    /// `rng` and fill fixed blocks of [`RANDN_BLOCK`] elements in parallel,
    /// block `i` from its own stream seeded by `(key, i)`: the result depends
    /// only on the seed, never on the number of threads.
    fn randn_like(&self, rng: &mut Rng) -> Self {
        if self.len() < 2 * RANDN_BLOCK {
            return Array::random_using(self.raw_dim(), StandardNormal, rng);
        }
        use rand::{RngCore, SeedableRng};
        use rayon::prelude::*;
        let key = rng.next_u64();
        let mut out = Array::zeros(self.raw_dim());
        let fill = |(i, block): (usize, &mut [F])| {
            let mut r = Rng::seed_from_u64(key ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            block.iter_mut().for_each(|v| *v = r.sample(StandardNormal));
        };
        match out.as_slice_mut() {
            Some(data) => data.par_chunks_mut(RANDN_BLOCK).enumerate().for_each(fill),
            None => out.mapv_inplace(|_| rng.sample(StandardNormal)), // a fresh array is contiguous
        }
        out
    }

    fn randn_rows_like(&self, rngs: &mut [Rng]) -> Result<Self> {
        let rows = self.shape().first().copied().unwrap_or(0);
        if rows != rngs.len() {
            return Err(Error::ShapeMismatch {
                what: "per-row normals (one generator per sample)",
                expected: vec![rngs.len()],
                got: self.shape().to_vec(),
            });
        }
        let mut out = Array::zeros(self.raw_dim());
        // A fresh array is contiguous, in standard (row-major) order.
        let data = out
            .as_slice_mut()
            .ok_or_else(|| Error::Backend { op: "randn_rows_like", message: "non-contiguous array".into() })?;
        fill_rows(data, rngs)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;
    use rand::SeedableRng;

    #[test]
    fn axpby_and_shape_errors() {
        let mut x = array![[1.0, 2.0], [3.0, 4.0]];
        let y = array![[1.0, 1.0], [1.0, 1.0]];
        x.axpby(2.0, -1.0, &y).unwrap();
        assert_eq!(x, array![[1.0, 3.0], [5.0, 7.0]]);
        let z = array![[1.0, 1.0, 1.0]];
        assert!(matches!(x.axpby(1.0, 1.0, &z), Err(Error::ShapeMismatch { .. })));
        assert!(matches!(x.axpbypcz(1.0, 1.0, &y, 1.0, &z), Err(Error::ShapeMismatch { .. })));
    }

    #[test]
    fn norms_and_finiteness() {
        let x = array![[3.0f32, 4.0], [0.0, 1.0]];
        assert!((x.mean_sample_norm() - 3.0).abs() < 1e-12);
        assert!(x.all_finite());
        let y = array![[f64::NAN, 0.0]];
        assert!(!y.all_finite());
    }

    #[test]
    fn fast_exp_matches_std_exp() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -(i as f64) * 708.0 / 200_000.0;
            let (got, want) = (x.exp_nonpositive(), x.exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 4.0 * f64::EPSILON, "f64: max relative error {worst:e}");
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -(i as f32) * 87.0 / 200_000.0;
            let (got, want) = (f64::from(x.exp_nonpositive()), f64::from(x).exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 4.0 * f64::from(f32::EPSILON), "f32: max relative error {worst:e}");
        assert_eq!(0.0f64.exp_nonpositive(), 1.0);
        assert_eq!(0.0f32.exp_nonpositive(), 1.0);
        assert_eq!((-800.0f64).exp_nonpositive(), 0.0);
        assert_eq!((-100.0f32).exp_nonpositive(), 0.0);
        assert_eq!(f64::NEG_INFINITY.exp_nonpositive(), 0.0);
        assert!(f64::NAN.exp_nonpositive().is_nan());
        assert!(f32::NAN.exp_nonpositive().is_nan());
    }

    #[test]
    fn per_sample_norms_stds_and_scaling() {
        let e = ndarray::array![[0.1, -0.2], [0.0, 0.0], [3.0, 4.0]];
        let y0 = ndarray::array![[1.0, 10.0], [0.0, 0.0], [-2.0, 0.5]];
        let y1 = ndarray::array![[-2.0, 1.0], [1.0, 1.0], [1.0, 0.1]];
        // delta = max(atol, rtol max(|y0|, |y1|)) with rtol 0.1, atol 0.5: [[0.5, 1.0], _, [0.5, 0.5]].
        let n = e.sample_error_norms(&y0, &y1, 0.1, 0.5).unwrap();
        let want = [((0.2f64.powi(2) + 0.2f64.powi(2)) / 2.0).sqrt(), 0.0, ((36.0 + 64.0) / 2.0f64).sqrt()];
        for (g, w) in n.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{n:?}");
        }
        let sd = e.sample_stds().unwrap();
        for (g, w) in sd.iter().zip([0.15, 0.0, 0.5]) {
            assert!((g - w).abs() < 1e-12, "{sd:?}");
        }
        let mut x = e.clone();
        x.scale_samples(&[2.0, 1.0, -1.0]).unwrap();
        assert_eq!(x, ndarray::array![[0.2, -0.4], [0.0, 0.0], [-3.0, -4.0]]);
        assert!(x.scale_samples(&[1.0]).is_err());
        assert!(e.sample_error_norms(&ndarray::Array2::zeros((2, 2)), &y1, 0.1, 0.5).is_err());
    }

    #[test]
    fn error_norm_is_scaled_rms() {
        let e = array![[1.0, -2.0]];
        let y0 = array![[0.0, 10.0]];
        let y1 = array![[4.0, 0.0]];
        // scales: 1 + 0.5 * 4 = 3 and 1 + 0.5 * 10 = 6; terms 1/3 and -1/3.
        let n = e.error_norm(&y0, &y1, 0.5, 1.0).unwrap();
        assert!((n - 1.0 / 3.0).abs() < 1e-15, "{n}");
        assert!(e.error_norm(&array![[0.0]], &y1, 0.5, 1.0).is_err());
        let nan = array![[f64::NAN, 0.0]];
        assert!(nan.error_norm(&y0, &y1, 0.5, 1.0).unwrap().is_nan());
    }

    #[test]
    fn randn_is_seeded() {
        let x = ndarray::Array2::<f64>::zeros((3, 2));
        let a = x.randn_like(&mut Rng::seed_from_u64(7));
        let b = x.randn_like(&mut Rng::seed_from_u64(7));
        assert_eq!(a, b);
    }
}
