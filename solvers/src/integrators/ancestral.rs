//! Ancestral sampling (DDPM).

use crate::error::Result;
use crate::integrators::x0_hat;
use crate::solver::{Ctx, Solver};
use crate::state::State;
use crate::x0_guard::X0Guard;

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
///
/// With an [`X0Guard`] ([`Ancestral::with_x0_guard`]), `x0_hat` is formed explicitly,
/// clipped or thresholded, and the mean is `c_x x + c_0 guard(x0_hat)` (Ho et al.'s
/// sampler clips `x0_hat` to `[-1, 1]` this way); without one the two terms are folded
/// into one update of `x` by `s`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ancestral {
    variance: Variance,
    guard: X0Guard,
}

impl Ancestral {
    /// Ancestral sampling with the "fixed small" (posterior) variance.
    pub fn new() -> Self {
        Self { variance: Variance::Small, guard: X0Guard::Off }
    }

    /// Ancestral sampling with the given variance choice.
    pub fn with_variance(variance: Variance) -> Self {
        Self { variance, guard: X0Guard::Off }
    }

    /// The same sampler with `guard` applied to `x0_hat`.
    pub fn with_x0_guard(mut self, guard: X0Guard) -> Self {
        self.guard = guard;
        self
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
        if self.guard.is_off() {
            x.axpbypcz(c_x + c_0 / a_t, c_0 * var_t / a_t, &s, var.sqrt(), &z)?;
        } else {
            let mut x0 = x0_hat(s, &x, a_t, var_t)?;
            self.guard.apply(&mut x0)?;
            x.axpbypcz(c_x, c_0, &x0, var.sqrt(), &z)?;
        }
        Ok(x)
    }

    fn x0_guard(&self) -> X0Guard {
        self.guard
    }

    fn set_x0_guard(&mut self, guard: X0Guard) -> Result<()> {
        self.guard = guard;
        Ok(())
    }
}
