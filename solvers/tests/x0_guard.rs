//! The x0 guard ([`X0Guard`]) in the solvers that form `x0_hat`: a no-op on data whose
//! exact `x0_hat` stays in `[-1, 1]`, a hard bound on the output with a bad score, the
//! name syntax and its errors, and the tensor backend against the ndarray one.
//!
//! With the guard off every solver runs its old code path; the closed-form and
//! hand-recursion tests (`ode.rs`, `ddpm.rs`, `determinism.rs`, `tensor_backend.rs`) pin
//! those results.

use ndarray::{array, Array2, Array3};
use scoresde_solvers::prelude::*;
use scoresde_solvers::{solver_info, SOLVERS};

/// Two narrow components at -0.5 and 0.5 (variance 1e-6): the exact `x0_hat`, a convex
/// combination of the components' posterior means, stays within about 0.5 + 1e-3 of 0.
fn inside_data() -> GaussianMixture {
    let means = array![[-0.5], [0.5]];
    let covs = Array3::from_elem((2, 1, 1), 1e-6);
    GaussianMixture::new(&[0.5, 0.5], means.view(), covs.view()).unwrap()
}

/// The exact score times a factor: a deliberately bad score for a factor other than 1.
struct Scaled(ExactScore<VpSde>, f64);

impl Score<Array2<f64>> for Scaled {
    fn score(&self, x: &Array2<f64>, t: f64) -> scoresde_solvers::Result<Array2<f64>> {
        let mut s = self.0.score(x, t)?;
        s.scale(self.1);
        Ok(s)
    }
}

/// `name` run on its row's default grid (60 steps, t = 1 to 1e-3) from a fixed prior
/// sample of 1000 points, with the final denoising step; the raw result, unchecked.
fn run(name: &str, factor: f64) -> scoresde_solvers::Result<Array2<f64>> {
    let sde = VpSde::default();
    let score = Scaled(ExactScore::new(inside_data(), sde), factor);
    let grid = solver_info(name)?.grid.build(&sde, 1.0, 1e-3, 60)?;
    let mut noise = GaussianNoise::new(3);
    let x = prior_sample(&sde, &Array2::<f64>::zeros((1000, 1)), &mut noise);
    let mut solver = by_name::<Array2<f64>>(name)?;
    let run =
        Sampler::new(&sde, &score).denoise(true).check_finite(false).run(solver.as_mut(), x, &grid, &mut noise)?;
    Ok(run.x)
}

fn x0_rows() -> Vec<&'static str> {
    SOLVERS.iter().filter(|s| s.x0).map(|s| s.name).collect()
}

/// Largest |x|, NaN and infinities counted as infinite.
fn max_abs(x: &Array2<f64>) -> f64 {
    x.iter().map(|v| if v.is_finite() { v.abs() } else { f64::INFINITY }).fold(0.0, f64::max)
}

/// The rows that declare `x0` are the ancestral, DDIM, DPM-Solver++ and SA-Solver rows, and exactly
/// they accept a guard by name (with their positional parameter too, where they have one).
#[test]
fn the_x0_rows_are_the_ones_that_take_a_guard() {
    assert_eq!(
        x0_rows(),
        [
            "ancestral",
            "ancestral-large",
            "ddim",
            "ddim-eta1",
            "dpm1",
            "dpm2m",
            "dpm3m",
            "unipc",
            "unipc-bh1",
            "dpm2m-unic",
            "sa-solver",
            "sa-solver-ode",
        ]
    );
    for info in SOLVERS {
        let mut names = vec![format!("{}:clip", info.name)];
        if let Some(p) = info.param {
            let arg = match p.prefix {
                "ode-dopri5" => "1e-4",
                "unipc" | "unipc-bh1" => "3",
                _ => "0.5",
            };
            names.push(format!("{}:{arg},threshold", p.prefix));
        }
        for name in names {
            let got = by_name::<Array2<f64>>(&name);
            assert_eq!(got.is_ok(), info.x0, "{name}: {:?}", got.err());
        }
    }
}

/// Exact score, data inside [-1, 1]: the guard never bites, so guarded runs agree with
/// unguarded ones up to the rounding of the re-arranged update (1e-9 on values ~0.5).
#[test]
fn guard_is_a_no_op_when_the_exact_x0_stays_inside() {
    for name in x0_rows() {
        let plain = run(name, 1.0).unwrap();
        assert!(max_abs(&plain) < 0.52, "{name}: exact samples reach {}", max_abs(&plain));
        for opt in ["clip", "threshold"] {
            let guarded = run(&format!("{name}:{opt}"), 1.0).unwrap();
            let diff = (&guarded - &plain).mapv(f64::abs).fold(0.0f64, |m, &d| m.max(d));
            assert!(diff < 1e-9, "{name}:{opt}: differs by {diff:e}");
        }
    }
}

/// The exact score negated (pointing away from the data): unguarded, the samples leave
/// [-1, 1] by orders of magnitude (1e5 and more); with static clipping or dynamic
/// thresholding every sample ends inside [-1, 1] (the final denoising step is guarded
/// too). A score scaled by 10 overshoots too, but not on every grid: the deterministic
/// rows on the log-SNR grid contract onto the modes and end inside.
#[test]
fn guard_bounds_the_samples_of_a_bad_score() {
    for name in x0_rows() {
        let plain = max_abs(&run(name, -1.0).unwrap());
        assert!(plain > 100.0, "{name}: a negated score should blow up, max |x| = {plain}");
        for opt in ["clip", "clip=1", "threshold", "threshold=0.9"] {
            let x = run(&format!("{name}:{opt}"), -1.0).unwrap();
            let m = max_abs(&x);
            assert!(m <= 1.0, "{name}:{opt}: max |x| = {m}");
        }
        let x = run(&format!("{name}:clip=0.25"), -1.0).unwrap();
        assert!(max_abs(&x) <= 0.25, "{name}:clip=0.25: max |x| = {}", max_abs(&x));
    }
}

#[test]
fn the_guard_is_set_by_name() {
    let guard = |name: &str| by_name::<Array2<f64>>(name).unwrap().x0_guard();
    assert_eq!(guard("ddim"), X0Guard::Off);
    assert_eq!(guard("ddim:clip"), X0Guard::Clip(1.0));
    assert_eq!(guard("ancestral:clip=2.5"), X0Guard::Clip(2.5));
    assert_eq!(guard("dpm2m:threshold"), X0Guard::Threshold(0.995));
    assert_eq!(guard("dpm1:threshold=0.9"), X0Guard::Threshold(0.9));
    let eta = by_name::<Array2<f64>>("ddim-eta:0.5,threshold=0.99").unwrap();
    assert_eq!((eta.name(), eta.x0_guard()), ("ddim-eta", X0Guard::Threshold(0.99)));
    assert_eq!(solver_info("ddim-eta:0.5,clip").unwrap().name, "ddim-eta1");
    assert_eq!(solver_info("ancestral-large:clip").unwrap().name, "ancestral-large");
}

#[test]
fn bad_guards_are_invalid_parameters() {
    let err = |name: &str| match by_name::<Array2<f64>>(name) {
        Err(Error::InvalidParameter { name: what, reason, .. }) => (what, reason),
        Err(e) => panic!("{name}: {e}"),
        Ok(_) => panic!("{name}: accepted"),
    };
    for name in ["ddim:clip=0", "ddim:clip=-1", "ddim:clip=nan", "ddim:clip=inf", "ddim:clip=abc"] {
        assert_eq!(err(name).0, "clip", "{name}");
    }
    for name in ["dpm2m:threshold=0", "dpm2m:threshold=1.5", "dpm2m:threshold=nan", "dpm2m:threshold=-0.5"] {
        assert_eq!(err(name).0, "threshold", "{name}");
    }
    for name in ["ode-euler:clip", "reverse-em:threshold", "edm-heun:clip=1", "ode-dopri5:1e-4,clip"] {
        let (what, reason) = err(name);
        assert_eq!(what, "x0 guard", "{name}");
        assert!(reason.contains("forms no x0 estimate") && reason.contains("dpm2m"), "{name}: {reason}");
    }
    assert_eq!(err("ddim:clip,threshold").0, "x0 guard");
    assert_eq!(err("ddim:eta=0.5").0, "option");
    assert_eq!(err("ddim-eta:0.5,0.7").0, "parameter");
    // An unknown name is still an unknown name, options or not.
    assert!(matches!(by_name::<Array2<f64>>("nope:clip"), Err(Error::UnknownSolver { .. })));
    // A solver built in code refuses a guard it cannot apply.
    let mut euler = OdeEuler;
    let e = Solver::<Array2<f64>>::set_x0_guard(&mut euler, X0Guard::Clip(1.0)).unwrap_err();
    assert!(matches!(e, Error::InvalidParameter { name: "x0 guard", .. }), "{e}");
}

/// The tensor backend's quantiles and clipping agree with the ndarray backend on a
/// 4-D batch (reduced over every non-batch axis), in f64 and f32.
#[cfg(feature = "tch")]
#[test]
fn tensor_guard_matches_ndarray() {
    use rand::SeedableRng;
    use tch::{Kind, Tensor};
    let x =
        ndarray::ArrayD::<f64>::zeros(vec![5, 2, 3, 7]).randn_like(&mut scoresde_solvers::Rng::seed_from_u64(1)) * 2.0;
    let flat: Vec<f64> = x.iter().copied().collect();
    for kind in [Kind::Double, Kind::Float] {
        let tol = if kind == Kind::Double { 1e-14 } else { 1e-6 };
        let t = Tensor::from_slice(&flat).reshape([5, 2, 3, 7]).to_kind(kind);
        for p in [0.0, 0.3, 0.995, 1.0] {
            let (a, b) = (x.abs_quantiles(p).unwrap(), t.abs_quantiles(p).unwrap());
            for (a, b) in a.iter().zip(&b) {
                assert!((a - b).abs() <= tol * a.abs().max(1.0), "{kind:?} p = {p}: {a} vs {b}");
            }
        }
        for guard in [X0Guard::Clip(0.7), X0Guard::Threshold(0.9), X0Guard::Threshold(0.2)] {
            let (mut a, mut b) = (x.clone(), t.copy());
            guard.apply(&mut a).unwrap();
            guard.apply(&mut b).unwrap();
            let b: Vec<f64> = Vec::try_from(&b.to_kind(Kind::Double).reshape([-1])).unwrap();
            for (a, b) in a.iter().zip(&b) {
                assert!((a - b).abs() <= tol, "{kind:?} {guard}: {a} vs {b}");
            }
        }
        assert!(t.abs_quantiles(2.0).is_err());
        assert!(t.copy().clip_samples(&[1.0; 4], false).is_err());
    }
    let mut one = Tensor::from_slice(&[3.0f64, -6.0, 1.5]).reshape([1, 3]);
    X0Guard::threshold(1.0).unwrap().apply(&mut one).unwrap();
    assert_eq!(Vec::<f64>::try_from(&one.reshape([-1])).unwrap(), vec![0.5, -1.0, 0.25]);
}
