//! Stochastic-gradient / unadjusted Langevin dynamics with a step-size schedule.

use crate::error::{Error, Result};
use crate::integrators::langevin::{check_moves, langevin_move};
use crate::solver::{Corrector, Ctx};
use crate::state::State;

/// Step sizes `e_k` for iteration `k = 0, 1, ...`.
#[derive(Debug, Clone, PartialEq)]
pub enum StepSchedule {
    /// `e_k = e` (the unadjusted Langevin algorithm).
    Constant(f64),
    /// `e_k = a (b + k)^(-gamma)`, the decaying schedule of Welling & Teh (2011),
    /// `gamma` in (0.5, 1] for convergence.
    Polynomial {
        /// Scale `a > 0`.
        a: f64,
        /// Offset `b > 0`.
        b: f64,
        /// Decay exponent `gamma >= 0`.
        gamma: f64,
    },
}

impl StepSchedule {
    /// Step size at iteration `k`.
    pub fn at(&self, k: usize) -> f64 {
        match *self {
            StepSchedule::Constant(e) => e,
            StepSchedule::Polynomial { a, b, gamma } => a * (b + k as f64).powf(-gamma),
        }
    }

    fn validate(&self) -> Result<()> {
        match *self {
            StepSchedule::Constant(e) => crate::error::positive("step size", e).map(|_| ()),
            StepSchedule::Polynomial { a, b, gamma } => {
                crate::error::positive("a", a)?;
                crate::error::positive("b", b)?;
                if !(gamma >= 0.0 && gamma.is_finite()) {
                    return Err(Error::param("gamma", gamma, "must be finite and >= 0"));
                }
                Ok(())
            }
        }
    }
}

/// Stochastic gradient Langevin dynamics at fixed `t` (Welling & Teh 2011):
/// `x <- x + e_k s(x, t) + sqrt(2 e_k) z` with a user-given schedule `e_k`.
/// With a constant step on `N(m, v)` the chain's stationary variance is
/// `v / (1 - e / (2 v))` (the O(e) bias of unadjusted Langevin).
#[derive(Debug, Clone, PartialEq)]
pub struct Sgld {
    schedule: StepSchedule,
    n_steps: usize,
}

impl Sgld {
    /// SGLD with `schedule`, making `n_steps` moves per [`Corrector::correct`] call.
    ///
    /// # Errors
    /// An invalid schedule or zero `n_steps`.
    pub fn new(schedule: StepSchedule, n_steps: usize) -> Result<Self> {
        schedule.validate()?;
        check_moves(n_steps)?;
        Ok(Self { schedule, n_steps })
    }

    /// Runs `iters` moves at fixed time `t`, from iteration index `k0` of the schedule.
    ///
    /// # Errors
    /// Score failures, shape mismatches, a time outside the SDE's range, or a
    /// non-finite state ([`Error::NonFinite`] with the iteration as step).
    pub fn run<S: State>(&self, mut x: S, t: f64, k0: usize, iters: usize, ctx: &mut Ctx<'_, S>) -> Result<S> {
        ctx.sde.check_time(t)?;
        for k in k0..k0 + iters {
            let s = ctx.score.score(&x, t)?;
            let z = ctx.noise.normal(&x);
            langevin_move(&mut x, self.schedule.at(k), &s, &z)?;
            if !x.all_finite() {
                return Err(Error::NonFinite { step: k + 1, t });
            }
        }
        Ok(x)
    }
}

impl<S: State> Corrector<S> for Sgld {
    fn name(&self) -> &'static str {
        "sgld"
    }

    fn correct(&mut self, x: S, t: f64, _t_prev: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        self.run(x, t, 0, self.n_steps, ctx)
    }
}
