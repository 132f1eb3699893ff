//! The stochastic Heun sampler of Karras et al. (EDM).

use crate::error::{Error, Result};
use crate::grid::TimeGrid;
use crate::solver::{Ctx, Solver};
use crate::state::State;

/// EDM's stochastic sampler (Karras, Aittala, Aila & Laine 2022, "Elucidating
/// the Design Space of Diffusion-Based Generative Models", Algorithm 2), mapped
/// to the (a, sigma) form of any SDE: it runs on the scaled state
/// `x~ = x / a(t)` at the noise level `sigma~(t) = sigma(t) / a(t) = e^{-lambda(t)}`,
/// where the probability-flow ODE is `dx~/dsigma~ = (x~ - D) / sigma~ = -sigma(t) s(x, t)`
/// with the denoiser `D = x0_hat = (x + sigma^2 s) / a`. From `t_i` to `t_{i+1}`:
///
/// 1. churn: `gamma = min(S_churn / N, sqrt 2 - 1)` if `S_tmin <= sigma~_i <= S_tmax`
///    else 0; `sigma^ = sigma~_i (1 + gamma)` (capped at `sigma~(T)`), at the time
///    `t^` with `sigma~(t^) = sigma^`; `x~^ = x~_i + sqrt(sigma^^2 - sigma~_i^2) S_noise z`;
/// 2. Euler: `d = -sigma(t^) s(a(t^) x~^, t^)`, `x~' = x~^ + (sigma~_{i+1} - sigma^) d`;
/// 3. Heun correction: `d' = -sigma_{i+1} s(a_{i+1} x~', t_{i+1})`,
///    `x~_{i+1} = x~^ + (sigma~_{i+1} - sigma^) (d + d') / 2`; `x_{i+1} = a_{i+1} x~_{i+1}`.
///
/// `N` is the grid's step count (read in [`Solver::init`]). With `S_churn = 0`
/// it is Karras et al.'s deterministic Algorithm 1: Heun's method on the
/// probability-flow ODE in `sigma~`, global order 2. With churn it adds and
/// removes noise (a Langevin-like correction; `S_noise = 1` keeps the exact
/// law's scale). Two score evaluations per step (grids here end at `eps > 0`,
/// so the final Euler-only step of Algorithm 2 for `sigma = 0` never occurs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EdmHeun {
    s_churn: f64,
    s_tmin: f64,
    s_tmax: f64,
    s_noise: f64,
    n_steps: usize,
}

impl Default for EdmHeun {
    /// The deterministic sampler: `S_churn = 0`.
    fn default() -> Self {
        Self { s_churn: 0.0, s_tmin: 0.0, s_tmax: f64::INFINITY, s_noise: 1.0, n_steps: 0 }
    }
}

impl EdmHeun {
    /// The deterministic sampler (Algorithm 1).
    pub fn new() -> Self {
        Self::default()
    }

    /// The stochastic sampler with churn `S_churn >= 0`, applied while
    /// `S_tmin <= sigma~ <= S_tmax`, with noise inflation `S_noise > 0`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a negative or non-finite `S_churn`, a
    /// negative or NaN range or `S_tmin > S_tmax`, or `S_noise` not finite and > 0.
    pub fn with_churn(s_churn: f64, s_tmin: f64, s_tmax: f64, s_noise: f64) -> Result<Self> {
        if !(s_churn >= 0.0 && s_churn.is_finite()) {
            return Err(Error::param("s_churn", s_churn, "must be finite and >= 0"));
        }
        if s_tmax.is_nan() {
            return Err(Error::param("s_tmax", s_tmax, "must be a number (infinity: no upper limit)"));
        }
        if !(s_tmin >= 0.0 && s_tmax >= s_tmin) {
            return Err(Error::param("s_tmin", s_tmin, format!("need 0 <= s_tmin <= s_tmax (= {s_tmax})")));
        }
        crate::error::positive("s_noise", s_noise)?;
        Ok(Self { s_churn, s_tmin, s_tmax, s_noise, n_steps: 0 })
    }

    /// Karras et al.'s stochastic settings for ImageNet-64 (Table 5: `S_churn = 40`,
    /// `S_tmin = 0.05`, `S_tmax = 50`) with `S_noise = 1` (their 1.003 compensates
    /// for imperfect networks; with an exact score 1 is right).
    pub fn churned() -> Self {
        Self { s_churn: 40.0, s_tmin: 0.05, s_tmax: 50.0, s_noise: 1.0, n_steps: 0 }
    }

    /// Per-step churn `gamma` at scaled noise level `sig`.
    fn gamma(&self, sig: f64) -> f64 {
        if self.s_churn > 0.0 && sig >= self.s_tmin && sig <= self.s_tmax {
            (self.s_churn / self.n_steps.max(1) as f64).min(std::f64::consts::SQRT_2 - 1.0)
        } else {
            0.0
        }
    }
}

impl<S: State> Solver<S> for EdmHeun {
    fn name(&self) -> &'static str {
        if self.s_churn > 0.0 {
            "edm-heun-churn"
        } else {
            "edm-heun"
        }
    }

    fn init(&mut self, grid: &TimeGrid) -> Result<()> {
        self.n_steps = grid.steps();
        Ok(())
    }

    fn step(&mut self, mut x: S, t: f64, t_next: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        let sde = ctx.sde;
        let scaled = |t: f64| sde.sigma(t) / sde.alpha(t);
        let (sig, sig_next) = (scaled(t), scaled(t_next));
        let a_next = sde.alpha(t_next);
        x.scale(1.0 / sde.alpha(t));
        // Churn: raise the noise level to sigma^ at time t^ >= t.
        let gamma = self.gamma(sig);
        let (mut t_hat, mut sig_hat) = (t, sig);
        if gamma > 0.0 {
            let top = scaled(sde.t_max());
            let want = sig * (1.0 + gamma);
            (t_hat, sig_hat) =
                if want >= top { (sde.t_max(), top) } else { (sde.t_of_log_snr(-want.ln())?.max(t), want) };
            let add = (sig_hat * sig_hat - sig * sig).max(0.0).sqrt() * self.s_noise;
            let z = ctx.noise.step_normal(t, t_next, &x)?;
            x.axpby(1.0, add, &z)?;
        }
        let dsig = sig_next - sig_hat;
        // d = -sigma(t^) s(a(t^) x~^, t^).
        let slope = |x_scaled: &S, tt: f64, ctx: &Ctx<'_, S>| -> Result<S> {
            let mut xu = x_scaled.duplicate();
            xu.scale(sde.alpha(tt));
            let mut d = ctx.score.score(&xu, tt)?;
            d.scale(-sde.sigma(tt));
            Ok(d)
        };
        let d1 = slope(&x, t_hat, ctx)?;
        let mut euler = x.duplicate();
        euler.axpby(1.0, dsig, &d1)?;
        let d2 = slope(&euler, t_next, ctx)?;
        x.axpbypcz(a_next, 0.5 * dsig * a_next, &d1, 0.5 * dsig * a_next, &d2)?;
        Ok(x)
    }
}
