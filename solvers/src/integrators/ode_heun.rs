//! Heun's method for ODEs, and the probability-flow sampler built on it.

use crate::error::Result;
use crate::solver::{Ctx, Solver};
use crate::state::State;
use crate::vector_field::{offset, ProbabilityFlow, VectorField};

/// Heun's method, the explicit trapezoidal rule (Heun 1900; Hairer, Nørsett &
/// Wanner 1993, §II.1), for the probability-flow ODE `dx/dt = v(x, t) =
/// f(t) x - 1/2 g(t)^2 s(x, t)` (Song et al. 2021, eq. 13; [`ProbabilityFlow`]),
/// `h = t_next - t < 0`:
///
/// `k1 = v(x, t)`, `k2 = v(x + h k1, t_next)`, `x <- x + h/2 (k1 + k2)`.
///
/// Deterministic; global order 2. Two score evaluations per step (the second
/// at `t_next`).
#[derive(Debug, Clone, Copy, Default)]
pub struct OdeHeun;

impl OdeHeun {
    /// One Heun step of `dx/dt = v(x, t)` from `t` to `t_next` (either direction).
    ///
    /// # Errors
    /// Whatever the vector field returns; shape mismatches.
    pub fn advance<S: State, V: VectorField<S> + ?Sized>(field: &V, mut x: S, t: f64, t_next: f64) -> Result<S> {
        let h = t_next - t;
        let k1 = field.eval(&x, t)?;
        let k2 = field.eval(&offset(&x, h, &k1)?, t_next)?;
        x.axpbypcz(1.0, 0.5 * h, &k1, 0.5 * h, &k2)?;
        Ok(x)
    }
}

impl<S: State> Solver<S> for OdeHeun {
    fn name(&self) -> &'static str {
        "ode-heun"
    }

    fn step(&mut self, x: S, t: f64, t_next: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        Self::advance(&ProbabilityFlow::new(ctx.sde, ctx.score), x, t, t_next)
    }
}
