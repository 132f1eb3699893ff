//! SA-Solver (Xue et al. 2023) on 1-D Gaussian data with the exact score:
//!
//! * a hand-written scalar f64 recursion of the paper's predictor (eq. 15) and corrector
//!   (eq. 18) in data-prediction form, with diffusers' warm-up, `lower_order_final` and
//!   order-2 modification, fed the same noise, agrees with the solver to 1e-12 for
//!   several `tau` (constant and on a sigma interval), orders and grids. Its Lagrange
//!   weights come from the exact antiderivative `int p(u) e^{cu} du = e^{cu} sum_k
//!   (-1)^k p^(k)(u) / c^{k+1}`, not from the solver's moment recursion;
//! * `tau = 0` is the deterministic data-prediction Adams predictor–corrector: it draws no
//!   noise, `sa-solver:0` is `sa-solver-ode`, order 1 without corrector is DPM-Solver++ 1
//!   and `tau = 1` order 1 without corrector is ancestral sampling (any score, 1e-12); its
//!   order as an ODE solver is measured by the registry tests (tests/ode.rs);
//! * Monte Carlo: sampled moments match the exact law of the scheme and, at 200 steps,
//!   the exact `p_eps`, within 5 standard errors.

mod common;

use common::*;
use ndarray::Array2;
use scoresde_solvers::law::{scheme_law_1d, Gauss1d};
use scoresde_solvers::prelude::*;
use scoresde_solvers::{solver_info, SaSolver, SolverKind};

/// Noise that hands out a given sequence of scalars (as (1, 1) arrays), then fails.
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
        let z = self.z[self.next];
        self.next += 1;
        Array2::from_elem((1, 1), z)
    }
}

fn solver(cfg: SaCfg) -> SaSolver<Array2<f64>> {
    let s = SaSolver::new(cfg.tau, cfg.p, cfg.q).unwrap().with_lower_order_final(cfg.lof);
    match cfg.interval {
        Some((lo, hi)) => s.with_interval(lo, hi).unwrap(),
        None => s,
    }
}

/// The solver on one scalar with a given noise sequence; also returns the draws it made.
fn run_scalar(cfg: SaCfg, data: &Gauss1, grid: &TimeGrid, x_start: f64, zs: &[f64]) -> (f64, usize) {
    let sde = VpSde::default();
    let mut noise = SeqNoise { z: zs.to_vec(), next: 0 };
    let run = Sampler::new(&sde, &data.score())
        .run(&mut solver(cfg), Array2::from_elem((1, 1), x_start), grid, &mut noise)
        .unwrap();
    (run.x[[0, 0]], noise.next)
}

/// The solver equals the hand recursion to 1e-12 (relative to the scale of x) with the
/// same noise, for constant and interval `tau`, every order pair the paper uses,
/// with and without `lower_order_final`, on every grid kind and 1 to 14 steps.
#[test]
fn solver_matches_hand_recursion_with_the_same_noise() {
    let sde = VpSde::default();
    let data = Gauss1 { mu: 0.8, s0: 0.6 };
    let zs: Vec<f64> = (0..64).map(|k| ((k * 7 + 3) % 11) as f64 / 4.0 - 1.3).collect();
    let mut cases = 0;
    for tau in [0.0, 0.5, 1.0, 1.7] {
        for interval in [None, Some((0.72, 25.0))] {
            for (p, q) in [(1, 0), (1, 1), (2, 2), (3, 3), (3, 4), (4, 4), (2, 0)] {
                for lof in [false, true] {
                    let cfg = SaCfg { tau, interval, p, q, lof };
                    for kind in [GridKind::LogSnr, GridKind::Uniform, GridKind::Karras, GridKind::Quadratic] {
                        for steps in [1usize, 2, 3, 5, 8, 14] {
                            let grid = kind.build(&sde, 1.0, sde.t_eps(), steps);
                            let x_start = 1.3;
                            let (got, draws) = run_scalar(cfg, &data, &grid, x_start, &zs);
                            let want = sa_solver_hand(&data, cfg, grid.times(), x_start, &zs[..draws]);
                            assert!(
                                (got - want).abs() <= 1e-12 * (1.0 + want.abs()),
                                "{cfg:?} on {kind:?}, {steps} steps: solver {got}, hand {want}"
                            );
                            if tau == 0.0 {
                                assert_eq!(draws, 0, "{cfg:?}: tau = 0 draws no noise");
                            } else if interval.is_none() {
                                assert_eq!(draws, steps, "{cfg:?}: one draw per step");
                            }
                            cases += 1;
                        }
                    }
                }
            }
        }
    }
    assert_eq!(cases, 4 * 2 * 7 * 2 * 4 * 6);
}

/// `tau = 0` is the deterministic scheme: `sa-solver:0` builds `sa-solver-ode` (same
/// output bit for bit), a deterministic registry row; the interval form with `tau` off
/// everywhere (`[0, 0]`) is the same map too.
#[test]
fn tau_zero_is_the_deterministic_counterpart() {
    let sde = VpSde::default();
    let data = Gauss1 { mu: -0.4, s0: 1.1 };
    assert_eq!(solver_info("sa-solver-ode").unwrap().kind, SolverKind::Deterministic);
    assert_eq!(solver_info("sa-solver").unwrap().kind, SolverKind::Stochastic);
    let x = Array2::from_shape_fn((7, 1), |(i, _)| i as f64 * 0.6 - 1.8);
    for steps in [1usize, 4, 13] {
        let grid = TimeGrid::log_snr(&sde, 1.0, sde.t_eps(), steps).unwrap();
        let out = |name: &str| {
            let mut solver = by_name::<Array2<f64>>(name).unwrap();
            let mut noise = FixedNoise::new(Array2::from_elem((7, 1), 1.0));
            let run = Sampler::new(&sde, &data.score()).run(solver.as_mut(), x.clone(), &grid, &mut noise).unwrap();
            assert_eq!(noise.draws, 0, "{name} drew noise");
            (solver.name(), run.x)
        };
        let (name0, a) = out("sa-solver:0");
        let (name1, b) = out("sa-solver-ode");
        let (_, c) = out("sa-solver:1:0:0");
        assert_eq!((name0, name1), ("sa-solver-ode", "sa-solver-ode"));
        assert_eq!(a, b);
        assert_eq!(b, c);
    }
}

/// Order 1 without corrector: `tau = 0` is DPM-Solver++ 1 (DDIM) and `tau = 1` is
/// ancestral sampling, step by step with the same noise, for a nonlinear score on every
/// SDE (1e-12).
#[test]
fn first_order_cases_are_ddim_and_ancestral() {
    struct Wavy;
    impl Score<Array2<f64>> for Wavy {
        fn score(&self, x: &Array2<f64>, t: f64) -> scoresde_solvers::Result<Array2<f64>> {
            Ok(x.mapv(|v| -(1.0 + t) * v + 0.3 * (2.0 * v).sin()))
        }
    }
    let x = Array2::from_shape_fn((5, 2), |(i, j)| i as f64 * 0.7 - 1.3 + j as f64 * 0.2);
    let z = Array2::from_shape_fn((5, 2), |(i, j)| ((i * 3 + j * 5) % 7) as f64 / 3.0 - 1.0);
    for sde_name in ["vp", "subvp", "ve", "vp-cosine"] {
        let sde = scoresde_solvers::sde_by_name(sde_name).unwrap();
        let grid = TimeGrid::log_snr(sde.as_ref(), 1.0, sde.t_eps(), 6).unwrap();
        for w in grid.times().windows(2) {
            let step = |solver: &mut dyn Solver<Array2<f64>>| {
                let mut noise = FixedNoise::new(z.clone());
                let mut ctx = Ctx { sde: sde.as_ref(), score: &Wavy, noise: &mut noise };
                solver.step(x.clone(), w[0], w[1], &mut ctx).unwrap()
            };
            let pairs: [(f64, &str); 2] = [(0.0, "dpm1"), (1.0, "ancestral")];
            for (tau, other) in pairs {
                let ya = step(&mut SaSolver::new(tau, 1, 0).unwrap());
                let yb = step(by_name::<Array2<f64>>(other).unwrap().as_mut());
                for (p, q) in ya.iter().zip(yb.iter()) {
                    assert!((p - q).abs() <= 1e-12 * (1.0 + q.abs()), "{sde_name}, tau {tau} vs {other}: {p} vs {q}");
                }
            }
        }
    }
}

/// Monte Carlo, n = 20 000 chains from exact `p_1` samples: at 6 and 15 steps the sampled
/// mean and variance are within 5 standard errors (`sd/sqrt(n)` and `var sqrt(2/(n-1))`,
/// about 0.004 and 0.005 here) of the scheme's exact law, and at 200 steps within 5
/// standard errors of the exact `p_eps` (the scheme's bias there, ~1e-5, is far below).
#[test]
fn sampled_moments_match_exact_laws() {
    let sde = VpSde::default();
    let data = Gauss1 { mu: 1.2, s0: 0.4 };
    let n = 20_000;
    let exact = Gauss1d::marginal(&sde, data.mu, data.s0, sde.t_eps());
    for (i, name) in ["sa-solver", "sa-solver:0.5:0.72:25"].into_iter().enumerate() {
        for steps in [6usize, 15, 200] {
            let grid = TimeGrid::log_snr(&sde, 1.0, sde.t_eps(), steps).unwrap();
            let mut solver = by_name::<Array2<f64>>(name).unwrap();
            let want = if steps == 200 {
                exact
            } else {
                scheme_law_1d(solver.as_mut(), &sde, data.mu, data.s0, &grid, false).unwrap().0
            };
            let x = sample_marginal_1d(&data, 1.0, n, 30 + i as u64);
            let mut noise = GaussianNoise::new(40 + steps as u64);
            let run = Sampler::new(&sde, &data.score()).run(solver.as_mut(), x, &grid, &mut noise).unwrap();
            assert_gaussian_moments(
                &format!("{name}, {steps} steps"),
                n,
                mean_var(col0(&run.x)),
                (want.mean, want.var),
            );
        }
    }
}

/// Bad parameters are errors, never panics.
#[test]
fn bad_parameters_are_errors() {
    for (tau, p, q) in [(-0.1, 3, 4), (f64::NAN, 3, 4), (f64::INFINITY, 3, 4), (1.0, 0, 4), (1.0, 5, 4), (1.0, 3, 5)] {
        assert!(SaSolver::<Array2<f64>>::new(tau, p, q).is_err(), "{tau} {p} {q}");
    }
    assert!(SaSolver::<Array2<f64>>::sde().with_interval(2.0, 1.0).is_err());
    assert!(SaSolver::<Array2<f64>>::sde().with_interval(-1.0, 1.0).is_err());
    assert!(SaSolver::<Array2<f64>>::sde().with_interval(f64::NAN, 1.0).is_err());
    for bad in ["sa-solver:", "sa-solver:-1", "sa-solver:x", "sa-solver:1:2", "sa-solver:1:3:2", "sa-solver:1:0:1:2"] {
        assert!(by_name::<Array2<f64>>(bad).is_err(), "{bad}");
    }
    assert!(by_name::<Array2<f64>>("sa-solver:0.5:0.1:inf,clip").is_ok());
}
