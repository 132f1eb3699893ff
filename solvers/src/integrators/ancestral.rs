//! Ancestral sampling (DDPM).

use crate::error::Result;
use crate::solver::{Ctx, Solver};
use crate::state::State;

/// Which reverse-step variance ancestral sampling uses (Ho et al. 2020, §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variance {
    /// The posterior variance `sigma_ts^2 sigma_s^2 / sigma_t^2` (DDPM's `beta-tilde`).
    #[default]
    Small,
    /// The forward step variance `sigma_ts^2` (DDPM's `beta`).
    Large,
}

/// Ancestral sampling from the Gaussian posterior `q(x_s | x_t, x0_hat)` with
/// the Tweedie estimate `x0_hat = (x + sigma_t^2 s(x, t)) / a_t`
/// (Ho et al. 2020, Algorithm 2; in (a, sigma) form as in Kingma et al. 2021).
/// With `s = t_next < t`, `a_ts = a_t/a_s` and `sigma_ts^2 = sigma_t^2 - a_ts^2 sigma_s^2`:
///
/// `mean = (a_ts sigma_s^2 / sigma_t^2) x + (a_s sigma_ts^2 / sigma_t^2) x0_hat`,
/// `x <- mean + std z`, with `std^2` from [`Variance`].
///
/// For the VP-SDE with `beta = sigma_ts^2 = 1 - a_ts^2` the mean is DDPM's
/// `(x + beta s) / sqrt(1 - beta)`. Weak order 1 as a discretisation of the
/// reverse SDE. One score evaluation per step.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ancestral {
    variance: Variance,
}

impl Ancestral {
    /// Ancestral sampling with the "fixed small" (posterior) variance.
    pub fn new() -> Self {
        Self { variance: Variance::Small }
    }

    /// Ancestral sampling with the given variance choice.
    pub fn with_variance(variance: Variance) -> Self {
        Self { variance }
    }
}

impl<S: State> Solver<S> for Ancestral {
    fn name(&self) -> &'static str {
        match self.variance {
            Variance::Small => "ancestral",
            Variance::Large => "ancestral-large",
        }
    }

    fn step(&mut self, mut x: S, t: f64, t_next: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        let sde = ctx.sde;
        let (a_t, a_s) = (sde.alpha(t), sde.alpha(t_next));
        let (var_t, var_s) = (sde.sigma(t).powi(2), sde.sigma(t_next).powi(2));
        let (a_ts, var_ts) = sde.transition(t_next, t);
        // mean = c_x x + c_0 x0_hat, x0_hat = (x + var_t s) / a_t.
        let c_x = a_ts * var_s / var_t;
        let c_0 = a_s * var_ts / var_t;
        let var = match self.variance {
            Variance::Small => (var_ts * var_s / var_t).max(0.0),
            Variance::Large => var_ts,
        };
        let s = ctx.score.score(&x, t)?;
        let z = ctx.noise.step_normal(t, t_next, &x)?;
        x.axpbypcz(c_x + c_0 / a_t, c_0 * var_t / a_t, &s, var.sqrt(), &z)?;
        Ok(x)
    }
}
