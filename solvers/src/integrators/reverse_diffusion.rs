//! The reverse-diffusion predictor.

use crate::error::Result;
use crate::solver::{Ctx, Solver};
use crate::state::State;

/// Reverse-diffusion predictor (Song et al. 2021, Appendix E, eq. 46): discretise
/// the forward SDE exactly as `x_t = a_ts x_s + G z` between grid points
/// `s = t_next < t` (`a_ts = a(t)/a(s)`, `G^2 = sigma_t^2 - a_ts^2 sigma_s^2`),
/// then reverse that discretisation:
///
/// `x <- (2 - a_ts) x + G^2 s(x, t) + G z`.
///
/// For the VP-SDE this is `(2 - sqrt(1 - beta_i)) x + beta_i s + sqrt(beta_i) z`.
/// Weak order 1 (it agrees with reverse Euler–Maruyama to first order in h).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReverseDiffusion;

impl<S: State> Solver<S> for ReverseDiffusion {
    fn name(&self) -> &'static str {
        "reverse-diffusion"
    }

    fn step(&mut self, mut x: S, t: f64, t_next: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        let (a_ts, g2) = ctx.sde.transition(t_next, t);
        let s = ctx.score.score(&x, t)?;
        let z = ctx.noise.step_normal(t, t_next, &x)?;
        x.axpbypcz(2.0 - a_ts, g2, &s, g2.sqrt(), &z)?;
        Ok(x)
    }
}
