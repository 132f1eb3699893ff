//! Log-likelihoods and bits/dim through the probability-flow ODE.
//!
//! For the probability-flow ODE `dx/dt = v(x, t) = f(t) x - 1/2 g(t)^2 s(x, t)`
//! the instantaneous change of variables (Chen et al. 2018; Song et al. 2021,
//! eq. 39, Appendix D.2) gives
//!
//! `log p_{t0}(x(t0)) = log p_T(x(T)) + integral_{t0}^{T} div v(x(t), t) dt`,
//! `div v = d f(t) - 1/2 g(t)^2 div s(x, t)`,
//!
//! integrated forward from the data at `t0 = eps` to `T` together with `x(t)`,
//! here by an adaptive Dormand–Prince 5(4) on the augmented state `(x, ∫ div v)`.
//! `div v` is exact ([`DivergenceMethod::Exact`], for small `d`: `div s` from
//! [`Divergence::divergence`]) or Hutchinson's unbiased estimate
//! `e^T (f I - 1/2 g^2 J_s) e` with one probe `e` per sample, drawn once from a
//! seed and fixed over the whole solve ([`DivergenceMethod::Hutchinson`], for
//! large `d`; Hutchinson 1989, Grathwohl et al. 2019): one Jacobian–vector product
//! per evaluation instead of `d`.
//!
//! This module works on `ndarray::Array2<f64>` only (samples in rows): it needs
//! per-sample reductions that the generic [`crate::State`] does not offer.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::{Rng as _, SeedableRng};
use rand_distr::StandardNormal;

use crate::error::{Error, Result};
use crate::score::{ExactScore, Score};
use crate::sde::Sde;
use crate::state::Rng;

/// A score that can also give derivatives of itself, for likelihoods.
///
/// Both methods have finite-difference defaults built from [`Score::score`]
/// alone, so `impl Divergence for MyScore {}` makes any score usable; exact
/// implementations (closed form, or autograd for a network) replace them.
pub trait Divergence: Score<Array2<f64>> {
    /// Per row of `x`, `div_x s(x, t)`, the trace of the score's Jacobian.
    ///
    /// Default: `d` central-difference Jacobian–vector products along the
    /// coordinate axes (`2 d` score evaluations).
    ///
    /// # Errors
    /// Whatever the score returns.
    fn divergence(&self, x: &Array2<f64>, t: f64) -> Result<Array1<f64>> {
        let (n, d) = x.dim();
        let mut div = Array1::zeros(n);
        for j in 0..d {
            let mut e = Array2::zeros((n, d));
            e.column_mut(j).fill(1.0);
            div += &self.jvp(x, t, &e)?.column(j);
        }
        Ok(div)
    }

    /// Per row, the Jacobian–vector product `J_s(x_row) v_row` (for a true
    /// score `J_s` is the Hessian of `log p_t`, symmetric, so this is also the
    /// vector–Jacobian product).
    ///
    /// Default: central differences `(s(x + delta v) - s(x - delta v)) / (2 delta)`,
    /// `delta = 1e-4` (2 score evaluations; error O(delta^2)).
    ///
    /// # Errors
    /// Whatever the score returns; [`Error::ShapeMismatch`] if `v` has another shape.
    fn jvp(&self, x: &Array2<f64>, t: f64, v: &Array2<f64>) -> Result<Array2<f64>> {
        if v.dim() != x.dim() {
            return Err(Error::ShapeMismatch { what: "jvp", expected: x.shape().to_vec(), got: v.shape().to_vec() });
        }
        const DELTA: f64 = 1e-4;
        let plus = self.score(&(x + &(v * DELTA)), t)?;
        let minus = self.score(&(x - &(v * DELTA)), t)?;
        Ok((plus - minus) / (2.0 * DELTA))
    }
}

impl<Q: Sde> Divergence for ExactScore<Q> {
    /// Exact, in closed form ([`crate::GaussianMixture::score_derivatives_at`]).
    fn divergence(&self, x: &Array2<f64>, t: f64) -> Result<Array1<f64>> {
        self.sde().check_time(t)?;
        let (a, s) = (self.sde().alpha(t), self.sde().sigma(t));
        Ok(self.data().score_derivatives_at(x.view(), a, s, None)?.1)
    }

    /// Exact, in closed form.
    fn jvp(&self, x: &Array2<f64>, t: f64, v: &Array2<f64>) -> Result<Array2<f64>> {
        self.sde().check_time(t)?;
        let (a, s) = (self.sde().alpha(t), self.sde().sigma(t));
        let (_, _, jvp) = self.data().score_derivatives_at(x.view(), a, s, Some(v.view()))?;
        jvp.ok_or_else(|| Error::Score { t, reason: "no Jacobian-vector product computed".into() })
    }
}

/// How `div s` is computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum DivergenceMethod {
    /// [`Divergence::divergence`]: exact (or the score's own approximation).
    Exact,
    /// Hutchinson's estimator `e^T J_s e` with one probe per sample, fixed over
    /// the solve: standard normal, or Rademacher (±1, lower variance) entries.
    Hutchinson {
        /// Seed of the probes.
        seed: u64,
        /// Rademacher instead of Gaussian probes.
        rademacher: bool,
    },
}

/// Options of [`log_likelihood`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LikelihoodOptions {
    /// Divergence computation.
    pub method: DivergenceMethod,
    /// Relative tolerance of the adaptive solver.
    pub rtol: f64,
    /// Absolute tolerance of the adaptive solver.
    pub atol: f64,
    /// Where the data sit in time (`None`: the SDE's `t_eps`).
    pub t0: Option<f64>,
}

impl Default for LikelihoodOptions {
    /// Exact divergence, `rtol = atol = 1e-5` (Song et al. 2021), `t0 = eps`.
    fn default() -> Self {
        Self { method: DivergenceMethod::Exact, rtol: 1e-5, atol: 1e-5, t0: None }
    }
}

/// The result of [`log_likelihood`], one entry per sample.
#[derive(Debug, Clone)]
pub struct Likelihood {
    /// `log p_{t0}(x)` in nats.
    pub log_p: Array1<f64>,
    /// `-log p / (d ln 2)`: bits per dimension.
    pub bits_per_dim: Array1<f64>,
    /// `integral_{t0}^T div v dt`, the log-volume change of the flow.
    pub delta_log_p: Array1<f64>,
    /// The ODE's end point `x(T)`.
    pub x_t: Array2<f64>,
    /// Evaluations of the augmented velocity (each one score and one divergence or JVP).
    pub evals: usize,
    /// Accepted internal steps.
    pub steps: usize,
}

/// Bits per dimension of a log-density in nats of `d`-dimensional data.
pub fn bits_per_dim(log_p: f64, d: usize) -> f64 {
    -log_p / (d as f64 * std::f64::consts::LN_2)
}

/// The log-density of the end point, `log p_T(x(T))`: by default the SDE's
/// prior ([`Sde::prior_log_density`]).
pub type TerminalLogDensity<'a> = &'a dyn Fn(ArrayView2<f64>) -> Result<Array1<f64>>;

/// `log p_{t0}(x)` for each row of `x` (shape (n, d)) by the probability-flow
/// ODE of `sde` with `score`, from `t0` to `T` (see the module docs).
/// `terminal` gives `log p_T`; `None` uses the SDE's prior, whose mismatch
/// with the true `p_T` is the usual (small) prior error.
///
/// # Errors
/// Invalid options ([`Error::InvalidParameter`]), non-finite input, or
/// whatever the score returns; [`Error::StepSizeTooSmall`] if the solver stalls.
pub fn log_likelihood<D: Divergence + ?Sized>(
    sde: &dyn Sde,
    score: &D,
    x: &Array2<f64>,
    opts: &LikelihoodOptions,
    terminal: Option<TerminalLogDensity<'_>>,
) -> Result<Likelihood> {
    crate::error::positive("rtol", opts.rtol)?;
    crate::error::positive("atol", opts.atol)?;
    if !x.iter().all(|v| v.is_finite()) {
        return Err(Error::NonFiniteInput { what: "likelihood input".into() });
    }
    let t0 = opts.t0.unwrap_or_else(|| sde.t_eps());
    sde.check_time(t0)?;
    let t1 = sde.t_max();
    if t0 >= t1 {
        return Err(Error::param("t0", t0, format!("must be below T = {t1}")));
    }
    let (n, d) = x.dim();
    let probe = match opts.method {
        DivergenceMethod::Exact => None,
        DivergenceMethod::Hutchinson { seed, rademacher } => {
            let mut rng = Rng::seed_from_u64(seed);
            Some(Array2::from_shape_simple_fn((n, d), || {
                if rademacher {
                    if rng.gen::<bool>() {
                        1.0
                    } else {
                        -1.0
                    }
                } else {
                    rng.sample(StandardNormal)
                }
            }))
        }
    };
    // e^T e per sample: Hutchinson estimates the whole div v = tr(f I - 1/2 g^2 J_s) as
    // e^T (f I - 1/2 g^2 J_s) e, whose variance is far lower than estimating only tr J_s
    // (the two terms nearly cancel where p_t is close to the prior).
    let probe_sq = probe.as_ref().map(|e| (e * e).sum_axis(Axis(1)));
    // Augmented velocity: columns 0..d are dx/dt, column d is d/dt of integral div v.
    let velocity = |y: &Array2<f64>, t: f64| -> Result<Array2<f64>> {
        let xs = y.slice(ndarray::s![.., ..d]).to_owned();
        let s = score.score(&xs, t)?;
        let (f, g) = (sde.drift_coef(t), sde.diffusion(t));
        let div_v = match (&probe, &probe_sq) {
            (Some(e), Some(ee)) => (score.jvp(&xs, t, e)? * e).sum_axis(Axis(1)) * (-0.5 * g * g) + ee * f,
            _ => score.divergence(&xs, t)? * (-0.5 * g * g) + d as f64 * f,
        };
        let mut out = Array2::zeros((n, d + 1));
        out.slice_mut(ndarray::s![.., ..d]).assign(&(&xs * f - &s * (0.5 * g * g)));
        out.column_mut(d).assign(&div_v);
        Ok(out)
    };
    let mut y = Array2::zeros((n, d + 1));
    y.slice_mut(ndarray::s![.., ..d]).assign(x);
    let (y, evals, steps) = dopri5_forward(velocity, y, t0, t1, opts.rtol, opts.atol)?;
    let x_t = y.slice(ndarray::s![.., ..d]).to_owned();
    let delta = y.column(d).to_owned();
    let end = match terminal {
        Some(f) => f(x_t.view())?,
        None => x_t.rows().into_iter().map(|r| sde.prior_log_density(r.dot(&r), d)).collect(),
    };
    let log_p = &end + &delta;
    let bits_per_dim = log_p.mapv(|l| bits_per_dim(l, d));
    Ok(Likelihood { log_p, bits_per_dim, delta_log_p: delta, x_t, evals, steps })
}

/// Dormand–Prince 5(4) (the tableau of [`crate::OdeDopri5`]) forward in time
/// from `t0` to `t1` on a plain array; returns the end state, velocity
/// evaluations and accepted steps.
fn dopri5_forward(
    f: impl Fn(&Array2<f64>, f64) -> Result<Array2<f64>>,
    mut y: Array2<f64>,
    t0: f64,
    t1: f64,
    rtol: f64,
    atol: f64,
) -> Result<(Array2<f64>, usize, usize)> {
    const C: [f64; 5] = [1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0];
    const A: [&[f64]; 6] = [
        &[1.0 / 5.0],
        &[3.0 / 40.0, 9.0 / 40.0],
        &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
        &[19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0],
        &[9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0, -5103.0 / 18656.0],
        &[35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0],
    ];
    const E: [f64; 7] =
        [71.0 / 57600.0, 0.0, -71.0 / 16695.0, 71.0 / 1920.0, -17253.0 / 339200.0, 22.0 / 525.0, -1.0 / 40.0];
    let norm = |e: &Array2<f64>, a: &Array2<f64>, b: &Array2<f64>| -> f64 {
        let mut sum = 0.0;
        ndarray::Zip::from(e)
            .and(a)
            .and(b)
            .for_each(|e, a, b| sum += (e / (atol + rtol * a.abs().max(b.abs()))).powi(2));
        (sum / e.len().max(1) as f64).sqrt()
    };
    let combo = |y: &Array2<f64>, h: f64, a: &[f64], k: &[Array2<f64>]| -> Array2<f64> {
        let mut out = y.clone();
        for (aj, kj) in a.iter().zip(k) {
            if *aj != 0.0 {
                out.scaled_add(h * aj, kj);
            }
        }
        out
    };
    let mut k1 = f(&y, t0)?;
    let mut evals = 1;
    // Starting step (Hairer, Nørsett & Wanner, §II.4).
    let (d0, d1) = (norm(&y, &y, &y), norm(&k1, &y, &y));
    let h0 = if d0 < 1e-5 || d1 < 1e-5 { 1e-6 } else { 0.01 * d0 / d1 };
    let f1 = f(&combo(&y, h0, &[1.0], std::slice::from_ref(&k1)), t0 + h0)?;
    evals += 1;
    let d2 = norm(&(&f1 - &k1), &y, &y) / h0;
    let h1 = if d1.max(d2) <= 1e-15 { (h0 * 1e-3).max(1e-6) } else { (0.01 / d1.max(d2)).powf(0.2) };
    let mut h = (100.0 * h0).min(h1).min(t1 - t0);
    let (mut t, mut steps) = (t0, 0);
    while t < t1 {
        if h <= 1e-12 * t.abs().max(1e-3) {
            return Err(Error::StepSizeTooSmall { t, h });
        }
        let last = t + h >= t1;
        if last {
            h = t1 - t;
        }
        let mut k = vec![k1];
        for (i, a) in A[..5].iter().enumerate() {
            let yi = combo(&y, h, a, &k);
            k.push(f(&yi, t + C[i] * h)?);
            evals += 1;
        }
        let y5 = combo(&y, h, A[5], &k);
        let k7 = f(&y5, t + h)?;
        evals += 1;
        let mut err = Array2::zeros(y.raw_dim());
        for (ej, kj) in E.iter().zip(&k) {
            if *ej != 0.0 {
                err.scaled_add(h * ej, kj);
            }
        }
        err.scaled_add(h * E[6], &k7);
        let en = norm(&err, &y, &y5);
        if !en.is_finite() {
            return Err(Error::NonFinite { step: steps + 1, t });
        }
        let factor = if en == 0.0 { 5.0 } else { (0.9 * en.powf(-0.2)).clamp(0.2, 5.0) };
        if en <= 1.0 {
            y = y5;
            t = if last { t1 } else { t + h };
            steps += 1;
            k1 = k7;
            h *= factor;
        } else {
            k1 = k.swap_remove(0);
            h *= factor.min(1.0);
        }
    }
    Ok((y, evals, steps))
}
