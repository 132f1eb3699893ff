//! SA-Solver: the stochastic Adams predictor–corrector in data-prediction form.

use std::collections::VecDeque;

use crate::error::{Error, Result};
use crate::grid::TimeGrid;
use crate::integrators::x0_hat;
use crate::solver::{Ctx, Solver};
use crate::state::State;
use crate::x0_guard::X0Guard;

/// SA-Solver (Xue, Yi, Liu, Li, Ma, Zhao, Sun & Li 2023, "SA-Solver: Stochastic Adams
/// Solver for Fast Sampling of Diffusion Models", arXiv 2309.05019, eqs. 15 and 18,
/// data-prediction form; the recursion of diffusers' `SASolverScheduler`).
///
/// With stochasticity `tau`, `c = 1 + tau^2`, the log-SNR `lambda = ln(a/sigma)` and the
/// data prediction `x0_i = x0_hat(x_i, t_i) = (x_i + sigma_i^2 s) / a_i`, the reverse SDE
/// `dx = [(1 + tau^2) f x - (1 + tau^2)/2 g^2 s] dt + tau g dw_bar` (the same marginals
/// as the diffusion for every `tau`: `tau = 1` is the reverse SDE, `tau = 0` the
/// probability-flow ODE) is integrated exactly in its linear and noise parts. From `t_i`
/// to `t_{i+1}`, `h = lambda_{i+1} - lambda_i > 0`:
///
/// * predictor (stochastic Adams–Bashforth of order `p`, Lagrange interpolation of
///   `x0` through `lambda_i, lambda_{i-1}, .., lambda_{i-p+1}`):
///   `x_{i+1} = e^{-tau^2 h} (sigma_{i+1}/sigma_i) x_i + a_{i+1} sum_j b_j x0_{i-j}
///   + sigma_{i+1} sqrt(1 - e^{-2 tau^2 h}) z_i`, with
///   `b_j = c int_{lambda_i}^{lambda_{i+1}} e^{-c (lambda_{i+1} - l)} L_j(l) dl`;
/// * corrector (stochastic Adams–Moulton of order `q`, nodes
///   `lambda_{i+1}, lambda_i, .., lambda_{i-q+2}`): the same formula from the same `x_i`
///   with the same `z_i`, its sum running over `x0_{i+1}, x0_i, ..`. It is applied at the
///   start of the next step, where `x0_{i+1}` is evaluated anyway (at the predicted
///   point): one score evaluation per step. The last predicted point is not corrected.
///
/// As in the reference implementation, a step of order 2 (predictor or corrector) adds
/// `+/- D / (l_0 - l_1)` to the two `b_j / c`, `D = h^2/2 - (c h - 1 + e^{-c h}) / c^2`
/// (an `O(h^3)` change, like UniPC's B(h)); orders ramp up over the first steps (warm-up)
/// and, with `lower_order_final`, down over the last ones (`p <= N - i`,
/// `q <= N - i + 1` for the corrector of step `i`). `tau` applies to a whole step, taken
/// at its start; with an interval it is `tau` while `lo <= sigma(t)/a(t) <= hi` and 0
/// elsewhere (diffusers' default `tau_func`, `tau = 1` on timesteps 200..800 of 1000, is
/// the interval `[0.72, 25]` of `sigma/a` on the VP-SDE). A step with `tau = 0` draws no
/// noise.
///
/// With `tau = 0` the scheme is the deterministic data-prediction exponential Adams
/// predictor–corrector (order-1 predictor: DDIM / DPM-Solver++ 1), an ODE method of
/// order `min(p + 1, q)` without `lower_order_final` (the predictor's interpolation nodes
/// are uncorrected points, `O(h^{p+1})` off, times `h`), at most 2 with it (the final
/// first-order step); the defaults `p = 3`, `q = 4` give 4 (measured 3.93 on Gaussian
/// data). With `tau > 0` the noise is integrated exactly and only `x0` is interpolated;
/// the weak order measured on Gaussian data is 2 for `p = 3`, `q = 3` or 4 (first order
/// for `p = q = 1`). Default orders here: 3 and 4 (the largest the method defines that
/// make the `tau = 0` scheme fourth order); diffusers defaults to 2 and 2 (for guided
/// sampling) and recommends 3 and 3 for unconditional sampling.
///
/// An [`X0Guard`] is applied to each `x0` as soon as it is formed; the history keeps the
/// guarded values.
pub struct SaSolver<S> {
    predictor_order: usize,
    corrector_order: usize,
    tau: f64,
    interval: Option<(f64, f64)>,
    lower_order_final: bool,
    guard: X0Guard,
    n_steps: usize,
    /// Steps taken since the history started.
    step: usize,
    /// `(x0, lambda)` of the latest steps, newest first.
    history: VecDeque<(S, f64)>,
    /// The previous predictor step, for the corrector.
    last: Option<Last<S>>,
}

/// What the corrector needs of the previous predictor step.
struct Last<S> {
    /// The (corrected) point the predictor started from.
    x: S,
    /// Its time and log-SNR.
    t: f64,
    lambda: f64,
    /// The stochasticity and noise of that step (`None` when `tau = 0`).
    tau: f64,
    z: Option<S>,
    /// Where it ended.
    t_end: f64,
}

impl<S> std::fmt::Debug for SaSolver<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SaSolver")
            .field("predictor_order", &self.predictor_order)
            .field("corrector_order", &self.corrector_order)
            .field("tau", &self.tau)
            .field("interval", &self.interval)
            .field("lower_order_final", &self.lower_order_final)
            .field("guard", &self.guard)
            .field("history", &self.history.len())
            .finish()
    }
}

impl<S> SaSolver<S> {
    /// SA-Solver with constant stochasticity `tau >= 0`, predictor order `1..=4` and
    /// corrector order `0..=4` (0: no corrector), without `lower_order_final`.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for `tau` negative or not finite, or an order out of range.
    pub fn new(tau: f64, predictor_order: usize, corrector_order: usize) -> Result<Self> {
        if !(tau >= 0.0 && tau.is_finite()) {
            return Err(Error::param("tau", tau, "must be finite and >= 0"));
        }
        if !(1..=4).contains(&predictor_order) {
            return Err(Error::param("predictor order", predictor_order, "SA-Solver's predictor has order 1 to 4"));
        }
        if corrector_order > 4 {
            return Err(Error::param(
                "corrector order",
                corrector_order,
                "SA-Solver's corrector has order 0 (none) to 4",
            ));
        }
        Ok(Self {
            predictor_order,
            corrector_order,
            tau,
            interval: None,
            lower_order_final: false,
            guard: X0Guard::Off,
            n_steps: 0,
            step: 0,
            history: VecDeque::new(),
            last: None,
        })
    }

    /// The registry's stochastic default: `tau = 1` (the reverse SDE), predictor 3, corrector 4.
    pub fn sde() -> Self {
        Self::new(1.0, 3, 4).expect("valid defaults")
    }

    /// The registry's deterministic default: `tau = 0`, predictor 3, corrector 4 (order 4).
    pub fn ode() -> Self {
        Self::new(0.0, 3, 4).expect("valid defaults")
    }

    /// The same solver with `tau` applied only while `lo <= sigma(t)/a(t) <= hi` (0 elsewhere).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] unless `0 <= lo <= hi` (`hi` may be infinite).
    pub fn with_interval(mut self, lo: f64, hi: f64) -> Result<Self> {
        if !(lo >= 0.0 && lo.is_finite() && hi >= lo) {
            return Err(Error::param("tau interval", format!("[{lo}, {hi}]"), "need 0 <= lo <= hi, lo finite"));
        }
        self.interval = Some((lo, hi));
        Ok(self)
    }

    /// The same solver with diffusers' `lower_order_final`: orders fall to 1 over the last steps.
    pub fn with_lower_order_final(mut self, yes: bool) -> Self {
        self.lower_order_final = yes;
        self
    }

    /// The same solver with `guard` applied to each `x0_hat`.
    pub fn with_x0_guard(mut self, guard: X0Guard) -> Self {
        self.guard = guard;
        self
    }

    /// The stochasticity of a step starting at scaled noise level `sig = sigma/a`.
    fn tau_at(&self, sig: f64) -> f64 {
        match self.interval {
            Some((lo, hi)) if !(sig >= lo && sig <= hi) => 0.0,
            _ => self.tau,
        }
    }

    fn deterministic(&self) -> bool {
        self.tau == 0.0
    }
}

/// `J_m(a) = int_0^1 v^m e^{-a v} dv` for `m = 0..=3`, `a >= 0`: a series for small `a`,
/// the stable upward recursion `J_m = (m J_{m-1} - e^{-a}) / a` otherwise.
fn exp_moments(a: f64) -> [f64; 4] {
    let mut j = [0.0; 4];
    if a < 2.0 {
        for (m, jm) in j.iter_mut().enumerate() {
            // sum_n (-a)^n / (n! (m + n + 1)); terms below 1e-18 after ~30 for a < 2.
            let (mut term, mut sum) = (1.0, 0.0);
            for n in 0..40 {
                sum += term / (m + n + 1) as f64;
                term *= -a / (n + 1) as f64;
            }
            *jm = sum;
        }
    } else {
        let e = (-a).exp();
        j[0] = -(-a).exp_m1() / a;
        for m in 1..4 {
            j[m] = (m as f64 * j[m - 1] - e) / a;
        }
    }
    j
}

/// The weights `b_j / c = int_{-h}^0 e^{c u} L_j(u) du` of the Lagrange basis through
/// `nodes` (log-SNRs relative to the step's end, so the step is `u in [-h, 0]`), with the
/// order-2 modification; `nodes.len()` is the order (1 to 4).
fn weights(nodes: &[f64], h: f64, c: f64) -> Vec<f64> {
    let k = nodes.len();
    // In w = u / h the integral is h int_{-1}^0 e^{a w} L_j(w) dw, a = c h, and
    // int_{-1}^0 w^m e^{a w} dw = (-1)^m J_m(a).
    let a = c * h;
    let jm = exp_moments(a);
    let mono: Vec<f64> = (0..k).map(|m| if m % 2 == 0 { jm[m] } else { -jm[m] }).collect();
    let w: Vec<f64> = nodes.iter().map(|u| u / h).collect();
    let mut out = Vec::with_capacity(k);
    for j in 0..k {
        // Monomial coefficients of prod_{i != j} (x - w_i) / (w_j - w_i).
        let mut poly = vec![1.0];
        let mut denom = 1.0;
        for (i, &wi) in w.iter().enumerate() {
            if i == j {
                continue;
            }
            let mut next = vec![0.0; poly.len() + 1];
            for (m, &p) in poly.iter().enumerate() {
                next[m + 1] += p;
                next[m] -= wi * p;
            }
            poly = next;
            denom *= w[j] - wi;
        }
        out.push(h * poly.iter().zip(&mono).map(|(p, q)| p * q).sum::<f64>() / denom);
    }
    if k == 2 {
        // D = h^2/2 - int_{-h}^0 e^{c u} (u + h) du = h^2 (1/2 - J_0 + J_1).
        let d = h * h * (0.5 - jm[0] + jm[1]);
        let r = d / (nodes[0] - nodes[1]);
        out[0] += r;
        out[1] -= r;
    }
    out
}

impl<S: State> SaSolver<S> {
    /// One Adams step from `x` at `t` (log-SNR `l_start`) to `t_end` with stochasticity
    /// `tau` and noise `z`, over the `x0`s (newest first) at log-SNRs `lambdas`.
    #[allow(clippy::too_many_arguments)]
    fn adams(
        x: &S,
        (t, l_start): (f64, f64),
        t_end: f64,
        tau: f64,
        z: Option<&S>,
        x0s: &[&S],
        lambdas: &[f64],
        ctx: &Ctx<'_, S>,
    ) -> Result<S> {
        let sde = ctx.sde;
        let l_end = sde.log_snr(t_end);
        let h = l_end - l_start;
        let c = 1.0 + tau * tau;
        let nodes: Vec<f64> = lambdas.iter().map(|l| l - l_end).collect();
        let b = weights(&nodes, h, c);
        let (a_end, sig_end) = (sde.alpha(t_end), sde.sigma(t_end));
        let mut out = x.duplicate();
        out.scale((-tau * tau * h).exp() * sig_end / sde.sigma(t));
        for (x0, bj) in x0s.iter().zip(&b) {
            out.axpby(1.0, a_end * c * bj, x0)?;
        }
        if let Some(z) = z {
            out.axpby(1.0, sig_end * (-(-2.0 * tau * tau * h).exp_m1()).sqrt(), z)?;
        }
        Ok(out)
    }
}

impl<S: State> Solver<S> for SaSolver<S> {
    fn name(&self) -> &'static str {
        if self.deterministic() {
            "sa-solver-ode"
        } else {
            "sa-solver"
        }
    }

    fn init(&mut self, grid: &TimeGrid) -> Result<()> {
        self.n_steps = grid.steps();
        self.step = 0;
        self.history.clear();
        self.last = None;
        Ok(())
    }

    fn x0_guard(&self) -> X0Guard {
        self.guard
    }

    fn set_x0_guard(&mut self, guard: X0Guard) -> Result<()> {
        self.guard = guard;
        Ok(())
    }

    fn step(&mut self, x: S, t: f64, t_next: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        let sde = ctx.sde;
        let lambda = sde.log_snr(t);
        let mut x0 = x0_hat(ctx.score.score(&x, t)?, &x, sde.alpha(t), sde.sigma(t).powi(2))?;
        self.guard.apply(&mut x0)?;
        // A step that does not continue the previous one starts a new history.
        let last = self.last.take().filter(|l| l.t_end == t);
        if last.is_none() {
            self.step = 0;
            self.history.clear();
        }
        let i = self.step;
        let remaining = self.n_steps.saturating_sub(i).max(1);
        // Corrector of x_i (from x_{i-1}), diffusers' order min(q, i + 1, N - i + 2).
        let x = match &last {
            Some(l) if self.corrector_order > 0 => {
                let mut q = self.corrector_order.min(i + 1);
                if self.lower_order_final {
                    q = q.min(remaining + 2);
                }
                let mut x0s = vec![&x0];
                let mut lambdas = vec![lambda];
                for (x0p, lp) in self.history.iter().take(q - 1) {
                    x0s.push(x0p);
                    lambdas.push(*lp);
                }
                Self::adams(&l.x, (l.t, l.lambda), t, l.tau, l.z.as_ref(), &x0s, &lambdas, ctx)?
            }
            _ => x,
        };
        self.history.push_front((x0, lambda));
        self.history.truncate(self.predictor_order.max(self.corrector_order.saturating_sub(1)).max(1));
        // Predictor, order min(p, i + 1, N - i).
        let mut p = self.predictor_order.min(i + 1);
        if self.lower_order_final {
            p = p.min(remaining);
        }
        let tau = self.tau_at(sde.sigma(t) / sde.alpha(t));
        let z = if tau > 0.0 { Some(ctx.noise.step_normal(t, t_next, &x)?) } else { None };
        let (x0s, lambdas): (Vec<&S>, Vec<f64>) = self.history.iter().take(p).map(|(x0, l)| (x0, *l)).unzip();
        let x_next = Self::adams(&x, (t, lambda), t_next, tau, z.as_ref(), &x0s, &lambdas, ctx)?;
        self.last = Some(Last { x, t, lambda, tau, z, t_end: t_next });
        self.step += 1;
        Ok(x_next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The moments against a midpoint-rule quadrature, across the series/recursion switch.
    #[test]
    fn exp_moments_match_quadrature() {
        for a in [0.0, 1e-3, 0.5, 1.999, 2.0, 3.0, 20.0] {
            let j = exp_moments(a);
            let n = 200_000;
            for (m, jm) in j.iter().enumerate() {
                let q: f64 = (0..n)
                    .map(|k| {
                        let v = (k as f64 + 0.5) / n as f64;
                        v.powi(m as i32) * (-a * v).exp()
                    })
                    .sum::<f64>()
                    / n as f64;
                assert!((jm - q).abs() < 1e-9, "J_{m}({a}) = {jm}, quadrature {q}");
            }
        }
    }

    /// Order 1, tau = 0: the weight is `1 - e^{-h}` (DDIM / DPM-Solver++ 1).
    #[test]
    fn first_order_weight_is_ddim() {
        for h in [1e-4, 0.3, 5.0] {
            let b = weights(&[-h], h, 1.0);
            assert!((b[0] + (-h).exp_m1()).abs() < 1e-15, "{h}: {}", b[0]);
        }
    }
}
