//! Interpolant forward processes: flow matching and rectified flow as an [`Sde`].
//!
//! A flow-matching model (Lipman et al. 2023; Liu et al. 2023, "rectified flow";
//! Albergo & Vanden-Eijnden 2023) is defined by an interpolant
//! `x_t = a(t) x_0 + sigma(t) z`, `z ~ N(0, I)`, rather than by an SDE. Any such
//! interpolant with `a > 0` has the marginals of the linear SDE `dx = f x dt + g dw`
//! with (DESIGN.md §3)
//!
//! `f = a'/a`,  `g^2 = d(sigma^2)/dt - 2 f sigma^2 = 2 sigma sigma' - 2 (a'/a) sigma^2`,
//!
//! so every sampler of the registry runs on it unchanged ([`InterpolantSde`]). Its
//! log-SNR is `lambda = ln(a / sigma)` and its exact transition from `s` to `t` is
//! `a_ts = a_t / a_s`, `sigma_ts^2 = sigma_t^2 - a_ts^2 sigma_s^2` (the [`Sde`] defaults).
//!
//! **Velocity.** The velocity of the interpolant is `v = dx_t/dt = a' x_0 + sigma' z`
//! (`= z - x_0` for rectified flow). It is *not* the VP "v-prediction"
//! `a eps - sigma x_0` of Salimans & Ho (2022), which assumes `a^2 + sigma^2 = 1`.
//! A velocity prediction converts to `x0_hat` and `eps_hat` by solving
//! `x = a x0 + sigma eps`, `v = a' x0 + sigma' eps` ([`VelocityCoefs`], the one place
//! that conversion is written), and the score is `-eps_hat / sigma`.
//!
//! **The end time.** Rectified flow has `a(1) = 0`, where `f = a'/a` is infinite and
//! the prior `N(0, I)` is exact. [`FlowSde`] stops at `t_max = 1 - 1e-3` (the same
//! distance as the usual `eps = 1e-3` at the data end): there `a = 1e-3`,
//! `lambda = -6.9` (VP: `-5.0` at `t = 1`) and the prior `N(0, prior_std^2)` with
//! `prior_std = sqrt(a^2 + sigma^2) = 0.999` differs from the true marginal only by the
//! data's `1e-3`-scaled contribution. Every solver only sees finite coefficients on
//! `[eps, t_max]`: `f(t_max) = -1000`, `g(t_max)^2 = 2 t/(1 - t) = 1998`. These are
//! stiff near `t_max` on a uniform grid for the reverse-SDE samplers (their first
//! step); the probability-flow velocity `f x - g^2/2 s` itself stays bounded, and
//! log-SNR grids resolve the end.

use std::fmt::Debug;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::sde::Sde;

/// The coefficients of an interpolant `x_t = a(t) x_0 + sigma(t) z` and their
/// time derivatives.
pub trait Schedule: Send + Sync + Debug {
    /// Short name, e.g. `"flow"`.
    fn name(&self) -> &'static str;

    /// `a(t)`.
    fn alpha(&self, t: f64) -> f64;

    /// `sigma(t)`.
    fn sigma(&self, t: f64) -> f64;

    /// `a'(t)`.
    fn alpha_dot(&self, t: f64) -> f64;

    /// `sigma'(t)`.
    fn sigma_dot(&self, t: f64) -> f64;

    /// `lambda(t) = ln(a / sigma)`.
    fn log_snr(&self, t: f64) -> f64 {
        self.alpha(t).ln() - self.sigma(t).ln()
    }

    /// The inverse of [`Schedule::log_snr`] in closed form, where there is one
    /// (`None`: the [`Sde`] bisects).
    fn t_of_log_snr(&self, _lambda: f64) -> Option<f64> {
        None
    }
}

/// The linear interpolant of rectified flow (Liu et al. 2023) and conditional flow
/// matching with `sigma_min = 0` (Lipman et al. 2023): `a(t) = 1 - t`, `sigma(t) = t`,
/// `a' = -1`, `sigma' = 1`, so `v = z - x_0`. `lambda = ln((1 - t)/t)`, inverse
/// `t = 1/(1 + e^lambda)`. As an SDE: `f = -1/(1 - t)`, `g^2 = 2t/(1 - t)`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Linear;

impl Schedule for Linear {
    fn name(&self) -> &'static str {
        "flow"
    }

    fn alpha(&self, t: f64) -> f64 {
        1.0 - t
    }

    fn sigma(&self, t: f64) -> f64 {
        t
    }

    fn alpha_dot(&self, _t: f64) -> f64 {
        -1.0
    }

    fn sigma_dot(&self, _t: f64) -> f64 {
        1.0
    }

    fn log_snr(&self, t: f64) -> f64 {
        (-t).ln_1p() - t.ln()
    }

    fn t_of_log_snr(&self, lambda: f64) -> Option<f64> {
        // 1/(1 + e^lambda), written to stay accurate for large |lambda|.
        Some(if lambda > 0.0 {
            let e = (-lambda).exp();
            e / (1.0 + e)
        } else {
            1.0 / (1.0 + lambda.exp())
        })
    }
}

/// A coefficient function of time.
pub type CoefFn = Arc<dyn Fn(f64) -> f64 + Send + Sync>;

/// A user-defined interpolant from four closures: `a`, `sigma`, `a'`, `sigma'`.
#[derive(Clone)]
pub struct FnSchedule {
    name: &'static str,
    alpha: CoefFn,
    sigma: CoefFn,
    alpha_dot: CoefFn,
    sigma_dot: CoefFn,
}

impl FnSchedule {
    /// An interpolant from its coefficients and their derivatives (not checked
    /// against each other: the caller's closed forms).
    pub fn new(name: &'static str, alpha: CoefFn, sigma: CoefFn, alpha_dot: CoefFn, sigma_dot: CoefFn) -> Self {
        Self { name, alpha, sigma, alpha_dot, sigma_dot }
    }
}

impl Debug for FnSchedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnSchedule").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Schedule for FnSchedule {
    fn name(&self) -> &'static str {
        self.name
    }

    fn alpha(&self, t: f64) -> f64 {
        (self.alpha)(t)
    }

    fn sigma(&self, t: f64) -> f64 {
        (self.sigma)(t)
    }

    fn alpha_dot(&self, t: f64) -> f64 {
        (self.alpha_dot)(t)
    }

    fn sigma_dot(&self, t: f64) -> f64 {
        (self.sigma_dot)(t)
    }
}

/// The SDE with the marginals of an interpolant ([module docs](self)):
/// `f = a'/a`, `g^2 = 2 sigma sigma' - 2 f sigma^2`, on `[0, t_max]`, sampling ending
/// at `eps`.
#[derive(Debug, Clone)]
pub struct InterpolantSde<I: Schedule> {
    schedule: I,
    t_max: f64,
    eps: f64,
}

/// Rectified flow, `a = 1 - t`, `sigma = t`, as an SDE on `[0, 1 - 1e-3]` ([module docs](self)).
pub type FlowSde = InterpolantSde<Linear>;

/// The default `t_max` of [`FlowSde`]: `1 - 1e-3`.
pub const FLOW_T_MAX: f64 = 1.0 - 1e-3;

impl Default for FlowSde {
    /// `t_max = 1 - 1e-3`, `eps = 1e-3`.
    fn default() -> Self {
        Self { schedule: Linear, t_max: FLOW_T_MAX, eps: 1e-3 }
    }
}

impl<I: Schedule> InterpolantSde<I> {
    /// The SDE of `schedule` on `[0, t_max]`, sampling ending at `eps = 1e-3`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `t_max` is in `(1e-3, 1]` with finite
    /// `a(t_max) > 0` and `sigma(t_max) > 0` (rectified flow needs `t_max < 1`:
    /// `a(1) = 0` makes the drift `a'/a` infinite).
    pub fn new(schedule: I, t_max: f64) -> Result<Self> {
        let eps = 1e-3;
        if !(t_max > eps && t_max <= 1.0) {
            return Err(Error::param("t_max", t_max, format!("must be in ({eps}, 1]")));
        }
        let (a, s) = (schedule.alpha(t_max), schedule.sigma(t_max));
        if !(a > 0.0 && a.is_finite() && s > 0.0 && s.is_finite()) {
            return Err(Error::param(
                "t_max",
                t_max,
                format!(
                    "the {} interpolant has a(t_max) = {a}, sigma(t_max) = {s}: both must be finite and > 0 \
                     (the drift a'/a is infinite where a = 0; rectified flow needs t_max < 1)",
                    schedule.name()
                ),
            ));
        }
        Ok(Self { schedule, t_max, eps })
    }

    /// Sets the end time of sampling (default `1e-3`).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `0 < eps < t_max`.
    pub fn with_eps(mut self, eps: f64) -> Result<Self> {
        if !(eps > 0.0 && eps < self.t_max) {
            return Err(Error::param("eps", eps, format!("must be in (0, t_max = {})", self.t_max)));
        }
        self.eps = eps;
        Ok(self)
    }

    /// The interpolant.
    pub fn schedule(&self) -> &I {
        &self.schedule
    }
}

impl FlowSde {
    /// Rectified flow on `[0, t_max]`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `1e-3 < t_max < 1`.
    pub fn with_t_max(t_max: f64) -> Result<Self> {
        Self::new(Linear, t_max)
    }
}

impl<I: Schedule> Sde for InterpolantSde<I> {
    fn name(&self) -> &'static str {
        self.schedule.name()
    }

    fn t_max(&self) -> f64 {
        self.t_max
    }

    fn t_eps(&self) -> f64 {
        self.eps
    }

    fn drift_coef(&self, t: f64) -> f64 {
        self.schedule.alpha_dot(t) / self.schedule.alpha(t)
    }

    fn diffusion(&self, t: f64) -> f64 {
        let s = self.schedule.sigma(t);
        let g2 = 2.0 * s * (self.schedule.sigma_dot(t) - self.drift_coef(t) * s);
        g2.max(0.0).sqrt()
    }

    fn alpha(&self, t: f64) -> f64 {
        self.schedule.alpha(t)
    }

    fn sigma(&self, t: f64) -> f64 {
        self.schedule.sigma(t)
    }

    fn alpha_dot(&self, t: f64) -> f64 {
        self.schedule.alpha_dot(t)
    }

    fn sigma_dot(&self, t: f64) -> f64 {
        self.schedule.sigma_dot(t)
    }

    fn log_snr(&self, t: f64) -> f64 {
        self.schedule.log_snr(t)
    }

    fn t_of_log_snr(&self, lambda: f64) -> Result<f64> {
        let lo = self.log_snr(self.t_max);
        // Rounding slack of a few ulps at the end of the range; t is clamped to t_max.
        match self.schedule.t_of_log_snr(lambda) {
            Some(t) if lambda.is_finite() && lambda >= lo - 1e-12 * (1.0 + lo.abs()) => Ok(t.min(self.t_max)),
            Some(_) => Err(Error::param("lambda", lambda, format!("log-SNR must be finite and >= {lo}"))),
            None => crate::sde::bisect_log_snr(self, lambda),
        }
    }
}

/// The linear map from a velocity prediction to `x0_hat` and `eps_hat` at one time:
/// the solution of `x = a x0 + sigma eps`, `v = a' x0 + sigma' eps`,
///
/// `x0 = (sigma' x - sigma v) / det`,  `eps = (a v - a' x) / det`,  `det = a sigma' - sigma a'`.
///
/// Rectified flow: `det = 1`, `x0 = x - t v`, `eps = x + (1 - t) v`. Training and
/// sampling both convert through this (the root crate's `Parameterization::Flow`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VelocityCoefs {
    /// `x0_hat = x0_x x + x0_v v`.
    pub x0_x: f64,
    /// See [`VelocityCoefs::x0_x`].
    pub x0_v: f64,
    /// `eps_hat = eps_x x + eps_v v`.
    pub eps_x: f64,
    /// See [`VelocityCoefs::eps_x`].
    pub eps_v: f64,
}

impl VelocityCoefs {
    /// The coefficients of `sde` at `t`.
    ///
    /// # Errors
    /// [`Error::TimeOutOfRange`]; [`Error::InvalidParameter`] where `det = a sigma' -
    /// sigma a'` is not finite and positive (the velocity does not determine `x0`, `eps`).
    pub fn of(sde: &dyn Sde, t: f64) -> Result<Self> {
        sde.check_time(t)?;
        let (a, s, da, ds) = (sde.alpha(t), sde.sigma(t), sde.alpha_dot(t), sde.sigma_dot(t));
        let det = a * ds - s * da;
        if !(det.is_finite() && det > 0.0) {
            return Err(Error::param("t", t, format!("velocity conversion is singular here (a s' - s a' = {det})")));
        }
        Ok(Self { x0_x: ds / det, x0_v: -s / det, eps_x: -da / det, eps_v: a / det })
    }

    /// The score `-eps_hat / sigma` as `score_x x + score_v v`: `(score_x, score_v)`.
    pub fn score(&self, sigma: f64) -> (f64, f64) {
        (-self.eps_x / sigma, -self.eps_v / sigma)
    }
}
