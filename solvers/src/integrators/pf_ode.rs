//! The probability-flow ODE's velocity, shared by the ODE integrators.

use crate::error::Result;
use crate::solver::Ctx;
use crate::state::State;

/// The velocity of the probability-flow ODE (Song et al. 2021, eq. 13),
/// `v(x, t) = f(t) x - 1/2 g(t)^2 s(x, t)`, from one score evaluation.
///
/// # Errors
/// Whatever the score returns; shape mismatches.
pub(crate) fn velocity<S: State>(x: &S, t: f64, ctx: &Ctx<'_, S>) -> Result<S> {
    let mut v = ctx.score.score(x, t)?;
    let g = ctx.sde.diffusion(t);
    v.axpby(-0.5 * g * g, ctx.sde.drift_coef(t), x)?;
    Ok(v)
}

/// `y = x + c k` as a fresh state.
pub(crate) fn offset<S: State>(x: &S, c: f64, k: &S) -> Result<S> {
    let mut y = x.duplicate();
    y.axpby(1.0, c, k)?;
    Ok(y)
}
