//! The final noise-free denoising step.

use crate::error::Result;
use crate::score::Score;
use crate::sde::Sde;
use crate::state::State;

/// Tweedie's formula (Efron 2011): the posterior mean `E[x_0 | x_t]` =
/// `(x + sigma(t)^2 s(x, t)) / a(t)`. Used as the last, noise-free step of a
/// sampler, which removes the residual noise of level `sigma(eps)`.
///
/// # Errors
/// Whatever the score returns.
pub fn tweedie_denoise<S: State>(mut x: S, t: f64, sde: &dyn Sde, score: &dyn Score<S>) -> Result<S> {
    let (a, var) = (sde.alpha(t), sde.sigma(t).powi(2));
    let s = score.score(&x, t)?;
    x.axpby(1.0 / a, var / a, &s)?;
    Ok(x)
}

/// The Tweedie estimate from a score already evaluated: `x0_hat = (x + var s) / a`,
/// written into the score's buffer (`var = sigma(t)^2`, `a = a(t)`). The solvers that
/// form `x0_hat` explicitly (DPM-Solver++, and ancestral / DDIM with an
/// [`crate::X0Guard`]) all use this.
pub(crate) fn x0_hat<S: State>(mut s: S, x: &S, a: f64, var: f64) -> Result<S> {
    s.axpby(var / a, 1.0 / a, x)?;
    Ok(s)
}
