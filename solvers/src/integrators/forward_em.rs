//! Euler–Maruyama for the forward (noising) SDE.

use crate::error::Result;
use crate::solver::{Ctx, Direction, Solver};
use crate::state::State;

/// Euler–Maruyama (Maruyama 1955; Kloeden & Platen 1992, §10.2) for the
/// forward SDE `dx = f(t) x dt + g(t) dw`, with `h = t_next - t > 0`:
///
/// `x <- (1 + f(t) h) x + g(t) sqrt(h) z`.
///
/// Converges to the Itô solution with weak order 1, and strong order 1 for
/// additive noise (all SDEs here: `g` does not depend on `x`). Uses no score.
#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardEulerMaruyama;

impl<S: State> Solver<S> for ForwardEulerMaruyama {
    fn name(&self) -> &'static str {
        "forward-em"
    }

    fn direction(&self) -> Direction {
        Direction::Forward
    }

    fn step(&mut self, mut x: S, t: f64, t_next: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        let h = t_next - t;
        let z = ctx.noise.step_normal(t, t_next, &x)?;
        x.axpby(1.0 + ctx.sde.drift_coef(t) * h, ctx.sde.diffusion(t) * h.sqrt(), &z)?;
        Ok(x)
    }
}
