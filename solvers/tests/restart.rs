//! Restart sampling (Xu et al. 2023) over EDM's Heun solver, on 1-D Gaussian data with
//! the exact score:
//!
//! * a hand-written scalar recursion (Karras et al.'s Heun step on `x/a` in `sigma/a`, the
//!   exact forward transition `x <- a_ts x + sigma_ts z` to `t_max`, `N_r` Heun steps back
//!   on a Karras grid, `K` times, at the grid point nearest `sigma_min` in `ln sigma`)
//!   equals the solver to 1e-12 with the same noise;
//! * the run reports exactly `2 N + 2 K N_r` score evaluations (and `2 N` when the grid has
//!   no point below `t_max`), as many as the score was called;
//! * with `N_r` refined with the main grid (`N_r = N / 8`) the exact law converges with
//!   order 2 (±0.15); with the paper's fixed `N_r` it has a floor;
//! * Monte Carlo: sampled moments match the exact law within 5 standard errors.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use ndarray::Array2;
use scoresde_solvers::law::{scheme_law_1d, Gauss1d};
use scoresde_solvers::prelude::*;
use scoresde_solvers::Restart;

/// Noise that hands out a given sequence of scalars (as (1, 1) arrays).
struct SeqNoise {
    z: Vec<f64>,
    next: usize,
}

impl Noise<Array2<f64>> for SeqNoise {
    fn step_normal(&mut self, _t: f64, _t_next: f64, like: &Array2<f64>) -> scoresde_solvers::Result<Array2<f64>> {
        Ok(self.normal(like))
    }

    fn normal(&mut self, like: &Array2<f64>) -> Array2<f64> {
        assert_eq!(like.dim(), (1, 1));
        self.next += 1;
        Array2::from_elem((1, 1), self.z[self.next - 1])
    }
}

/// `sigma~ = sigma/a` of the VP-SDE.
fn sig(t: f64) -> f64 {
    VP.sigma2(t).sqrt() / VP.a(t)
}

/// Karras et al. 2022, Alg. 1, one step from `t` to `s` on `x~ = x/a`, `D = x0_hat`.
fn heun(data: &Gauss1, x: f64, t: f64, s: f64) -> f64 {
    let x0 = |x: f64, t: f64| {
        let (am, v) = data.marginal(&VP, t);
        (x - VP.sigma2(t) * (x - am) / v) / VP.a(t)
    };
    let xt = x / VP.a(t);
    let d1 = (xt - x0(x, t)) / sig(t);
    let xe = xt + (sig(s) - sig(t)) * d1;
    let d2 = (xe - x0(VP.a(s) * xe, s)) / sig(s);
    VP.a(s) * (xt + 0.5 * (sig(s) - sig(t)) * (d1 + d2))
}

/// Restart written from the paper: returns the output and the number of draws.
fn hand(data: &Gauss1, times: &[f64], (s_min, s_max, k, nr): (f64, f64, usize, usize), x: f64, zs: &[f64]) -> f64 {
    let sde = VpSde::default();
    let t_max = sde.t_of_log_snr(-s_max.ln()).unwrap();
    let j = (1..times.len())
        .min_by(|&a, &b| (sig(times[a]).ln() - s_min.ln()).abs().total_cmp(&(sig(times[b]).ln() - s_min.ln()).abs()))
        .unwrap();
    let mut x = x;
    let mut zi = zs.iter();
    for i in 0..times.len() - 1 {
        x = heun(data, x, times[i], times[i + 1]);
        if i + 1 == j && times[j] < t_max {
            let tj = times[j];
            // Exact VP transition from tj to t_max: a = a(t_max)/a(tj), var = 1 - a^2.
            let a = VP.a(t_max) / VP.a(tj);
            let inner = TimeGrid::karras(&sde, t_max, tj, nr, 7.0).unwrap();
            for _ in 0..k {
                x = a * x + (1.0 - a * a).sqrt() * zi.next().unwrap();
                for w in inner.times().windows(2) {
                    x = heun(data, x, w[0], w[1]);
                }
            }
        }
    }
    assert!(zi.next().is_none());
    x
}

/// The solver equals the hand recursion to 1e-12 with the same noise, for several
/// intervals, restart counts and grids (including grids too coarse for a restart).
#[test]
fn solver_matches_hand_recursion_with_the_same_noise() {
    let sde = VpSde::default();
    let data = Gauss1 { mu: 0.7, s0: 0.45 };
    let zs: Vec<f64> = (0..40).map(|k| ((k * 5 + 2) % 9) as f64 / 3.0 - 1.4).collect();
    let mut restarted = 0;
    for setting in [(0.06, 0.30, 2, 3), (0.1, 2.0, 1, 5), (0.5, 1.0, 4, 1), (0.02, 10.0, 3, 2)] {
        for kind in [GridKind::Karras, GridKind::LogSnr, GridKind::Uniform] {
            for steps in [1usize, 2, 4, 9, 18] {
                let grid = kind.build(&sde, 1.0, sde.t_eps(), steps);
                let mut noise = SeqNoise { z: zs.clone(), next: 0 };
                let mut solver = Restart::new(setting.0, setting.1, setting.2, setting.3).unwrap();
                let run = Sampler::new(&sde, &data.score())
                    .run(&mut solver, Array2::from_elem((1, 1), -0.9), &grid, &mut noise)
                    .unwrap();
                let want = hand(&data, grid.times(), setting, -0.9, &zs[..noise.next]);
                let got = run.x[[0, 0]];
                assert!(
                    (got - want).abs() <= 1e-12 * (1.0 + want.abs()),
                    "{setting:?} {kind:?} {steps}: {got} vs {want}"
                );
                assert!(noise.next == 0 || noise.next == setting.2, "{setting:?}: {} draws", noise.next);
                restarted += usize::from(noise.next > 0);
            }
        }
    }
    assert!(restarted >= 40, "only {restarted} runs restarted");
}

/// A score that counts its calls.
struct Counting<'a> {
    inner: &'a dyn Score<Array2<f64>>,
    calls: AtomicUsize,
}

impl Score<Array2<f64>> for Counting<'_> {
    fn score(&self, x: &Array2<f64>, t: f64) -> scoresde_solvers::Result<Array2<f64>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.score(x, t)
    }
}

/// `Run::score_evals` is exactly `2 N + 2 K N_r` when the restart is made (a one-step
/// grid restarts at `eps`), and `2 N` when the grid point nearest `sigma~_min` lies at or
/// above `sigma~_max` (no restart); it equals the score calls.
#[test]
fn run_reports_exact_score_evaluations() {
    let sde = VpSde::default();
    let data = Gauss1 { mu: 1.0, s0: 0.5 };
    let exact = data.score();
    let score = Counting { inner: &exact, calls: AtomicUsize::new(0) };
    for (setting, steps, restarts) in [
        ((0.06, 0.30, 2, 3), 1usize, true),
        ((0.06, 0.30, 2, 3), 10, true),
        ((0.06, 0.30, 5, 7), 37, true),
        // sigma~ in [5, 5.5]: the nearest point of a 2-step Karras grid (sigma~ = 5.6) is above it.
        ((5.0, 5.5, 2, 3), 2, false),
    ] {
        score.calls.store(0, Ordering::Relaxed);
        let grid = TimeGrid::karras(&sde, 1.0, sde.t_eps(), steps, 7.0).unwrap();
        let mut solver = Restart::new(setting.0, setting.1, setting.2, setting.3).unwrap();
        let mut noise = GaussianNoise::new(3);
        let x = Array2::zeros((16, 1));
        let run = Sampler::new(&sde, &score).run(&mut solver, x, &grid, &mut noise).unwrap();
        let want = if restarts { solver.score_evals(steps) } else { 2 * steps };
        assert_eq!(run.score_evals, want, "{setting:?}, {steps} steps");
        assert_eq!(score.calls.load(Ordering::Relaxed), want, "{setting:?}, {steps} steps");
    }
    let by_name_run = by_name::<Array2<f64>>("restart:0.06:0.3:3:4").unwrap();
    assert_eq!(by_name_run.name(), "restart");
}

/// With `N_r = N / 8` restart steps the exact law's error falls as `h^2` (±0.15): Heun's
/// order, the re-noising being exact. With the default fixed `N_r = 3` it levels off.
#[test]
fn law_converges_with_order_two_when_restart_steps_are_refined() {
    let sde = VpSde::default();
    let data = Gauss1 { mu: 1.0, s0: 0.5 };
    let exact = data.marginal(&VP, sde.t_eps());
    let err = |n: usize, nr: usize| {
        let grid = TimeGrid::karras(&sde, 1.0, sde.t_eps(), n, 7.0).unwrap();
        let mut solver = Restart::new(0.06, 0.30, 2, nr).unwrap();
        let law = scheme_law_1d(&mut solver, &sde, data.mu, data.s0, &grid, false).unwrap().0;
        law_error((law.mean, law.var), exact)
    };
    let ns = [64usize, 128, 256, 512];
    let errs: Vec<f64> = ns.iter().map(|&n| err(n, n / 8)).collect();
    let hs: Vec<f64> = ns.iter().map(|&n| 1.0 / n as f64).collect();
    let slope = loglog_slope(&hs, &errs);
    eprintln!("restart, N_r = N/8: order {slope:.3}, errors {errs:?}");
    assert!((slope - 2.0).abs() <= ORDER_TOL, "order {slope}");
    let fixed: Vec<f64> = [128usize, 512].iter().map(|&n| err(n, 3)).collect();
    eprintln!("restart, N_r = 3: errors {fixed:?}");
    assert!(fixed[1] > 0.5 * fixed[0], "a fixed N_r has an error floor: {fixed:?}");
}

/// Monte Carlo, n = 20 000 chains from exact `p_1` samples: the sampled mean and variance
/// are within 5 standard errors (`sd/sqrt(n)`, `var sqrt(2/(n-1))`) of the exact law of
/// the scheme, at 4 and 18 main steps, and at 200 main steps with `N_r = 40`, within 5
/// standard errors of the exact `p_eps` (bias ~1e-5 there).
#[test]
fn sampled_moments_match_exact_laws() {
    let sde = VpSde::default();
    let data = Gauss1 { mu: 1.2, s0: 0.4 };
    let n = 20_000;
    for (steps, nr) in [(4usize, 3usize), (18, 3), (200, 40)] {
        let grid = TimeGrid::karras(&sde, 1.0, sde.t_eps(), steps, 7.0).unwrap();
        let mut solver = Restart::new(0.06, 0.30, 2, nr).unwrap();
        let want = if steps == 200 {
            Gauss1d::marginal(&sde, data.mu, data.s0, sde.t_eps())
        } else {
            scheme_law_1d(&mut solver, &sde, data.mu, data.s0, &grid, false).unwrap().0
        };
        let x = sample_marginal_1d(&data, 1.0, n, 50 + steps as u64);
        let mut noise = GaussianNoise::new(60 + steps as u64);
        let run = Sampler::new(&sde, &data.score()).run(&mut solver, x, &grid, &mut noise).unwrap();
        assert_gaussian_moments(&format!("restart, {steps} steps"), n, mean_var(col0(&run.x)), (want.mean, want.var));
    }
}

/// Bad parameters are errors, never panics.
#[test]
fn bad_parameters_are_errors() {
    for (lo, hi, k, nr) in [
        (0.0, 1.0, 2, 3),
        (-1.0, 1.0, 2, 3),
        (1.0, 1.0, 2, 3),
        (2.0, 1.0, 2, 3),
        (0.1, f64::INFINITY, 2, 3),
        (f64::NAN, 1.0, 2, 3),
        (0.1, 1.0, 0, 3),
        (0.1, 1.0, 2, 0),
    ] {
        assert!(Restart::new(lo, hi, k, nr).is_err(), "{lo} {hi} {k} {nr}");
    }
    for bad in [
        "restart:",
        "restart:0.1",
        "restart:0.3:0.06",
        "restart:0.06:0.3:0",
        "restart:0.06:0.3:2:0",
        "restart:x:1",
        "restart:0.06:0.3:1.5",
        "restart:0.06:0.3:2:3:4",
    ] {
        assert!(by_name::<Array2<f64>>(bad).is_err(), "{bad}");
    }
    assert!(by_name::<Array2<f64>>("restart:0.06:0.3:2:3,clip").is_err(), "restart forms no x0_hat");
}
