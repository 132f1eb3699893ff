//! The classical Runge–Kutta method for ODEs, and the probability-flow sampler built on it.

use crate::error::Result;
use crate::solver::{Ctx, Solver};
use crate::state::State;
use crate::vector_field::{offset, ProbabilityFlow, VectorField};

/// The classical fourth-order Runge–Kutta method (Kutta 1901; Hairer, Nørsett
/// & Wanner 1993, §II.1, Table 1.2) for the probability-flow ODE
/// `dx/dt = v(x, t) = f(t) x - 1/2 g(t)^2 s(x, t)` (Song et al. 2021, eq. 13;
/// [`ProbabilityFlow`]), `h = t_next - t < 0`:
///
/// `k1 = v(x, t)`, `k2 = v(x + h/2 k1, t + h/2)`, `k3 = v(x + h/2 k2, t + h/2)`,
/// `k4 = v(x + h k3, t + h)`, `x <- x + h/6 (k1 + 2 k2 + 2 k3 + k4)`.
///
/// Deterministic; global order 4. Four score evaluations per step.
#[derive(Debug, Clone, Copy, Default)]
pub struct OdeRk4;

impl OdeRk4 {
    /// One classical Runge–Kutta step of `dx/dt = v(x, t)` from `t` to `t_next`
    /// (either direction).
    ///
    /// # Errors
    /// Whatever the vector field returns; shape mismatches.
    pub fn advance<S: State, V: VectorField<S> + ?Sized>(field: &V, mut x: S, t: f64, t_next: f64) -> Result<S> {
        let h = t_next - t;
        let t_mid = t + 0.5 * h;
        let k1 = field.eval(&x, t)?;
        let k2 = field.eval(&offset(&x, 0.5 * h, &k1)?, t_mid)?;
        let k3 = field.eval(&offset(&x, 0.5 * h, &k2)?, t_mid)?;
        let k4 = field.eval(&offset(&x, h, &k3)?, t_next)?;
        x.axpbypcz(1.0, h / 6.0, &k1, h / 3.0, &k2)?;
        x.axpbypcz(1.0, h / 3.0, &k3, h / 6.0, &k4)?;
        Ok(x)
    }
}

impl<S: State> Solver<S> for OdeRk4 {
    fn name(&self) -> &'static str {
        "ode-rk4"
    }

    fn step(&mut self, x: S, t: f64, t_next: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        Self::advance(&ProbabilityFlow::new(ctx.sde, ctx.score), x, t, t_next)
    }
}
