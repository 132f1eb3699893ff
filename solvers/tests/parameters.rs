//! Solver parameters a user can get wrong are errors naming the parameter, and
//! the adaptive solver's work is bounded and visible:
//!
//! * Dormand–Prince: `rtol` below the machine epsilon of the numbers it runs in
//!   (f64's at construction, the state's at run time), NaN, inf, <= 0 or >= 1,
//!   and `atol` NaN, inf or <= 0 are rejected; its step budget covers a whole
//!   run, not each grid step; observers see every score evaluation inside a
//!   grid step and can stop the run there;
//! * DDIM's `eta` lies in `[0, 1]`; Langevin's `snr` in `(0, 1)`; EDM's `s_tmax`
//!   is a number.

use std::cell::Cell;

use ndarray::Array2;
use scoresde_solvers::prelude::*;
use scoresde_solvers::{EvalEvent, OnEval, Result, StepEvent};

fn ring() -> ExactScore<VpSde> {
    ExactScore::new(GaussianMixture::ring(4, 2.0, 0.2).unwrap(), VpSde::default())
}

/// The name and reason of an `InvalidParameter`, or a panic naming what came instead.
fn invalid<T>(r: Result<T>) -> (&'static str, String, String) {
    match r {
        Err(Error::InvalidParameter { name, value, reason }) => (name, value, reason),
        Err(e) => panic!("expected InvalidParameter, got {e:?}"),
        Ok(_) => panic!("expected InvalidParameter, got Ok"),
    }
}

/// Runs `solver` from the prior on `grid` with the ring score, `n` samples of type `S`.
fn run_on<S: State>(solver: &mut dyn Solver<S>, like: S, grid: &TimeGrid) -> Result<Run<S>>
where
    ExactScore<VpSde>: Score<S>,
{
    let sde = VpSde::default();
    let score = ring();
    let mut noise = GaussianNoise::new(0);
    let x = prior_sample(&sde, &like, &mut noise);
    Sampler::new(&sde, &score).run(solver, x, grid, &mut noise)
}

/// Tolerances below f64's machine epsilon (1e-200 made every f32 run fail with a
/// misleading NaN error and tensor runs return garbage), non-finite, non-positive and
/// `>= 1` ones are rejected at construction and by name, naming the parameter; the
/// smallest accepted rtol is f64::EPSILON.
#[test]
fn dopri5_rejects_tolerances_it_cannot_meet() {
    let (name, value, reason) = invalid(OdeDopri5::new(1e-200, 1e-200));
    assert_eq!((name, value.as_str()), ("rtol", "1e-200"));
    assert!(reason.contains("machine epsilon") && reason.contains("2.22e-16"), "{reason}");
    let msg = by_name::<Array2<f32>>("ode-dopri5:1e-200").err().unwrap().to_string();
    assert!(msg.contains("`rtol` = 1e-200") && msg.contains("machine epsilon"), "{msg}");
    for rtol in [f64::EPSILON / 2.0, 0.0, -1e-5, 1.0, 2.0, f64::NAN, f64::INFINITY] {
        assert_eq!(invalid(OdeDopri5::new(rtol, 1e-5)).0, "rtol", "{rtol}");
    }
    for atol in [0.0, -1e-5, f64::NAN, f64::INFINITY] {
        assert_eq!(invalid(OdeDopri5::new(1e-5, atol)).0, "atol", "{atol}");
    }
    assert_eq!(invalid(by_name::<Array2<f64>>("ode-dopri5:1e-5:0")).0, "atol");
    assert_eq!(invalid(by_name::<Array2<f64>>("ode-dopri5:inf")).0, "rtol");
    let tightest = OdeDopri5::new(f64::EPSILON, 1e-300).unwrap();
    assert_eq!((tightest.rtol(), tightest.atol()), (OdeDopri5::MIN_RTOL, 1e-300));
}

/// f32 states resolve no relative error below f32's epsilon: `ode-dopri5:1e-14` (which
/// crept along for minutes per grid step in the program's f32 sampling) is an error
/// naming rtol and the f32 bound before any score evaluation, while f32's epsilon itself
/// runs, and f64 states take 1e-14.
#[test]
fn dopri5_rtol_must_be_above_the_epsilon_of_the_state() {
    let grid = TimeGrid::uniform(1.0, 1e-3, 1).unwrap();
    let sde = VpSde::default();
    let score = ring();
    let counting = CountingScore::new(&score);
    let mut noise = GaussianNoise::new(0);
    let x = prior_sample(&sde, &Array2::<f32>::zeros((8, 2)), &mut noise);
    let mut solver = by_name::<Array2<f32>>("ode-dopri5:1e-14").unwrap();
    let err = Sampler::new(&sde, &counting).run(solver.as_mut(), x, &grid, &mut noise).unwrap_err();
    let text = err.to_string();
    let (name, value, reason) = invalid(Err::<(), _>(err));
    assert_eq!((name, value.as_str()), ("rtol", "1e-14"), "{text}");
    assert!(reason.contains("1.19e-7") && reason.contains("f64 states"), "{text}");
    assert_eq!(counting.count(), 0);

    let f32_eps = f64::from(f32::EPSILON);
    run_on(&mut OdeDopri5::new(f32_eps, f32_eps).unwrap(), Array2::<f32>::zeros((8, 2)), &grid).unwrap();
    run_on(&mut OdeDopri5::new(1e-14, 1e-14).unwrap(), Array2::<f64>::zeros((8, 2)), &grid).unwrap();
    assert_eq!(Array2::<f32>::zeros((1, 1)).epsilon(), f32_eps);
    assert_eq!(Array2::<f64>::zeros((1, 1)).epsilon(), f64::EPSILON);
}

/// The step budget covers the whole run: on a 20-step grid, a cap one below the run's
/// total internal steps fails with `TooManySteps` (a per-grid-step cap would pass, as
/// no grid step takes that many), the exact total passes; a grid with more steps than
/// the cap is rejected up front.
#[test]
fn dopri5_step_budget_is_per_run() {
    let grid = TimeGrid::uniform(1.0, 1e-3, 20).unwrap();
    let like = Array2::<f64>::zeros((8, 2));
    let full = run_on(&mut OdeDopri5::new(1e-6, 1e-6).unwrap(), like.clone(), &grid).unwrap();
    // One evaluation for the first step size, one k1 per grid step, six per internal step.
    let spent = full.score_evals - 1 - grid.steps();
    assert_eq!(spent % 6, 0, "{} evaluations", full.score_evals);
    let total = spent / 6;
    assert!(total > grid.steps(), "{total} internal steps");

    let mut capped = OdeDopri5::new(1e-6, 1e-6).unwrap().with_max_steps(total - 1).unwrap();
    let err = run_on(&mut capped, like.clone(), &grid).unwrap_err();
    assert!(matches!(err, Error::TooManySteps { max_steps, .. } if max_steps == total - 1), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("loosen rtol/atol"), "{msg}");
    let mut exact = OdeDopri5::new(1e-6, 1e-6).unwrap().with_max_steps(total).unwrap();
    assert_eq!(run_on(&mut exact, like.clone(), &grid).unwrap().x, full.x);
    // The budget starts afresh with each run.
    assert_eq!(run_on(&mut exact, like.clone(), &grid).unwrap().x, full.x);

    let mut small = OdeDopri5::default().with_max_steps(19).unwrap();
    let (name, value, reason) = invalid(run_on(&mut small, like, &grid));
    assert_eq!((name, value.as_str()), ("max_steps", "19"));
    assert!(reason.contains("20 steps"), "{reason}");
}

/// Observers see every score evaluation: on a one-step grid Dormand–Prince makes
/// dozens, each reported with the grid step under way, a count that climbs by one and
/// a time inside the interval, between the two step events. The observers come back
/// to the sampler after a run (a second run reports again).
#[test]
fn observers_see_the_evaluations_inside_a_step() {
    let sde = VpSde::default();
    let score = ring();
    let grid = TimeGrid::uniform(1.0, 1e-3, 1).unwrap();
    let events: Cell<Vec<EvalEvent>> = Cell::new(Vec::new());
    let steps_seen = Cell::new(0usize);
    let mut within = OnEval(|e: &EvalEvent| {
        let mut v = events.take();
        v.push(*e);
        events.set(v);
        Ok(())
    });
    let mut steps = |_: &StepEvent<'_, Array2<f64>>| {
        steps_seen.set(steps_seen.get() + 1);
        Ok(())
    };
    let mut sampler = Sampler::new(&sde, &score).observe(&mut within).observe(&mut steps);
    let mut evals = Vec::new();
    for seed in [0, 1] {
        let mut noise = GaussianNoise::new(seed);
        let x = prior_sample(&sde, &Array2::<f64>::zeros((8, 2)), &mut noise);
        evals.push(sampler.run(&mut OdeDopri5::default(), x, &grid, &mut noise).unwrap().score_evals);
    }
    drop(sampler);
    let events = events.take();
    assert!(evals[0] > 20, "{evals:?}");
    assert_eq!(events.len(), evals[0] + evals[1]);
    assert_eq!(steps_seen.get(), 4);
    let (first, second) = events.split_at(evals[0]);
    for run in [first, second] {
        for (i, e) in run.iter().enumerate() {
            assert_eq!((e.step, e.n_steps, e.score_evals), (1, 1, i + 1));
            assert!((1e-3..=1.0).contains(&e.t), "{e:?}");
        }
    }
}

/// An observer can stop a run inside a long grid step (Ctrl-C while an adaptive solver
/// works): the run ends with its error after exactly that many evaluations.
#[test]
fn an_observer_stops_a_run_inside_a_step() {
    let sde = VpSde::default();
    let score = ring();
    let counting = CountingScore::new(&score);
    let grid = TimeGrid::uniform(1.0, 1e-3, 1).unwrap();
    let mut stop = OnEval(|e: &EvalEvent| {
        if e.score_evals == 10 {
            Err(Error::Stopped { step: e.step, reason: "enough".into() })
        } else {
            Ok(())
        }
    });
    let mut noise = GaussianNoise::new(0);
    let x = prior_sample(&sde, &Array2::<f64>::zeros((8, 2)), &mut noise);
    let err = Sampler::new(&sde, &counting)
        .observe(&mut stop)
        .run(&mut OdeDopri5::default(), x, &grid, &mut noise)
        .unwrap_err();
    assert_eq!(err, Error::Stopped { step: 1, reason: "enough".into() });
    assert_eq!(counting.count(), 10);
}

/// DDIM's eta lies in [0, 1] (`ddim-eta:5` used to sample with a clamped, wrong variance).
#[test]
fn ddim_eta_must_lie_in_zero_one() {
    for eta in [5.0, 1.0 + 1e-9, -0.1, f64::NAN, f64::INFINITY] {
        let (name, _, reason) = invalid(Ddim::with_eta(eta));
        assert_eq!(name, "eta", "{eta}");
        assert!(reason.contains("[0, 1]"), "{reason}");
    }
    let msg = by_name::<Array2<f64>>("ddim-eta:5").err().unwrap().to_string();
    assert!(msg.contains("`eta` = 5") && msg.contains("[0, 1]"), "{msg}");
    for eta in [0.0, 0.5, 1.0] {
        assert_eq!(Ddim::with_eta(eta).unwrap().eta(), eta);
    }
}

/// Langevin's signal-to-noise ratio lies in (0, 1): from 1 on the corrector's step
/// `2 snr^2 v` on a Gaussian of variance v is unstable.
#[test]
fn langevin_snr_must_lie_below_one() {
    for snr in [1.0, 1.5, 1e6] {
        assert_eq!(invalid(Langevin::snr(snr)).0, "snr", "{snr}");
        assert_eq!(invalid(AnnealedLangevin::new(snr, 1)).0, "snr", "{snr}");
    }
    Langevin::snr(0.99).unwrap();
    AnnealedLangevin::new(0.99, 1).unwrap();
}

/// EDM's churn range: a NaN upper limit names `s_tmax` (it used to blame `s_tmin`).
#[test]
fn edm_churn_range_names_the_bad_end() {
    assert_eq!(invalid(EdmHeun::with_churn(1.0, 0.0, f64::NAN, 1.0)).0, "s_tmax");
    assert_eq!(invalid(EdmHeun::with_churn(1.0, f64::NAN, 1.0, 1.0)).0, "s_tmin");
    EdmHeun::with_churn(1.0, 0.0, f64::INFINITY, 1.0).unwrap();
}
