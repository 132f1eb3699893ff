//! The multistep data-prediction samplers (DPM-Solver++ 1/2M/3M, UniPC, DPM-Solver++ with
//! UniC), written again from diffusers' `DPMSolverMultistepScheduler` and
//! `UniPCMultistepScheduler` (`multistep_dpm_solver_*_update`, `multistep_uni_p_bh_update`,
//! `multistep_uni_c_bh_update`, `step`) and Zhao et al. 2023, Alg. 1-3, never from the
//! solver code: the model-output list, `last_sample`, `this_order`, the warm-up counter,
//! `lower_order_final`, the `R`/`b` system with diffusers' `h_phi_k` recursion, Cramer's
//! rule for `R rho = b`, and the D0/D1/D2 forms of 2M and 3M, on the VP-SDE of the DESIGN
//! table ([`VP`]).
//!
//! Generic over what a sample is: `f64` (a plain scalar recursion) or an affine map of the
//! start point (the exact law in `ode.rs`).

use super::VP;

/// What the recursion combines: `lin(p, a, q, b) = p a + q b`.
pub trait Lin: Copy {
    /// `p a + q b`.
    fn lin(p: f64, a: Self, q: f64, b: Self) -> Self;
}

impl Lin for f64 {
    fn lin(p: f64, a: f64, q: f64, b: f64) -> f64 {
        p * a + q * b
    }
}

/// A multistep method of the oracle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Multistep {
    /// DPM-Solver++ of order 1, 2 (2M) or 3 (3M) (diffusers, `algorithm_type = "dpmsolver++"`, midpoint 2M).
    Dpm(usize),
    /// DPM-Solver++ of order `.0` with UniC (`bh2` if `.1`, else `bh1`) after each step.
    DpmUniC(usize, bool),
    /// UniPC-p (`solver_order = p`), `bh2` if `.1`, else `bh1`.
    UniPc(usize, bool),
}

fn lambda(t: f64) -> f64 {
    VP.a(t).ln() - 0.5 * VP.sigma2(t).ln()
}

fn sigma(t: f64) -> f64 {
    VP.sigma2(t).sqrt()
}

/// `sum_k w_k v_k`.
fn sum<T: Lin>(terms: &[(f64, T)]) -> T {
    let mut acc = T::lin(terms[0].0, terms[0].1, 0.0, terms[0].1);
    for &(w, v) in &terms[1..] {
        acc = T::lin(1.0, acc, w, v);
    }
    acc
}

/// `det` of a 1x1 to 3x3 matrix.
fn det(a: &[Vec<f64>]) -> f64 {
    match a.len() {
        1 => a[0][0],
        2 => a[0][0] * a[1][1] - a[0][1] * a[1][0],
        3 => {
            a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
                + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
        }
        n => panic!("{n}x{n}"),
    }
}

/// Cramer's rule.
fn solve(a: &[Vec<f64>], b: &[f64]) -> Vec<f64> {
    let d = det(a);
    (0..b.len())
        .map(|j| {
            let aj: Vec<Vec<f64>> = a
                .iter()
                .zip(b)
                .map(|(row, &bi)| row.iter().enumerate().map(|(k, &v)| if k == j { bi } else { v }).collect())
                .collect();
            det(&aj) / d
        })
        .collect()
}

/// diffusers' `R` (rows `rks^(i-1)`) and `b` (`h_phi_k * factorial_i / B_h`) for `order`.
fn r_and_b(rks: &[f64], hh: f64, b_h: f64, order: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
    let h_phi_1 = hh.exp_m1();
    let mut h_phi_k = h_phi_1 / hh - 1.0;
    let mut factorial_i = 1.0;
    let (mut r, mut b) = (vec![], vec![]);
    for i in 1..=order {
        r.push(rks.iter().map(|rk| rk.powi(i as i32 - 1)).collect::<Vec<f64>>());
        b.push(h_phi_k * factorial_i / b_h);
        factorial_i *= (i + 1) as f64;
        h_phi_k = h_phi_k / hh - 1.0 / factorial_i;
    }
    (r, b)
}

/// `multistep_uni_p_bh_update`: from `x` at `ts[last]` to `t`, model outputs `ms` (oldest first).
fn uni_p<T: Lin>(ms: &[T], ts: &[f64], x: T, t: f64, order: usize, bh2: bool) -> T {
    let (s0, m0) = (ts[ts.len() - 1], ms[ms.len() - 1]);
    let (alpha_t, sigma_t, sigma_s0) = (VP.a(t), sigma(t), sigma(s0));
    let h = lambda(t) - lambda(s0);
    let (mut rks, mut d1s) = (vec![], vec![]);
    for i in 1..order {
        let (si, mi) = (ts[ts.len() - 1 - i], ms[ms.len() - 1 - i]);
        let rk = (lambda(si) - lambda(s0)) / h;
        rks.push(rk);
        d1s.push(T::lin(1.0 / rk, mi, -1.0 / rk, m0));
    }
    rks.push(1.0);
    let hh = -h;
    let h_phi_1 = hh.exp_m1();
    let b_h = if bh2 { hh.exp_m1() } else { hh };
    let (r, b) = r_and_b(&rks, hh, b_h, order);
    let x_t_ = T::lin(sigma_t / sigma_s0, x, -alpha_t * h_phi_1, m0);
    if d1s.is_empty() {
        return x_t_;
    }
    let rhos_p = if order == 2 {
        vec![0.5]
    } else {
        let r: Vec<Vec<f64>> = r[..order - 1].iter().map(|row| row[..order - 1].to_vec()).collect();
        solve(&r, &b[..order - 1])
    };
    let pred_res = sum(&rhos_p.iter().copied().zip(d1s).collect::<Vec<_>>());
    T::lin(1.0, x_t_, -alpha_t * b_h, pred_res)
}

/// `multistep_uni_c_bh_update`: corrects `this_sample` at `t` from `last_sample` at the
/// newest time of `ts`, with the model output `model_t` at `this_sample`.
fn uni_c<T: Lin>(ms: &[T], ts: &[f64], last_sample: T, model_t: T, t: f64, order: usize, bh2: bool) -> T {
    let (s0, m0) = (ts[ts.len() - 1], ms[ms.len() - 1]);
    let (alpha_t, sigma_t, sigma_s0) = (VP.a(t), sigma(t), sigma(s0));
    let h = lambda(t) - lambda(s0);
    let (mut rks, mut d1s) = (vec![], vec![]);
    for i in 1..order {
        let (si, mi) = (ts[ts.len() - 1 - i], ms[ms.len() - 1 - i]);
        let rk = (lambda(si) - lambda(s0)) / h;
        rks.push(rk);
        d1s.push(T::lin(1.0 / rk, mi, -1.0 / rk, m0));
    }
    rks.push(1.0);
    let hh = -h;
    let h_phi_1 = hh.exp_m1();
    let b_h = if bh2 { hh.exp_m1() } else { hh };
    let (r, b) = r_and_b(&rks, hh, b_h, order);
    let rhos_c = if order == 1 { vec![0.5] } else { solve(&r, &b) };
    let x_t_ = T::lin(sigma_t / sigma_s0, last_sample, -alpha_t * h_phi_1, m0);
    let d1_t = T::lin(1.0, model_t, -1.0, m0);
    let mut terms: Vec<(f64, T)> = rhos_c[..order - 1].iter().copied().zip(d1s).collect();
    terms.push((rhos_c[order - 1], d1_t));
    T::lin(1.0, x_t_, -alpha_t * b_h, sum(&terms))
}

/// diffusers' DPM-Solver++ first-order, 2M (midpoint) and 3M updates.
fn dpm<T: Lin>(ms: &[T], ts: &[f64], x: T, t: f64, order: usize) -> T {
    let n = ms.len();
    let s0 = ts[n - 1];
    let (alpha_t, sigma_t, sigma_s0) = (VP.a(t), sigma(t), sigma(s0));
    let h = lambda(t) - lambda(s0);
    let m0 = ms[n - 1];
    let e = (-h).exp() - 1.0;
    match order {
        1 => T::lin(sigma_t / sigma_s0, x, -alpha_t * e, m0),
        2 => {
            let (s1, m1) = (ts[n - 2], ms[n - 2]);
            let r0 = (lambda(s0) - lambda(s1)) / h;
            let d1 = T::lin(1.0 / r0, m0, -1.0 / r0, m1);
            sum(&[(sigma_t / sigma_s0, x), (-alpha_t * e, m0), (-0.5 * alpha_t * e, d1)])
        }
        3 => {
            let (s1, s2, m1, m2) = (ts[n - 2], ts[n - 3], ms[n - 2], ms[n - 3]);
            let (h_0, h_1) = (lambda(s0) - lambda(s1), lambda(s1) - lambda(s2));
            let (r0, r1) = (h_0 / h, h_1 / h);
            let d1_0 = T::lin(1.0 / r0, m0, -1.0 / r0, m1);
            let d1_1 = T::lin(1.0 / r1, m1, -1.0 / r1, m2);
            let diff = T::lin(1.0, d1_0, -1.0, d1_1);
            let d1 = T::lin(1.0, d1_0, r0 / (r0 + r1), diff);
            let d2 = T::lin(1.0 / (r0 + r1), diff, 0.0, diff);
            sum(&[
                (sigma_t / sigma_s0, x),
                (-alpha_t * e, m0),
                (alpha_t * (e / h + 1.0), d1),
                (-alpha_t * ((e + h) / (h * h) - 0.5), d2),
            ])
        }
        o => panic!("order {o}"),
    }
}

/// The whole run over `times` (decreasing) from `x`: diffusers' `step` loop with the model
/// output `x0_of(sample, t)`. `lower_order_final` applies at any step count.
pub fn run<T: Lin>(method: Multistep, lower_order_final: bool, times: &[f64], x: T, x0_of: &dyn Fn(T, f64) -> T) -> T {
    let (solver_order, corrector) = match method {
        Multistep::Dpm(p) => (p, None),
        Multistep::DpmUniC(p, bh2) | Multistep::UniPc(p, bh2) => (p, Some(bh2)),
    };
    let n = times.len() - 1;
    let (mut ms, mut ts): (Vec<T>, Vec<f64>) = (vec![], vec![]);
    let mut last_sample: Option<T> = None;
    let mut this_order = 0;
    let mut lower_order_nums = 0;
    let mut sample = x;
    for step_index in 0..n {
        let t = times[step_index];
        let model_output = x0_of(sample, t);
        if let (Some(bh2), Some(last)) = (corrector, last_sample) {
            sample = uni_c(&ms, &ts, last, model_output, t, this_order, bh2);
        }
        ms.push(model_output);
        ts.push(t);
        let order = if lower_order_final { solver_order.min(n - step_index) } else { solver_order };
        this_order = order.min(lower_order_nums + 1);
        last_sample = Some(sample);
        let t_next = times[step_index + 1];
        sample = match method {
            Multistep::Dpm(_) | Multistep::DpmUniC(..) => dpm(&ms, &ts, sample, t_next, this_order),
            Multistep::UniPc(_, bh2) => uni_p(&ms, &ts, sample, t_next, this_order, bh2),
        };
        if lower_order_nums < solver_order {
            lower_order_nums += 1;
        }
    }
    sample
}

/// The method of a registry name (the rows and the `unipc:P` forms; `lower-order-final`
/// is passed to [`run`] apart).
pub fn by_name(name: &str) -> Multistep {
    match name {
        "dpm1" => Multistep::Dpm(1),
        "dpm2m" => Multistep::Dpm(2),
        "dpm3m" => Multistep::Dpm(3),
        "dpm2m-unic" => Multistep::DpmUniC(2, true),
        "unipc" => Multistep::UniPc(2, true),
        "unipc-bh1" => Multistep::UniPc(2, false),
        other => match other.split_once(':') {
            Some(("unipc", p)) => Multistep::UniPc(p.parse().unwrap(), true),
            Some(("unipc-bh1", p)) => Multistep::UniPc(p.parse().unwrap(), false),
            _ => panic!("no multistep oracle for {other}"),
        },
    }
}
