//! The Langevin corrector with the signal-to-noise step rule.

use crate::error::{Error, Result};
use crate::solver::{Corrector, Ctx};
use crate::state::State;

/// Langevin MCMC corrector (Song et al. 2021, Algorithm 4): `n_steps` moves of
///
/// `x <- x + e s(x, t) + sqrt(2 e) z`, `e = 2 alpha (r |z| / |s|)^2`,
///
/// with `|.|` the batch mean of per-sample norms, `r` the target
/// signal-to-noise ratio (0.16 by default) and `alpha = a_ts^2` for the step
/// just taken (`1 - beta_i` for VP, sub-VP and cosine VP, whose `a(t)` is VP's; exactly 1
/// for VE, as in Song et al.'s Algorithm 4). Unadjusted Langevin converges
/// to `p_t` as `e -> 0`; at finite `e` its bias is O(e).
///
/// `r` must lie in `(0, 1)`: on a Gaussian target of variance `v` (per
/// coordinate) the rule gives `|s| = |z| / sqrt(v)`, so `e = 2 alpha r^2 v`, and
/// the move `x <- (1 - e/v) x + sqrt(2e) z` is stable, with stationary variance
/// `v / (1 - e/(2v))`, only for `e < 2v`: `alpha r^2 < 1`, i.e. `r < 1` as
/// `alpha -> 1`. From `r = 1` on the corrector diverges. Song et al. use
/// 0.16 (VP) and 0.075–0.17 elsewhere.
#[derive(Debug, Clone, Copy)]
pub struct Langevin {
    snr: f64,
    n_steps: usize,
}

impl Default for Langevin {
    fn default() -> Self {
        Self { snr: 0.16, n_steps: 1 }
    }
}

impl Langevin {
    /// One Langevin move per call with target signal-to-noise ratio `snr`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `snr` unless `0 < snr < 1` (NaN included).
    pub fn snr(snr: f64) -> Result<Self> {
        check_snr(snr)?;
        Ok(Self { snr, n_steps: 1 })
    }

    /// Sets the number of moves per call.
    ///
    /// # Errors
    /// [`Error::InvalidSteps`] for zero.
    pub fn with_steps(mut self, n_steps: usize) -> Result<Self> {
        check_moves(n_steps)?;
        self.n_steps = n_steps;
        Ok(self)
    }
}

/// Checks a Langevin signal-to-noise ratio: `0 < r < 1` (see [`Langevin`]).
pub(crate) fn check_snr(snr: f64) -> Result<f64> {
    if snr > 0.0 && snr < 1.0 {
        Ok(snr)
    } else {
        Err(Error::param(
            "snr",
            snr,
            "must be in (0, 1): the Langevin step 2 snr^2 v on a target of variance v is unstable from snr = 1 \
             (Song et al. use 0.16)",
        ))
    }
}

/// Rejects a corrector with zero moves per call (shared by every Langevin rule).
pub(crate) fn check_moves(n_steps: usize) -> Result<()> {
    if n_steps == 0 {
        Err(Error::InvalidSteps { steps: 0, reason: "a corrector needs at least one move" })
    } else {
        Ok(())
    }
}

/// One unadjusted Langevin move `x <- x + e s + sqrt(2 e) z` (shared by every Langevin rule).
pub(crate) fn langevin_move<S: State>(x: &mut S, e: f64, s: &S, z: &S) -> Result<()> {
    x.axpbypcz(1.0, e, s, (2.0 * e).sqrt(), z)
}

impl<S: State> Corrector<S> for Langevin {
    fn name(&self) -> &'static str {
        "langevin"
    }

    fn correct(&mut self, mut x: S, t: f64, t_prev: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        let alpha = ctx.sde.transition(t, t_prev).0.powi(2);
        for _ in 0..self.n_steps {
            let s = ctx.score.score(&x, t)?;
            let z = ctx.noise.normal(&x);
            let s_norm = s.mean_sample_norm();
            // A zero score means x already sits at a mode: no move is the only finite answer.
            let e = if s_norm > 0.0 { 2.0 * alpha * (self.snr * z.mean_sample_norm() / s_norm).powi(2) } else { 0.0 };
            langevin_move(&mut x, e, &s, &z)?;
        }
        Ok(x)
    }
}
