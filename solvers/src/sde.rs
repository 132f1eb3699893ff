//! Forward (noising) SDEs with affine drift, `dx = f(t) x dt + g(t) dw`.
//!
//! All SDEs of Song et al. (2021) have a drift linear in `x`, which is what
//! gives them a Gaussian perturbation kernel `x_t = a(t) x_0 + sigma(t) z`.
//! The [`Sde`] trait exposes exactly those scalar coefficients, computed in
//! `f64` on the host; integrators combine them with the state.

use crate::error::{positive, Error, Result};

/// A forward SDE `dx = f(t) x dt + g(t) dw` on `[0, T]` with perturbation
/// kernel `p(x_t | x_0) = N(a(t) x_0, sigma(t)^2 I)`.
///
/// The trait is object-safe: solvers take `&dyn Sde`.
pub trait Sde: Send + Sync + std::fmt::Debug {
    /// Short name, e.g. `"vp"`.
    fn name(&self) -> &'static str;

    /// End of the time range, `T`.
    fn t_max(&self) -> f64 {
        1.0
    }

    /// Default end time of sampling, `eps` (sampling runs from `T` down to it).
    fn t_eps(&self) -> f64;

    /// The drift coefficient `f(t)`, with `f(x, t) = f(t) x`.
    fn drift_coef(&self, t: f64) -> f64;

    /// The diffusion coefficient `g(t)`.
    fn diffusion(&self, t: f64) -> f64;

    /// The mean scale of the perturbation kernel, `a(t)`.
    fn alpha(&self, t: f64) -> f64;

    /// The standard deviation of the perturbation kernel, `sigma(t)`.
    fn sigma(&self, t: f64) -> f64;

    /// Log signal-to-noise ratio `lambda(t) = ln(a(t) / sigma(t))`, decreasing in t.
    fn log_snr(&self, t: f64) -> f64 {
        self.alpha(t).ln() - self.sigma(t).ln()
    }

    /// Standard deviation of the prior `p_T ~ N(0, prior_std^2 I)` that
    /// sampling starts from: by default the marginal standard deviation at `T`
    /// of data with unit variance, `sqrt(a(T)^2 + sigma(T)^2)`.
    fn prior_std(&self) -> f64 {
        let (a, s) = (self.alpha(self.t_max()), self.sigma(self.t_max()));
        (a * a + s * s).sqrt()
    }

    /// Exact forward transition from `s` to `t > s`: `x_t = a_ts x_s + sigma_ts z`.
    /// Returns `(a_ts, sigma_ts^2)`, with the variance clamped at 0.
    fn transition(&self, s: f64, t: f64) -> (f64, f64) {
        let a_ts = self.alpha(t) / self.alpha(s);
        let var = self.sigma(t).powi(2) - (a_ts * self.sigma(s)).powi(2);
        (a_ts, var.max(0.0))
    }

    /// Checks that `t` lies in `[0, T]`.
    ///
    /// # Errors
    /// [`Error::TimeOutOfRange`].
    fn check_time(&self, t: f64) -> Result<()> {
        if t >= 0.0 && t <= self.t_max() {
            Ok(())
        } else {
            Err(Error::TimeOutOfRange { t, min: 0.0, max: self.t_max() })
        }
    }

    /// The time at which `log_snr(t) = lambda`, by bisection on `[0, T]`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if `lambda` is outside `[log_snr(T), log_snr(t_eps)]`
    /// widened to the whole range, or not finite.
    fn t_of_log_snr(&self, lambda: f64) -> Result<f64> {
        let (mut lo, mut hi) = (0.0f64, self.t_max());
        let (l_hi, l_lo) = (self.log_snr(lo.max(1e-12)), self.log_snr(hi));
        if !lambda.is_finite() || lambda > l_hi || lambda < l_lo {
            return Err(Error::param("lambda", lambda, format!("log-SNR must lie in [{l_lo}, {l_hi}]")));
        }
        for _ in 0..200 {
            let mid = 0.5 * (lo + hi);
            if self.log_snr(mid) > lambda {
                lo = mid;
            } else {
                hi = mid;
            }
            if hi - lo <= 1e-15 * self.t_max() {
                break;
            }
        }
        Ok(0.5 * (lo + hi))
    }

    /// Log-density of the prior `N(0, prior_std^2 I)` for one sample with
    /// squared norm `sq_norm` in `dim` dimensions.
    fn prior_log_density(&self, sq_norm: f64, dim: usize) -> f64 {
        let v = self.prior_std().powi(2);
        -0.5 * sq_norm / v - 0.5 * dim as f64 * (2.0 * std::f64::consts::PI * v).ln()
    }
}

/// The variance-preserving SDE (Song et al. 2021, eq. 11) with linear
/// `beta(t) = beta_min + t (beta_max - beta_min)`: the continuous limit of DDPM.
///
/// `dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw`, `a(t) = exp(-B(t)/2)`,
/// `sigma(t)^2 = 1 - exp(-B(t))`, `B(t) = beta_min t + 1/2 (beta_max - beta_min) t^2`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VpSde {
    beta_min: f64,
    beta_max: f64,
    eps: f64,
}

impl Default for VpSde {
    /// `beta_min = 0.1`, `beta_max = 20`, `eps = 1e-3` (Song et al. 2021).
    fn default() -> Self {
        Self { beta_min: 0.1, beta_max: 20.0, eps: 1e-3 }
    }
}

impl VpSde {
    /// A VP-SDE with the given beta range.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `0 < beta_min <= beta_max`, both finite.
    pub fn new(beta_min: f64, beta_max: f64) -> Result<Self> {
        positive("beta_min", beta_min)?;
        positive("beta_max", beta_max)?;
        if beta_max < beta_min {
            return Err(Error::param("beta_max", beta_max, format!("must be >= beta_min = {beta_min}")));
        }
        Ok(Self { beta_min, beta_max, eps: 1e-3 })
    }

    /// Sets the end time of sampling (default `1e-3`).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `0 < eps < 1`.
    pub fn with_eps(mut self, eps: f64) -> Result<Self> {
        if !(eps > 0.0 && eps < 1.0) {
            return Err(Error::param("eps", eps, "must be in (0, 1)"));
        }
        self.eps = eps;
        Ok(self)
    }

    /// `beta(t)`.
    pub fn beta(&self, t: f64) -> f64 {
        self.beta_min + t * (self.beta_max - self.beta_min)
    }

    /// `B(t) = integral_0^t beta`.
    pub fn beta_integral(&self, t: f64) -> f64 {
        self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t
    }

    /// DDPM's discrete betas for `n` steps: `beta_i = beta(t_i) / n` with
    /// `t_i = i / (n - 1)` (Song et al.'s mapping; `n = 1000` gives Ho et al.'s
    /// linear schedule `1e-4 ... 0.02`). Computed in floating point.
    ///
    /// # Errors
    /// [`Error::InvalidSteps`] for `n < 2`.
    pub fn ddpm_betas(&self, n: usize) -> Result<Vec<f64>> {
        if n < 2 {
            return Err(Error::InvalidSteps { steps: n, reason: "DDPM needs at least 2 steps" });
        }
        let nf = n as f64;
        Ok((0..n).map(|i| self.beta(i as f64 / (nf - 1.0)) / nf).collect())
    }
}

impl Sde for VpSde {
    fn name(&self) -> &'static str {
        "vp"
    }

    fn t_eps(&self) -> f64 {
        self.eps
    }

    fn drift_coef(&self, t: f64) -> f64 {
        -0.5 * self.beta(t)
    }

    fn diffusion(&self, t: f64) -> f64 {
        self.beta(t).max(0.0).sqrt()
    }

    fn alpha(&self, t: f64) -> f64 {
        (-0.5 * self.beta_integral(t)).exp()
    }

    fn sigma(&self, t: f64) -> f64 {
        (-(-self.beta_integral(t)).exp_m1()).max(0.0).sqrt()
    }

    fn log_snr(&self, t: f64) -> f64 {
        let b = self.beta_integral(t);
        -0.5 * b - 0.5 * (-(-b).exp_m1()).ln()
    }

    fn prior_std(&self) -> f64 {
        1.0
    }

    fn transition(&self, s: f64, t: f64) -> (f64, f64) {
        let db = self.beta_integral(t) - self.beta_integral(s);
        ((-0.5 * db).exp(), (-(-db).exp_m1()).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use approx::assert_relative_eq;

    #[test]
    fn vp_check_values() {
        let sde = VpSde::default();
        assert_relative_eq!(sde.alpha(1.0), 6.57e-3, max_relative = 1e-3);
        assert_relative_eq!(sde.sigma(1.0), 0.99998, max_relative = 1e-5);
        assert_relative_eq!(sde.log_snr(1.0), -5.025, max_relative = 1e-3);
        assert_relative_eq!(sde.sigma(1e-3), 0.01049, max_relative = 1e-3);
        assert_relative_eq!(sde.sigma(1e-5), 1.0e-3, max_relative = 1e-3);
        // a^2 + sigma^2 = 1 (variance preserving).
        for t in [1e-5, 0.1, 0.5, 1.0] {
            assert_relative_eq!(sde.alpha(t).powi(2) + sde.sigma(t).powi(2), 1.0, epsilon = 1e-14);
        }
    }

    #[test]
    fn log_snr_inverts() {
        let sde = VpSde::default();
        for t in [1e-3, 0.2, 0.77, 1.0] {
            let back = sde.t_of_log_snr(sde.log_snr(t)).unwrap();
            assert_relative_eq!(back, t, max_relative = 1e-9);
        }
        assert!(sde.t_of_log_snr(f64::NAN).is_err());
        assert!(sde.t_of_log_snr(100.0).is_err());
    }

    #[test]
    fn generic_transition_matches_vp_override() {
        let sde = VpSde::default();
        #[derive(Debug)]
        struct Generic(VpSde);
        impl Sde for Generic {
            fn name(&self) -> &'static str {
                "g"
            }
            fn t_eps(&self) -> f64 {
                1e-3
            }
            fn drift_coef(&self, t: f64) -> f64 {
                self.0.drift_coef(t)
            }
            fn diffusion(&self, t: f64) -> f64 {
                self.0.diffusion(t)
            }
            fn alpha(&self, t: f64) -> f64 {
                self.0.alpha(t)
            }
            fn sigma(&self, t: f64) -> f64 {
                self.0.sigma(t)
            }
        }
        let g = Generic(sde);
        for (s, t) in [(0.1, 0.2), (0.5, 0.51), (0.001, 1.0)] {
            let (a1, v1) = sde.transition(s, t);
            let (a2, v2) = g.transition(s, t);
            assert_relative_eq!(a1, a2, max_relative = 1e-12);
            assert_relative_eq!(v1, v2, max_relative = 1e-9);
        }
    }

    #[test]
    fn bad_parameters_are_errors() {
        assert!(VpSde::new(0.0, 20.0).is_err());
        assert!(VpSde::new(1.0, 0.5).is_err());
        assert!(VpSde::new(f64::NAN, 1.0).is_err());
        assert!(VpSde::default().with_eps(0.0).is_err());
        assert!(VpSde::default().ddpm_betas(1).is_err());
        assert!(VpSde::default().check_time(1.5).is_err());
        assert!(VpSde::default().check_time(-0.1).is_err());
    }
}
