//! Euler–Maruyama for the family of reverse-time SDEs with a chosen diffusion.

use crate::error::{Error, Result};
use crate::solver::{Ctx, Solver};
use crate::state::State;

/// Euler–Maruyama for the reverse-time SDE with a user-chosen diffusion
/// `g_s(t) = c sigma(t)` that shares the marginals `p_t` of the forward process
/// (Song et al. 2021, App. D.1; for flow models Albergo, Boffi & Vanden-Eijnden 2023,
/// Ma et al. 2024 "SiT"):
///
/// `dx = [v(x, t) - g_s(t)^2 / 2 s(x, t)] dt + g_s(t) dw_bar`,
/// `v = f x - g^2/2 s` the probability-flow velocity (for an interpolant,
/// `v = E[a' x_0 + sigma' z | x_t]`, the flow-matching velocity),
///
/// run from `t` down to `t_next` with `h = t - t_next > 0`, one score evaluation:
///
/// `x <- (1 - f h) x + (g^2 + g_s^2)/2 h s(x, t) + g_s sqrt(h) z`.
///
/// `c = 0` is exactly the probability-flow Euler step ([`crate::OdeEuler`]; no noise is
/// drawn); `g_s = g` would be [`crate::ReverseEulerMaruyama`]. Scaling `g_s` with
/// `sigma(t)` keeps the injected noise bounded on rectified flow, whose own `g` grows
/// like `(1 - t)^{-1/2}` near `t = 1`. Weak order 1 for an exact, smooth score.
#[derive(Debug, Clone, Copy)]
pub struct FlowEulerMaruyama {
    c: f64,
}

impl Default for FlowEulerMaruyama {
    /// `c = 1`: `g_s = sigma(t)`.
    fn default() -> Self {
        Self { c: 1.0 }
    }
}

impl FlowEulerMaruyama {
    /// The sampler with `g_s(t) = c sigma(t)`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `c` is finite and `>= 0`.
    pub fn new(c: f64) -> Result<Self> {
        if !(c >= 0.0 && c.is_finite()) {
            return Err(Error::param(
                "c",
                c,
                "the diffusion scale must be finite and >= 0 (0: the probability-flow ODE)",
            ));
        }
        Ok(Self { c })
    }

    /// The diffusion scale `c`.
    pub fn c(&self) -> f64 {
        self.c
    }
}

impl<S: State> Solver<S> for FlowEulerMaruyama {
    fn name(&self) -> &'static str {
        "flow-em"
    }

    fn step(&mut self, mut x: S, t: f64, t_next: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        let h = t - t_next;
        let s = ctx.score.score(&x, t)?;
        let (f, g) = (ctx.sde.drift_coef(t), ctx.sde.diffusion(t));
        let gs = self.c * ctx.sde.sigma(t);
        let drift = 0.5 * (g * g + gs * gs) * h;
        if self.c == 0.0 {
            x.axpby(1.0 - f * h, drift, &s)?;
        } else {
            let z = ctx.noise.step_normal(t, t_next, &x)?;
            x.axpbypcz(1.0 - f * h, drift, &s, gs * h.sqrt(), &z)?;
        }
        Ok(x)
    }
}
