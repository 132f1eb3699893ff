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
//! here by the adaptive Dormand–Prince 5(4) of [`crate::OdeDopri5::integrate`] on the
//! augmented state `(x, ∫ div v)` (one [`crate::VectorField`]).
//! `div v` is exact ([`DivergenceMethod::Exact`], for small `d`: `div s` from
//! [`Divergence::divergence`]) or Hutchinson's unbiased estimate
//! `e^T (f I - 1/2 g^2 J_s) e` with one probe `e` per sample, drawn once from a
//! seed and fixed over the whole solve ([`DivergenceMethod::Hutchinson`], for
//! large `d`; Hutchinson 1989, Grathwohl et al. 2019): one Jacobian–vector product
//! per evaluation instead of `d`.
//!
//! This module works on `ndarray::Array2<f64>` only (samples in rows): it needs
//! per-sample reductions that the generic [`crate::State`] does not offer.

use std::cell::Cell;

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::{Rng as _, SeedableRng};
use rand_distr::StandardNormal;

use crate::error::{Error, Result};
use crate::integrators::OdeDopri5;
use crate::score::{ExactScore, Score};
use crate::sde::Sde;
use crate::state::Rng;
use crate::vector_field::VectorField;

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
/// whatever the score returns; from the solver ([`OdeDopri5::integrate`]):
/// [`Error::NonFinite`] (internal step and time) for a NaN/inf stage,
/// [`Error::StepSizeTooSmall`] or [`Error::TooManySteps`] if it stalls.
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
    let probe = probe.map(|e| {
        let ee = (&e * &e).sum_axis(Axis(1));
        (e, ee)
    });
    let field = AugmentedFlow { sde, score, d, probe, evals: Cell::new(0) };
    let mut y = Array2::zeros((n, d + 1));
    y.slice_mut(ndarray::s![.., ..d]).assign(x);
    let solution = OdeDopri5::new(opts.rtol, opts.atol)?.integrate(&field, y, t0, t1)?;
    let (y, steps, evals) = (solution.x, solution.steps, field.evals.get());
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

/// The probability flow augmented with its divergence, on `(n, d + 1)` arrays:
/// columns `0..d` are `dx/dt = f x - 1/2 g^2 s`, column `d` is `div v`, exact
/// or Hutchinson's `e^T (f I - 1/2 g^2 J_s) e` with the probe `e` and `e^T e`.
struct AugmentedFlow<'a, D: ?Sized> {
    sde: &'a dyn Sde,
    score: &'a D,
    d: usize,
    probe: Option<(Array2<f64>, Array1<f64>)>,
    /// Evaluations so far (each one score and one divergence or JVP).
    evals: Cell<usize>,
}

impl<D: Divergence + ?Sized> VectorField<Array2<f64>> for AugmentedFlow<'_, D> {
    fn eval(&self, y: &Array2<f64>, t: f64) -> Result<Array2<f64>> {
        self.evals.set(self.evals.get() + 1);
        let (n, d) = (y.nrows(), self.d);
        let xs = y.slice(ndarray::s![.., ..d]).to_owned();
        let s = self.score.score(&xs, t)?;
        let (f, g) = (self.sde.drift_coef(t), self.sde.diffusion(t));
        let div_v = match &self.probe {
            Some((e, ee)) => (self.score.jvp(&xs, t, e)? * e).sum_axis(Axis(1)) * (-0.5 * g * g) + ee * f,
            None => self.score.divergence(&xs, t)? * (-0.5 * g * g) + d as f64 * f,
        };
        let mut out = Array2::zeros((n, d + 1));
        out.slice_mut(ndarray::s![.., ..d]).assign(&(&xs * f - &s * (0.5 * g * g)));
        out.column_mut(d).assign(&div_v);
        Ok(out)
    }
}
