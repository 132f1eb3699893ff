//! Annealed Langevin dynamics (NCSN).

use crate::error::Result;
use crate::integrators::langevin::{check_moves, check_snr, langevin_move};
use crate::solver::{Corrector, Ctx};
use crate::state::State;

/// Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1; Song et al. 2021,
/// Algorithm 5): `n_steps` moves `x <- x + e s + sqrt(2 e) z` with the step
/// size tied to the noise level, `e = 2 alpha (r sigma(t))^2`, `alpha = a_ts^2`.
/// Run as a sampler over a decreasing grid with [`crate::Pc::corrector_only`].
///
/// `r` must lie in `(0, 1)`, as for [`crate::Langevin`]: on a target of variance
/// `v >= sigma(t)^2` the move is stable only for `e < 2v`, which `r >= 1` breaks
/// wherever `sigma(t)^2` dominates the data's variance (NCSN's `e = 0.2 sigma^2`
/// is `r = 0.32`).
#[derive(Debug, Clone, Copy)]
pub struct AnnealedLangevin {
    snr: f64,
    n_steps: usize,
}

impl Default for AnnealedLangevin {
    fn default() -> Self {
        Self { snr: 0.16, n_steps: 1 }
    }
}

impl AnnealedLangevin {
    /// Annealed Langevin with signal-to-noise ratio `snr` and `n_steps` moves per level.
    ///
    /// # Errors
    /// [`crate::Error::InvalidParameter`] for `snr` outside `(0, 1)` (NaN included);
    /// [`crate::Error::InvalidSteps`] for zero `n_steps`.
    pub fn new(snr: f64, n_steps: usize) -> Result<Self> {
        check_snr(snr)?;
        check_moves(n_steps)?;
        Ok(Self { snr, n_steps })
    }
}

impl<S: State> Corrector<S> for AnnealedLangevin {
    fn name(&self) -> &'static str {
        "annealed-langevin"
    }

    fn correct(&mut self, mut x: S, t: f64, t_prev: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        let alpha = ctx.sde.transition(t, t_prev).0.powi(2);
        let e = 2.0 * alpha * (self.snr * ctx.sde.sigma(t)).powi(2);
        for _ in 0..self.n_steps {
            let s = ctx.score.score(&x, t)?;
            let z = ctx.noise.normal(&x);
            langevin_move(&mut x, e, &s, &z)?;
        }
        Ok(x)
    }
}
