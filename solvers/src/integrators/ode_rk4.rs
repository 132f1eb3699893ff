//! The classical Runge–Kutta method for the probability-flow ODE.

use crate::error::Result;
use crate::integrators::pf_ode::{offset, velocity};
use crate::solver::{Ctx, Solver};
use crate::state::State;

/// The classical fourth-order Runge–Kutta method (Kutta 1901; Hairer, Nørsett
/// & Wanner 1993, §II.1, Table 1.2) for the probability-flow ODE
/// `dx/dt = v(x, t) = f(t) x - 1/2 g(t)^2 s(x, t)` (Song et al. 2021, eq. 13),
/// `h = t_next - t < 0`:
///
/// `k1 = v(x, t)`, `k2 = v(x + h/2 k1, t + h/2)`, `k3 = v(x + h/2 k2, t + h/2)`,
/// `k4 = v(x + h k3, t + h)`, `x <- x + h/6 (k1 + 2 k2 + 2 k3 + k4)`.
///
/// Deterministic; global order 4. Four score evaluations per step.
#[derive(Debug, Clone, Copy, Default)]
pub struct OdeRk4;

impl<S: State> Solver<S> for OdeRk4 {
    fn name(&self) -> &'static str {
        "ode-rk4"
    }

    fn score_evals_per_step(&self) -> usize {
        4
    }

    fn step(&mut self, mut x: S, t: f64, t_next: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        let h = t_next - t;
        let t_mid = t + 0.5 * h;
        let k1 = velocity(&x, t, ctx)?;
        let k2 = velocity(&offset(&x, 0.5 * h, &k1)?, t_mid, ctx)?;
        let k3 = velocity(&offset(&x, 0.5 * h, &k2)?, t_mid, ctx)?;
        let k4 = velocity(&offset(&x, h, &k3)?, t_next, ctx)?;
        x.axpbypcz(1.0, h / 6.0, &k1, h / 3.0, &k2)?;
        x.axpbypcz(1.0, h / 3.0, &k3, h / 6.0, &k4)?;
        Ok(x)
    }
}
