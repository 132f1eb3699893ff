//! Euler's method for ODEs, and the probability-flow sampler built on it.

use crate::error::Result;
use crate::solver::{Ctx, Solver};
use crate::state::State;
use crate::vector_field::{ProbabilityFlow, VectorField};

/// Euler's method (Euler 1768; Hairer, Nørsett & Wanner 1993, §II.1) for the
/// probability-flow ODE of Song et al. (2021, eq. 13),
/// `dx/dt = v(x, t) = f(t) x - 1/2 g(t)^2 s(x, t)` ([`ProbabilityFlow`]), with
/// `h = t_next - t < 0`:
///
/// `x <- x + h v(x, t)`.
///
/// Deterministic (uses no noise); converges to the ODE solution, whose law at
/// every `t` is `p_t`, with global order 1. One score evaluation per step.
#[derive(Debug, Clone, Copy, Default)]
pub struct OdeEuler;

impl OdeEuler {
    /// One Euler step of `dx/dt = v(x, t)` from `t` to `t_next` (either direction).
    ///
    /// # Errors
    /// Whatever the vector field returns; shape mismatches.
    pub fn advance<S: State, V: VectorField<S> + ?Sized>(field: &V, mut x: S, t: f64, t_next: f64) -> Result<S> {
        let v = field.eval(&x, t)?;
        x.axpby(1.0, t_next - t, &v)?;
        Ok(x)
    }
}

impl<S: State> Solver<S> for OdeEuler {
    fn name(&self) -> &'static str {
        "ode-euler"
    }

    fn step(&mut self, x: S, t: f64, t_next: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        Self::advance(&ProbabilityFlow::new(ctx.sde, ctx.score), x, t, t_next)
    }
}
