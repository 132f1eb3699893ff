//! Noise sources. Integrators never create randomness: they ask a [`Noise`].
//!
//! * [`GaussianNoise`]: seeded i.i.d. standard normals, the usual choice.
//! * [`BrownianPath`]: a virtual Brownian tree (Gaines & Lyons 1997; Li et al.
//!   2020, "Scalable gradients for SDEs"): `W(t)` is a deterministic function
//!   of `(seed, t)`, so the same path can be solved at several step sizes,
//!   which is what strong-convergence measurements need.

use rand::SeedableRng;

use crate::error::{Error, Result};
use crate::state::{Rng, State};

/// A source of Gaussian noise for integrators.
pub trait Noise<S: State>: Send {
    /// The standard normal that drives the step from `t` to `t_next`:
    /// `(W(t_next) - W(t)) / sqrt(|t_next - t|)` for a Brownian path, a fresh
    /// draw for i.i.d. noise.
    ///
    /// # Errors
    /// A Brownian path rejects times outside its interval or `t == t_next`.
    fn step_normal(&mut self, t: f64, t_next: f64, like: &S) -> Result<S>;

    /// A fresh standard normal not tied to any time interval (for Langevin
    /// correctors, which move at fixed t).
    fn normal(&mut self, like: &S) -> S;

    /// Whether [`Noise::step_normal`] over any sub-interval is an increment of one fixed
    /// Brownian path (true for [`BrownianPath`]), so that increments over overlapping or
    /// nested intervals are consistent. An adaptive solver that retries a shorter step
    /// ([`crate::AdaptiveSde`]) then asks the path itself; otherwise it fills in the
    /// path between the times it has drawn by Brownian-bridge draws from
    /// [`Noise::normal`]. False by default.
    fn is_path(&self) -> bool {
        false
    }
}

/// Seeded i.i.d. standard normal noise.
#[derive(Debug, Clone)]
pub struct GaussianNoise {
    rng: Rng,
}

impl GaussianNoise {
    /// Noise from a seed; the same seed gives the same draws.
    pub fn new(seed: u64) -> Self {
        Self { rng: Rng::seed_from_u64(seed) }
    }
}

impl<S: State> Noise<S> for GaussianNoise {
    fn step_normal(&mut self, _t: f64, _t_next: f64, like: &S) -> Result<S> {
        Ok(like.randn_like(&mut self.rng))
    }

    fn normal(&mut self, like: &S) -> S {
        like.randn_like(&mut self.rng)
    }
}

/// Counter-based per-sample noise: draw `k` (the prior draw is `k = 0`, then
/// every [`Noise::step_normal`] or [`Noise::normal`] call adds one) of
/// sample `i` is a function of `(seed, i, k)` only. Row `i`'s normals at draw
/// `k` come from a fresh [`Rng`] seeded by `mix(mix(seed, i, ROWS), k, DRAWS)`
/// (SplitMix64 finalisers, [`mix`]), filled in row-major order
/// ([`State::randn_rows_like`]).
///
/// So a sample does not depend on which other samples share its batch, nor on
/// how a run is split into batches, processes or machines: the rows `a..b` of a
/// run are drawn by `RowNoise::new(seed, a..b)` exactly as in the whole run, as
/// long as the integrator treats rows independently (not the Langevin
/// correctors with a signal-to-noise ratio or adaptive ODE steps, whose step
/// sizes come from the whole batch). The host draws for a `tch::Tensor` state
/// are made as for an ndarray array of the same precision and copied to the
/// device once: the same numbers on every device.
///
/// (A [`BrownianPath`] is one path for the whole batch, drawn with the batch's
/// shape: it is not split by sample.)
#[derive(Debug, Clone)]
pub struct RowNoise {
    seed: u64,
    rows: std::ops::Range<u64>,
    draws: u64,
}

/// Key of the per-sample keys of [`RowNoise`] (the `scoresde` crate's
/// stream number for sampling noise).
const ROWS: u64 = 5;
/// Key of [`RowNoise`]'s draw counter.
const DRAWS: u64 = 11;

impl RowNoise {
    /// The noise of samples `rows` (global indices) of the run seeded `seed`.
    pub fn new(seed: u64, rows: std::ops::Range<u64>) -> Self {
        Self { seed, rows, draws: 0 }
    }

    /// The samples this noise draws for.
    pub fn rows(&self) -> std::ops::Range<u64> {
        self.rows.clone()
    }

    /// Draws made so far (the counter `k` of the next draw).
    pub fn draws(&self) -> u64 {
        self.draws
    }

    /// Draw `k = self.draws()` for every row, shaped like `like`; the counter
    /// moves on whether or not the shape fits.
    fn draw<S: State>(&mut self, like: &S) -> Result<S> {
        let k = self.draws;
        self.draws += 1;
        let mut rngs: Vec<Rng> =
            self.rows.clone().map(|i| Rng::seed_from_u64(mix(mix(self.seed, i, ROWS), k, DRAWS))).collect();
        like.randn_rows_like(&mut rngs)
    }
}

impl<S: State> Noise<S> for RowNoise {
    fn step_normal(&mut self, _t: f64, _t_next: f64, like: &S) -> Result<S> {
        self.draw(like)
    }

    /// A shape that does not fit the rows gives NaNs, which the sampler's
    /// finiteness check reports with the step.
    fn normal(&mut self, like: &S) -> S {
        self.draw(like).unwrap_or_else(|_| {
            let mut z = like.duplicate();
            z.scale(f64::NAN);
            z
        })
    }
}

/// A Brownian path on `[t0, t1]` queried at any time, with consistent increments.
///
/// `W(t0) = 0`, `W(t1) = sqrt(t1 - t0) Z`; each dyadic midpoint is drawn from
/// the Brownian bridge between its interval's end points with a seed derived
/// from `(seed, depth, index)`. Dyadic times (`t0 + k (t1 - t0) / 2^d`, in
/// particular every uniform grid with a power-of-two number of steps) are
/// exact; any other time is resolved to `tol` and finished with a bridge draw
/// (so only increments over steps longer than `tol` have the exact joint law).
/// Statistically `W(t) - W(s) ~ N(0, |t - s|)` and increments over disjoint
/// intervals are independent, as for a true Brownian motion.
#[derive(Debug, Clone)]
pub struct BrownianPath<S: State> {
    seed: u64,
    t0: f64,
    t1: f64,
    tol: f64,
    root: Option<S>,
    cache: Option<(f64, S)>,
    iid: Rng,
}

const MAX_DEPTH: u32 = 48;

/// Mixes a seed and two counters into a new seed: the SplitMix64 finaliser
/// over `seed ^ a * golden ^ b * c` (independent streams per key). Used for
/// the Brownian tree's nodes, [`RowNoise`]'s draws and, in the `scoresde`
/// crate, its training streams.
pub fn mix(seed: u64, a: u64, b: u64) -> u64 {
    let mut z = seed ^ a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl<S: State> BrownianPath<S> {
    /// A path on `[t0, t1]` (either order is accepted) resolved to `tol`.
    ///
    /// # Errors
    /// Non-finite or equal end points, or `tol` not in `(0, |t1 - t0|)`.
    pub fn new(seed: u64, t0: f64, t1: f64, tol: f64) -> Result<Self> {
        let (lo, hi) = (t0.min(t1), t0.max(t1));
        if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
            return Err(Error::param("t1", t1, format!("Brownian path needs finite t0 != t1 (t0 = {t0})")));
        }
        if !(tol > 0.0 && tol < hi - lo) {
            return Err(Error::param("tol", tol, "must be in (0, |t1 - t0|)"));
        }
        Ok(Self {
            seed,
            t0: lo,
            t1: hi,
            tol,
            root: None,
            cache: None,
            iid: Rng::seed_from_u64(mix(seed, u64::from(u32::MAX), 0)),
        })
    }

    fn draw(&self, depth: u32, index: u64, like: &S) -> S {
        like.randn_like(&mut Rng::seed_from_u64(mix(self.seed, u64::from(depth), index)))
    }

    /// `W(t)`, with the shape of `like`.
    ///
    /// # Errors
    /// [`Error::TimeOutOfRange`] outside `[t0, t1]`; a shape mismatch if
    /// `like` differs from the shape of earlier queries.
    pub fn value(&mut self, t: f64, like: &S) -> Result<S> {
        if !(t >= self.t0 && t <= self.t1) {
            return Err(Error::TimeOutOfRange { t, min: self.t0, max: self.t1 });
        }
        if let Some((tc, w)) = &self.cache {
            if *tc == t && w.shape() == like.shape() {
                return Ok(w.duplicate());
            }
        }
        let root = match &self.root {
            Some(r) if r.shape() == like.shape() => r.duplicate(),
            Some(r) => {
                return Err(Error::ShapeMismatch { what: "Brownian path", expected: r.shape(), got: like.shape() })
            }
            None => {
                let mut r = self.draw(0, 0, like);
                r.scale((self.t1 - self.t0).sqrt());
                self.root = Some(r.duplicate());
                r
            }
        };
        let snap = 1e-12 * (self.t1 - self.t0);
        let (mut l, mut r) = (self.t0, self.t1);
        let mut wl = {
            let mut z = root.duplicate();
            z.scale(0.0);
            z
        };
        let mut wr = root;
        let mut index: u64 = 0;
        let mut depth: u32 = 0;
        let w = loop {
            if (t - l).abs() <= snap {
                break wl;
            }
            if (t - r).abs() <= snap {
                break wr;
            }
            if r - l <= self.tol || depth >= MAX_DEPTH {
                // Bridge draw inside the final interval, seeded by t itself: below
                // `tol` distinct times get distinct (conditionally independent) values.
                let u = (t - l) / (r - l);
                let mut z = self.draw(depth + 1, index ^ t.to_bits().rotate_left(17), like);
                let sd = ((t - l) * (r - t) / (r - l)).max(0.0).sqrt();
                z.axpbypcz(sd, 1.0 - u, &wl, u, &wr)?;
                break z;
            }
            depth += 1;
            let m = 0.5 * (l + r);
            let mut wm = self.draw(depth, index, like);
            wm.axpbypcz(0.5 * (r - l).sqrt(), 0.5, &wl, 0.5, &wr)?;
            if t < m {
                r = m;
                wr = wm;
                index *= 2;
            } else {
                l = m;
                wl = wm;
                index = index * 2 + 1;
            }
        };
        self.cache = Some((t, w.duplicate()));
        Ok(w)
    }

    /// `W(b) - W(a)`.
    ///
    /// # Errors
    /// As [`BrownianPath::value`].
    pub fn increment(&mut self, a: f64, b: f64, like: &S) -> Result<S> {
        let wa = self.value(a, like)?;
        let mut wb = self.value(b, like)?;
        wb.axpby(1.0, -1.0, &wa)?;
        Ok(wb)
    }
}

impl<S: State> Noise<S> for BrownianPath<S> {
    fn step_normal(&mut self, t: f64, t_next: f64, like: &S) -> Result<S> {
        let h = (t_next - t).abs();
        if h <= 0.0 {
            return Err(Error::InvalidGrid { reason: format!("zero-length step at t = {t}") });
        }
        let mut dw = self.increment(t, t_next, like)?;
        dw.scale(1.0 / h.sqrt());
        Ok(dw)
    }

    fn normal(&mut self, like: &S) -> S {
        like.randn_like(&mut self.iid)
    }

    fn is_path(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn increments_add_up_and_have_brownian_variance() {
        let like = Array2::<f64>::zeros((20_000, 1));
        let mut p = BrownianPath::new(3, 0.0, 1.0, 1e-6).unwrap();
        let a = p.increment(0.0, 0.25, &like).unwrap();
        let b = p.increment(0.25, 0.75, &like).unwrap();
        let ab = p.increment(0.0, 0.75, &like).unwrap();
        let max_diff = (&a + &b - &ab).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(max_diff < 1e-12, "{max_diff}");
        // Var(W(0.75) - W(0.25)) = 0.5; sd of the sample variance ~ 0.5 sqrt(2/n).
        let n = like.nrows() as f64;
        let var = b.iter().map(|v| v * v).sum::<f64>() / n;
        assert!((var - 0.5).abs() < 5.0 * 0.5 * (2.0 / n).sqrt(), "{var}");
        // Independence of disjoint increments: correlation ~ N(0, 1/n).
        let cov = a.iter().zip(b.iter()).map(|(x, y)| x * y).sum::<f64>() / n;
        let corr = cov / (0.25f64 * 0.5).sqrt();
        assert!(corr.abs() < 5.0 / n.sqrt(), "{corr}");
    }

    #[test]
    fn non_dyadic_times_are_consistent() {
        let like = Array2::<f64>::zeros((4, 2));
        let mut p = BrownianPath::new(1, 0.001, 1.0, 1e-7).unwrap();
        let w1 = p.value(0.3137, &like).unwrap();
        let _ = p.value(0.9, &like).unwrap();
        let w2 = p.value(0.3137, &like).unwrap();
        assert_eq!(w1, w2);
        assert!(p.value(1.5, &like).is_err());
        assert!(BrownianPath::<Array2<f64>>::new(0, 1.0, 1.0, 1e-3).is_err());
    }
}
