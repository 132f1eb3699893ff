//! UniPC: the unified predictor (UniP) and corrector (UniC) of Zhao et al. 2023, in the
//! data prediction; UniC is also the corrector of [`crate::DpmSolverPp`] with a corrector.

use crate::error::{Error, Result};
use crate::integrators::multistep::{delegate_to_multistep, phi_tail, Multistep};
use crate::solver::{Ctx, Solver};
use crate::state::State;
use crate::x0_guard::X0Guard;

/// The `B(h)` of UniPC's update (Zhao et al. 2023, §3.3): any `B(h) = O(h)` gives the
/// same order; the two of the paper and of diffusers' `solver_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bh {
    /// `B(h) = h` (`bh1`; diffusers recommends it for unconditional sampling in < 10 steps).
    Bh1,
    /// `B(h) = e^h - 1` (`bh2`, diffusers' default). With it UniP-2 is DPM-Solver++(2M).
    Bh2,
}

impl Bh {
    /// `B` at `hh = -h` (data prediction), as diffusers evaluates it.
    fn at(self, hh: f64) -> f64 {
        match self {
            Bh::Bh1 => hh,
            Bh::Bh2 => hh.exp_m1(),
        }
    }
}

/// The `rho` of UniP or UniC: the solution of `R rho = b` with `R_ij = rks_j^i` and
/// `b_i = (phi_{i+1}(hh) - 1/(i+1)!) (i+1)! / B(h)`, `i, j < rks.len()` (Zhao et al.
/// 2023, Alg. 2-3; diffusers' `rhos_p`, `rhos_c`).
fn rhos(rks: &[f64], hh: f64, bh: f64) -> Vec<f64> {
    let n = rks.len();
    let mut fact = 1.0;
    let b: Vec<f64> = (0..n)
        .map(|i| {
            fact *= (i + 1) as f64;
            phi_tail(i as u32 + 1, hh) * fact / bh
        })
        .collect();
    let r: Vec<Vec<f64>> = (0..n).map(|i| rks.iter().map(|&rk| rk.powi(i as i32)).collect()).collect();
    solve(r, b)
}

/// Gaussian elimination with partial pivoting (n <= 3 here: a Vandermonde system in
/// distinct `rks`, which the grid's distinct log-SNR values make nonsingular).
fn solve(mut a: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for col in 0..n {
        let piv = (col..n).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs())).unwrap_or(col);
        a.swap(col, piv);
        b.swap(col, piv);
        let (upper, lower) = a.split_at_mut(col + 1);
        let pivot = &upper[col];
        for (i, target) in lower.iter_mut().enumerate() {
            let f = target[col] / pivot[col];
            for (t, p) in target[col..].iter_mut().zip(&pivot[col..]) {
                *t -= f * p;
            }
            b[col + 1 + i] -= f * b[col];
        }
    }
    let mut x = vec![0.0; n];
    for row in (0..n).rev() {
        let s: f64 = (row + 1..n).map(|k| a[row][k] * x[k]).sum();
        x[row] = (b[row] - s) / a[row][row];
    }
    x
}

/// The pieces of a UniPC step from the log-SNR `lambda_0` of its start to `lambda_end`:
/// `hh = -h`, `h phi_1 = e^{-h} - 1`, `B(h)`, and `r_k = (lambda_k - lambda_0) / h` of
/// the older points `lambdas[k]`, `k >= 1`.
fn setup(lambdas: &[f64], lambda_end: f64, bh: Bh) -> (f64, f64, f64, Vec<f64>) {
    let h = lambda_end - lambdas[0];
    let hh = -h;
    let rks = lambdas[1..].iter().map(|&l| (l - lambdas[0]) / h).collect();
    (hh, hh.exp_m1(), bh.at(hh), rks)
}

/// The UniC corrector (Zhao et al. 2023, Alg. 2, data prediction, B(h) version; diffusers'
/// `multistep_uni_c_bh_update`). After a step from `s_0` to `t` by any multistep
/// predictor of order `p` that stored `x0_hat` at `s_0, ..., s_{p-1}`, and with the
/// evaluation `m_t = x0_hat(x_t, t)` the next step makes anyway, it replaces `x_t` by
///
/// `x_t^c = (sigma_t / sigma_{s_0}) x_{s_0} - a_t (e^{-h} - 1) m_0
///          - a_t B(h) (sum_{k=1}^{p-1} rho_k D_k + rho_p (m_t - m_0))`,
///
/// `h = lambda_t - lambda_{s_0}`, `r_k = (lambda_{s_k} - lambda_{s_0}) / h`,
/// `D_k = (m_k - m_0) / r_k`, `rho` solving `R rho = b` on `r_1, ..., r_{p-1}, 1`
/// (`rho = 1/2` for `p = 1`). This raises the order by one (UniC-p is of order `p + 1`)
/// at no extra score evaluation: the next step evaluates at the uncorrected `x_t` and
/// continues from `x_t^c`. The last step of a run has no next step and stays uncorrected.
///
/// The formula is here once; [`UniPc`] and [`crate::DpmSolverPp::with_corrector`] use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UniC {
    bh: Bh,
}

impl UniC {
    /// UniC with the given `B(h)`.
    pub fn new(bh: Bh) -> Self {
        Self { bh }
    }

    /// Its `B(h)`.
    pub fn bh(&self) -> Bh {
        self.bh
    }

    /// The coefficients `c` of `x_t^c = (sigma_t / sigma_{s_0}) x_{s_0} + a_t sum_k c_k m_k`
    /// on `(m_t, m_0, ..., m_{p-1})`, from their log-SNR `lambdas = [lambda_t, lambda_{s_0}, ...]`
    /// (`p = lambdas.len() - 1`).
    pub(crate) fn coefficients(&self, lambdas: &[f64]) -> Vec<f64> {
        let p = lambdas.len() - 1;
        let (hh, h_phi_1, b_h, mut rks) = setup(&lambdas[1..], lambdas[0], self.bh);
        let rho = if p == 1 {
            vec![0.5]
        } else {
            rks.push(1.0);
            rhos(&rks, hh, b_h)
        };
        let mut c = vec![0.0; p + 1];
        // m_t: -B rho_p; m_0: -h phi_1 + B (sum_k rho_k / r_k + rho_p); m_k: -B rho_k / r_k.
        c[0] = -b_h * rho[p - 1];
        c[1] = -h_phi_1 + b_h * rho[p - 1];
        for k in 1..p {
            c[1] += b_h * rho[k - 1] / rks[k - 1];
            c[1 + k] = -b_h * rho[k - 1] / rks[k - 1];
        }
        c
    }
}

/// The UniP predictor of order `p` (Zhao et al. 2023, Alg. 3, data prediction, B(h)
/// version; diffusers' `multistep_uni_p_bh_update`): from `s_0` to `t`, with `x0_hat`
/// `m_k` stored at `s_0, ..., s_{p-1}`,
///
/// `x_t = (sigma_t / sigma_{s_0}) x_{s_0} - a_t (e^{-h} - 1) m_0 - a_t B(h) sum_{k=1}^{p-1} rho_k D_k`,
///
/// `rho = 1/2` for `p = 2`, else `R rho = b` on `r_1, ..., r_{p-1}`; the coefficients of
/// `x_t = (sigma_t / sigma_{s_0}) x_{s_0} + a_t sum_k c_k m_k` on `(m_0, ..., m_{p-1})`.
fn unip_coefficients(bh: Bh, lambdas: &[f64], lambda_end: f64) -> Vec<f64> {
    let p = lambdas.len();
    let (hh, h_phi_1, b_h, rks) = setup(lambdas, lambda_end, bh);
    let rho = match p {
        1 => vec![],
        2 => vec![0.5],
        _ => rhos(&rks, hh, b_h),
    };
    let mut c = vec![0.0; p];
    c[0] = -h_phi_1;
    for k in 1..p {
        c[0] += b_h * rho[k - 1] / rks[k - 1];
        c[k] = -b_h * rho[k - 1] / rks[k - 1];
    }
    c
}

/// UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast
/// Sampling of Diffusion Models", Alg. 1-3): the UniP-p predictor with the [`UniC`]
/// corrector, in the data prediction `x0_hat = (x + sigma_t^2 s) / a_t` and the log-SNR
/// `lambda = ln(a / sigma)`, as diffusers' `UniPCMultistepScheduler` (`predict_x0`).
///
/// Each step from `t` evaluates `m_t = x0_hat(x_t, t)` once; if the previous step ended at
/// `t`, UniC (of the previous predictor's order) corrects `x_t` with it; then UniP of
/// order `min(p, points stored)` steps on from the corrected `x_t`, storing `m_t`
/// (the evaluation at the uncorrected point, as in the paper). The first steps warm up
/// at orders 1, 2, ...; the last step's result is not corrected (no evaluation follows).
/// With `lower_order_final` ([`UniPc::with_lower_order_final`], diffusers'
/// `lower_order_final`, applied at any step count) the predictor's order is also capped by
/// the steps left: the last step is UniP-1 (DDIM), the one before at most UniP-2.
///
/// Deterministic; one score evaluation per step; order `p + 1` for UniPC-p
/// (UniC raises UniP-p's order `p` by one). `B(h)`: [`Bh`]. UniP-2 with `Bh2` is
/// DPM-Solver++(2M), so UniPC-2 with `Bh2` is `dpm2m-unic`. With an [`X0Guard`], each
/// `x0_hat` is guarded when formed (diffusers' `thresholding`), corrector included.
pub struct UniPc<S> {
    bh: Bh,
    core: Multistep<S>,
}

impl<S> std::fmt::Debug for UniPc<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UniPc").field("bh", &self.bh).field("core", &self.core).finish()
    }
}

impl<S> UniPc<S> {
    /// UniPC-p with `B(h) = bh`, `p` in 1..=3 (order `p + 1`).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `order` for another `p`.
    pub fn new(order: usize, bh: Bh) -> Result<Self> {
        if !(1..=3).contains(&order) {
            return Err(Error::param(
                "order",
                order,
                "UniPC is implemented for orders 1 to 3 (UniPC-p is of order p + 1)",
            ));
        }
        Ok(Self { bh, core: Multistep::new(order, Some(UniC::new(bh))) })
    }

    /// UniPC-2 with `B(h) = e^h - 1` (diffusers' defaults).
    pub fn bh2() -> Self {
        Self { bh: Bh::Bh2, core: Multistep::new(2, Some(UniC::new(Bh::Bh2))) }
    }

    /// UniPC-2 with `B(h) = h`.
    pub fn bh1() -> Self {
        Self { bh: Bh::Bh1, core: Multistep::new(2, Some(UniC::new(Bh::Bh1))) }
    }

    /// The same solver with `guard` applied to each `x0_hat`.
    pub fn with_x0_guard(mut self, guard: X0Guard) -> Self {
        self.core.guard = guard;
        self
    }

    /// The same solver with the order capped by the steps left (diffusers' `lower_order_final`).
    pub fn with_lower_order_final(mut self, yes: bool) -> Self {
        self.core.lower_order_final = yes;
        self
    }

    /// `p` of UniPC-p.
    pub fn order(&self) -> usize {
        self.core.order
    }

    /// Its `B(h)`.
    pub fn bh(&self) -> Bh {
        self.bh
    }
}

impl<S: State> Solver<S> for UniPc<S> {
    fn name(&self) -> &'static str {
        match self.bh {
            Bh::Bh2 => "unipc",
            Bh::Bh1 => "unipc-bh1",
        }
    }

    fn step(&mut self, x: S, t: f64, t_next: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        let bh = self.bh;
        self.core.step(x, t, t_next, ctx, |_, lambdas, lambda_end| unip_coefficients(bh, lambdas, lambda_end))
    }

    delegate_to_multistep!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With `B(h) = e^h - 1`, UniP-2 is DPM-Solver++(2M) (`rho = 1/2`), and UniC-1's
    /// `rho = 1/2` is the limit of the solved one as `h -> 0`.
    #[test]
    fn unip2_bh2_is_dpm_solver_2m() {
        let (l1, l0, lt) = (-1.3, -0.4, 0.5);
        let c = unip_coefficients(Bh::Bh2, &[l0, l1], lt);
        let (h, r) = (lt - l0, (l0 - l1) / (lt - l0));
        let c0 = -(-h).exp_m1();
        let want = [c0 * (1.0 + 0.5 / r), -c0 * 0.5 / r];
        for (a, b) in c.iter().zip(want) {
            assert!((a - b).abs() < 1e-15, "{c:?} vs {want:?}");
        }
        for bh in [Bh::Bh1, Bh::Bh2] {
            let hh = -1e-4;
            let solved = rhos(&[1.0], hh, bh.at(hh))[0];
            assert!((solved - 0.5).abs() < 1e-4, "{bh:?}: {solved}");
        }
    }

    /// `solve` solves a small system.
    #[test]
    fn solve_small_systems() {
        let a = vec![vec![0.0, 2.0, 1.0], vec![1.0, 1.0, 1.0], vec![4.0, -1.0, 2.0]];
        let x = solve(a.clone(), vec![5.0, 6.0, 8.0]);
        for (row, want) in a.iter().zip([5.0, 6.0, 8.0]) {
            let got: f64 = row.iter().zip(&x).map(|(p, q)| p * q).sum();
            assert!((got - want).abs() < 1e-13);
        }
    }
}
