//! Euler's method for the probability-flow ODE.

use crate::error::Result;
use crate::integrators::pf_ode::velocity;
use crate::solver::{Ctx, Solver};
use crate::state::State;

/// Euler's method (Euler 1768; Hairer, Nørsett & Wanner 1993, §II.1) for the
/// probability-flow ODE of Song et al. (2021, eq. 13),
/// `dx/dt = v(x, t) = f(t) x - 1/2 g(t)^2 s(x, t)`, with `h = t_next - t < 0`:
///
/// `x <- x + h v(x, t)`.
///
/// Deterministic (uses no noise); converges to the ODE solution, whose law at
/// every `t` is `p_t`, with global order 1. One score evaluation per step.
#[derive(Debug, Clone, Copy, Default)]
pub struct OdeEuler;

impl<S: State> Solver<S> for OdeEuler {
    fn name(&self) -> &'static str {
        "ode-euler"
    }

    fn score_evals_per_step(&self) -> usize {
        1
    }

    fn step(&mut self, mut x: S, t: f64, t_next: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        let v = velocity(&x, t, ctx)?;
        x.axpby(1.0, t_next - t, &v)?;
        Ok(x)
    }
}
