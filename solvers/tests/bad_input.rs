//! Bad input is a typed `Error`, never a panic: every public entry point is fed
//! what a user can get wrong, and the exact variant (and its fields) is matched.

mod common;

use common::FixedNoise;
use ndarray::{array, Array2, Array3};
use scoresde_solvers::prelude::*;
use scoresde_solvers::Result;
use scoresde_solvers::{StepEvent, SAMPLERS};

fn ring_score() -> ExactScore<VpSde> {
    ExactScore::new(GaussianMixture::ring(4, 2.0, 0.2).unwrap(), VpSde::default())
}

/// Runs `name` on `grid` from `x` with the 2-D ring score.
fn run(name: &str, x: Array2<f64>, grid: &TimeGrid) -> Result<Run<Array2<f64>>> {
    let sde = VpSde::default();
    let score = ring_score();
    let mut noise = GaussianNoise::new(0);
    Sampler::new(&sde, &score).run(&mut by_name(name)?, x, grid, &mut noise)
}

/// A score that is exact (ring data) except that it returns NaN at every t below `nan_below`.
struct NanBelow {
    inner: ExactScore<VpSde>,
    nan_below: f64,
}

impl Score<Array2<f64>> for NanBelow {
    fn score(&self, x: &Array2<f64>, t: f64) -> Result<Array2<f64>> {
        let s = self.inner.score(x, t)?;
        Ok(if t < self.nan_below { s.mapv(|_| f64::NAN) } else { s })
    }
}

/// A state of shape (n, 3) fed to a 2-D mixture score is `ShapeMismatch`, for every sampler.
#[test]
fn state_and_score_shapes_must_agree() {
    let grid = TimeGrid::reverse(&VpSde::default(), 5).unwrap();
    for name in SAMPLERS {
        let err = run(name, Array2::zeros((8, 3)), &grid).unwrap_err();
        assert!(
            matches!(err, Error::ShapeMismatch { ref expected, ref got, .. } if expected == &[2] && got == &[3]),
            "{name}: {err:?}"
        );
    }
    let err = Score::score(&ring_score(), &Array2::<f32>::zeros((2, 1)), 0.5).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err:?}");
}

/// A NaN or infinite initial state is `NonFiniteInput`, before any step.
#[test]
fn non_finite_initial_state_is_rejected() {
    let grid = TimeGrid::reverse(&VpSde::default(), 5).unwrap();
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut x = Array2::zeros((4, 2));
        x[[2, 1]] = bad;
        for name in SAMPLERS {
            let err = run(name, x.clone(), &grid).unwrap_err();
            assert!(matches!(err, Error::NonFiniteInput { .. }), "{name}, {bad}: {err:?}");
        }
    }
}

/// A score that turns NaN mid-run stops it with `NonFinite { step, t }` naming the first step whose
/// output is non-finite (`step` counts steps taken, as `StepEvent::step`) and the time it reached.
/// Predictors evaluate the score at a step's start time, correctors at its end time (Pc: predictor
/// from t to t_next, then the corrector at t_next), and so do the last stages of Heun, RK4,
/// Dormand–Prince and EDM's Heun (and restart, over it), which fixes the expected step per sampler.
#[test]
fn nan_score_mid_run_names_step_and_time() {
    let sde = VpSde::default();
    let grid = TimeGrid::uniform(1.0, 1e-3, 10).unwrap();
    let times = grid.times().to_vec();
    // NaN for t < 0.65: times[4] = 0.6004 is the first grid time hit.
    let score = NanBelow { inner: ring_score(), nan_below: 0.65 };
    assert!(times[3] > 0.65 && times[4] < 0.65);
    for name in SAMPLERS {
        let corrector_at_end = matches!(
            *name,
            "pc" | "langevin"
                | "annealed-langevin"
                | "ode-heun"
                | "ode-rk4"
                | "ode-dopri5"
                | "adaptive-sde"
                | "edm-heun"
                | "edm-heun-churn"
                | "restart"
        );
        // Steps are counted from 1: step i goes from times[i-1] to times[i].
        let first_bad = if corrector_at_end { 4 } else { 5 };
        let x = GaussianMixture::ring(4, 2.0, 0.2).unwrap().marginal(&sde, 1.0).sample(16, &mut common::rng(1));
        let mut noise = GaussianNoise::new(3);
        let err = Sampler::new(&sde, &score).run(&mut by_name(name).unwrap(), x, &grid, &mut noise).unwrap_err();
        match err {
            Error::NonFinite { step, t } => {
                assert_eq!(step, first_bad, "{name}: step");
                assert_eq!(t, times[first_bad], "{name}: t");
            }
            other => panic!("{name}: expected NonFinite, got {other:?}"),
        }
    }
}

/// A NaN from the final Tweedie denoising step is `NonFinite` at step `n + 1`, t = eps.
#[test]
fn nan_in_final_denoising_step_is_reported() {
    let sde = VpSde::default();
    let grid = TimeGrid::uniform(1.0, 1e-3, 6).unwrap();
    // The denoising step is the only evaluation at t = eps = 1e-3 for a predictor.
    let score = NanBelow { inner: ring_score(), nan_below: 2e-3 };
    let x = Array2::zeros((4, 2));
    let mut noise = GaussianNoise::new(0);
    let err = Sampler::new(&sde, &score).denoise(true).run(&mut Ancestral::new(), x, &grid, &mut noise).unwrap_err();
    assert_eq!(err, Error::NonFinite { step: 7, t: 1e-3 });
}

/// `Sgld::run` reports a diverging chain as `NonFinite` with the move count and its fixed t.
#[test]
fn sgld_nan_is_non_finite_at_its_iteration() {
    let sde = VpSde::default();
    let score = NanBelow { inner: ring_score(), nan_below: 0.5 };
    let mut noise = GaussianNoise::new(0);
    let mut ctx = Ctx { sde: &sde, score: &score, noise: &mut noise };
    let sgld = Sgld::new(StepSchedule::Constant(1e-3), 1).unwrap();
    let err = sgld.run(Array2::zeros((4, 2)), 0.3, 0, 5, &mut ctx).unwrap_err();
    assert_eq!(err, Error::NonFinite { step: 1, t: 0.3 });
}

/// Empty, one-point, non-monotone, repeated, NaN and infinite grids are `InvalidGrid`.
#[test]
fn malformed_grids_are_invalid_grid() {
    for times in [
        vec![],
        vec![0.5],
        vec![1.0, 0.5, 0.7],
        vec![0.1, 0.5, 0.3],
        vec![1.0, 0.5, 0.5],
        vec![1.0, f64::NAN, 0.0],
        vec![f64::NAN, 0.5],
        vec![1.0, f64::INFINITY],
    ] {
        let err = TimeGrid::new(times.clone()).unwrap_err();
        assert!(matches!(err, Error::InvalidGrid { .. }), "{times:?}: {err:?}");
    }
    for (a, b) in [(f64::NAN, 0.0), (1.0, f64::INFINITY), (0.5, 0.5)] {
        assert!(matches!(TimeGrid::uniform(a, b, 4), Err(Error::InvalidGrid { .. })), "uniform({a}, {b})");
        assert!(matches!(TimeGrid::quadratic(a, b, 4), Err(Error::InvalidGrid { .. })), "quadratic({a}, {b})");
    }
    let sde = VpSde::default();
    assert!(matches!(TimeGrid::log_snr(&sde, 0.5, 0.5, 4), Err(Error::InvalidGrid { .. })));
    assert!(matches!(TimeGrid::karras(&sde, f64::NAN, 0.5, 4, 7.0), Err(Error::InvalidGrid { .. })));
}

/// Zero step counts are `InvalidSteps { steps: 0 }` for every grid constructor and corrector.
#[test]
fn zero_steps_are_invalid_steps() {
    let sde = VpSde::default();
    let zero = |r: Result<TimeGrid>| matches!(r, Err(Error::InvalidSteps { steps: 0, .. }));
    assert!(zero(TimeGrid::uniform(1.0, 1e-3, 0)));
    assert!(zero(TimeGrid::quadratic(1.0, 1e-3, 0)));
    assert!(zero(TimeGrid::log_snr(&sde, 1.0, 1e-3, 0)));
    assert!(zero(TimeGrid::karras(&sde, 1.0, 1e-3, 0, 7.0)));
    assert!(zero(TimeGrid::reverse(&sde, 0)));
    assert!(matches!(Langevin::default().with_steps(0), Err(Error::InvalidSteps { steps: 0, .. })));
    assert!(matches!(AnnealedLangevin::new(0.16, 0), Err(Error::InvalidSteps { steps: 0, .. })));
    assert!(matches!(Sgld::new(StepSchedule::Constant(1e-3), 0), Err(Error::InvalidSteps { steps: 0, .. })));
    assert!(matches!(sde.ddpm_betas(0), Err(Error::InvalidSteps { steps: 0, .. })));
    assert!(matches!(sde.ddpm_betas(1), Err(Error::InvalidSteps { steps: 1, .. })));
}

/// Grids leaving the SDE's range [0, 1] (to 1.5, below 0) are `TimeOutOfRange` naming the first bad time.
#[test]
fn times_outside_the_sde_range_are_rejected() {
    let sde = VpSde::default();
    let err = run("reverse-em", Array2::zeros((4, 2)), &TimeGrid::uniform(1.5, 1e-3, 10).unwrap()).unwrap_err();
    assert!(matches!(err, Error::TimeOutOfRange { t, min, max } if t == 1.5 && min == 0.0 && max == 1.0), "{err:?}");
    let err = run("ancestral", Array2::zeros((4, 2)), &TimeGrid::uniform(1.0, -0.1, 10).unwrap()).unwrap_err();
    assert!(matches!(err, Error::TimeOutOfRange { t, .. } if t == -0.1), "{err:?}");
    let err = run("forward-em", Array2::zeros((4, 2)), &TimeGrid::uniform(0.0, 1.5, 10).unwrap()).unwrap_err();
    assert!(matches!(err, Error::TimeOutOfRange { .. }), "{err:?}");
    assert!(matches!(TimeGrid::log_snr(&sde, 1.5, 1e-3, 4), Err(Error::TimeOutOfRange { t, .. }) if t == 1.5));
    assert!(matches!(TimeGrid::karras(&sde, 1.0, -1e-3, 4, 7.0), Err(Error::TimeOutOfRange { .. })));
    assert!(matches!(
        Score::score(&ring_score(), &Array2::<f64>::zeros((1, 2)), 1.5),
        Err(Error::TimeOutOfRange { .. })
    ));
    let mut noise = GaussianNoise::new(0);
    let score = ring_score();
    let mut ctx = Ctx { sde: &sde, score: &score, noise: &mut noise };
    let sgld = Sgld::new(StepSchedule::Constant(1e-3), 1).unwrap();
    assert!(matches!(sgld.run(Array2::<f64>::zeros((2, 2)), -0.5, 0, 3, &mut ctx), Err(Error::TimeOutOfRange { .. })));
}

/// Invalid VP-SDE parameters (zero, reversed, NaN, infinite, negative; bad eps) are `InvalidParameter`.
#[test]
fn invalid_sde_parameters_are_rejected() {
    for (lo, hi) in [(0.0, 20.0), (5.0, 1.0), (f64::NAN, 20.0), (0.1, f64::NAN), (0.1, f64::INFINITY), (-1.0, 20.0)] {
        assert!(matches!(VpSde::new(lo, hi), Err(Error::InvalidParameter { .. })), "VpSde::new({lo}, {hi})");
    }
    for eps in [0.0, 1.0, -1e-3, f64::NAN] {
        assert!(matches!(VpSde::default().with_eps(eps), Err(Error::InvalidParameter { name: "eps", .. })), "{eps}");
    }
    let sde = VpSde::default();
    for rho in [0.0, -7.0, f64::NAN] {
        assert!(matches!(TimeGrid::karras(&sde, 1.0, 1e-3, 4, rho), Err(Error::InvalidParameter { name: "rho", .. })));
    }
    assert!(matches!(sde.t_of_log_snr(f64::NAN), Err(Error::InvalidParameter { .. })));
}

/// Invalid mixtures: bad shapes, NaN entries, non-positive weights, asymmetric or indefinite
/// covariances, no components, and a singular marginal are all typed errors.
#[test]
fn invalid_mixtures_are_rejected() {
    let means = array![[0.0, 0.0]];
    let eye = Array3::from_shape_vec((1, 2, 2), vec![1.0, 0.0, 0.0, 1.0]).unwrap();
    let asym = Array3::from_shape_vec((1, 2, 2), vec![1.0, 0.5, 0.0, 1.0]).unwrap();
    let indef = Array3::from_shape_vec((1, 2, 2), vec![1.0, 2.0, 2.0, 1.0]).unwrap();
    let param = |r: Result<GaussianMixture>| matches!(r, Err(Error::InvalidParameter { .. }));
    assert!(param(GaussianMixture::new(&[1.0], means.view(), asym.view())));
    assert!(param(GaussianMixture::new(&[1.0], means.view(), indef.view())));
    assert!(param(GaussianMixture::new(&[0.0], means.view(), eye.view())));
    assert!(param(GaussianMixture::new(&[-1.0], means.view(), eye.view())));
    assert!(param(GaussianMixture::new(&[], Array2::zeros((0, 2)).view(), Array3::zeros((0, 2, 2)).view())));
    assert!(param(GaussianMixture::ring(0, 1.0, 0.1)));
    assert!(param(GaussianMixture::ring(4, 1.0, -0.1)));
    assert!(param(GaussianMixture::ring(4, 1.0, f64::NAN)));
    let shape = |r: Result<GaussianMixture>| matches!(r, Err(Error::ShapeMismatch { .. }));
    assert!(shape(GaussianMixture::new(&[1.0, 1.0], means.view(), eye.view())));
    assert!(shape(GaussianMixture::new(&[1.0], means.view(), Array3::zeros((1, 3, 3)).view())));
    assert!(shape(GaussianMixture::gaussian(array![0.0, 0.0].view(), Array2::eye(3).view())));
    let nonfinite = |r: Result<GaussianMixture>| matches!(r, Err(Error::NonFiniteInput { .. }));
    assert!(nonfinite(GaussianMixture::new(&[f64::NAN], means.view(), eye.view())));
    assert!(nonfinite(GaussianMixture::new(&[1.0], array![[f64::NAN, 0.0]].view(), eye.view())));
    assert!(nonfinite(GaussianMixture::new(&[1.0], means.view(), (&eye * f64::INFINITY).view())));
    // A point mass has a singular marginal at t = 0 (sigma = 0): an error, not a NaN or a panic.
    let point = GaussianMixture::gaussian(array![1.0, 2.0].view(), Array2::zeros((2, 2)).view()).unwrap();
    let score = ExactScore::new(point.clone(), VpSde::default());
    assert!(matches!(Score::score(&score, &Array2::<f64>::zeros((3, 2)), 0.0), Err(Error::InvalidParameter { .. })));
    assert!(matches!(point.log_density(Array2::zeros((3, 2)).view(), 1.0, 0.0), Err(Error::InvalidParameter { .. })));
}

/// The Langevin signal-to-noise ratio must be finite and > 0 (`Langevin::snr`, `AnnealedLangevin::new`).
#[test]
fn langevin_snr_must_be_positive() {
    for snr in [0.0, -0.16, f64::NAN, f64::INFINITY] {
        assert!(matches!(Langevin::snr(snr), Err(Error::InvalidParameter { name: "snr", .. })), "{snr}");
        assert!(matches!(AnnealedLangevin::new(snr, 1), Err(Error::InvalidParameter { name: "snr", .. })), "{snr}");
    }
}

/// Sgld schedules with a non-positive or non-finite step, scale, offset, or a negative/NaN decay are rejected.
#[test]
fn sgld_bad_schedules_are_rejected() {
    let nan = f64::NAN;
    for schedule in [
        StepSchedule::Constant(0.0),
        StepSchedule::Constant(-1e-3),
        StepSchedule::Constant(nan),
        StepSchedule::Constant(f64::INFINITY),
        StepSchedule::Polynomial { a: 0.0, b: 1.0, gamma: 0.55 },
        StepSchedule::Polynomial { a: nan, b: 1.0, gamma: 0.55 },
        StepSchedule::Polynomial { a: 1e-2, b: 0.0, gamma: 0.55 },
        StepSchedule::Polynomial { a: 1e-2, b: -1.0, gamma: 0.55 },
        StepSchedule::Polynomial { a: 1e-2, b: 1.0, gamma: -0.5 },
        StepSchedule::Polynomial { a: 1e-2, b: 1.0, gamma: nan },
    ] {
        let err = Sgld::new(schedule.clone(), 1).unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { .. }), "{schedule:?}: {err:?}");
    }
    assert!(Sgld::new(StepSchedule::Polynomial { a: 1e-2, b: 1.0, gamma: 0.0 }, 1).is_ok());
}

/// An unknown solver name is `UnknownSolver`, listing every known name.
#[test]
fn unknown_solver_name_lists_the_known_ones() {
    match by_name::<Array2<f64>>("heun-but-misspelt") {
        Err(Error::UnknownSolver { name, known }) => {
            assert_eq!(name, "heun-but-misspelt");
            for n in SAMPLERS.iter().chain(&["forward-em"]) {
                assert!(known.split(", ").any(|k| k == *n), "{n} missing from {known}");
            }
        }
        Err(other) => panic!("expected UnknownSolver, got {other:?}"),
        Ok(_) => panic!("expected UnknownSolver, got a solver"),
    }
}

/// The forward solver on a decreasing grid, and a reverse sampler on an increasing one, are `WrongDirection`.
#[test]
fn solvers_refuse_the_wrong_time_direction() {
    let x = Array2::zeros((4, 2));
    let err = run("forward-em", x.clone(), &TimeGrid::uniform(1.0, 1e-3, 4).unwrap()).unwrap_err();
    assert_eq!(err, Error::WrongDirection { solver: "forward-em".into(), expected: "forward" });
    for name in SAMPLERS {
        let err = run(name, x.clone(), &TimeGrid::uniform(1e-3, 1.0, 4).unwrap()).unwrap_err();
        assert_eq!(err, Error::WrongDirection { solver: name.to_string(), expected: "reverse" });
    }
}

/// A `BrownianPath` queried outside its interval is `TimeOutOfRange` (directly and mid-run), a
/// zero-length step is `InvalidGrid`, a new shape is `ShapeMismatch`, and bad construction is `InvalidParameter`.
#[test]
fn brownian_path_rejects_bad_queries() {
    let like = Array2::<f64>::zeros((3, 2));
    let mut path = BrownianPath::new(1, 0.0, 0.5, 1e-6).unwrap();
    let err = path.value(0.75, &like).unwrap_err();
    assert_eq!(err, Error::TimeOutOfRange { t: 0.75, min: 0.0, max: 0.5 });
    assert!(matches!(path.value(-0.1, &like), Err(Error::TimeOutOfRange { .. })));
    assert!(matches!(path.value(f64::NAN, &like), Err(Error::TimeOutOfRange { .. })));
    assert!(matches!(path.increment(0.1, 0.6, &like), Err(Error::TimeOutOfRange { .. })));
    assert!(matches!(path.step_normal(0.2, 0.2, &like), Err(Error::InvalidGrid { .. })));
    assert!(matches!(path.value(0.3, &Array2::zeros((4, 2))), Err(Error::ShapeMismatch { .. })));
    // A forward run over [0, 1] on a path that only covers [0, 0.5].
    let sde = VpSde::default();
    let score = ring_score();
    let mut path = BrownianPath::new(1, 0.0, 0.5, 1e-6).unwrap();
    let grid = TimeGrid::uniform(0.0, 1.0, 4).unwrap();
    let err = Sampler::new(&sde, &score).run(&mut ForwardEulerMaruyama, like.clone(), &grid, &mut path).unwrap_err();
    assert!(matches!(err, Error::TimeOutOfRange { .. }), "{err:?}");
    for (t0, t1, tol) in
        [(0.0, 0.0, 1e-6), (f64::NAN, 1.0, 1e-6), (0.0, f64::INFINITY, 1e-6), (0.0, 1.0, 0.0), (0.0, 1.0, 2.0)]
    {
        assert!(
            matches!(BrownianPath::<Array2<f64>>::new(0, t0, t1, tol), Err(Error::InvalidParameter { .. })),
            "BrownianPath::new({t0}, {t1}, {tol})"
        );
    }
}

/// An observer's error stops the run and is returned as is (`Stopped` at the step it chose).
#[test]
fn observer_can_stop_a_run() {
    let sde = VpSde::default();
    let score = ring_score();
    let mut stop = |e: &StepEvent<'_, Array2<f64>>| {
        if e.step == 3 {
            Err(Error::Stopped { step: e.step, reason: "enough".into() })
        } else {
            Ok(())
        }
    };
    let mut noise = FixedNoise::new(Array2::zeros((2, 2)));
    let grid = TimeGrid::reverse(&sde, 10).unwrap();
    let err = Sampler::new(&sde, &score)
        .observe(&mut stop)
        .run(&mut ReverseEulerMaruyama, Array2::zeros((2, 2)), &grid, &mut noise)
        .unwrap_err();
    assert_eq!(err, Error::Stopped { step: 3, reason: "enough".into() });
}
