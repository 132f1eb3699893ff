//! The ODE methods on a plain [`VectorField`], apart from any SDE: on
//! `dx/dt = -t x` (exact solution `x(t) = x(t0) exp(-(t^2 - t0^2) / 2)`), in both
//! time directions,
//!
//! * Euler, Heun and RK4 converge with orders 1, 2 and 4 (within ±0.15);
//! * Dormand–Prince meets its tolerance forwards and backwards, and a round trip
//!   returns to the start;
//! * every failure of Dormand–Prince is a typed error, never a state: a NaN stage,
//!   an exhausted step cap, non-finite times; the sampler names the grid step of a
//!   NaN stage even with its own finiteness check off;
//! * [`CountingScore`] counts every call.

mod common;

use common::{loglog_slope, ORDER_TOL};
use ndarray::{array, Array1, Array2};
use scoresde_solvers::prelude::*;
use scoresde_solvers::{Result, VectorField};

fn decay(x: &Array1<f64>, t: f64) -> Result<Array1<f64>> {
    Ok(x * -t)
}

fn exact(x0: f64, t0: f64, t1: f64) -> f64 {
    x0 * (-(t1 * t1 - t0 * t0) / 2.0).exp()
}

type Method = fn(&dyn VectorField<Array1<f64>>, Array1<f64>, f64, f64) -> Result<Array1<f64>>;

/// `n` equal steps of `method` from `t0` to `t1`, starting at 1.
fn solve(method: Method, t0: f64, t1: f64, n: usize) -> f64 {
    let h = (t1 - t0) / n as f64;
    let mut x = array![1.0];
    for i in 0..n {
        let (a, b) = (t0 + i as f64 * h, if i + 1 == n { t1 } else { t0 + (i + 1) as f64 * h });
        x = method(&decay, x, a, b).unwrap();
    }
    x[0]
}

/// Fixed-step methods: fitted order within ±0.15 of theory, forwards (0 -> 2) and backwards (2 -> 0).
#[test]
fn fixed_step_methods_have_their_order_both_ways() {
    let methods: [(&str, Method, f64); 3] = [
        ("euler", |v, x, t, s| OdeEuler::advance(v, x, t, s), 1.0),
        ("heun", |v, x, t, s| OdeHeun::advance(v, x, t, s), 2.0),
        ("rk4", |v, x, t, s| OdeRk4::advance(v, x, t, s), 4.0),
    ];
    for (name, method, order) in methods {
        for (t0, t1) in [(0.0, 2.0), (2.0, 0.0)] {
            let ns = [16usize, 32, 64, 128];
            let hs: Vec<f64> = ns.iter().map(|&n| 1.0 / n as f64).collect();
            let errs: Vec<f64> = ns.iter().map(|&n| (solve(method, t0, t1, n) - exact(1.0, t0, t1)).abs()).collect();
            let slope = loglog_slope(&hs, &errs);
            assert!((slope - order).abs() <= ORDER_TOL, "{name} {t0} -> {t1}: order {slope}, theory {order}");
        }
    }
}

/// Dormand–Prince on a vector field: error below 100 x tol forwards and backwards,
/// work grows as the tolerance shrinks, and a round trip returns to the start.
#[test]
fn dopri5_integrates_any_field_both_ways() {
    let mut last = 0;
    for tol in [1e-4, 1e-7, 1e-10] {
        for (t0, t1) in [(0.0, 2.0), (2.0, 0.0)] {
            let mut dp = OdeDopri5::new(tol, tol).unwrap();
            let sol = dp.integrate(&decay, array![1.0], t0, t1).unwrap();
            let err = (sol.x[0] - exact(1.0, t0, t1)).abs();
            assert!(err <= 100.0 * tol, "tol {tol}, {t0} -> {t1}: error {err}");
            assert!(sol.steps > 0);
            if t0 == 0.0 {
                assert!(sol.steps > last, "tol {tol}: {} steps, previous {last}", sol.steps);
                last = sol.steps;
            }
        }
        let mut dp = OdeDopri5::new(tol, tol).unwrap();
        let there = dp.integrate(&decay, array![1.0], 0.0, 2.0).unwrap().x;
        let back = dp.integrate(&decay, there, 2.0, 0.0).unwrap().x;
        assert!((back[0] - 1.0).abs() <= 100.0 * tol, "tol {tol}: round trip {}", back[0]);
    }
    let mut dp = OdeDopri5::default();
    let same = dp.integrate(&decay, array![3.0], 0.5, 0.5).unwrap();
    assert_eq!((same.x[0], same.steps, same.rejected), (3.0, 0, 0));
}

/// NaN stages, an exhausted cap and non-finite times are errors, never states.
#[test]
fn dopri5_failures_are_errors() {
    let nan_after = |x: &Array1<f64>, t: f64| Ok::<_, Error>(if t > 0.5 { x.mapv(|_| f64::NAN) } else { x * -t });
    let err = OdeDopri5::default().integrate(&nan_after, array![1.0], 0.0, 1.0).unwrap_err();
    match err {
        Error::NonFinite { step, t } => assert!(step >= 1 && t > 0.5 && t <= 1.0, "step {step}, t {t}"),
        other => panic!("expected NonFinite, got {other:?}"),
    }
    let fast = |x: &Array1<f64>, _t: f64| Ok::<_, Error>(x * -50.0);
    let mut capped = OdeDopri5::new(1e-10, 1e-10).unwrap().with_max_steps(3).unwrap();
    let err = capped.integrate(&fast, array![1.0], 0.0, 1.0).unwrap_err();
    assert!(matches!(err, Error::TooManySteps { max_steps: 3, .. }), "{err:?}");
    assert!(OdeDopri5::default().with_max_steps(0).is_err());
    for (t0, t1) in [(f64::NAN, 1.0), (0.0, f64::INFINITY)] {
        let err = OdeDopri5::default().integrate(&decay, array![1.0], t0, t1).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { .. }), "{err:?}");
    }
}

/// A score that returns NaN below `t = 0.65`.
struct NanBelow(ExactScore<VpSde>);

impl Score<Array2<f64>> for NanBelow {
    fn score(&self, x: &Array2<f64>, t: f64) -> Result<Array2<f64>> {
        let s = self.0.score(x, t)?;
        Ok(if t < 0.65 { s.mapv(|_| f64::NAN) } else { s })
    }
}

/// With the sampler's finiteness check off, a NaN stage of Dormand–Prince is still
/// `NonFinite`, naming the grid step (the 4th: 0.7 -> 0.6004) and the time it reached.
#[test]
fn sampler_names_the_grid_step_of_a_nan_stage() {
    let sde = VpSde::default();
    let score = NanBelow(ExactScore::new(GaussianMixture::ring(4, 2.0, 0.2).unwrap(), sde));
    let grid = TimeGrid::uniform(1.0, 1e-3, 10).unwrap();
    let mut noise = GaussianNoise::new(0);
    let x = prior_sample(&sde, &Array2::<f64>::zeros((8, 2)), &mut noise);
    let err = Sampler::new(&sde, &score)
        .check_finite(false)
        .run(&mut OdeDopri5::default(), x, &grid, &mut noise)
        .unwrap_err();
    assert_eq!(err, Error::NonFinite { step: 4, t: grid.times()[4] });
}

/// `CountingScore` counts every call, failing ones included.
#[test]
fn counting_score_counts_every_call() {
    let sde = VpSde::default();
    let inner = ExactScore::new(GaussianMixture::ring(4, 2.0, 0.2).unwrap(), sde);
    let counting = CountingScore::new(&inner);
    let x = Array2::<f64>::zeros((5, 2));
    for t in [0.1, 0.5, 1.0] {
        counting.score(&x, t).unwrap();
    }
    assert!(counting.score(&Array2::<f64>::zeros((5, 3)), 0.5).is_err());
    assert_eq!(counting.count(), 4);
}
