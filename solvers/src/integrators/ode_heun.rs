//! Heun's method for the probability-flow ODE.

use crate::error::Result;
use crate::integrators::pf_ode::{offset, velocity};
use crate::solver::{Ctx, Solver};
use crate::state::State;

/// Heun's method, the explicit trapezoidal rule (Heun 1900; Hairer, Nørsett &
/// Wanner 1993, §II.1), for the probability-flow ODE `dx/dt = v(x, t) =
/// f(t) x - 1/2 g(t)^2 s(x, t)` (Song et al. 2021, eq. 13), `h = t_next - t < 0`:
///
/// `k1 = v(x, t)`, `k2 = v(x + h k1, t_next)`, `x <- x + h/2 (k1 + k2)`.
///
/// Deterministic; global order 2. Two score evaluations per step (the second
/// at `t_next`).
#[derive(Debug, Clone, Copy, Default)]
pub struct OdeHeun;

impl<S: State> Solver<S> for OdeHeun {
    fn name(&self) -> &'static str {
        "ode-heun"
    }

    fn score_evals_per_step(&self) -> usize {
        2
    }

    fn step(&mut self, mut x: S, t: f64, t_next: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        let h = t_next - t;
        let k1 = velocity(&x, t, ctx)?;
        let k2 = velocity(&offset(&x, h, &k1)?, t_next, ctx)?;
        x.axpbypcz(1.0, 0.5 * h, &k1, 0.5 * h, &k2)?;
        Ok(x)
    }
}
