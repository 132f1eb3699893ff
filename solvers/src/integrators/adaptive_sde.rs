//! Adaptive-step Euler–Maruyama for the reverse SDE ("Gotta Go Fast").

use crate::error::{Error, Result};
use crate::grid::TimeGrid;
use crate::integrators::reverse_em::em_update;
use crate::integrators::step_control::{accepts, check_rtol, next_step, StepControl};
use crate::noise::Noise;
use crate::solver::{Ctx, Solver};
use crate::state::State;

/// Adaptive-step reverse-SDE solver of Jolicoeur-Martineau et al. (2021, "Gotta Go
/// Fast When Generating Data with Score-Based Models", arXiv 2105.14080, Algorithm 1):
/// Euler–Maruyama with an improved-Euler (stochastic Heun) error estimate.
///
/// For the reverse SDE `dx = [f(t) x - g(t)^2 s(x, t)] dt + g(t) dw_bar`, a step of size
/// `h` from `t` to `t - h` with one standard normal `z` (the Brownian increment over the
/// step divided by `sqrt(h)`) forms, with `EM_t(y) = (1 - f(t) h) y + g(t)^2 h s(y, t) +
/// g(t) sqrt(h) z` (the [`crate::ReverseEulerMaruyama`] update):
///
/// * `x' = EM_t(x)`, the Euler–Maruyama proposal;
/// * `x'' = (x + EM_{t-h}(x')) / 2`, the improved-Euler solution (`x'` and the stage
///   `x + h μ(x', t - h) + g(t - h) sqrt(h) z` averaged; Roberts 2012 without its `S_k`
///   term, which only matters for state-dependent diffusion);
/// * the error `E = max_i sqrt(mean_j ((x'_ij - x''_ij) / δ_ij)^2)`, `δ = max(atol,
///   rtol max(|x'|, |x'_prev|))` with `x'_prev` the previous accepted proposal
///   ([`State::sample_error_norms`]: the paper's scaled ℓ2 norm, RMS over a sample's
///   dimensions, then the largest over the batch);
/// * accept when `E <= 1` (`x <- x''`, `t <- t - h`, `x'_prev <- x'`), else retry from
///   the same `x` and `t`; either way `h <- θ h E^(-r)`, shortened to land on the grid
///   point (the paper's `min(t - eps, ...)`).
///
/// Defaults are the paper's: `rtol = 0.05`, `atol = 0.0078` (for data scaled to
/// [-1, 1]: about 1/128), `θ = 0.9`, `r = 0.9`, first step `h = 0.01`.
///
/// Order: the accepted `x''` is a weak order 1 scheme (Euler–Maruyama's; strong order 1
/// for this additive noise); the step sizes follow the tolerance, so the error falls as
/// `rtol` and `atol` fall (tested on Gaussian data against the exact law). Score
/// evaluations: 2 per accepted step and 1 per rejected one (`s(x, t)` is kept for the
/// retry), at least 2 per grid interval; counted exactly in [`crate::Run::score_evals`].
///
/// # One step size for the batch
/// The paper gives each sample its own step size and time. Here the whole batch moves
/// together, accepting a step only when *every* sample meets the tolerance (the largest
/// per-sample norm): a [`crate::Score`] takes one time per batch (as do the networks'
/// time embeddings in this crate), and a shared time keeps every integrator's contract
/// (one state at one `t` after each grid step, observers, the final denoising step).
/// Each sample then meets the paper's per-sample criterion at every accepted step, at
/// the price of steps as small as the hardest sample needs (more steps for larger
/// batches). A sample's path then depends on the rest of the batch through the step
/// sizes; its law does not, beyond the (tolerance-sized) discretisation error, since
/// every step size is a solution of the same SDE on the same Brownian path.
///
/// # The Brownian path
/// A rejected step is retried over a shorter interval of the *same* Brownian path:
/// redrawing the noise would favour small draws (a step is rejected when its noise is
/// large) and bias the output law. With a [`crate::BrownianPath`] ([`Noise::is_path`])
/// every increment is the path's own. With any other noise, each grid interval's
/// increment is drawn once ([`Noise::step_normal`]) and the times inside it are filled
/// in by Brownian-bridge draws from [`Noise::normal`], conditioned on every value
/// drawn so far in the interval (Lévy's construction), so retries and later steps see
/// one consistent path.
///
/// # Grid
/// It subdivides each grid interval on its own and carries the step size from one to
/// the next until [`Solver::init`]; a one-step grid `[T, eps]` lets the controller
/// place every step (the registry's [`crate::DefaultGrid::Adaptive`]). `x'_prev`
/// starts each grid interval at `x`, as the paper starts its run.
///
/// # Failures
/// A non-finite error estimate or accepted state is [`Error::NonFinite`], a step size
/// below the resolution of `t` [`Error::StepSizeTooSmall`], more than
/// [`AdaptiveSde::max_steps`] internal steps (accepted and rejected) over a run
/// [`Error::TooManySteps`].
#[derive(Debug, Clone, Copy)]
pub struct AdaptiveSde {
    /// Tolerances and the cap on internal steps.
    control: StepControl,
    /// The step size carried to the next grid interval.
    h: Option<f64>,
    /// Accepted and rejected internal steps since [`Solver::init`].
    accepted: usize,
    rejected: usize,
}

impl Default for AdaptiveSde {
    /// The paper's tolerances: `rtol = 0.05`, `atol = 0.0078`.
    fn default() -> Self {
        let control =
            StepControl { rtol: Self::DEFAULT_RTOL, atol: Self::DEFAULT_ATOL, max_steps: Self::DEFAULT_MAX_STEPS };
        Self { control, h: None, accepted: 0, rejected: 0 }
    }
}

impl AdaptiveSde {
    /// The paper's relative tolerance.
    pub const DEFAULT_RTOL: f64 = 0.05;
    /// The paper's absolute tolerance (about 1/128 for data in [-1, 1]).
    pub const DEFAULT_ATOL: f64 = 0.0078;
    /// The safety factor `θ` of the controller `h <- θ h E^(-r)`.
    pub const THETA: f64 = 0.9;
    /// The exponent `r` of the controller.
    pub const R: f64 = 0.9;
    /// The first step size of a run (`t` in [eps, 1] for the VP and sub-VP SDEs).
    pub const H_INIT: f64 = 0.01;
    /// The default cap on internal steps (accepted and rejected) over a run.
    pub const DEFAULT_MAX_STEPS: usize = 100_000;

    /// The solver with relative and absolute tolerances.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `rtol` unless `f64::EPSILON <= rtol < 1` (NaN
    /// included), or `atol` unless it is finite and > 0.
    pub fn new(rtol: f64, atol: f64) -> Result<Self> {
        Ok(Self { control: StepControl::new(rtol, atol, f64::EPSILON, Self::DEFAULT_MAX_STEPS)?, ..Self::default() })
    }

    /// Sets the cap on internal steps (accepted and rejected) over a run.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for zero.
    pub fn with_max_steps(mut self, max_steps: usize) -> Result<Self> {
        self.control = self.control.with_max_steps(max_steps)?;
        Ok(self)
    }

    /// The relative tolerance.
    pub fn rtol(&self) -> f64 {
        self.control.rtol
    }

    /// The absolute tolerance.
    pub fn atol(&self) -> f64 {
        self.control.atol
    }

    /// Internal steps accepted since [`Solver::init`] (each cost 2 score evaluations).
    pub fn accepted(&self) -> usize {
        self.accepted
    }

    /// The cap on internal steps over a run.
    pub fn max_steps(&self) -> usize {
        self.control.max_steps
    }

    /// Internal steps rejected since [`Solver::init`] (each cost 1 score evaluation).
    pub fn rejected(&self) -> usize {
        self.rejected
    }
}

/// The Brownian path inside one grid interval, relative to its value at the interval's
/// start, revealed as the controller asks (for noise that is not a path itself).
struct Revealed<S> {
    /// Times from the current one down to the interval's end, decreasing, with `W`.
    points: Vec<(f64, S)>,
}

impl<S: State> Revealed<S> {
    /// `W(t) = 0`, and `W(t_next)` from the noise source's one draw for the interval.
    fn new(t: f64, t_next: f64, like: &S, noise: &mut dyn Noise<S>) -> Result<Self> {
        let mut end = noise.step_normal(t, t_next, like)?;
        end.scale((t - t_next).sqrt());
        let mut start = like.duplicate();
        start.scale(0.0);
        Ok(Self { points: vec![(t, start), (t_next, end)] })
    }

    /// `(W(b) - W(a)) / sqrt(a - b)`, `a` the current time, `b` in `[t_next, a)`: a new
    /// time is drawn from the Brownian bridge between its revealed neighbours.
    fn normal(&mut self, b: f64, noise: &mut dyn Noise<S>) -> Result<S> {
        let a = self.points[0].0;
        let i = self.points.iter().position(|p| p.0 <= b).unwrap_or(self.points.len() - 1).max(1);
        if self.points[i].0 != b {
            let ((l, wl), (r, wr)) = (&self.points[i - 1], &self.points[i]);
            let u = (l - b) / (l - r);
            let sd = ((l - b) * (b - r) / (l - r)).max(0.0).sqrt();
            let mut w = noise.normal(wl);
            w.axpbypcz(sd, 1.0 - u, wl, u, wr)?;
            self.points.insert(i, (b, w));
        }
        let mut z = self.points[i].1.duplicate();
        z.axpby(1.0, -1.0, &self.points[0].1)?;
        z.scale(1.0 / (a - b).sqrt());
        Ok(z)
    }

    /// Moves the current time to `b`, a revealed time.
    fn advance(&mut self, b: f64) {
        let k = self.points.iter().position(|p| p.0 <= b).unwrap_or(0);
        self.points.drain(..k);
    }
}

impl<S: State> Solver<S> for AdaptiveSde {
    fn name(&self) -> &'static str {
        "adaptive-sde"
    }

    /// Forgets the carried step size and starts the run's step budget and counts.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `max_steps` when the grid has more steps than
    /// the budget (each grid step takes at least one internal step).
    fn init(&mut self, grid: &TimeGrid) -> Result<()> {
        self.control.check_grid(grid)?;
        self.h = None;
        self.accepted = 0;
        self.rejected = 0;
        Ok(())
    }

    fn step(&mut self, mut x: S, t: f64, t_next: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        let StepControl { rtol, atol, max_steps } = self.control;
        check_rtol(rtol, x.epsilon())?;
        let span = t - t_next;
        if span.is_nan() || span <= 0.0 {
            return Err(Error::InvalidGrid { reason: format!("adaptive-sde runs in reverse time: {t} -> {t_next}") });
        }
        let mut revealed = if ctx.noise.is_path() { None } else { Some(Revealed::new(t, t_next, &x, ctx.noise)?) };
        let mut x_prev = x.duplicate();
        let mut s_now: Option<S> = None;
        let mut now = t;
        let mut h = self.h.unwrap_or(Self::H_INIT).min(span);
        loop {
            if self.accepted + self.rejected >= max_steps {
                return Err(Error::TooManySteps { max_steps, t: now, h });
            }
            let (hs, last) = next_step(now, h, now - t_next)?;
            let next = if last { t_next } else { now - h };
            let s = match s_now.take() {
                Some(s) => s,
                None => ctx.score.score(&x, now)?,
            };
            let z = match revealed.as_mut() {
                Some(path) => path.normal(next, ctx.noise)?,
                None => ctx.noise.step_normal(now, next, &x)?,
            };
            // x' = EM_t(x); x'' = (x + EM_{t-h}(x')) / 2, with the same z.
            let mut proposal = x.duplicate();
            em_update(&mut proposal, &s, &z, ctx.sde, now, hs)?;
            let s1 = ctx.score.score(&proposal, next)?;
            let mut heun = proposal.duplicate();
            em_update(&mut heun, &s1, &z, ctx.sde, next, hs)?;
            heun.axpby(0.5, 0.5, &x)?;
            let mut err = proposal.duplicate();
            err.axpby(1.0, -1.0, &heun)?;
            let norms = err.sample_error_norms(&proposal, &x_prev, rtol, atol)?;
            // The largest, NaN if any is NaN.
            let e = norms.iter().fold(0.0f64, |m, &v| if v.is_nan() || v > m { v } else { m });
            let accept = accepts(e, &heun, self.accepted + 1, next)?;
            let proposed = if e == 0.0 { f64::INFINITY } else { Self::THETA * hs * e.powf(-Self::R) };
            if accept {
                self.accepted += 1;
                x = heun;
                x_prev = proposal;
                if last {
                    // A step shortened to land on t_next says little about the next one.
                    self.h = Some(if proposed.is_finite() { proposed.max(h) } else { h });
                    return Ok(x);
                }
                if let Some(path) = revealed.as_mut() {
                    path.advance(next);
                }
                now = next;
                h = if proposed.is_finite() { proposed } else { h };
            } else {
                self.rejected += 1;
                s_now = Some(s);
                h = proposed;
            }
        }
    }
}
