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
        bisect_log_snr(self, lambda)
    }

    /// `a'(t) = f(t) a(t)` (from `d ln a / dt = f`); interpolants override it with
    /// their closed form.
    fn alpha_dot(&self, t: f64) -> f64 {
        self.drift_coef(t) * self.alpha(t)
    }

    /// `sigma'(t) = (2 f sigma^2 + g^2) / (2 sigma)` (from `d sigma^2 / dt = 2 f sigma^2
    /// + g^2`; infinite where `sigma = 0`); interpolants override it with their closed form.
    fn sigma_dot(&self, t: f64) -> f64 {
        let s = self.sigma(t);
        (2.0 * self.drift_coef(t) * s * s + self.diffusion(t).powi(2)) / (2.0 * s)
    }

    /// The model's timestep input at time `t` for a discrete-time schedule
    /// ([`crate::DiscreteVp::timestep_of_t`]: the integer index `i` at the knots,
    /// fractional in between, as DPM-Solver feeds discrete models). Continuous SDEs
    /// have no timesteps.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `time-input` for an SDE without timesteps
    /// (every one but [`crate::DiscreteVp`]); [`Error::TimeOutOfRange`].
    fn timestep_of_t(&self, t: f64) -> Result<f64> {
        self.check_time(t)?;
        Err(Error::param(
            "time-input",
            "timestep",
            format!(
                "the `{}` SDE is continuous and has no model timesteps: use a discrete schedule \
                 (ddpm-linear:1000, a table file) or feed the continuous time (t)",
                self.name()
            ),
        ))
    }

    /// Log-density of the prior `N(0, prior_std^2 I)` for one sample with
    /// squared norm `sq_norm` in `dim` dimensions.
    fn prior_log_density(&self, sq_norm: f64, dim: usize) -> f64 {
        let v = self.prior_std().powi(2);
        -0.5 * sq_norm / v - 0.5 * dim as f64 * (2.0 * std::f64::consts::PI * v).ln()
    }
}

/// The time at which `sde.log_snr(t) = lambda`, by bisection on `[0, T]` (the default
/// [`Sde::t_of_log_snr`]).
///
/// # Errors
/// As [`Sde::t_of_log_snr`].
pub(crate) fn bisect_log_snr<Q: Sde + ?Sized>(sde: &Q, lambda: f64) -> Result<f64> {
    let (mut lo, mut hi) = (0.0f64, sde.t_max());
    let (l_hi, l_lo) = (sde.log_snr(lo.max(1e-12)), sde.log_snr(hi));
    if !lambda.is_finite() || lambda > l_hi || lambda < l_lo {
        return Err(Error::param("lambda", lambda, format!("log-SNR must lie in [{l_lo}, {l_hi}]")));
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if sde.log_snr(mid) > lambda {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-15 * sde.t_max() {
            break;
        }
    }
    Ok(0.5 * (lo + hi))
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

/// `Sde` for a variance-preserving SDE given by its `beta(t)` and
/// `beta_integral(t) = B(t)` methods and an `eps` field: drift `-beta/2`,
/// `g = sqrt(beta)`, `a = exp(-B/2)`, `sigma^2 = 1 - exp(-B)`, unit prior.
macro_rules! vp_family_sde {
    ($ty:ty, $name:literal) => {
        impl Sde for $ty {
            fn name(&self) -> &'static str {
                $name
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
                vp_sigma(self.beta_integral(t))
            }

            fn log_snr(&self, t: f64) -> f64 {
                vp_log_snr(self.beta_integral(t))
            }

            fn prior_std(&self) -> f64 {
                1.0
            }

            fn transition(&self, s: f64, t: f64) -> (f64, f64) {
                vp_transition(self.beta_integral(t) - self.beta_integral(s))
            }
        }
    };
}

vp_family_sde!(VpSde, "vp");

/// `a`, `sigma` and `lambda` of a variance-preserving kernel from `B(t) = integral_0^t beta`:
/// `a = exp(-B/2)`, `sigma^2 = 1 - exp(-B)` (computed with `exp_m1`).
fn vp_sigma(b: f64) -> f64 {
    (-(-b).exp_m1()).max(0.0).sqrt()
}

fn vp_log_snr(b: f64) -> f64 {
    -0.5 * b - 0.5 * (-(-b).exp_m1()).ln()
}

/// Exact VP transition over `db = B(t) - B(s)`: `(exp(-db/2), 1 - exp(-db))`.
fn vp_transition(db: f64) -> (f64, f64) {
    ((-0.5 * db).exp(), (-(-db).exp_m1()).max(0.0))
}

fn check_eps(eps: f64, max: f64) -> Result<f64> {
    if eps > 0.0 && eps < max {
        Ok(eps)
    } else {
        Err(Error::param("eps", eps, format!("must be in (0, {max})")))
    }
}

/// The sub-VP SDE (Song et al. 2021, eq. 12) with the linear `beta(t)` of [`VpSde`]:
///
/// `dx = -1/2 beta(t) x dt + sqrt(beta(t) (1 - exp(-2 B(t)))) dw`,
/// `a(t) = exp(-B/2)`, `sigma(t) = 1 - exp(-B)` (so `sigma^2 = (1 - exp(-B))^2`,
/// always below the VP variance). Exact transition from `s` to `t`:
/// `a_ts = exp(-(B_t - B_s)/2)`, `sigma_ts^2 = (1 - e^{-(B_t - B_s)}) (1 - e^{-(B_t + B_s)})`.
/// Prior `N(0, I)`; sampling ends at `eps = 1e-3`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubVpSde {
    vp: VpSde,
}

impl Default for SubVpSde {
    /// `beta_min = 0.1`, `beta_max = 20`, `eps = 1e-3` (Song et al. 2021).
    fn default() -> Self {
        Self { vp: VpSde::default() }
    }
}

impl SubVpSde {
    /// A sub-VP SDE with the given beta range.
    ///
    /// # Errors
    /// As [`VpSde::new`].
    pub fn new(beta_min: f64, beta_max: f64) -> Result<Self> {
        Ok(Self { vp: VpSde::new(beta_min, beta_max)? })
    }

    /// Sets the end time of sampling (default `1e-3`).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `0 < eps < 1`.
    pub fn with_eps(self, eps: f64) -> Result<Self> {
        Ok(Self { vp: self.vp.with_eps(eps)? })
    }

    /// `beta(t)`.
    pub fn beta(&self, t: f64) -> f64 {
        self.vp.beta(t)
    }
}

impl Sde for SubVpSde {
    fn name(&self) -> &'static str {
        "subvp"
    }

    fn t_eps(&self) -> f64 {
        self.vp.eps
    }

    fn drift_coef(&self, t: f64) -> f64 {
        -0.5 * self.vp.beta(t)
    }

    fn diffusion(&self, t: f64) -> f64 {
        let b = self.vp.beta_integral(t);
        (self.vp.beta(t) * -(-2.0 * b).exp_m1()).max(0.0).sqrt()
    }

    fn alpha(&self, t: f64) -> f64 {
        (-0.5 * self.vp.beta_integral(t)).exp()
    }

    fn sigma(&self, t: f64) -> f64 {
        (-(-self.vp.beta_integral(t)).exp_m1()).max(0.0)
    }

    fn log_snr(&self, t: f64) -> f64 {
        let b = self.vp.beta_integral(t);
        -0.5 * b - (-(-b).exp_m1()).ln()
    }

    fn prior_std(&self) -> f64 {
        1.0
    }

    fn transition(&self, s: f64, t: f64) -> (f64, f64) {
        let (bs, bt) = (self.vp.beta_integral(s), self.vp.beta_integral(t));
        let db = bt - bs;
        ((-0.5 * db).exp(), ((-(-db).exp_m1()) * (-(-(bt + bs)).exp_m1())).max(0.0))
    }
}

/// The variance-exploding SDE (Song et al. 2021, eq. 9; NCSN's geometric noise
/// levels): `dx = sigma_g(t) sqrt(2 ln(smax/smin)) dw` with
/// `sigma_g(t) = smin (smax/smin)^t`, no drift.
///
/// The kernel is the exact one of this SDE started at `t = 0`: `a(t) = 1`,
/// `sigma(t)^2 = sigma_g(t)^2 - smin^2 = smin^2 expm1(2 t ln(smax/smin))`, so
/// closed-form marginals agree with simulating the SDE (Song et al.'s code
/// uses `sigma_g(t)` itself, which differs by `smin^2`). Defaults (Song et al.):
/// `smin = 0.01`, `smax = 50`, `eps = 1e-5`; the prior is `N(0, (1 + sigma(1)^2) I)`,
/// the marginal at `T` of unit-variance data (~`N(0, smax^2 I)`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VeSde {
    sigma_min: f64,
    sigma_max: f64,
    eps: f64,
}

impl Default for VeSde {
    fn default() -> Self {
        Self { sigma_min: 0.01, sigma_max: 50.0, eps: 1e-5 }
    }
}

impl VeSde {
    /// A VE SDE with geometric noise levels from `sigma_min` to `sigma_max`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `0 < sigma_min < sigma_max`, both finite.
    pub fn new(sigma_min: f64, sigma_max: f64) -> Result<Self> {
        positive("sigma_min", sigma_min)?;
        positive("sigma_max", sigma_max)?;
        if sigma_max <= sigma_min {
            return Err(Error::param("sigma_max", sigma_max, format!("must be > sigma_min = {sigma_min}")));
        }
        Ok(Self { sigma_min, sigma_max, eps: 1e-5 })
    }

    /// Sets the end time of sampling (default `1e-5`).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `0 < eps < 1`.
    pub fn with_eps(mut self, eps: f64) -> Result<Self> {
        self.eps = check_eps(eps, 1.0)?;
        Ok(self)
    }

    fn log_ratio(&self) -> f64 {
        (self.sigma_max / self.sigma_min).ln()
    }

    /// The geometric noise level `sigma_g(t) = smin (smax/smin)^t`.
    pub fn sigma_geometric(&self, t: f64) -> f64 {
        self.sigma_min * (t * self.log_ratio()).exp()
    }
}

impl Sde for VeSde {
    fn name(&self) -> &'static str {
        "ve"
    }

    fn t_eps(&self) -> f64 {
        self.eps
    }

    fn drift_coef(&self, _t: f64) -> f64 {
        0.0
    }

    fn diffusion(&self, t: f64) -> f64 {
        self.sigma_geometric(t) * (2.0 * self.log_ratio()).sqrt()
    }

    fn alpha(&self, _t: f64) -> f64 {
        1.0
    }

    fn sigma(&self, t: f64) -> f64 {
        self.sigma_min * (2.0 * t * self.log_ratio()).exp_m1().max(0.0).sqrt()
    }

    fn log_snr(&self, t: f64) -> f64 {
        -self.sigma(t).ln()
    }

    fn transition(&self, s: f64, t: f64) -> (f64, f64) {
        // sigma_g(t)^2 - sigma_g(s)^2 = sigma_g(s)^2 expm1(2 (t - s) ln r).
        let gs = self.sigma_geometric(s);
        (1.0, (gs * gs * (2.0 * (t - s) * self.log_ratio()).exp_m1()).max(0.0))
    }
}

/// The VP SDE with the cosine schedule of Nichol & Dhariwal (2021, eq. 17),
/// in continuous time: `abar(t) = a(t)^2 = cos^2(phi(t)) / cos^2(phi(0))`,
/// `phi(t) = (t + s)/(1 + s) pi/2`, `s = 0.008`, so
/// `beta(t) = -d ln abar / dt = pi/(1 + s) tan(phi(t))`.
///
/// `beta` is infinite at `t = 1`; as Nichol & Dhariwal clip their discrete
/// betas at 0.999, this clips `beta(t)` at `beta_clip` (default 100): past the
/// time `t_c` where `beta` reaches it, `beta` stays constant and
/// `B(t) = B(t_c) + beta_clip (t - t_c)`. With the defaults `t_c = 0.98`,
/// `a(1) = 0.011`, `lambda(1) = -4.47`. Everything else is the VP form:
/// `f = -beta/2`, `g = sqrt(beta)`, `a = exp(-B/2)`, `sigma^2 = 1 - exp(-B)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CosineVpSde {
    s: f64,
    beta_clip: f64,
    t_clip: f64,
    b_clip: f64,
    eps: f64,
}

impl Default for CosineVpSde {
    /// `s = 0.008`, `beta_clip = 100`, `eps = 1e-3`.
    fn default() -> Self {
        Self::build(0.008, 100.0, 1e-3)
    }
}

impl CosineVpSde {
    fn build(s: f64, beta_clip: f64, eps: f64) -> Self {
        let half_pi = 0.5 * std::f64::consts::PI;
        let phi_clip = (beta_clip * (1.0 + s) / std::f64::consts::PI).atan();
        let t_clip = (phi_clip / half_pi * (1.0 + s) - s).clamp(0.0, 1.0);
        let mut out = Self { s, beta_clip, t_clip, b_clip: 0.0, eps };
        out.b_clip = out.b_unclipped(t_clip);
        out
    }

    /// A cosine-schedule VP SDE with offset `s` and clip `beta_clip`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `s` is finite in `(0, 1)` and
    /// `beta_clip >= 1` is finite.
    pub fn new(s: f64, beta_clip: f64) -> Result<Self> {
        if !(s > 0.0 && s < 1.0) {
            return Err(Error::param("s", s, "must be in (0, 1)"));
        }
        if !(beta_clip >= 1.0 && beta_clip.is_finite()) {
            return Err(Error::param("beta_clip", beta_clip, "must be finite and >= 1"));
        }
        Ok(Self::build(s, beta_clip, 1e-3))
    }

    /// Sets the end time of sampling (default `1e-3`).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `0 < eps < 1`.
    pub fn with_eps(mut self, eps: f64) -> Result<Self> {
        self.eps = check_eps(eps, 1.0)?;
        Ok(self)
    }

    fn phi(&self, t: f64) -> f64 {
        (t + self.s) / (1.0 + self.s) * 0.5 * std::f64::consts::PI
    }

    fn b_unclipped(&self, t: f64) -> f64 {
        -2.0 * (self.phi(t).cos() / self.phi(0.0).cos()).ln()
    }

    /// `beta(t)`, clipped at `beta_clip`.
    pub fn beta(&self, t: f64) -> f64 {
        if t >= self.t_clip {
            self.beta_clip
        } else {
            std::f64::consts::PI / (1.0 + self.s) * self.phi(t).tan()
        }
    }

    /// `B(t) = integral_0^t beta = -ln abar(t)`.
    pub fn beta_integral(&self, t: f64) -> f64 {
        if t >= self.t_clip {
            self.b_clip + self.beta_clip * (t - self.t_clip)
        } else {
            self.b_unclipped(t)
        }
    }

    /// The time after which `beta` is clipped.
    pub fn t_clip(&self) -> f64 {
        self.t_clip
    }
}

vp_family_sde!(CosineVpSde, "vp-cosine");

/// An SDE by name: `vp`, `subvp`, `ve`, `vp-cosine`, `flow` (rectified flow,
/// [`crate::FlowSde`]), each with its defaults, or a discrete DDPM schedule
/// `ddpm-linear[:N]`, `ddpm-scaled-linear[:N]`, `ddpm-cosine[:N]` (see [`crate::discrete`]).
///
/// # Errors
/// [`Error::InvalidParameter`] for an unknown name.
pub fn sde_by_name(name: &str) -> Result<Box<dyn Sde>> {
    Ok(match name {
        "vp" => Box::new(VpSde::default()),
        "subvp" | "sub-vp" => Box::new(SubVpSde::default()),
        "ve" => Box::new(VeSde::default()),
        "vp-cosine" | "cosine" => Box::new(CosineVpSde::default()),
        "flow" => Box::new(crate::interpolant::FlowSde::default()),
        _ if name.starts_with("ddpm-") => Box::new(crate::discrete::discrete_by_name(name)?),
        _ => return Err(Error::param("sde", name, format!("unknown SDE; known: {}", SDES.join(", ")))),
    })
}

/// The SDE names [`sde_by_name`] knows.
pub const SDES: &[&str] = &["vp", "subvp", "ve", "vp-cosine", "flow"];

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
