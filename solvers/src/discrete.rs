//! Discrete-time VP schedules (DDPM's `beta_i` / `alphabar_i` tables) as an [`Sde`]
//! that every integrator accepts, with the continuous time of DPM-Solver's discrete
//! noise schedule (Lu et al. 2022, `NoiseScheduleVP('discrete')`), the mapping to the
//! model's integer timestep, and time grids that land on diffusers' inference timesteps.
//!
//! # The schedule
//!
//! A table of `N >= 2` cumulative products `alphabar_i = prod_{j <= i} (1 - beta_j)`,
//! `i = 0 .. N-1`, strictly decreasing inside `(0, 1)`, built by
//! [`DiscreteVp::from_betas`], [`DiscreteVp::from_alphas_cumprod`], or one of diffusers'
//! named schedules: [`DiscreteVp::linear`] (DDPM, Ho et al. 2020: `beta` linear from
//! `1e-4` to `0.02`), [`DiscreteVp::scaled_linear`] (`sqrt(beta)` linear, then squared;
//! Stable Diffusion's `0.00085 .. 0.012`), [`DiscreteVp::squaredcos_cap_v2`] (Nichol &
//! Dhariwal 2021, eq. 17: `beta_i = min(1 - abar((i+1)/N) / abar(i/N), 0.999)`,
//! `abar(t) = cos^2((t + 0.008)/1.008 pi/2)`). Betas are built in `f64` (diffusers
//! builds them in float32; to reproduce a float32 table bit for bit, pass diffusers'
//! `alphas_cumprod` to [`DiscreteVp::from_alphas_cumprod`]). Files: the root crate's
//! `scoresde::schedule` reads `.npy` and JSON tables.
//!
//! # Continuous time
//!
//! Timestep `i` sits at a knot `t_i` of `[0, 1]` given by the [`TimeConvention`]:
//!
//! * [`TimeConvention::Shifted`] (default; DPM-Solver's): `t_i = (i + 1)/N`, and one more
//!   knot `t = 0` with `alphabar = 1` ("timestep -1" of diffusers, clean data). So
//!   `a(0) = 1`, `sigma(0) = 0`, and on `[0, 1/N]` `log a` runs linearly from 0 to
//!   `1/2 ln alphabar_0` (DPM-Solver itself extrapolates its first segment linearly, which
//!   for DDPM's increasing betas gives `a(0) > 1`; the extra knot avoids that). Sampling
//!   ends by default at `eps = t_0 = 1/N`, the first training timestep.
//! * [`TimeConvention::Endpoints`]: `t_i = i/(N - 1)` (score_sde's `t * (N - 1)` labels).
//!   The first knot is `t = 0` with `alphabar_0 < 1`, so `a(0) < 1` and `sigma(0) > 0`:
//!   clean data lies outside the time range, and the step to it is the Tweedie
//!   denoising step (see [`FinalStep`]). Sampling ends by default at `eps = 0`.
//!
//! Between knots `log a(t)` is linear in `t` (both conventions space knots uniformly,
//! `1/M` apart); at a knot `log a(t_i) = 1/2 ln alphabar_i` bit for bit (so `a^2`, `sigma^2`
//! and `lambda` are the table's to rounding). Then:
//!
//! * `sigma = sqrt(1 - a^2)` (variance preserving), `lambda = log a - log sigma`;
//! * the drift `f(t) = d log a/dt` is piecewise constant, taken on the segment *below*
//!   `t` at a knot (`(t_{k-1}, t_k]`, the segment a reverse-time step from `t` crosses);
//! * `g^2 = d sigma^2/dt - 2 f sigma^2 = -2 f a^2 - 2 f sigma^2 = -2 f`: a VP-SDE with
//!   piecewise-constant `beta(t) = -2 f(t)` (about `N beta_i`);
//! * the transition from `s` to `t`: `a_ts = a_t/a_s`, `sigma_ts^2 = 1 - a_ts^2`;
//! * the inverse `t(lambda)`: `log a = -1/2 ln(1 + e^{-2 lambda})`, then the same
//!   piecewise-linear map read backwards (an exact inverse, up to rounding).
//!
//! # Matching diffusers step for step
//!
//! [`DiscreteVp::diffusers_timesteps`] gives the integer timesteps of diffusers'
//! `set_timesteps` for a [`Spacing`] ("leading" with `steps_offset`, "trailing",
//! "linspace"); [`DiscreteVp::diffusers_grid`] puts them on a [`TimeGrid`] and adds the
//! last step as a [`FinalStep`]. On that grid [`crate::Ancestral`] is `DDPMScheduler`
//! with `variance_type = "fixed_small"` ([`crate::Variance::Large`]: `"fixed_large"`),
//! and [`crate::Ddim`] with `eta` is `DDIMScheduler(eta)` — for `epsilon`-prediction
//! models, the score being `-eps/sigma` — as long as diffusers steps from each timestep
//! to the next one in its list. `DDIMScheduler` (and `DDPMScheduler` in versions whose
//! `previous_timestep` does not look the list up) steps from `t` to `t - N // n` instead,
//! which is the next timestep for "leading" always and for "trailing" when `n` divides `N`,
//! but not for "linspace" (nor "trailing" with other `n`): there diffusers evaluates the
//! model at a timestep other than the one the state was moved to, which no grid reproduces. (diffusers' `DDPMScheduler` adds noise of standard deviation `1e-10` on its
//! last step when that starts from a timestep above 0, from its clamp of the posterior
//! variance at `1e-20`; the step here has variance 0.)
//!
//! The same grids carry diffusers' other schedulers: `DPMSolverMultistepScheduler`
//! (`dpmsolver++`, order 2, `lower_order_final`) is [`crate::DpmSolverPp`] 2M with lower-order
//! final steps on the [`FinalStep::AlphaOne`] grid, or plain 2M on the [`FinalStep::Tweedie`]
//! one; `EulerDiscreteScheduler` is [`crate::Ddim`] with `eta = 0` (Euler's method in
//! `sigma/a` on `x/a` is the same update) and `HeunDiscreteScheduler` is [`crate::EdmHeun`]
//! on the Tweedie grid, both for integer timesteps ("leading", "trailing") and started, as
//! diffusers starts them for "trailing" and "linspace", from `sigma(T) z` rather than `z`
//! (their `init_noise_sigma` is `sigma_max`, not `sqrt(sigma_max^2 + 1)`). The root crate's
//! `tests/diffusers_parity.rs` checks every pairing here against diffusers itself.
//!
//! `DDIMScheduler(timestep_spacing="trailing")` with 50 steps on DDPM's linear schedule:
//!
//! ```
//! use scoresde_solvers::prelude::*;
//! use scoresde_solvers::{discrete_by_name, FinalStep, Spacing};
//! let sde = discrete_by_name("ddpm-linear:1000")?;
//! let grid = sde.diffusers_grid(Spacing::Trailing, 50, FinalStep::AlphaOne)?;
//! assert_eq!(sde.timestep_of_t(grid.times()[1])?, 979.0); // 999, 979, ..., 19, then alphabar = 1
//! let score = ExactScore::new(GaussianMixture::ring(8, 2.0, 0.1)?, sde.clone());
//! let mut noise = GaussianNoise::new(0);
//! let x_t = prior_sample(&sde, &ndarray::Array2::<f64>::zeros((16, 2)), &mut noise);
//! let run = Sampler::new(&sde, &score).run(&mut Ddim::new(), x_t, &grid, &mut noise)?;
//! assert_eq!(run.score_evals, 50);
//! # Ok::<(), scoresde_solvers::Error>(())
//! ```
//!
//! # Orders
//!
//! The integrators built on `a`, `sigma` and `lambda` alone (ancestral, DDIM, DPM-Solver++,
//! EDM Heun) keep their orders on this schedule, as do the first-order ones. Those that
//! evaluate the drift at a later stage of a step (`ode-heun`, `ode-rk4`) are first order
//! here: `f` jumps at each knot (tests/discrete.rs measures both).
//!
//! # Names
//!
//! [`discrete_by_name`] (and [`crate::sde_by_name`]) take `ddpm-linear[:N]`,
//! `ddpm-scaled-linear[:N]`, `ddpm-cosine[:N]` (N = 1000 if left out), with diffusers'
//! default parameters and the [`TimeConvention::Shifted`] convention — the names a
//! command line's `--schedule ddpm-linear:1000` takes.

use crate::error::{Error, Result};
use crate::grid::TimeGrid;
use crate::sde::Sde;

/// The schedule names [`discrete_by_name`] knows (each takes an optional `:N`).
pub const DISCRETE_SCHEDULES: &[&str] = &["ddpm-linear", "ddpm-scaled-linear", "ddpm-cosine"];

/// The most training timesteps a table may have (a mistyped `:N` is an error, not an allocation).
pub const MAX_TIMESTEPS: usize = 1_000_000;

/// Where the model's timestep `i` (0-based, `N` of them) sits in continuous time.
/// See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeConvention {
    /// `t_i = (i + 1)/N`, plus the clean-data knot `t = 0` with `alphabar = 1`
    /// (DPM-Solver's discrete schedule; the model input is `i = t N - 1`).
    #[default]
    Shifted,
    /// `t_i = i/(N - 1)` (score_sde's discrete models; the model input is `i = t (N - 1)`).
    Endpoints,
}

/// diffusers' `timestep_spacing` for `n` inference steps out of `N` training steps
/// (Lin et al. 2024, Table 2; diffusers' `DDIMScheduler.set_timesteps`), largest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spacing {
    /// `k * (N // n) + steps_offset`, `k = n-1 .. 0` (diffusers' default `steps_offset`
    /// is 0; Stable Diffusion's configurations use 1).
    Leading {
        /// Added to every timestep.
        steps_offset: usize,
    },
    /// `round(N - k N/n) - 1`, `k = 0 .. n-1` (rounding half to even, as numpy).
    Trailing,
    /// `round(k (N - 1)/(n - 1))`, `k = n-1 .. 0` (rounding half to even, as numpy).
    Linspace,
}

/// How a diffusers grid ends after its last timestep. diffusers' last step goes to
/// `alphabar_prev = 1` (`DDPMScheduler`; `DDIMScheduler` with `set_alpha_to_one = True`,
/// its default) or to `alphabar_prev = alphas_cumprod[0]` (`set_alpha_to_one = False`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalStep {
    /// The grid ends at `t = 0`, where `alphabar = 1` ([`TimeConvention::Shifted`] only):
    /// the last integrator step is diffusers' last step. For ancestral sampling and DDIM
    /// that step returns `x0_hat` (zero variance), i.e. it equals the Tweedie step.
    AlphaOne,
    /// The grid ends at the last timestep; finish with the Tweedie step
    /// (`Sampler::denoise(true)`), which is the step to `alphabar = 1` of DDPM and DDIM.
    /// Works in both conventions and with every sampler (the step to `t = 0` of
    /// [`FinalStep::AlphaOne`] has `lambda = inf`: samplers built on `a` and `sigma` take it,
    /// but the multistep DPM-Solver++ reports [`Error::NonFinite`] there).
    Tweedie,
    /// The grid ends at timestep 0's time (`set_alpha_to_one = False`); when the last
    /// timestep already is 0 no step is added (diffusers' step from 0 to `alphas_cumprod[0]`
    /// is the identity for DDIM with any eta).
    FirstTimestep,
}

/// A discrete-time VP schedule as an [`Sde`]. See the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct DiscreteVp {
    name: &'static str,
    alphas_cumprod: Vec<f64>,
    convention: TimeConvention,
    /// `log a` at the knots `k / m`, `k = 0 ..= m`, strictly decreasing.
    log_a: Vec<f64>,
    /// Number of segments, `m = log_a.len() - 1`.
    m: usize,
    eps: f64,
}

/// `u` rounded to the nearest integer when within a few ulps of it (knot positions).
fn snap(u: f64) -> f64 {
    let r = u.round();
    if (u - r).abs() <= 8.0 * f64::EPSILON * r.max(1.0) {
        r
    } else {
        u
    }
}

fn check_len(what: &'static str, n: usize) -> Result<()> {
    if n < 2 {
        return Err(Error::param(what, format!("a table of {n} entries"), "needs at least 2 entries"));
    }
    if n > MAX_TIMESTEPS {
        return Err(Error::param(what, format!("a table of {n} entries"), "at most 1,000,000 entries"));
    }
    Ok(())
}

fn check_count(n: usize) -> Result<()> {
    if !(2..=MAX_TIMESTEPS).contains(&n) {
        return Err(Error::InvalidSteps { steps: n, reason: "a discrete schedule needs 2 ..= 1,000,000 timesteps" });
    }
    Ok(())
}

/// numpy's `linspace(start, end, n)`: `start + k step`, `step = (end - start)/(n - 1)`, last = end.
fn linspace(start: f64, end: f64, n: usize) -> Vec<f64> {
    let step = (end - start) / (n - 1) as f64;
    let mut v: Vec<f64> = (0..n).map(|k| k as f64 * step + start).collect();
    v[n - 1] = end;
    v
}

fn check_beta_range(start: f64, end: f64) -> Result<()> {
    if !(start > 0.0 && start < 1.0) {
        return Err(Error::param("beta_start", start, "must be in (0, 1)"));
    }
    if !(end >= start && end < 1.0) {
        return Err(Error::param("beta_end", end, format!("must be in [beta_start = {start}, 1)")));
    }
    Ok(())
}

impl DiscreteVp {
    /// A schedule from its betas, `alphabar_i = prod_{j <= i} (1 - beta_j)` (a running product in `f64`,
    /// as numpy's `cumprod`).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `betas` for fewer than 2 entries or a beta that is not
    /// finite in `(0, 1)` (the message gives its index).
    pub fn from_betas(betas: &[f64]) -> Result<Self> {
        check_len("betas", betas.len())?;
        if let Some((i, b)) = betas.iter().enumerate().find(|(_, b)| !(**b > 0.0 && **b < 1.0)) {
            return Err(Error::param("betas", format!("beta[{i}] = {b}"), "every beta must be finite in (0, 1)"));
        }
        let mut prod = 1.0;
        let abar: Vec<f64> = betas
            .iter()
            .map(|b| {
                prod *= 1.0 - b;
                prod
            })
            .collect();
        Self::build("ddpm-table", abar)
    }

    /// A schedule from its cumulative products `alphabar_i` (diffusers' `alphas_cumprod`).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `alphas_cumprod` for fewer than 2 entries, an entry that
    /// is not finite in `(0, 1)`, or entries that do not strictly decrease (the message gives the index).
    pub fn from_alphas_cumprod(alphas_cumprod: &[f64]) -> Result<Self> {
        Self::build("ddpm-table", alphas_cumprod.to_vec())
    }

    fn build(name: &'static str, abar: Vec<f64>) -> Result<Self> {
        check_len("alphas_cumprod", abar.len())?;
        if let Some((i, v)) = abar.iter().enumerate().find(|(_, v)| !(**v > 0.0 && **v < 1.0)) {
            return Err(Error::param(
                "alphas_cumprod",
                format!("alphabar[{i}] = {v}"),
                "every entry must be finite in (0, 1)",
            ));
        }
        if let Some(i) = abar.windows(2).position(|w| w[1] >= w[0]) {
            return Err(Error::param(
                "alphas_cumprod",
                format!("alphabar[{i}] = {}, alphabar[{}] = {}", abar[i], i + 1, abar[i + 1]),
                "must strictly decrease (every beta > 0)",
            ));
        }
        let mut out =
            Self { name, alphas_cumprod: abar, convention: TimeConvention::Shifted, log_a: vec![], m: 0, eps: 0.0 };
        out.set_convention(TimeConvention::Shifted);
        Ok(out)
    }

    fn set_convention(&mut self, convention: TimeConvention) {
        let n = self.alphas_cumprod.len();
        let halves = self.alphas_cumprod.iter().map(|v| 0.5 * v.ln());
        self.log_a = match convention {
            TimeConvention::Shifted => std::iter::once(0.0).chain(halves).collect(),
            TimeConvention::Endpoints => halves.collect(),
        };
        self.m = self.log_a.len() - 1;
        self.convention = convention;
        self.eps = match convention {
            TimeConvention::Shifted => 1.0 / n as f64,
            TimeConvention::Endpoints => 0.0,
        };
    }

    /// DDPM's "linear" schedule: `beta = linspace(beta_start, beta_end, n)`
    /// (Ho et al. 2020 use `1e-4, 0.02, 1000`: [`DiscreteVp::ddpm_linear`]).
    ///
    /// # Errors
    /// [`Error::InvalidSteps`] unless `2 <= n <= 1e6`; [`Error::InvalidParameter`] unless
    /// `0 < beta_start <= beta_end < 1`.
    pub fn linear(n: usize, beta_start: f64, beta_end: f64) -> Result<Self> {
        check_count(n)?;
        check_beta_range(beta_start, beta_end)?;
        Ok(Self { name: "ddpm-linear", ..Self::from_betas(&linspace(beta_start, beta_end, n))? })
    }

    /// [`DiscreteVp::linear`] with Ho et al.'s `1e-4 .. 0.02`.
    ///
    /// # Errors
    /// As [`DiscreteVp::linear`].
    pub fn ddpm_linear(n: usize) -> Result<Self> {
        Self::linear(n, 1e-4, 0.02)
    }

    /// diffusers' "scaled_linear": `beta = linspace(sqrt(beta_start), sqrt(beta_end), n)^2`
    /// (Stable Diffusion: `0.00085, 0.012, 1000`).
    ///
    /// # Errors
    /// As [`DiscreteVp::linear`].
    pub fn scaled_linear(n: usize, beta_start: f64, beta_end: f64) -> Result<Self> {
        check_count(n)?;
        check_beta_range(beta_start, beta_end)?;
        let betas: Vec<f64> = linspace(beta_start.sqrt(), beta_end.sqrt(), n).iter().map(|r| r * r).collect();
        Ok(Self { name: "ddpm-scaled-linear", ..Self::from_betas(&betas)? })
    }

    /// diffusers' "squaredcos_cap_v2" (Nichol & Dhariwal 2021, eq. 17, betas capped at `max_beta`,
    /// 0.999 in the paper): `beta_i = min(1 - abar((i + 1)/n) / abar(i/n), max_beta)` with
    /// `abar(t) = cos^2((t + 0.008)/1.008 pi/2)`.
    ///
    /// # Errors
    /// [`Error::InvalidSteps`] unless `2 <= n <= 1e6`; [`Error::InvalidParameter`] unless
    /// `0 < max_beta < 1`.
    pub fn squaredcos_cap_v2(n: usize, max_beta: f64) -> Result<Self> {
        check_count(n)?;
        if !(max_beta > 0.0 && max_beta < 1.0) {
            return Err(Error::param("max_beta", max_beta, "must be in (0, 1)"));
        }
        let abar = |t: f64| ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2).cos().powi(2);
        let nf = n as f64;
        let betas: Vec<f64> =
            (0..n).map(|i| (1.0 - abar((i + 1) as f64 / nf) / abar(i as f64 / nf)).min(max_beta)).collect();
        Ok(Self { name: "ddpm-cosine", ..Self::from_betas(&betas)? })
    }

    /// The same schedule with another [`TimeConvention`] (this resets `eps` to the convention's default).
    pub fn with_convention(mut self, convention: TimeConvention) -> Self {
        self.set_convention(convention);
        self
    }

    /// Sets the end time of sampling (default: timestep 0's time, `1/N` or `0`).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `0 <= eps < 1` (`eps = 0` is clean data under
    /// [`TimeConvention::Shifted`], where `lambda` is infinite: only samplers that do not use
    /// `lambda` at the end, such as ancestral and DDIM, can step there).
    pub fn with_eps(mut self, eps: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&eps) {
            return Err(Error::param("eps", eps, "must be in [0, 1)"));
        }
        self.eps = eps;
        Ok(self)
    }

    /// The number of training timesteps `N`.
    pub fn len(&self) -> usize {
        self.alphas_cumprod.len()
    }

    /// Always false (a schedule has at least 2 timesteps); for clippy's `len` rule.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The table `alphabar_i`.
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    /// The betas `beta_i = 1 - alphabar_i / alphabar_{i-1}` (`alphabar_{-1} = 1`).
    pub fn betas(&self) -> Vec<f64> {
        let mut prev = 1.0;
        self.alphas_cumprod
            .iter()
            .map(|a| {
                let b = 1.0 - a / prev;
                prev = *a;
                b
            })
            .collect()
    }

    /// The time convention.
    pub fn convention(&self) -> TimeConvention {
        self.convention
    }

    /// The knot of timestep `i`: `(i + 1)/N` or `i/(N - 1)`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `timestep` unless `i < N`.
    pub fn t_of_timestep(&self, i: usize) -> Result<f64> {
        let n = self.len();
        if i >= n {
            return Err(Error::param("timestep", i, format!("must be < N = {n} (timesteps are 0 ..= {})", n - 1)));
        }
        Ok(self.knot_t(self.knot_of(i)))
    }

    /// The model's (continuous) timestep input at time `t`: `t N - 1` or `t (N - 1)`; exactly the
    /// integer `i` at timestep `i`'s knot (`t M` within a few ulps of an integer is snapped to it,
    /// as the schedule locates its knots; under [`TimeConvention::Shifted`], `t = 0` gives `-1`).
    ///
    /// # Errors
    /// [`Error::TimeOutOfRange`] unless `t` is in `[0, 1]`.
    pub fn timestep_of_t(&self, t: f64) -> Result<f64> {
        self.check_time(t)?;
        let u = snap(t * self.m as f64);
        Ok(match self.convention {
            TimeConvention::Shifted => u - 1.0,
            TimeConvention::Endpoints => u,
        })
    }

    fn knot_of(&self, i: usize) -> usize {
        match self.convention {
            TimeConvention::Shifted => i + 1,
            TimeConvention::Endpoints => i,
        }
    }

    fn knot_t(&self, k: usize) -> f64 {
        k as f64 / self.m as f64
    }

    /// Position `u = t m` in knot units, snapped to an integer within a few ulps so that
    /// the knots' times (computed as `k / m`) hit their knots exactly.
    fn position(&self, t: f64) -> f64 {
        snap((t * self.m as f64).clamp(0.0, self.m as f64))
    }

    /// `log a(t)`: exact at the knots, linear in between.
    pub fn log_alpha(&self, t: f64) -> f64 {
        let u = self.position(t);
        let k = (u.floor() as usize).min(self.m);
        let w = u - k as f64;
        if w == 0.0 {
            return self.log_a[k];
        }
        self.log_a[k] + w * (self.log_a[k + 1] - self.log_a[k])
    }

    /// The slope of `log a` on the segment below `t` (the first segment at `t = 0`).
    fn slope(&self, t: f64) -> f64 {
        let u = self.position(t);
        let k = (u.ceil() as usize).clamp(1, self.m) - 1;
        (self.log_a[k + 1] - self.log_a[k]) * self.m as f64
    }

    /// The timesteps of diffusers' `set_timesteps(steps)` with `spacing`, largest first.
    ///
    /// # Errors
    /// [`Error::InvalidSteps`] unless `1 <= steps <= N`; [`Error::InvalidParameter`] naming
    /// `steps_offset` when it moves a "leading" timestep to `N` or beyond.
    pub fn diffusers_timesteps(&self, spacing: Spacing, steps: usize) -> Result<Vec<usize>> {
        let n = self.len();
        if steps == 0 || steps > n {
            return Err(Error::InvalidSteps {
                steps,
                reason: "the number of inference steps must be in 1 ..= N (the training timesteps)",
            });
        }
        let nf = n as f64;
        let out: Vec<usize> = match spacing {
            Spacing::Leading { steps_offset } => {
                let ratio = n / steps;
                let top = (steps - 1) * ratio + steps_offset;
                if top >= n {
                    return Err(Error::param(
                        "steps_offset",
                        steps_offset,
                        format!("moves the first timestep to {top}, past the last one (N - 1 = {})", n - 1),
                    ));
                }
                (0..steps).rev().map(|k| k * ratio + steps_offset).collect()
            }
            Spacing::Trailing => {
                let ratio = nf / steps as f64;
                // numpy's arange(N, 0, -ratio) is N + k delta with delta = (N - ratio) - N, rounded
                // (N = 999, n = 50: 499.4999..., not 499.5, at k = 25); all >= 1, so >= 0 after - 1.
                let delta = (nf - ratio) - nf;
                (0..steps).map(|k| (nf + k as f64 * delta).round_ties_even().max(1.0) as usize - 1).collect()
            }
            Spacing::Linspace => {
                if steps == 1 {
                    vec![0]
                } else {
                    let step = (nf - 1.0) / (steps - 1) as f64;
                    let mut v: Vec<usize> = (0..steps).map(|k| (k as f64 * step).round_ties_even() as usize).collect();
                    v[steps - 1] = n - 1;
                    v.reverse();
                    v
                }
            }
        };
        Ok(out)
    }

    /// The reverse-time grid through diffusers' timesteps ([`DiscreteVp::diffusers_timesteps`]),
    /// ended as `end` says. See the [module docs](self) for when it reproduces diffusers step for step.
    ///
    /// # Errors
    /// As [`DiscreteVp::diffusers_timesteps`]; [`Error::InvalidParameter`] naming `final_step` for
    /// [`FinalStep::AlphaOne`] under [`TimeConvention::Endpoints`] (no time has `alphabar = 1`; use
    /// [`FinalStep::Tweedie`]); [`Error::InvalidGrid`] when the grid would have one time only
    /// (one inference step ending with the Tweedie step, or at timestep 0).
    pub fn diffusers_grid(&self, spacing: Spacing, steps: usize, end: FinalStep) -> Result<TimeGrid> {
        let ts = self.diffusers_timesteps(spacing, steps)?;
        let mut times = ts.iter().map(|&i| self.t_of_timestep(i)).collect::<Result<Vec<f64>>>()?;
        match end {
            FinalStep::AlphaOne => {
                if self.convention == TimeConvention::Endpoints {
                    return Err(Error::param(
                        "final_step",
                        "AlphaOne",
                        "no time has alphabar = 1 under the t = i/(N - 1) convention; \
                         use FinalStep::Tweedie with Sampler::denoise(true), the same step",
                    ));
                }
                times.push(0.0);
            }
            FinalStep::Tweedie => {}
            FinalStep::FirstTimestep => {
                if ts.last() != Some(&0) {
                    times.push(self.t_of_timestep(0)?);
                }
            }
        }
        TimeGrid::new(times)
    }
}

impl Sde for DiscreteVp {
    fn name(&self) -> &'static str {
        self.name
    }

    fn t_eps(&self) -> f64 {
        self.eps
    }

    /// `d log a/dt` on the segment below `t`.
    fn drift_coef(&self, t: f64) -> f64 {
        self.slope(t)
    }

    /// `sqrt(-2 f(t))`.
    fn diffusion(&self, t: f64) -> f64 {
        (-2.0 * self.slope(t)).max(0.0).sqrt()
    }

    fn alpha(&self, t: f64) -> f64 {
        self.log_alpha(t).exp()
    }

    fn sigma(&self, t: f64) -> f64 {
        (-(2.0 * self.log_alpha(t)).exp_m1()).max(0.0).sqrt()
    }

    fn log_snr(&self, t: f64) -> f64 {
        let la = self.log_alpha(t);
        la - 0.5 * (-(2.0 * la).exp_m1()).ln()
    }

    fn prior_std(&self) -> f64 {
        1.0
    }

    /// [`DiscreteVp::timestep_of_t`].
    fn timestep_of_t(&self, t: f64) -> Result<f64> {
        DiscreteVp::timestep_of_t(self, t)
    }

    fn transition(&self, s: f64, t: f64) -> (f64, f64) {
        let d = self.log_alpha(t) - self.log_alpha(s);
        (d.exp(), (-(2.0 * d).exp_m1()).max(0.0))
    }

    /// The exact inverse of the piecewise-linear `log a(t)`, through
    /// `log a = -1/2 ln(1 + e^{-2 lambda})` (`lambda = inf` is `t = 0` under
    /// [`TimeConvention::Shifted`]).
    fn t_of_log_snr(&self, lambda: f64) -> Result<f64> {
        let (l_lo, l_hi) = (self.log_snr(1.0), self.log_snr(0.0));
        // Under `Shifted`, l_hi = lambda(0) = inf: clean data.
        if lambda.is_nan() || lambda < l_lo || lambda > l_hi {
            return Err(Error::param("lambda", lambda, format!("log-SNR must lie in [{l_lo}, {l_hi}]")));
        }
        // -1/2 softplus(-2 lambda), stable for both signs.
        let x = -2.0 * lambda;
        let softplus = if x > 0.0 { x + (-x).exp().ln_1p() } else { x.exp().ln_1p() };
        let la = (-0.5 * softplus).clamp(self.log_a[self.m], self.log_a[0]);
        // The last knot k with log_a[k] >= la (log_a strictly decreases).
        let k = self.log_a.partition_point(|v| *v >= la).clamp(1, self.m) - 1;
        let w = (la - self.log_a[k]) / (self.log_a[k + 1] - self.log_a[k]);
        Ok((snap(k as f64 + w) / self.m as f64).clamp(0.0, 1.0))
    }
}

/// A named discrete schedule, `NAME[:N]` with `NAME` in [`DISCRETE_SCHEDULES`] (N = 1000 when
/// left out), diffusers' default parameters and [`TimeConvention::Shifted`]:
/// `ddpm-linear` (`1e-4 .. 0.02`), `ddpm-scaled-linear` (`0.00085 .. 0.012`), `ddpm-cosine`
/// (squaredcos_cap_v2, max beta 0.999).
///
/// # Errors
/// [`Error::InvalidParameter`] naming `sde` for an unknown name or a count that is not an integer;
/// [`Error::InvalidSteps`] for a count outside `2 ..= 1e6`.
pub fn discrete_by_name(name: &str) -> Result<DiscreteVp> {
    let (base, count) = match name.split_once(':') {
        Some((b, c)) => {
            let n = c.parse::<usize>().map_err(|_| {
                Error::param("sde", name, format!("`{c}` is not a number of timesteps (as in ddpm-linear:1000)"))
            })?;
            (b, n)
        }
        None => (name, 1000),
    };
    match base {
        "ddpm-linear" => DiscreteVp::ddpm_linear(count),
        "ddpm-scaled-linear" => DiscreteVp::scaled_linear(count, 0.00085, 0.012),
        "ddpm-cosine" => DiscreteVp::squaredcos_cap_v2(count, 0.999),
        _ => Err(Error::param(
            "sde",
            name,
            format!("unknown discrete schedule; known: {} (each with an optional :N)", DISCRETE_SCHEDULES.join(", ")),
        )),
    }
}
