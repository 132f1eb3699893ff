//! Adaptive Dormand–Prince 5(4) for the probability-flow ODE.

use crate::error::{Error, Result};
use crate::integrators::pf_ode::velocity;
use crate::solver::{Ctx, Solver};
use crate::state::State;

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

/// Internal steps allowed per grid step before giving up.
const MAX_INTERNAL_STEPS: usize = 100_000;

/// The adaptive Dormand–Prince 5(4) method (Dormand & Prince 1980; Hairer,
/// Nørsett & Wanner 1993, §II.5, "DOPRI5") for the probability-flow ODE
/// `dx/dt = v(x, t) = f(t) x - 1/2 g(t)^2 s(x, t)` (Song et al. 2021, eq. 13,
/// who sample it with RK45 at rtol = atol = 1e-5).
///
/// Each grid step from `t` to `t_next` is integrated adaptively: seven-stage
/// steps `k_i = v(x + h sum_j a_ij k_j, t + c_i h)`, the fifth-order solution
/// `x + h sum_i b_i k_i` is kept (local extrapolation), the embedded fourth-order
/// one gives the error estimate `err = h sum_i e_i k_i`, whose scaled RMS norm
/// ([`State::error_norm`], with `rtol`, `atol`) must be `<= 1` to accept.
/// The next step is `h * min(5, max(0.2, 0.9 err^(-1/5)))`; the last stage is
/// the first of the next internal step (FSAL). The first step size comes from
/// Hairer et al.'s starting rule (§II.4), then carries over between grid steps.
/// Usually run over a one-step grid `[T, eps]` so the controller places every step.
///
/// Deterministic; order 5 (error per unit time ~ tolerance). Score evaluations
/// vary: [`Solver::last_step_score_evals`] reports each grid step's count, which
/// the sampler sums into `Run::score_evals`. A non-finite stage ends the grid
/// step with that non-finite state (the sampler reports where); a step size
/// below the resolution of `t` is [`Error::StepSizeTooSmall`].
#[derive(Debug, Clone, Copy)]
pub struct OdeDopri5 {
    rtol: f64,
    atol: f64,
    h: Option<f64>,
    evals: usize,
}

impl Default for OdeDopri5 {
    /// `rtol = atol = 1e-5` (Song et al. 2021's choice).
    fn default() -> Self {
        Self { rtol: 1e-5, atol: 1e-5, h: None, evals: 0 }
    }
}

impl OdeDopri5 {
    /// Dormand–Prince with relative and absolute tolerances.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless both are finite and > 0.
    pub fn new(rtol: f64, atol: f64) -> Result<Self> {
        crate::error::positive("rtol", rtol)?;
        crate::error::positive("atol", atol)?;
        Ok(Self { rtol, atol, h: None, evals: 0 })
    }

    /// The relative tolerance.
    pub fn rtol(&self) -> f64 {
        self.rtol
    }

    /// The absolute tolerance.
    pub fn atol(&self) -> f64 {
        self.atol
    }

    /// Hairer et al.'s starting step (§II.4), costing one score evaluation.
    fn initial_step<S: State>(&mut self, x: &S, k1: &S, t: f64, span: f64, ctx: &Ctx<'_, S>) -> Result<f64> {
        let d0 = x.error_norm(x, x, self.rtol, self.atol)?;
        let d1 = k1.error_norm(x, x, self.rtol, self.atol)?;
        let h0 = if d0 < 1e-5 || d1 < 1e-5 || !(d0 / d1).is_finite() { 1e-6 } else { 0.01 * d0 / d1 };
        let h0 = h0.min(span);
        let mut y = x.duplicate();
        y.axpby(1.0, -h0, k1)?;
        let mut f1 = velocity(&y, t - h0, ctx)?;
        self.evals += 1;
        f1.axpby(1.0, -1.0, k1)?;
        let d2 = f1.error_norm(x, x, self.rtol, self.atol)? / h0;
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

    /// The fewest a grid step can take: one velocity at its start and six stages.
    fn score_evals_per_step(&self) -> usize {
        7
    }

    fn last_step_score_evals(&self) -> usize {
        self.evals
    }

    fn reset(&mut self) {
        self.h = None;
        self.evals = 0;
    }

    fn step(&mut self, mut x: S, t: f64, t_next: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        // Time runs backwards: integrate in tau = t - time, i.e. time = t - tau, dtime = -dtau.
        self.evals = 0;
        let span = t - t_next;
        let mut k1 = velocity(&x, t, ctx)?;
        self.evals += 1;
        let mut h = match self.h {
            Some(h) => h.min(span),
            None => self.initial_step(&x, &k1, t, span, ctx)?,
        };
        let mut now = t;
        let mut proposed = h;
        for _ in 0..MAX_INTERNAL_STEPS {
            let remaining = now - t_next;
            if remaining <= 0.0 {
                return Ok(x);
            }
            let last = h >= remaining * (1.0 - 1e-12);
            if last {
                h = remaining;
            }
            if h <= 1e-12 * now.abs().max(1e-3) {
                return Err(Error::StepSizeTooSmall { t: now, h });
            }
            let hs = -h; // the step in time
            let mut k: Vec<S> = Vec::with_capacity(6);
            k.push(k1);
            for (i, a) in [&A2[..], &A3[..], &A4[..], &A5[..], &A6[..]].into_iter().enumerate() {
                let y = stage(&x, hs, a, &k)?;
                k.push(velocity(&y, now + C[i] * hs, ctx)?);
                self.evals += 1;
            }
            let y5 = stage(&x, hs, &B, &k)?;
            let k7 = velocity(&y5, now + hs, ctx)?;
            self.evals += 1;
            let mut err = k[0].duplicate();
            err.scale(hs * E[0]);
            err.axpbypcz(1.0, hs * E[2], &k[2], hs * E[3], &k[3])?;
            err.axpbypcz(1.0, hs * E[4], &k[4], hs * E[5], &k[5])?;
            err.axpby(1.0, hs * E[6], &k7)?;
            let norm = err.error_norm(&x, &y5, self.rtol, self.atol)?;
            if !norm.is_finite() {
                // A non-finite stage: hand a non-finite state back for the driver to report.
                return Ok(if y5.all_finite() { err } else { y5 });
            }
            let factor = if norm == 0.0 { 5.0 } else { (0.9 * norm.powf(-0.2)).clamp(0.2, 5.0) };
            if norm <= 1.0 {
                x = y5;
                k1 = k7;
                let next = h * factor;
                if last {
                    // A step shortened to land on t_next says little about the next one.
                    self.h = Some(next.max(proposed));
                    return Ok(x);
                }
                now -= h;
                self.h = Some(next);
                h = next;
            } else {
                k1 = k.swap_remove(0);
                h *= factor.min(1.0);
            }
            proposed = h;
        }
        Err(Error::StepSizeTooSmall { t: now, h })
    }
}
