//! The probability-flow ODE solvers, DDIM, DPM-Solver++ and EDM's Heun sampler
//! on Gaussian data with the exact score:
//!
//! * the exact law of each solver ([`scheme_law_1d`], read off the solver by
//!   probing its affine map) equals the law of the hand-derived linear
//!   recursion of its published rule (written here from the papers, not from
//!   the solver code) to rounding;
//! * Monte Carlo runs of the solvers match that law within 5 standard errors;
//! * for every row of the registry ([`SOLVERS`]) whose order is measured, the law
//!   approaches the exact `p_eps` (or, forward in time, `p_1`) with the declared order
//!   within ±0.15, on the row's default grid, and the slope equals the recorded
//!   `measured` value that the README shows;
//! * each solver makes exactly the score evaluations per step its row declares;
//! * DDIM with eta = 1 is ancestral sampling; DDIM with eta = 0 is DPM-Solver++ 1;
//! * `Run::score_evals` is the number of score calls, adaptive Dormand–Prince included;
//! * f32 runs of every sampler down to `eps` stay finite on every grid and SDE.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use ndarray::Array2;
use proptest::prelude::*;
use scoresde_solvers::law::{scheme_law_1d, Gauss1d};
use scoresde_solvers::prelude::*;
use scoresde_solvers::{
    sde_by_name, solver_info, OrderCheck, ScoreEvals, SolverInfo, SolverKind, GRIDS, SAMPLERS, SOLVERS,
};

/// An affine function `c x_T + d` of the start point (deterministic methods).
#[derive(Debug, Clone, Copy)]
struct Aff {
    c: f64,
    d: f64,
}

impl Aff {
    fn lin(p: f64, a: Aff, q: f64, b: Aff) -> Aff {
        Aff { c: p * a.c + q * b.c, d: p * a.d + q * b.d }
    }
}

/// The exact score at `t` as an affine map of x: `s = p x + q`, `p = -1/V`, `q = a mu / V`.
fn score_coefs(data: &Gauss1, t: f64) -> (f64, f64) {
    let (am, v) = data.marginal(&VP, t);
    (-1.0 / v, am / v)
}

fn score_of(data: &Gauss1, x: Aff, t: f64) -> Aff {
    let (p, q) = score_coefs(data, t);
    Aff { c: p * x.c, d: p * x.d + q }
}

/// Probability-flow velocity `f x - 1/2 g^2 s` (Song et al. 2021, eq. 13).
fn vel(data: &Gauss1, x: Aff, t: f64) -> Aff {
    Aff::lin(VP.f(t), x, -0.5 * VP.g2(t), score_of(data, x, t))
}

/// Tweedie `x0_hat = (x + sigma^2 s) / a`.
fn x0_of(data: &Gauss1, x: Aff, t: f64) -> Aff {
    let a = VP.a(t);
    Aff::lin(1.0 / a, x, VP.sigma2(t) / a, score_of(data, x, t))
}

fn lambda(t: f64) -> f64 {
    VP.a(t).ln() - 0.5 * VP.sigma2(t).ln()
}

/// The deterministic methods with a hand-derived recursion in [`hand_map`] (the oracle).
const DETERMINISTIC: [&str; 12] = [
    "ode-euler",
    "ode-heun",
    "ode-rk4",
    "ddim",
    "dpm1",
    "dpm2m",
    "edm-heun",
    "dpm3m",
    "unipc",
    "unipc-bh1",
    "dpm2m-unic",
    "sa-solver-ode",
];

impl multistep_oracle::Lin for Aff {
    fn lin(p: f64, a: Aff, q: f64, b: Aff) -> Aff {
        Aff::lin(p, a, q, b)
    }
}

/// The oracle list names deterministic rows of the registry, and every deterministic
/// fixed-step row of the registry has an oracle (a new one fails here until it gets one).
#[test]
fn hand_recursions_cover_the_deterministic_rows() {
    for name in DETERMINISTIC {
        let info = solver_info(name).unwrap();
        assert_eq!(info.kind, SolverKind::Deterministic, "{name}");
    }
    for info in SOLVERS.iter().filter(|s| s.kind == SolverKind::Deterministic) {
        if let ScoreEvals::Fixed(_) = info.evals {
            assert!(DETERMINISTIC.contains(&info.name), "{}: add its hand recursion to `hand_map`", info.name);
        }
    }
}

/// The hand-derived map `x_eps = c x_T + d` of a deterministic method over `times`.
fn hand_map(name: &str, data: &Gauss1, times: &[f64]) -> Aff {
    if name == "sa-solver-ode" {
        // SA-Solver with tau = 0 (Xue et al. 2023, the scalar recursion of tests/common),
        // affine in the start: read c and d off two starts.
        let cfg = SaCfg { tau: 0.0, interval: None, p: 3, q: 4, lof: false };
        let d = sa_solver_hand(data, cfg, times, 0.0, &[]);
        return Aff { c: sa_solver_hand(data, cfg, times, 1.0, &[]) - d, d };
    }
    let mut x = Aff { c: 1.0, d: 0.0 };
    // DPM-Solver++(3M), UniPC and DPM-Solver++ with UniC: diffusers' multistep loop,
    // written out in `common/multistep_oracle.rs`.
    if matches!(name, "dpm3m" | "unipc" | "unipc-bh1" | "dpm2m-unic") {
        let method = multistep_oracle::by_name(name);
        return multistep_oracle::run(method, false, times, x, &|x, t| x0_of(data, x, t));
    }
    let mut prev: Option<(Aff, f64)> = None; // DPM-Solver++(2M): previous x0_hat and h.
    for w in times.windows(2) {
        let (t, s) = (w[0], w[1]);
        let h = s - t;
        x = match name {
            // Euler: x + h v(x, t).
            "ode-euler" => Aff::lin(1.0, x, h, vel(data, x, t)),
            // Heun: k1 = v(x, t), k2 = v(x + h k1, s), x + h/2 (k1 + k2).
            "ode-heun" => {
                let k1 = vel(data, x, t);
                let k2 = vel(data, Aff::lin(1.0, x, h, k1), s);
                Aff::lin(1.0, x, 0.5 * h, Aff::lin(1.0, k1, 1.0, k2))
            }
            // Classical RK4.
            "ode-rk4" => {
                let m = t + 0.5 * h;
                let k1 = vel(data, x, t);
                let k2 = vel(data, Aff::lin(1.0, x, 0.5 * h, k1), m);
                let k3 = vel(data, Aff::lin(1.0, x, 0.5 * h, k2), m);
                let k4 = vel(data, Aff::lin(1.0, x, h, k3), s);
                let sum = Aff::lin(1.0, Aff::lin(1.0, k1, 2.0, k2), 1.0, Aff::lin(2.0, k3, 1.0, k4));
                Aff::lin(1.0, x, h / 6.0, sum)
            }
            // DDIM (Song et al. 2021a, eq. 12, eta = 0): x_s = a_s x0_hat + sigma_s eps_hat,
            // eps_hat = (x - a_t x0_hat) / sigma_t.
            "ddim" => {
                let x0 = x0_of(data, x, t);
                let eps = Aff::lin(1.0 / VP.sigma2(t).sqrt(), x, -VP.a(t) / VP.sigma2(t).sqrt(), x0);
                Aff::lin(VP.a(s), x0, VP.sigma2(s).sqrt(), eps)
            }
            // DPM-Solver++ (Lu et al. 2022, Alg. 2), lambda steps hl = lambda_s - lambda_t.
            "dpm1" | "dpm2m" => {
                let hl = lambda(s) - lambda(t);
                let x0 = x0_of(data, x, t);
                let dd = match prev {
                    Some((x0p, hp)) if name == "dpm2m" => {
                        let r = hp / hl;
                        Aff::lin(1.0 + 1.0 / (2.0 * r), x0, -1.0 / (2.0 * r), x0p)
                    }
                    _ => x0,
                };
                prev = Some((x0, hl));
                let ratio = (VP.sigma2(s) / VP.sigma2(t)).sqrt();
                Aff::lin(ratio, x, -VP.a(s) * ((-hl).exp() - 1.0), dd)
            }
            // Karras et al. 2022, Alg. 1 on x~ = x / a, sigma~ = sigma / a:
            // d = (x~ - D(x~)) / sigma~ with D = x0_hat.
            "edm-heun" => {
                let st = |u: f64| VP.sigma2(u).sqrt() / VP.a(u);
                let xt = Aff::lin(1.0 / VP.a(t), x, 0.0, x);
                let d1 = Aff::lin(1.0 / st(t), xt, -1.0 / st(t), x0_of(data, x, t));
                let xe = Aff::lin(1.0, xt, st(s) - st(t), d1);
                let xe_u = Aff::lin(VP.a(s), xe, 0.0, xe);
                let d2 = Aff::lin(1.0 / st(s), xe, -1.0 / st(s), x0_of(data, xe_u, s));
                let xn = Aff::lin(1.0, xt, 0.5 * (st(s) - st(t)), Aff::lin(1.0, d1, 1.0, d2));
                Aff::lin(VP.a(s), xn, 0.0, xn)
            }
            other => panic!("no hand recursion for {other}"),
        };
    }
    x
}

/// DDIM(eta) as the affine law map `x' = c x + d + e z` of one step (DESIGN §3):
/// `sigma_eta^2 = eta^2 (sigma_t^2 - a_ts^2 sigma_s^2) sigma_s^2 / sigma_t^2`.
fn ddim_eta_affine(data: &Gauss1, eta: f64, t: f64, s: f64) -> Affine {
    let (v_t, v_s) = (VP.sigma2(t), VP.sigma2(s));
    let var_eta = eta * eta * VP.one_minus_ratio2(t, s) * v_s / v_t;
    let keep = (v_s - var_eta).max(0.0).sqrt();
    // x_s = a_s x0 + keep eps_hat + sigma_eta z, x0 = (x + v_t s)/a_t, eps_hat = -sqrt(v_t) s.
    let (p, q) = score_coefs(data, t);
    let cx = VP.a(s) / VP.a(t);
    let cs = cx * v_t - keep * v_t.sqrt();
    Affine { c: cx + cs * p, d: cs * q, e2: var_eta }
}

fn exact_law(name: &str, data: &Gauss1, grid: &TimeGrid) -> Gauss1d {
    let sde = VpSde::default();
    let mut solver = by_name::<Array2<f64>>(name).unwrap();
    scheme_law_1d(solver.as_mut(), &sde, data.mu, data.s0, grid, false).unwrap().0
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-300)
}

proptest! {
    #![proptest_config(config(16, "proptest-regressions/ode.txt"))]

    /// Each deterministic solver's exact law equals that of its hand-derived recursion
    /// (relative 1e-9), on every grid kind, for random data and step counts.
    #[test]
    fn deterministic_laws_match_hand_recursions(data in gauss1(), kind in grid_kind(), steps in 1usize..=24) {
        let sde = VpSde::default();
        let grid = kind.build(&sde, 1.0, sde.t_eps(), steps);
        let (m_t, v_t) = data.marginal(&VP, 1.0);
        for name in DETERMINISTIC {
            let map = hand_map(name, &data, grid.times());
            let (mean, var) = (map.c * m_t + map.d, map.c * map.c * v_t);
            let got = exact_law(name, &data, &grid);
            prop_assert!(close(got.mean, mean, 1e-9) && close(got.var, var, 1e-9),
                "{name} on {kind:?}, {steps} steps: solver {got:?} vs hand ({mean}, {var})");
        }
    }

    /// DDIM with eta in {0.3, 1}: the solver's exact law equals the hand-derived recursion's.
    #[test]
    fn ddim_eta_laws_match_hand_recursion(data in gauss1(), kind in grid_kind(), steps in 1usize..=24) {
        let sde = VpSde::default();
        let grid = kind.build(&sde, 1.0, sde.t_eps(), steps);
        for eta in [0.3, 1.0] {
            let want = grid.times().windows(2)
                .fold(data.marginal(&VP, 1.0), |mv, w| ddim_eta_affine(&data, eta, w[0], w[1]).apply(mv));
            let mut solver = Ddim::with_eta(eta).unwrap();
            let got = scheme_law_1d(&mut solver, &sde, data.mu, data.s0, &grid, false).unwrap().0;
            prop_assert!(close(got.mean, want.0, 1e-9) && close(got.var, want.1, 1e-9),
                "eta {eta}: solver {got:?} vs hand {want:?}");
        }
    }
}

/// Monte Carlo: 20 000 chains of each stochastic solver (and two deterministic ones) from
/// exact `p_1` samples have mean and variance within 5 standard errors of the exact law.
#[test]
fn sampled_moments_match_exact_law() {
    let sde = VpSde::default();
    let data = Gauss1 { mu: 1.2, s0: 0.4 };
    let n = 20_000;
    for (i, name) in ["ddim-eta1", "ddim-eta:0.5", "edm-heun-churn", "ode-heun", "dpm2m"].into_iter().enumerate() {
        for steps in [3usize, 10] {
            let grid = TimeGrid::log_snr(&sde, 1.0, sde.t_eps(), steps).unwrap();
            let want = exact_law(name, &data, &grid);
            let x = sample_marginal_1d(&data, 1.0, n, 10 + i as u64);
            let mut noise = GaussianNoise::new(20 + i as u64);
            let run = Sampler::new(&sde, &data.score())
                .run(by_name::<Array2<f64>>(name).unwrap().as_mut(), x, &grid, &mut noise)
                .unwrap();
            assert_gaussian_moments(
                &format!("{name}, {steps} steps"),
                n,
                mean_var(col0(&run.x)),
                (want.mean, want.var),
            );
        }
    }
}

/// Least-squares order of a registry row over `ns` steps on `grid`, error `|m - m*| + |v - v*|`
/// of its exact law against the exact marginal at the end of the run (`p_eps` in reverse
/// time from `p_1`; `p_1` in forward time from the data).
fn fitted_order(info: &SolverInfo, data: &Gauss1, grid: scoresde_solvers::DefaultGrid, ns: &[usize]) -> f64 {
    let sde = VpSde::default();
    let (t0, t1) = if info.is_sampler() { (1.0, sde.t_eps()) } else { (0.0, 1.0) };
    let exact = data.marginal(&VP, t1);
    let (mut hs, mut errs) = (vec![], vec![]);
    for &n in ns {
        let mut solver = info.build::<Array2<f64>>().unwrap();
        let grid = grid.build(&sde, t0, t1, n).unwrap();
        let law = scheme_law_1d(solver.as_mut(), &sde, data.mu, data.s0, &grid, false).unwrap().0;
        hs.push(1.0 / n as f64);
        errs.push(law_error((law.mean, law.var), exact));
    }
    loglog_slope(&hs, &errs)
}

/// The rows whose order the suite measures: declared order, step counts, recorded slope.
fn measured_rows() -> impl Iterator<Item = (&'static SolverInfo, f64, &'static [usize], f64)> {
    SOLVERS.iter().filter_map(|s| match (s.check, s.order.value()) {
        (OrderCheck::Measured { steps, measured }, Some(p)) => Some((s, p as f64, steps, measured)),
        (OrderCheck::Measured { .. }, None) => panic!("{}: a measured row must declare an order", s.name),
        _ => None,
    })
}

/// For N(1, 0.5^2) data on its default grid, each measured row's fitted order is within
/// ±0.15 of its declared order and equals (to 0.01) the `measured` value it records, which
/// the README shows. Rows that are not measured say why in the table.
#[test]
fn fitted_orders_match_declared_orders() {
    let data = Gauss1 { mu: 1.0, s0: 0.5 };
    let (mut seen, mut stale) = (0, vec![]);
    for (info, order, steps, measured) in measured_rows() {
        assert!(info.affine, "{}: a measured row must have an affine step", info.name);
        let slope = fitted_order(info, &data, info.grid, steps);
        eprintln!("measured order {} ({} grid, N = {steps:?}): {slope:.3}", info.name, info.grid.name());
        assert!((slope - order).abs() <= ORDER_TOL, "{}: order {slope}, declared {}", info.name, info.order);
        if (slope - measured).abs() > 0.01 {
            stale.push(format!("{}: measured {slope:.2}, recorded {measured:.2}", info.name));
        }
        seen += 1;
    }
    assert!(seen >= 10, "only {seen} rows measured");
    assert!(
        stale.is_empty(),
        "{}\nupdate `measured` in solvers/src/registry.rs, then regenerate the README with \
         `UPDATE_README=1 cargo test -p scoresde-solvers --test readme`",
        stale.join("\n")
    );
    for info in SOLVERS {
        if let OrderCheck::Elsewhere(why) = info.check {
            assert!(!why.is_empty(), "{}: say why its order is not measured", info.name);
            eprintln!("not measured here: {}: {why}", info.name);
        }
    }
}

proptest! {
    #![proptest_config(config(6, "proptest-regressions/ode.txt"))]

    /// For random Gaussian data the declared orders hold too. Orders above 2 reach the
    /// rounding floor at these step counts for some data, so they get a lower bound of 2.
    #[test]
    fn fitted_orders_hold_for_random_data(data in gauss1()) {
        for (info, order, steps, _) in measured_rows() {
            let slope = fitted_order(info, &data, info.grid, steps);
            if order > 2.0 {
                prop_assert!(slope >= 2.0 - ORDER_TOL, "{}: order {slope}", info.name);
            } else {
                prop_assert!((slope - order).abs() <= ORDER_TOL, "{}: order {slope} for {data:?}", info.name);
            }
        }
    }
}

/// With the same noise, one DDIM(eta = 1) step is the ancestral (posterior-variance) step,
/// and one DDIM(eta = 0) step is the DPM-Solver++ 1 step, to 1e-12 (any score).
#[test]
fn ddim_eta1_is_ancestral_and_ddim_is_dpm1() {
    struct Wavy;
    impl Score<Array2<f64>> for Wavy {
        fn score(&self, x: &Array2<f64>, t: f64) -> scoresde_solvers::Result<Array2<f64>> {
            Ok(x.mapv(|v| -(1.0 + t) * v + 0.3 * (2.0 * v).sin()))
        }
    }
    let x = Array2::from_shape_fn((5, 2), |(i, j)| i as f64 * 0.7 - 1.3 + j as f64 * 0.2);
    let z = Array2::from_shape_fn((5, 2), |(i, j)| ((i * 3 + j * 5) % 7) as f64 / 3.0 - 1.0);
    for sde in SDES_ALL.iter().map(|n| sde_by_name(n).unwrap()) {
        let grid = TimeGrid::log_snr(sde.as_ref(), sde.t_max(), sde.t_eps(), 7).unwrap();
        for w in grid.times().windows(2) {
            let step = |solver: &mut dyn Solver<Array2<f64>>| {
                let mut noise = FixedNoise::new(z.clone());
                let mut ctx = Ctx { sde: sde.as_ref(), score: &Wavy, noise: &mut noise };
                solver.step(x.clone(), w[0], w[1], &mut ctx).unwrap()
            };
            let pairs = [
                (Ddim::with_eta(1.0).unwrap(), by_name("ancestral").unwrap()),
                (Ddim::new(), by_name("dpm1").unwrap()),
            ];
            for (mut a, mut b) in pairs {
                let (ya, yb) = (step(&mut a), step(b.as_mut()));
                for (p, q) in ya.iter().zip(yb.iter()) {
                    assert!(
                        (p - q).abs() <= 1e-12 * (1.0 + q.abs()),
                        "{} vs {}: {p} vs {q}",
                        Solver::<Array2<f64>>::name(&a),
                        b.name()
                    );
                }
            }
        }
    }
}

const SDES_ALL: [&str; 5] = ["vp", "subvp", "ve", "vp-cosine", "flow"];

/// A score that counts its calls.
struct Counting<T> {
    inner: T,
    calls: AtomicUsize,
}

impl<T: Score<Array2<f64>>> Score<Array2<f64>> for Counting<T> {
    fn score(&self, x: &Array2<f64>, t: f64) -> scoresde_solvers::Result<Array2<f64>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.score(x, t)
    }
}

/// `Run::score_evals` equals the number of score calls for every sampler (Dormand–Prince
/// included, on one-step and many-step grids), with and without the final denoising step;
/// without it, the calls are the declared evaluations per step times the steps (at least
/// that for an adaptive solver).
#[test]
fn run_reports_the_score_evaluations_it_made() {
    let sde = VpSde::default();
    let score = Counting {
        inner: ExactScore::new(GaussianMixture::ring(8, 2.0, 0.1).unwrap(), sde),
        calls: AtomicUsize::new(0),
    };
    for steps in [1usize, 9] {
        let grid = TimeGrid::reverse(&sde, steps).unwrap();
        for name in SAMPLERS.iter().chain(&["ode-dopri5:1e-3", "ode-dopri5:1e-7:1e-9"]) {
            for denoise in [false, true] {
                score.calls.store(0, Ordering::Relaxed);
                let mut noise = GaussianNoise::new(1);
                let x = prior_sample(&sde, &Array2::<f64>::zeros((64, 2)), &mut noise);
                let run = Sampler::new(&sde, &score)
                    .denoise(denoise)
                    .run(by_name::<Array2<f64>>(name).unwrap().as_mut(), x, &grid, &mut noise)
                    .unwrap();
                let calls = score.calls.load(Ordering::Relaxed);
                assert_eq!(run.score_evals, calls, "{name}, {steps} steps");
                let extra = usize::from(denoise);
                match solver_info(name).unwrap().evals {
                    ScoreEvals::Fixed(n) => assert_eq!(calls, n * steps + extra, "{name}: declared {n} per step"),
                    ScoreEvals::Adaptive { min } => assert!(calls >= min * steps + extra, "{name}: {calls} calls"),
                }
            }
        }
    }
}

/// Dormand–Prince: the error of its exact law shrinks with the tolerance (error below
/// 100 x rtol at every tolerance) and the work grows; the order-5 controller needs few steps.
#[test]
fn dopri5_meets_its_tolerance() {
    let sde = VpSde::default();
    let data = Gauss1 { mu: 1.0, s0: 0.5 };
    let exact = Gauss1d::marginal(&sde, data.mu, data.s0, sde.t_eps());
    let grid = TimeGrid::uniform(1.0, sde.t_eps(), 1).unwrap();
    let mut last_nfe = 0;
    for tol in [1e-3, 1e-5, 1e-7, 1e-9] {
        let mut solver = OdeDopri5::new(tol, tol).unwrap();
        let (law, nfe) = scheme_law_1d(&mut solver, &sde, data.mu, data.s0, &grid, false).unwrap();
        let err = law.w2(&exact);
        eprintln!("dopri5 tol {tol:e}: {nfe} score evals, W2 error {err:.3e}");
        assert!(err <= 100.0 * tol, "tol {tol}: error {err}");
        assert!(nfe > last_nfe, "tol {tol}: {nfe} evals, previous {last_nfe}");
        last_nfe = nfe;
    }
    assert!(last_nfe < 2000, "{last_nfe} evaluations at tol 1e-9");
}

/// f32 states from the prior down to `eps` (1e-3, or 1e-5 for VE) on every SDE and grid, with
/// 4 and 50 steps and the final denoising step: every sampler's output is finite.
#[test]
fn f32_runs_to_eps_stay_finite() {
    let data = GaussianMixture::ring(8, 2.0, 0.02).unwrap();
    for sde_name in SDES_ALL {
        let sde = sde_by_name(sde_name).unwrap();
        let score = ExactScoreDyn { data: data.clone(), sde: sde.as_ref() };
        for grid_name in GRIDS {
            for steps in [4usize, 50] {
                let grid = TimeGrid::by_name(grid_name, sde.as_ref(), sde.t_max(), sde.t_eps(), steps).unwrap();
                for name in SAMPLERS {
                    let mut noise = GaussianNoise::new(5);
                    let x = prior_sample(sde.as_ref(), &Array2::<f32>::zeros((256, 2)), &mut noise);
                    let run = Sampler::new(sde.as_ref(), &score).denoise(true).run(
                        by_name::<Array2<f32>>(name).unwrap().as_mut(),
                        x,
                        &grid,
                        &mut noise,
                    );
                    let run = run.unwrap_or_else(|e| panic!("{name} on {sde_name}/{grid_name}/{steps}: {e}"));
                    assert!(run.x.iter().all(|v| v.is_finite()), "{name} on {sde_name}/{grid_name}/{steps}");
                }
            }
        }
    }
}

/// The exact mixture score under a `dyn Sde` (the crate's `ExactScore` takes a concrete SDE type).
struct ExactScoreDyn<'a> {
    data: GaussianMixture,
    sde: &'a dyn Sde,
}

impl Score<Array2<f32>> for ExactScoreDyn<'_> {
    fn score(&self, x: &Array2<f32>, t: f64) -> scoresde_solvers::Result<Array2<f32>> {
        self.sde.check_time(t)?;
        self.data.score_at(x, self.sde.alpha(t), self.sde.sigma(t))
    }
}

/// Invalid parameters of the new solvers and parameterised names are errors, never panics.
#[test]
fn bad_solver_parameters_are_errors() {
    assert!(Ddim::with_eta(-0.1).is_err());
    assert!(Ddim::with_eta(f64::NAN).is_err());
    assert!(DpmSolverPp::<Array2<f64>>::new(4).is_err());
    assert!(UniPc::<Array2<f64>>::new(0, Bh::Bh2).is_err());
    assert!(UniPc::<Array2<f64>>::new(4, Bh::Bh1).is_err());
    assert!(DpmSolverPp::<Array2<f64>>::new(0).is_err());
    assert!(EdmHeun::with_churn(-1.0, 0.0, 1.0, 1.0).is_err());
    assert!(EdmHeun::with_churn(1.0, 2.0, 1.0, 1.0).is_err());
    assert!(EdmHeun::with_churn(1.0, 0.0, 1.0, 0.0).is_err());
    assert!(EdmHeun::with_churn(f64::INFINITY, 0.0, 1.0, 1.0).is_err());
    assert!(OdeDopri5::new(0.0, 1e-5).is_err());
    assert!(OdeDopri5::new(1e-5, f64::NAN).is_err());
    for bad in [
        "ddim-eta:abc",
        "ddim-eta:-1",
        "ode-dopri5:",
        "ode-dopri5:0",
        "ode-dopri5:1e-3:x",
        "dpm4m",
        "unipc:0",
        "unipc:4",
        "unipc-bh1:2.5",
        "unipc:x",
        "ddim:lower-order-final",
        "dpm2m:lower-order-final=1",
    ] {
        assert!(by_name::<Array2<f64>>(bad).is_err(), "{bad}");
    }
    assert!(matches!(by_name::<Array2<f64>>("ddim-eta:0.5"), Ok(s) if s.name() == "ddim-eta"));
    assert!(TimeGrid::by_name("cosine", &VpSde::default(), 1.0, 1e-3, 4).is_err());
    for g in GRIDS {
        assert_eq!(TimeGrid::by_name(g, &VpSde::default(), 1.0, 1e-3, 4).unwrap().steps(), 4);
    }
}
