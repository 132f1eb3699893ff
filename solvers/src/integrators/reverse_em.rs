//! Euler–Maruyama for the reverse-time SDE.

use crate::error::Result;
use crate::sde::Sde;
use crate::solver::{Ctx, Solver};
use crate::state::State;

/// Euler–Maruyama for the reverse-time SDE (Anderson 1982; Song et al. 2021, eq. 6)
/// `dx = [f(t) x - g(t)^2 s(x, t)] dt + g(t) dw_bar`, run from `t` down to
/// `t_next` with `h = t - t_next > 0`:
///
/// `x <- (1 - f(t) h) x + g(t)^2 h s(x, t) + g(t) sqrt(h) z`.
///
/// Weak order 1; strong order 1 for the additive noise of these SDEs (with an
/// exact, smooth score). One score evaluation per step.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReverseEulerMaruyama;

impl<S: State> Solver<S> for ReverseEulerMaruyama {
    fn name(&self) -> &'static str {
        "reverse-em"
    }

    fn step(&mut self, mut x: S, t: f64, t_next: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        let h = t - t_next;
        let s = ctx.score.score(&x, t)?;
        let z = ctx.noise.step_normal(t, t_next, &x)?;
        em_update(&mut x, &s, &z, ctx.sde, t, h)?;
        Ok(x)
    }
}

/// The Euler–Maruyama update above in place, with the score `s = s(x, t)` and the
/// standard normal `z` given: `x <- (1 - f(t) h) x + g(t)^2 h s + g(t) sqrt(h) z`
/// (also the first stage and the corrector stage of [`crate::AdaptiveSde`]).
pub(crate) fn em_update<S: State>(x: &mut S, s: &S, z: &S, sde: &dyn Sde, t: f64, h: f64) -> Result<()> {
    let g = sde.diffusion(t);
    x.axpbypcz(1.0 - sde.drift_coef(t) * h, g * g * h, s, g * h.sqrt(), z)
}
