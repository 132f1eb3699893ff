//! Adaptive Dormand–Prince 5(4) for ODEs, and the probability-flow sampler built on it.

use crate::error::{Error, Result};
use crate::grid::TimeGrid;
use crate::integrators::step_control::{accepts, check_rtol, next_step, StepControl};
use crate::solver::{Ctx, Solver};
use crate::state::State;
use crate::vector_field::{ProbabilityFlow, VectorField};

// Dormand & Prince (1980), Table 2 (Butcher tableau of DOPRI5; Hairer, Nørsett & Wanner 1993, Table II.5.2).
const C: [f64; 6] = [1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
const A2: [f64; 1] = [1.0 / 5.0];
const A3: [f64; 2] = [3.0 / 40.0, 9.0 / 40.0];
const A4: [f64; 3] = [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0];
const A5: [f64; 4] = [19372.0 / 6561.0, -25360.0 / 2187.0, 64448.0 / 6561.0, -212.0 / 729.0];
const A6: [f64; 5] = [9017.0 / 3168.0, -355.0 / 33.0, 46732.0 / 5247.0, 49.0 / 176.0, -5103.0 / 18656.0];
/// Fifth-order weights (also the last stage's row: first same as last).
const B: [f64; 6] = [35.0 / 384.0, 0.0, 500.0 / 1113.0, 125.0 / 192.0, -2187.0 / 6784.0, 11.0 / 84.0];
/// Fifth- minus fourth-order weights, stages 1..7.
const E: [f64; 7] =
    [71.0 / 57600.0, 0.0, -71.0 / 16695.0, 71.0 / 1920.0, -17253.0 / 339200.0, 22.0 / 525.0, -1.0 / 40.0];

/// The adaptive Dormand–Prince 5(4) method (Dormand & Prince 1980; Hairer,
/// Nørsett & Wanner 1993, §II.5, "DOPRI5").
///
/// [`OdeDopri5::integrate`] solves any [`VectorField`] `dx/dt = v(x, t)` from
/// `t0` to `t1`, in either time direction: seven-stage steps
/// `k_i = v(x + h sum_j a_ij k_j, t + c_i h)`, the fifth-order solution
/// `x + h sum_i b_i k_i` is kept (local extrapolation), the embedded
/// fourth-order one gives the error estimate `err = h sum_i e_i k_i`, whose
/// scaled RMS norm ([`State::error_norm`], with `rtol`, `atol`) must be `<= 1`
/// to accept. The next step is `h * min(5, max(0.2, 0.9 err^(-1/5)))`; the last
/// stage is the first of the next internal step (FSAL). The first step size
/// comes from Hairer et al.'s starting rule (§II.4), then carries over between
/// calls until [`Solver::init`].
///
/// As a [`Solver`] it integrates the probability-flow ODE
/// `dx/dt = f(t) x - 1/2 g(t)^2 s(x, t)` (Song et al. 2021, eq. 13, who sample
/// it with RK45 at rtol = atol = 1e-5; [`ProbabilityFlow`]) adaptively over
/// each grid step; it is usually run over a one-step grid `[T, eps]` so the
/// controller places every step. Deterministic; order 5 (error per unit time
/// ~ tolerance). Score evaluations vary (at least seven per grid step); the
/// sampler counts them into `Run::score_evals`, and its observers see each one
/// ([`crate::Observer::observe_eval`]), so a progress display moves while the
/// controller works inside a long grid step.
///
/// # Tolerances
/// An internal step is accepted when every component's error estimate is
/// about `atol + rtol |x|` or less (RMS over the batch). The step's result is
/// itself rounded to half an ulp, `eps/2 |x|` relatively, where `eps` is the
/// machine epsilon of the state's numbers ([`State::epsilon`]); an `rtol`
/// below `eps` asks for less error than that rounding, which no step size
/// gives: the estimate (blind to the rounding) drives the steps down, their
/// number grows like `eps / rtol` and rounding errors pile up instead of
/// shrinking. So `rtol` must be at least `eps`: [`OdeDopri5::new`] checks
/// f64's ([`OdeDopri5::MIN_RTOL`], the finest any state has) and
/// [`OdeDopri5::integrate`] the state's own (1.2e-7 for f32). (SciPy's
/// `solve_ivp` and MATLAB's `ode45` raise `rtol` to `100 eps` of f64; here the
/// bound is the hard one, as `100 eps` of f32 would exclude the usual 1e-5.)
/// `rtol` must also be below 1 (a 100 % relative error controls nothing) and
/// `atol` finite and > 0.
///
/// # Step budget
/// At most [`OdeDopri5::max_steps`] internal steps (accepted and rejected):
/// per call of [`OdeDopri5::integrate`], and, as a [`Solver`], over the whole
/// run from [`Solver::init`] (all grid steps together, so a tolerance the score
/// cannot meet fails in bounded time instead of creeping over the grid). The
/// default, 100 000, is the `NMAX` of Hairer's DOPRI5 code.
///
/// Every failure is an error, never a state: a non-finite stage or state is
/// [`Error::NonFinite`], a step size below the resolution of `t` is
/// [`Error::StepSizeTooSmall`], an exhausted step budget [`Error::TooManySteps`].
#[derive(Debug, Clone, Copy)]
pub struct OdeDopri5 {
    /// Tolerances and the cap on internal steps.
    control: StepControl,
    /// The step size carried to the next call.
    h: Option<f64>,
    /// Internal steps taken since [`Solver::init`] (the run's share of the budget).
    used: usize,
}

/// The result of [`OdeDopri5::integrate`].
#[derive(Debug, Clone)]
pub struct Dopri5Solution<S> {
    /// The state at `t1`.
    pub x: S,
    /// Accepted internal steps.
    pub steps: usize,
    /// Rejected internal steps.
    pub rejected: usize,
}

impl Default for OdeDopri5 {
    /// `rtol = atol = 1e-5` (Song et al. 2021's choice).
    fn default() -> Self {
        let control = StepControl { rtol: 1e-5, atol: 1e-5, max_steps: Self::DEFAULT_MAX_STEPS };
        Self { control, h: None, used: 0 }
    }
}

impl OdeDopri5 {
    /// The default cap on internal steps (accepted and rejected) per call, or
    /// per run as a [`Solver`] (Hairer's `NMAX`).
    pub const DEFAULT_MAX_STEPS: usize = 100_000;

    /// The smallest relative tolerance of any state: f64's machine epsilon,
    /// 2.2e-16 (see "Tolerances" above; f32 states need 1.2e-7).
    pub const MIN_RTOL: f64 = f64::EPSILON;

    /// Dormand–Prince with relative and absolute tolerances.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `rtol` unless `MIN_RTOL <= rtol < 1`
    /// (NaN included), or `atol` unless it is finite and > 0.
    pub fn new(rtol: f64, atol: f64) -> Result<Self> {
        Ok(Self { control: StepControl::new(rtol, atol, Self::MIN_RTOL, Self::DEFAULT_MAX_STEPS)?, ..Self::default() })
    }

    /// Sets the cap on internal steps (accepted and rejected) per call of
    /// [`OdeDopri5::integrate`], or over a whole run as a [`Solver`].
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

    /// The cap on internal steps per call (per run as a [`Solver`]).
    pub fn max_steps(&self) -> usize {
        self.control.max_steps
    }

    /// Integrates `dx/dt = field(x, t)` from `x` at `t0` to `t1` (`t1 < t0`
    /// runs backwards in time). Starts from the step size the previous call
    /// left (capped at `|t1 - t0|`), or from Hairer et al.'s starting rule.
    ///
    /// # Errors
    /// * [`Error::InvalidParameter`] for a non-finite `t0` or `t1`, or an
    ///   `rtol` below the machine epsilon of `x`'s numbers ([`State::epsilon`]);
    /// * [`Error::NonFinite`] when a stage or the accepted state is NaN/inf
    ///   (`step`: accepted steps + 1, `t`: the time that step aimed at);
    /// * [`Error::StepSizeTooSmall`] when the controller's step falls below
    ///   the resolution of `t`;
    /// * [`Error::TooManySteps`] after [`OdeDopri5::max_steps`] internal steps;
    /// * whatever the vector field returns.
    pub fn integrate<S: State, V: VectorField<S> + ?Sized>(
        &mut self,
        field: &V,
        x: S,
        t0: f64,
        t1: f64,
    ) -> Result<Dopri5Solution<S>> {
        self.integrate_within(field, x, t0, t1, self.control.max_steps)
    }

    /// [`OdeDopri5::integrate`] with at most `budget` internal steps.
    fn integrate_within<S: State, V: VectorField<S> + ?Sized>(
        &mut self,
        field: &V,
        mut x: S,
        t0: f64,
        t1: f64,
        budget: usize,
    ) -> Result<Dopri5Solution<S>> {
        let StepControl { rtol, atol, max_steps } = self.control;
        check_rtol(rtol, x.epsilon())?;
        for (name, t) in [("t0", t0), ("t1", t1)] {
            if !t.is_finite() {
                return Err(Error::param(name, t, "must be finite"));
            }
        }
        let (mut steps, mut rejected) = (0, 0);
        if t0 == t1 {
            return Ok(Dopri5Solution { x, steps, rejected });
        }
        // Step sizes h are magnitudes; the step in time is dir * h.
        let dir = if t1 > t0 { 1.0 } else { -1.0 };
        let span = (t1 - t0).abs();
        let mut k1 = field.eval(&x, t0)?;
        let mut h = match self.h {
            Some(h) => h.min(span),
            None => self.initial_step(field, &x, &k1, t0, dir, span)?,
        };
        let mut now = t0;
        let mut proposed = h;
        for _ in 0..budget {
            let remaining = (t1 - now) * dir;
            if remaining <= 0.0 {
                // Rounding of `now` reached t1 a step early.
                return Ok(Dopri5Solution { x, steps, rejected });
            }
            // The controller's step `h` (kept in `proposed`), shortened on the last step to land on t1.
            let (step, last) = next_step(now, h, remaining)?;
            h = step;
            let hs = dir * h;
            let mut k: Vec<S> = Vec::with_capacity(6);
            k.push(k1);
            for (i, a) in [&A2[..], &A3[..], &A4[..], &A5[..], &A6[..]].into_iter().enumerate() {
                let y = stage(&x, hs, a, &k)?;
                k.push(field.eval(&y, now + C[i] * hs)?);
            }
            let y5 = stage(&x, hs, &B, &k)?;
            let k7 = field.eval(&y5, now + hs)?;
            let mut err = k[0].duplicate();
            err.scale(hs * E[0]);
            err.axpbypcz(1.0, hs * E[2], &k[2], hs * E[3], &k[3])?;
            err.axpbypcz(1.0, hs * E[4], &k[4], hs * E[5], &k[5])?;
            err.axpby(1.0, hs * E[6], &k7)?;
            let norm = err.error_norm(&x, &y5, rtol, atol)?;
            let accepted = accepts(norm, &y5, steps + 1, now + hs)?;
            let factor = if norm == 0.0 { 5.0 } else { (0.9 * norm.powf(-0.2)).clamp(0.2, 5.0) };
            if accepted {
                x = y5;
                k1 = k7;
                steps += 1;
                let next = h * factor;
                if last {
                    // A step shortened to land on t1 says little about the next one.
                    self.h = Some(next.max(proposed));
                    return Ok(Dopri5Solution { x, steps, rejected });
                }
                now += hs;
                self.h = Some(next);
                h = next;
            } else {
                rejected += 1;
                k1 = k.swap_remove(0);
                h *= factor.min(1.0);
            }
            proposed = h;
        }
        Err(Error::TooManySteps { max_steps, t: now, h })
    }

    /// Hairer et al.'s starting step (§II.4), costing one evaluation of `field`.
    fn initial_step<S: State, V: VectorField<S> + ?Sized>(
        &self,
        field: &V,
        x: &S,
        k1: &S,
        t: f64,
        dir: f64,
        span: f64,
    ) -> Result<f64> {
        let StepControl { rtol, atol, .. } = self.control;
        let d0 = x.error_norm(x, x, rtol, atol)?;
        let d1 = k1.error_norm(x, x, rtol, atol)?;
        let h0 = if d0 < 1e-5 || d1 < 1e-5 || !(d0 / d1).is_finite() { 1e-6 } else { 0.01 * d0 / d1 };
        let h0 = h0.min(span);
        let mut y = x.duplicate();
        y.axpby(1.0, dir * h0, k1)?;
        let mut f1 = field.eval(&y, t + dir * h0)?;
        f1.axpby(1.0, -1.0, k1)?;
        let d2 = f1.error_norm(x, x, rtol, atol)? / h0;
        let m = d1.max(d2);
        let h1 = if m <= 1e-15 || !m.is_finite() { (h0 * 1e-3).max(1e-6) } else { (0.01 / m).powf(0.2) };
        Ok((100.0 * h0).min(h1).min(span))
    }
}

/// `x + h sum_j a_j k_j` as a fresh state.
fn stage<S: State>(x: &S, h: f64, a: &[f64], k: &[S]) -> Result<S> {
    let mut y = x.duplicate();
    let mut j = 0;
    while j + 1 < a.len() {
        y.axpbypcz(1.0, h * a[j], &k[j], h * a[j + 1], &k[j + 1])?;
        j += 2;
    }
    if j < a.len() {
        y.axpby(1.0, h * a[j], &k[j])?;
    }
    Ok(y)
}

impl<S: State> Solver<S> for OdeDopri5 {
    fn name(&self) -> &'static str {
        "ode-dopri5"
    }

    /// Forgets the carried step size and starts the run's step budget.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `max_steps` when the grid has more
    /// steps than the budget (each grid step takes at least one internal step).
    fn init(&mut self, grid: &TimeGrid) -> Result<()> {
        self.control.check_grid(grid)?;
        self.h = None;
        self.used = 0;
        Ok(())
    }

    /// Integrates over `[t, t_next]` within what is left of the run's step budget.
    fn step(&mut self, x: S, t: f64, t_next: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        let budget = self.control.max_steps.saturating_sub(self.used);
        let solution = self.integrate_within(&ProbabilityFlow::new(ctx.sde, ctx.score), x, t, t_next, budget)?;
        self.used += solution.steps + solution.rejected;
        Ok(solution.x)
    }
}
