//! The adaptive-step reverse-SDE solver (`adaptive-sde`, Jolicoeur-Martineau et al. 2021):
//! its output law on 1-D Gaussian data against the exact law, within Monte Carlo error,
//! with a Brownian path and with i.i.d. noise; the pathwise error on one Brownian path
//! falls as the tolerance falls; the same path gives the same result; score evaluations
//! are counted exactly (2 per accepted step, 1 per rejected one); failures are errors.
//! (Tensors vs ndarray, f32 near eps, determinism and the evaluation count of every
//! sampler cover it too, through the registry row.)

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use ndarray::Array2;
use scoresde_solvers::law::Gauss1d;
use scoresde_solvers::prelude::*;
use scoresde_solvers::{AdaptiveSde, Error};

fn sde() -> VpSde {
    VpSde::default()
}

/// Data `N(1.2, 0.4^2)`.
const DATA: Gauss1 = Gauss1 { mu: 1.2, s0: 0.4 };

/// Runs `solver` over the one-step grid `[1, eps]` from `x`, without the denoising step.
fn run(solver: &mut AdaptiveSde, x: Array2<f64>, noise: &mut dyn Noise<Array2<f64>>) -> Run<Array2<f64>> {
    let sde = sde();
    let grid = TimeGrid::uniform(1.0, sde.t_eps(), 1).unwrap();
    Sampler::new(&sde, &DATA.score()).run(solver, x, &grid, noise).unwrap()
}

/// 20 000 chains from exact `p_1` draws: the sample mean and variance at `eps` are
/// within `K_SIGMA` = 5 standard errors of the exact `p_eps` (mean: `5 sqrt(v/n)`,
/// variance: `5 v sqrt(2/(n-1))`, i.e. 1.4e-2 and 2.0e-2 relative for n = 20 000), at the
/// paper's default tolerance, on a Brownian path and with i.i.d. noise (whose interval is
/// filled in by bridge draws). (At rtol = 1e-2, atol = 1e-3 it passes too, with ~1850
/// evaluations instead of ~400: too slow for a debug build.)
#[test]
fn output_law_matches_the_exact_gaussian_law() {
    let sde = sde();
    let n = 20_000;
    let exact = Gauss1d::marginal(&sde, DATA.mu, DATA.s0, sde.t_eps());
    for (i, (rtol, atol)) in [(AdaptiveSde::DEFAULT_RTOL, AdaptiveSde::DEFAULT_ATOL)].into_iter().enumerate() {
        for path in [true, false] {
            let seed = 10 + 2 * i as u64 + u64::from(path);
            let x = sample_marginal_1d(&DATA, 1.0, n, seed);
            let mut solver = AdaptiveSde::new(rtol, atol).unwrap();
            let out = if path {
                run(&mut solver, x, &mut BrownianPath::new(seed, sde.t_eps(), 1.0, 1e-9).unwrap())
            } else {
                run(&mut solver, x, &mut GaussianNoise::new(seed))
            };
            let what = format!("rtol {rtol}, atol {atol}, {}", if path { "Brownian path" } else { "i.i.d. noise" });
            eprintln!(
                "{what}: {} accepted, {} rejected, {} score evals; mean {:.4} var {:.4} (exact {:.4}, {:.4})",
                solver.accepted(),
                solver.rejected(),
                out.score_evals,
                mean_var(col0(&out.x)).0,
                mean_var(col0(&out.x)).1,
                exact.mean,
                exact.var
            );
            assert_gaussian_moments(&what, n, mean_var(col0(&out.x)), (exact.mean, exact.var));
        }
    }
}

/// On one Brownian path, the RMS distance of 64 chains from the same chains solved at
/// rtol = 1e-3 falls strictly as rtol falls through 0.1, 0.03, 0.01 (atol = rtol / 10),
/// by at least 3x over the range (measured: 9.9e-3, 4.4e-3, 1.8e-3 against rtol = 1e-4 for
/// 256 chains), while the number of steps grows: the retried steps use
/// the path's own increments, so the solution converges pathwise.
#[test]
fn pathwise_error_falls_with_the_tolerance() {
    let sde = sde();
    let x = sample_marginal_1d(&DATA, 1.0, 64, 3);
    let solve = |rtol: f64| {
        let mut solver = AdaptiveSde::new(rtol, rtol / 10.0).unwrap();
        let mut path = BrownianPath::new(7, sde.t_eps(), 1.0, 1e-12).unwrap();
        let out = run(&mut solver, x.clone(), &mut path);
        (out.x, out.score_evals)
    };
    let (reference, _) = solve(1e-3);
    let (mut errs, mut evals) = (vec![], vec![]);
    for rtol in [0.1, 0.03, 0.01] {
        let (y, nfe) = solve(rtol);
        let rms = ((&y - &reference).mapv(|v| v * v).sum() / y.len() as f64).sqrt();
        eprintln!("rtol {rtol:e}: {nfe} score evals, RMS pathwise error {rms:.3e}");
        errs.push(rms);
        evals.push(nfe);
    }
    for (e, n) in errs.windows(2).zip(evals.windows(2)) {
        assert!(e[1] < e[0], "errors {errs:?}");
        assert!(n[1] > n[0], "score evals {evals:?}");
    }
    assert!(errs[2] * 3.0 < errs[0], "errors {errs:?}");
}

/// The same Brownian path (same seed) gives bit-identical output; another seed another.
#[test]
fn the_same_brownian_path_gives_the_same_result() {
    let sde = sde();
    let x = sample_marginal_1d(&DATA, 1.0, 64, 4);
    let go = |seed: u64| {
        let mut path = BrownianPath::new(seed, sde.t_eps(), 1.0, 1e-9).unwrap();
        run(&mut AdaptiveSde::default(), x.clone(), &mut path).x
    };
    assert_eq!(go(5), go(5));
    assert_ne!(go(5), go(6));
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

/// `Run::score_evals` is the number of calls of the score, which is exactly 2 per accepted
/// step and 1 per rejected step (plus the denoising step), on one- and many-step grids;
/// the runs reject steps, so the count is not just twice the steps.
#[test]
fn score_evaluations_are_counted_exactly() {
    let sde = sde();
    let mixture = GaussianMixture::ring(8, 2.0, 0.1).unwrap();
    let exact = ExactScore::new(mixture, sde);
    let score = Counting { inner: &exact, calls: AtomicUsize::new(0) };
    let mut rejections = 0;
    for (steps, rtol) in [(1usize, 0.05), (1, 1e-3), (7, 1e-2)] {
        for denoise in [false, true] {
            score.calls.store(0, Ordering::Relaxed);
            let grid = TimeGrid::reverse(&sde, steps).unwrap();
            let mut noise = GaussianNoise::new(1);
            let x = prior_sample(&sde, &Array2::<f64>::zeros((64, 2)), &mut noise);
            let mut solver = AdaptiveSde::new(rtol, rtol / 10.0).unwrap();
            let run = Sampler::new(&sde, &score).denoise(denoise).run(&mut solver, x, &grid, &mut noise).unwrap();
            let calls = score.calls.load(Ordering::Relaxed);
            let (acc, rej) = (solver.accepted(), solver.rejected());
            assert_eq!(run.score_evals, calls, "{steps} steps, rtol {rtol}");
            assert_eq!(calls, 2 * acc + rej + usize::from(denoise), "{steps} steps, rtol {rtol}: {acc} + {rej}");
            assert!(acc >= steps);
            rejections += rej;
        }
    }
    assert!(rejections > 0, "no run rejected a step: the count was not tested on rejections");
}

/// A score the controller cannot follow (stiff: `s = -1e30 x`) underflows the step size, a
/// small step cap is exhausted, and bad tolerances are rejected: all clear errors.
#[test]
fn failures_are_errors() {
    struct Stiff;
    impl Score<Array2<f64>> for Stiff {
        fn score(&self, x: &Array2<f64>, _t: f64) -> scoresde_solvers::Result<Array2<f64>> {
            Ok(x.mapv(|v| -1e30 * v))
        }
    }
    let sde = sde();
    let grid = TimeGrid::uniform(1.0, sde.t_eps(), 1).unwrap();
    let x = sample_marginal_1d(&DATA, 1.0, 16, 5);
    let err = Sampler::new(&sde, &Stiff)
        .run(&mut AdaptiveSde::default(), x.clone(), &grid, &mut GaussianNoise::new(1))
        .unwrap_err();
    assert!(matches!(err, Error::StepSizeTooSmall { .. }), "{err:?}");
    let mut capped = AdaptiveSde::new(1e-4, 1e-5).unwrap().with_max_steps(5).unwrap();
    let err = Sampler::new(&sde, &DATA.score()).run(&mut capped, x, &grid, &mut GaussianNoise::new(1)).unwrap_err();
    assert!(matches!(err, Error::TooManySteps { max_steps: 5, .. }), "{err:?}");
    assert!(AdaptiveSde::default().with_max_steps(0).is_err());
    for (rtol, atol) in [(0.0, 1e-3), (f64::NAN, 1e-3), (1.0, 1e-3), (1e-20, 1e-3), (1e-2, 0.0), (1e-2, f64::INFINITY)]
    {
        assert!(AdaptiveSde::new(rtol, atol).is_err(), "{rtol}, {atol}");
    }
    for bad in ["adaptive-sde:", "adaptive-sde:x", "adaptive-sde:0", "adaptive-sde:1e-2:-1", "adaptive-sde:1e-2:y"] {
        assert!(by_name::<Array2<f64>>(bad).is_err(), "{bad}");
    }
    assert!(by_name::<Array2<f64>>("adaptive-sde:1e-2").is_ok());
    assert!(by_name::<Array2<f64>>("adaptive-sde:1e-2:1e-3").is_ok());
}
