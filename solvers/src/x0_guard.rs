//! Optional clipping of the predicted clean sample `x0_hat` before a solver uses it.
//!
//! Solvers that form the Tweedie estimate `x0_hat = (x_t + sigma(t)^2 s(x_t, t)) / a(t)`
//! (`ancestral`, `ancestral-large`, the DDIM rows and the DPM-Solver++ rows; see
//! [`crate::SolverInfo::x0`]) can pass it through an [`X0Guard`] first. A poor score far
//! from the data makes `x0_hat` overshoot the data range; the guard pulls it back:
//!
//! * [`X0Guard::Clip`]: static clipping, `x0 = clip(x0_hat, -c, c)` (Ho et al. 2020's
//!   sampler clips to `[-1, 1]`, the range of their scaled images);
//! * [`X0Guard::Threshold`]: dynamic thresholding (Saharia et al. 2022, Imagen,
//!   arXiv:2205.11487, §2.3): per sample, `s = max(1, quantile_p(|x0_hat|))` over all of
//!   that sample's elements, then `x0 = clip(x0_hat, -s, s) / s`.
//!
//! Both assume data scaled to about `[-1, 1]`. [`X0Guard::Off`] (the default) leaves every
//! solver's arithmetic exactly as without the guard. The sampler's final Tweedie denoising
//! step applies the solver's guard too ([`crate::Solver::x0_guard`]).
//!
//! By name: `NAME:clip`, `NAME:clip=C`, `NAME:threshold`, `NAME:threshold=P`, after a
//! positional parameter with a comma: `ddim-eta:0.5,clip=1` (see [`crate::by_name`]).

use std::fmt;

use crate::error::{Error, Result};
use crate::state::State;

/// The default bound of [`X0Guard::Clip`]: data scaled to `[-1, 1]`.
pub const DEFAULT_CLIP: f64 = 1.0;
/// The default quantile of [`X0Guard::Threshold`] (Saharia et al. 2022).
pub const DEFAULT_THRESHOLD: f64 = 0.995;

/// What happens to `x0_hat` before a solver uses it. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub enum X0Guard {
    /// Used as predicted.
    #[default]
    Off,
    /// Clipped to `[-c, c]`, `c > 0` finite.
    Clip(f64),
    /// Dynamic thresholding at quantile `p` in `(0, 1]`.
    Threshold(f64),
}

impl X0Guard {
    /// Static clipping to `[-c, c]`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `clip` unless `c` is finite and `> 0`.
    pub fn clip(c: f64) -> Result<Self> {
        if c.is_finite() && c > 0.0 {
            Ok(X0Guard::Clip(c))
        } else {
            Err(Error::param("clip", c, "the x0 bound must be finite and > 0 (1 for data scaled to [-1, 1])"))
        }
    }

    /// Dynamic thresholding at quantile `p`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `threshold` unless `p` lies in `(0, 1]` (NaN included).
    pub fn threshold(p: f64) -> Result<Self> {
        if p > 0.0 && p <= 1.0 {
            Ok(X0Guard::Threshold(p))
        } else {
            Err(Error::param("threshold", p, "the quantile of |x0| must be in (0, 1] (Imagen uses 0.995)"))
        }
    }

    /// The guard of one `key[=value]` option of a solver name: `clip`, `clip=C`,
    /// `threshold` or `threshold=P` (defaults [`DEFAULT_CLIP`], [`DEFAULT_THRESHOLD`]).
    /// `None` if `key` is neither.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a value that is not a number or is out of range.
    pub fn from_option(key: &str, value: Option<&str>) -> Option<Result<Self>> {
        let number = |name: &'static str, v: &str| -> Result<f64> {
            v.parse::<f64>().map_err(|_| Error::param(name, v, "not a number"))
        };
        match key {
            "clip" => Some(value.map_or(Ok(DEFAULT_CLIP), |v| number("clip", v)).and_then(Self::clip)),
            "threshold" => {
                Some(value.map_or(Ok(DEFAULT_THRESHOLD), |v| number("threshold", v)).and_then(Self::threshold))
            }
            _ => None,
        }
    }

    /// True for [`X0Guard::Off`].
    pub fn is_off(&self) -> bool {
        matches!(self, X0Guard::Off)
    }

    /// Applies the guard to `x0` in place (nothing for [`X0Guard::Off`]). NaN stays NaN.
    ///
    /// # Errors
    /// Whatever the backend returns.
    pub fn apply<S: State>(&self, x0: &mut S) -> Result<()> {
        match *self {
            X0Guard::Off => Ok(()),
            X0Guard::Clip(c) => x0.clip_samples(&vec![c; x0.batch_size()], false),
            X0Guard::Threshold(p) => {
                let s: Vec<f64> = x0.abs_quantiles(p)?.into_iter().map(threshold_scale).collect();
                x0.clip_samples(&s, true)
            }
        }
    }
}

/// Imagen's scale `s = max(1, q)`, NaN kept (`f64::max` would drop it).
fn threshold_scale(q: f64) -> f64 {
    if q.is_nan() {
        q
    } else {
        q.max(1.0)
    }
}

impl fmt::Display for X0Guard {
    /// The option as a solver name writes it: `clip=1`, `threshold=0.995`, or `off`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            X0Guard::Off => f.write_str("off"),
            X0Guard::Clip(c) => write!(f, "clip={c}"),
            X0Guard::Threshold(p) => write!(f, "threshold={p}"),
        }
    }
}

/// Where the `p`-quantile of `n` sorted values lies: `(lo, hi, frac)` with the quantile
/// `v[lo] + frac (v[hi] - v[lo])` (linear interpolation between order statistics at
/// position `p (n - 1)`, numpy's and `torch.quantile`'s default). `n >= 1`, `p` in `[0, 1]`.
pub(crate) fn quantile_position(n: usize, p: f64) -> (usize, usize, f64) {
    let h = p * (n.max(1) - 1) as f64;
    let lo = (h.floor() as usize).min(n.saturating_sub(1));
    let hi = (lo + 1).min(n.saturating_sub(1));
    (lo, hi, h - lo as f64)
}

/// The interpolated quantile from the two order statistics of [`quantile_position`].
pub(crate) fn interpolate(lo: f64, hi: f64, frac: f64) -> f64 {
    if frac == 0.0 {
        lo
    } else {
        lo + frac * (hi - lo)
    }
}

/// Checks the quantile level of [`State::abs_quantiles`].
pub(crate) fn check_level(p: f64) -> Result<()> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::param("quantile", p, "must be in [0, 1]"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2, Array3};

    #[test]
    fn quantile_position_is_linear_interpolation() {
        assert_eq!(quantile_position(5, 0.5), (2, 3, 0.0));
        assert_eq!(quantile_position(5, 1.0), (4, 4, 0.0));
        assert_eq!(quantile_position(1, 0.3), (0, 0, 0.0));
        let (lo, hi, frac) = quantile_position(4, 0.5); // position 1.5
        assert_eq!((lo, hi), (1, 2));
        assert!((frac - 0.5).abs() < 1e-15);
    }

    #[test]
    fn abs_quantiles_per_sample() {
        // |row 0| sorted: 0.5 1 2 4, position 0.75 * 3 = 2.25: 2 + 0.25 * 2 = 2.5.
        // |row 1| sorted: 0 1 3 3, position 2.25: 3.
        let x = array![[-4.0, 1.0, 0.5, -2.0], [3.0, -3.0, 0.0, 1.0]];
        assert_eq!(x.abs_quantiles(0.75).unwrap(), vec![2.5, 3.0]);
        assert_eq!(x.abs_quantiles(1.0).unwrap(), vec![4.0, 3.0]);
        assert_eq!(x.abs_quantiles(0.0).unwrap(), vec![0.5, 0.0]);
        assert!(x.abs_quantiles(1.5).is_err());
        assert!(x.abs_quantiles(f64::NAN).is_err());
        // Any shape: [B, 2, 2] reduces over the last two axes.
        let y = Array3::from_shape_vec((2, 2, 2), vec![-4.0f32, 1.0, 0.5, -2.0, 3.0, -3.0, 0.0, 1.0]).unwrap();
        assert_eq!(y.abs_quantiles(0.75).unwrap(), vec![2.5, 3.0]);
    }

    #[test]
    fn clip_samples_clips_and_rescales_per_sample() {
        let mut x = array![[-4.0, 1.0, 0.5], [3.0, -3.0, 0.0]];
        x.clip_samples(&[2.0, 1.0], false).unwrap();
        assert_eq!(x, array![[-2.0, 1.0, 0.5], [1.0, -1.0, 0.0]]);
        x.clip_samples(&[2.0, 0.5], true).unwrap();
        assert_eq!(x, array![[-1.0, 0.5, 0.25], [1.0, -1.0, 0.0]]);
        assert!(matches!(x.clip_samples(&[1.0], false), Err(Error::ShapeMismatch { .. })));
        let mut nan = array![[f64::NAN, 5.0]];
        nan.clip_samples(&[1.0], false).unwrap();
        assert!(nan[[0, 0]].is_nan() && nan[[0, 1]] == 1.0);
    }

    #[test]
    fn static_clip_values() {
        let mut x = array![[-1.5, 0.25, 3.0], [0.9, -0.2, 0.0]];
        X0Guard::clip(1.0).unwrap().apply(&mut x).unwrap();
        assert_eq!(x, array![[-1.0, 0.25, 1.0], [0.9, -0.2, 0.0]]);
    }

    #[test]
    fn dynamic_threshold_values() {
        // Row 0: |x| sorted 0.5 1 2 4 at p = 0.75 gives q = 2.5, s = 2.5:
        //   clip to [-2.5, 2.5], then / 2.5: -1, 0.4, 0.2, -0.8.
        // Row 1: |x| sorted 0.1 0.2 0.3 0.4: q = 0.325 < 1, s = 1: plain clip to [-1, 1].
        let mut x = array![[-4.0, 1.0, 0.5, -2.0], [0.1, -0.4, 0.3, 0.2]];
        X0Guard::threshold(0.75).unwrap().apply(&mut x).unwrap();
        let want: Array2<f64> = array![[-1.0, 0.4, 0.2, -0.8], [0.1, -0.4, 0.3, 0.2]];
        assert!((&x - &want).iter().all(|d: &f64| d.abs() < 1e-15), "{x}");
        // p = 1: s is the largest |x|, so the row lands exactly on [-1, 1].
        let mut y = array![[3.0, -6.0, 1.5]];
        X0Guard::threshold(1.0).unwrap().apply(&mut y).unwrap();
        assert_eq!(y, array![[0.5, -1.0, 0.25]]);
    }

    #[test]
    fn off_changes_nothing() {
        let mut x = array![[f64::MAX, -7.0]];
        X0Guard::Off.apply(&mut x).unwrap();
        assert_eq!(x, array![[f64::MAX, -7.0]]);
        let mut empty = Array2::<f64>::zeros((0, 3));
        X0Guard::threshold(0.5).unwrap().apply(&mut empty).unwrap();
    }

    #[test]
    fn bad_parameters_are_errors() {
        let name = |r: Result<X0Guard>| match r {
            Err(Error::InvalidParameter { name, .. }) => name,
            other => panic!("{other:?}"),
        };
        for c in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(name(X0Guard::clip(c)), "clip");
        }
        for p in [0.0, -0.1, 1.01, f64::NAN] {
            assert_eq!(name(X0Guard::threshold(p)), "threshold");
        }
        assert_eq!(X0Guard::from_option("clip", None).unwrap().unwrap(), X0Guard::Clip(1.0));
        assert_eq!(X0Guard::from_option("threshold", None).unwrap().unwrap(), X0Guard::Threshold(0.995));
        assert_eq!(X0Guard::from_option("threshold", Some("0.9")).unwrap().unwrap(), X0Guard::Threshold(0.9));
        assert_eq!(name(X0Guard::from_option("clip", Some("abc")).unwrap()), "clip");
        assert!(X0Guard::from_option("eta", Some("1")).is_none());
    }
}
