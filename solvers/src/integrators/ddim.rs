//! DDIM, deterministic or with eta-scaled noise.

use crate::error::{Error, Result};
use crate::integrators::x0_hat;
use crate::solver::{Ctx, Solver};
use crate::state::State;
use crate::x0_guard::X0Guard;

/// Denoising diffusion implicit models (Song, Meng & Ermon 2021, eq. 12), in
/// the (a, sigma) form of any SDE with a Gaussian kernel. From `t` to `s = t_next`:
///
/// `eps_hat = -sigma_t s(x, t)`, `x0_hat = (x - sigma_t eps_hat) / a_t`,
/// `sigma_eta^2 = eta^2 sigma_ts^2 sigma_s^2 / sigma_t^2` (eta^2 times the
/// posterior variance of [`crate::Ancestral`]),
///
/// `x <- a_s x0_hat + sqrt(sigma_s^2 - sigma_eta^2) eps_hat + sigma_eta z`
/// (the square root's argument clamped at 0).
///
/// `eta = 0` is deterministic, the first-order exponential integrator of the
/// probability-flow ODE in log-SNR (= DPM-Solver++ 1, Lu et al. 2022):
/// global order 1. `eta = 1` is exactly ancestral sampling with the posterior
/// ("fixed small") variance, a weak order 1 sampler of the reverse SDE.
/// One score evaluation per step.
///
/// With an [`X0Guard`] ([`Ddim::with_x0_guard`]), `x0_hat` is clipped or thresholded
/// and `eps_hat` re-derived from it, `eps_hat = (x - a_t x0) / sigma_t`, so that the
/// update stays on the line through `x` and the guarded `x0`:
/// `x <- (keep / sigma_t) x + (a_s - keep a_t / sigma_t) x0 + sigma_eta z`,
/// `keep = sqrt(sigma_s^2 - sigma_eta^2)` (what diffusers' DDIM does when it clips).
/// At `eta = 0` this is guarded `dpm1`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ddim {
    eta: f64,
    guard: X0Guard,
}

impl Ddim {
    /// Deterministic DDIM (`eta = 0`).
    pub fn new() -> Self {
        Self { eta: 0.0, guard: X0Guard::Off }
    }

    /// DDIM with noise scale `eta` in `[0, 1]` (0: deterministic, 1: ancestral).
    ///
    /// Song et al. define the family for `eta` in `[0, 1]`: it interpolates
    /// between the deterministic sampler and DDPM's posterior. Above 1,
    /// `sigma_eta^2` exceeds `sigma_s^2` once a step's `sigma_ts^2 / sigma_t^2`
    /// passes `1 / eta^2`, so the kept part `sqrt(sigma_s^2 - sigma_eta^2)` has
    /// no real value (clamping it at 0 would sample a law with the wrong
    /// variance); DDPM's larger variance is `ancestral-large`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `eta` unless it lies in `[0, 1]` (NaN included).
    pub fn with_eta(eta: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&eta) {
            return Err(Error::param(
                "eta",
                eta,
                "must be in [0, 1] (0: deterministic DDIM, 1: DDPM's posterior variance, as `ancestral`; \
                 for DDPM's larger variance use `ancestral-large`)",
            ));
        }
        Ok(Self { eta, guard: X0Guard::Off })
    }

    /// The same sampler with `guard` applied to `x0_hat`.
    pub fn with_x0_guard(mut self, guard: X0Guard) -> Self {
        self.guard = guard;
        self
    }

    /// The noise scale.
    pub fn eta(&self) -> f64 {
        self.eta
    }
}

impl<S: State> Solver<S> for Ddim {
    fn name(&self) -> &'static str {
        if self.eta == 0.0 {
            "ddim"
        } else if self.eta == 1.0 {
            "ddim-eta1"
        } else {
            "ddim-eta"
        }
    }

    fn step(&mut self, mut x: S, t: f64, t_next: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        let sde = ctx.sde;
        let (a_t, a_s) = (sde.alpha(t), sde.alpha(t_next));
        let (sig_t, sig_s) = (sde.sigma(t), sde.sigma(t_next));
        let (_, var_ts) = sde.transition(t_next, t);
        let var_eta = (self.eta * self.eta * var_ts * (sig_s / sig_t).powi(2)).max(0.0);
        let keep = (sig_s * sig_s - var_eta).max(0.0).sqrt();
        let s = ctx.score.score(&x, t)?;
        if !self.guard.is_off() {
            let mut x0 = x0_hat(s, &x, a_t, sig_t * sig_t)?;
            self.guard.apply(&mut x0)?;
            let (c_x, c_0) = (keep / sig_t, a_s - keep * a_t / sig_t);
            if self.eta > 0.0 {
                let z = ctx.noise.step_normal(t, t_next, &x)?;
                x.axpbypcz(c_x, c_0, &x0, var_eta.sqrt(), &z)?;
            } else {
                x.axpby(c_x, c_0, &x0)?;
            }
            return Ok(x);
        }
        // x_s = (a_s/a_t)(x + sigma_t^2 s) - keep sigma_t s + sigma_eta z.
        let c_x = a_s / a_t;
        let c_s = c_x * sig_t * sig_t - keep * sig_t;
        if self.eta > 0.0 {
            let z = ctx.noise.step_normal(t, t_next, &x)?;
            x.axpbypcz(c_x, c_s, &s, var_eta.sqrt(), &z)?;
        } else {
            x.axpby(c_x, c_s, &s)?;
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
