//! The machinery the multistep data-prediction solvers share ([`crate::DpmSolverPp`],
//! [`crate::UniPc`]): the `x0_hat` of past steps with their log-SNR, the warm-up at lower
//! order, the optional lower-order final steps, the UniC corrector hook, and the phi
//! functions of the exponential integrators. The methods themselves only give the
//! coefficients of one step.
//!
//! Every step of these methods, predictor or corrector, has the form
//! `x_end = (sigma_end / sigma_start) x_start + a_end sum_k c_k x0_hat_k`: the
//! exponential integrator of the probability-flow ODE in the data prediction, with the
//! `x0_hat` of the stored points combined by coefficients that depend only on their
//! log-SNR `lambda` (Lu et al. 2022; Zhao et al. 2023).

use std::collections::VecDeque;

use crate::error::Result;
use crate::grid::TimeGrid;
use crate::integrators::unipc::UniC;
use crate::integrators::x0_hat;
use crate::solver::Ctx;
use crate::state::State;
use crate::x0_guard::X0Guard;

/// `phi_k(z) - 1/k!`, where `phi_k(z) = sum_{j >= 0} z^j / (j + k)!` (`phi_0 = e^z`,
/// `phi_{k+1}(z) = (phi_k(z) - 1/k!) / z`), for `k >= 1`.
///
/// UniPC's `b` vector and DPM-Solver++(3M)'s coefficients are these functions at
/// `z = -h`. The recursion above loses `|z|^-k` of relative accuracy to cancellation
/// for small `|z|`; there the power series is summed instead (it converges fast for
/// `|z| < 1`), so the coefficients stay accurate at any step count.
pub(crate) fn phi_tail(k: u32, z: f64) -> f64 {
    if z.abs() < 1.0 {
        // sum_{j >= 1} z^j / (j + k)!, terms added smallest first.
        let mut fact = (1..=k + 1).map(f64::from).product::<f64>(); // (k + 1)!
        let mut terms = Vec::with_capacity(24);
        let mut pow = z;
        for j in 1..=24u32 {
            terms.push(pow / fact);
            pow *= z;
            fact *= f64::from(j + k + 1);
        }
        terms.iter().rev().sum()
    } else {
        // g_1 = (e^z - 1)/z - 1, g_{k+1} = g_k / z - 1/(k+1)!.
        let mut g = z.exp_m1() / z - 1.0;
        let mut fact = 1.0;
        for i in 1..k {
            fact *= f64::from(i + 1);
            g = g / z - 1.0 / fact;
        }
        g
    }
}

/// The [`crate::Solver`] methods a multistep solver hands to its [`Multistep`] (a field
/// named `core`): `init` (forget the history, keep the grid), the x0 guard and
/// `lower_order_final`. Written inside the solver's `impl Solver<S> for ...` block, beside
/// its `name` and `step` (which gives the method's coefficients).
macro_rules! delegate_to_multistep {
    () => {
        fn init(&mut self, grid: &$crate::grid::TimeGrid) -> $crate::error::Result<()> {
            self.core.init(grid);
            Ok(())
        }

        fn x0_guard(&self) -> $crate::x0_guard::X0Guard {
            self.core.guard
        }

        fn set_x0_guard(&mut self, guard: $crate::x0_guard::X0Guard) -> $crate::error::Result<()> {
            self.core.guard = guard;
            Ok(())
        }

        fn lower_order_final(&self) -> bool {
            self.core.lower_order_final
        }

        fn set_lower_order_final(&mut self, yes: bool) -> $crate::error::Result<()> {
            self.core.lower_order_final = yes;
            Ok(())
        }
    };
}
pub(crate) use delegate_to_multistep;

/// One stored evaluation: the (guarded) `x0_hat` at a grid time and that time's log-SNR.
pub(crate) struct Node<S> {
    x0: S,
    lambda: f64,
}

/// The previous step: where it started (the state the corrector starts from again, kept
/// only when there is a corrector), its predictor order, and where it ended.
struct Last<S> {
    x: Option<S>,
    sigma: f64,
    order: usize,
    t_end: f64,
}

/// The shared state of a multistep data-prediction solver: predictor order, x0 guard,
/// lower-order final steps, an optional UniC corrector, and the history.
pub(crate) struct Multistep<S> {
    /// The predictor's order (the most past points it combines).
    pub(crate) order: usize,
    pub(crate) guard: X0Guard,
    /// diffusers' `lower_order_final`: the order is capped by the steps left.
    pub(crate) lower_order_final: bool,
    /// UniC, applied to each step's result when the next step has evaluated there.
    pub(crate) corrector: Option<UniC>,
    /// The grid of the run (from `init`), for the steps left.
    times: Vec<f64>,
    /// Where in `times` the last step started.
    cursor: usize,
    /// Stored evaluations, newest first.
    nodes: VecDeque<Node<S>>,
    last: Option<Last<S>>,
}

impl<S> std::fmt::Debug for Multistep<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Multistep")
            .field("order", &self.order)
            .field("guard", &self.guard)
            .field("lower_order_final", &self.lower_order_final)
            .field("corrector", &self.corrector)
            .field("history", &self.nodes.len())
            .finish()
    }
}

impl<S> Multistep<S> {
    pub(crate) fn new(order: usize, corrector: Option<UniC>) -> Self {
        Self {
            order,
            guard: X0Guard::Off,
            lower_order_final: false,
            corrector,
            times: Vec::new(),
            cursor: 0,
            nodes: VecDeque::new(),
            last: None,
        }
    }
}

impl<S: State> Multistep<S> {
    /// Forgets the history and keeps the grid's times.
    pub(crate) fn init(&mut self, grid: &TimeGrid) {
        self.times = grid.times().to_vec();
        self.cursor = 0;
        self.nodes.clear();
        self.last = None;
    }

    /// Grid steps left from `t` (1 on the last step); unbounded when `t` is not on the
    /// grid of the last `init` (a solver stepped by hand).
    fn steps_left(&mut self, t: f64) -> usize {
        let n = self.times.len();
        let at = if self.times.get(self.cursor) == Some(&t) {
            Some(self.cursor)
        } else {
            self.times.iter().position(|&u| u == t)
        };
        match at {
            Some(i) if i + 1 < n => {
                self.cursor = i + 1;
                n - 1 - i
            }
            _ => usize::MAX,
        }
    }

    /// One step from `t` to `t_next`: one score evaluation at `(x, t)`; then, if the
    /// previous step ended at `t`, the corrector replaces `x` by its corrected value
    /// (from the previous step's start, with the new evaluation); then the predictor of
    /// order `p` steps from `x`. `p` is the method's order, capped by the points stored
    /// (warm-up) and, with `lower_order_final`, by the steps left.
    ///
    /// `predictor(p, lambdas, lambda_next)` gets the log-SNR of the `p` newest points
    /// (newest first, `lambdas[0]` at `t`) and returns the `p` coefficients `c_k` of
    /// `x_next = (sigma_next / sigma_t) x + a_next sum_k c_k x0_hat_k`.
    pub(crate) fn step(
        &mut self,
        mut x: S,
        t: f64,
        t_next: f64,
        ctx: &mut Ctx<'_, S>,
        predictor: impl FnOnce(usize, &[f64], f64) -> Vec<f64>,
    ) -> Result<S> {
        let sde = ctx.sde;
        let (a_t, sig_t, lam_t) = (sde.alpha(t), sde.sigma(t), sde.log_snr(t));
        let mut x0 = x0_hat(ctx.score.score(&x, t)?, &x, a_t, sig_t * sig_t)?;
        self.guard.apply(&mut x0)?;
        // A step that does not continue the previous one starts afresh (first order).
        let last = match self.last.take() {
            Some(last) if last.t_end == t => Some(last),
            _ => {
                self.nodes.clear();
                None
            }
        };
        // Keep what the predictor (`order` points) and the next corrector (the points of
        // this predictor and the new one) need.
        let keep = self.order - 1 + usize::from(self.corrector.is_some());
        self.nodes.truncate(keep);
        self.nodes.push_front(Node { x0, lambda: lam_t });
        if let (Some(unic), Some(Last { x: Some(start), sigma, order, .. })) = (&self.corrector, last) {
            // The previous step's result, corrected with the evaluation just made there.
            let lambdas: Vec<f64> = self.nodes.iter().take(order + 1).map(|n| n.lambda).collect();
            let c = unic.coefficients(&lambdas);
            x = combine(start, sig_t / sigma, a_t, &c, &self.nodes)?;
        }
        let mut p = self.order.min(self.nodes.len());
        if self.lower_order_final {
            p = p.min(self.steps_left(t));
        }
        let lambdas: Vec<f64> = self.nodes.iter().take(p).map(|n| n.lambda).collect();
        let (a_s, sig_s) = (sde.alpha(t_next), sde.sigma(t_next));
        let c = predictor(p, &lambdas, sde.log_snr(t_next));
        debug_assert_eq!(c.len(), p);
        let start = self.corrector.is_some().then(|| x.duplicate());
        let x_next = combine(x, sig_s / sig_t, a_s, &c, &self.nodes)?;
        self.last = Some(Last { x: start, sigma: sig_t, order: p, t_end: t_next });
        Ok(x_next)
    }
}

/// `ratio x + a sum_k c_k nodes[k].x0`, in place in `x`.
fn combine<S: State>(mut x: S, ratio: f64, a: f64, c: &[f64], nodes: &VecDeque<Node<S>>) -> Result<S> {
    let mut scale = ratio;
    let mut k = 0;
    while k < c.len() {
        if k + 1 < c.len() {
            x.axpbypcz(scale, a * c[k], &nodes[k].x0, a * c[k + 1], &nodes[k + 1].x0)?;
            k += 2;
        } else {
            x.axpby(scale, a * c[k], &nodes[k].x0)?;
            k += 1;
        }
        scale = 1.0;
    }
    if c.is_empty() {
        x.scale(ratio);
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::phi_tail;

    /// The series and the recursion agree where both are accurate, and the recursion's
    /// closed forms hold: `phi_1(z) - 1 = (e^z - 1)/z - 1`, `phi_2(z) - 1/2 = (e^z - 1 - z)/z^2 - 1/2`.
    #[test]
    fn phi_tail_matches_closed_forms() {
        for z in [-3.0f64, -1.5, -1.0, -0.999, -0.7, -0.3, -0.05, 0.2, 0.9, 2.5] {
            let g1 = z.exp_m1() / z - 1.0;
            let g2 = (z.exp_m1() - z) / (z * z) - 0.5;
            let g3 = ((z.exp_m1() - z) / (z * z) - 0.5) / z - 1.0 / 6.0;
            let tol = if z.abs() < 0.1 { 1e-9 } else { 1e-13 };
            assert!((phi_tail(1, z) - g1).abs() <= tol * g1.abs(), "g1({z})");
            assert!((phi_tail(2, z) - g2).abs() <= tol * g2.abs() * 10.0, "g2({z}): {} vs {g2}", phi_tail(2, z));
            assert!((phi_tail(3, z) - g3).abs() <= 1e-8 * g3.abs().max(1e-3), "g3({z})");
        }
        // Small z: phi_k(z) - 1/k! = z/(k+1)! + z^2/(k+2)! + ...
        let z = -1e-6;
        let g1 = z / 2.0 + z * z / 6.0 + z * z * z / 24.0;
        let g3 = z / 24.0 + z * z / 120.0 + z * z * z / 720.0;
        assert!((phi_tail(1, z) - g1).abs() <= 1e-15 * g1.abs());
        assert!((phi_tail(3, z) - g3).abs() <= 1e-15 * g3.abs());
    }
}
