//! The `tch::Tensor` backend against the ndarray backend: every integrator,
//! fed the same prior sample, the same noise and the same exact score, ends at
//! the same state within f32 rounding. Runs with `--features tch` (the
//! workspace build enables it through the root crate).
#![cfg(feature = "tch")]

use ndarray::{Array2, Ix2};
use scoresde_solvers::prelude::*;
use scoresde_solvers::{solver_info, Error, SAMPLERS};
use tch::{Device, Kind, Tensor};

fn to_tensor(a: &Array2<f64>) -> Tensor {
    Tensor::try_from(a.as_standard_layout().to_owned()).expect("ndarray -> tensor").to_kind(Kind::Float)
}

fn to_array(t: &Tensor) -> Array2<f64> {
    let a: ndarray::ArrayD<f64> = (&t.to_kind(Kind::Double)).try_into().expect("tensor -> ndarray");
    a.into_dimensionality::<Ix2>().expect("2-D")
}

/// The exact score evaluated on the host (a test adapter: the conversion sits
/// in the score, never in an integrator step).
struct HostScore<'a>(&'a ExactScore<VpSde>);

impl Score<Tensor> for HostScore<'_> {
    fn score(&self, x: &Tensor, t: f64) -> scoresde_solvers::Result<Tensor> {
        Ok(to_tensor(&self.0.score(&to_array(x), t)?))
    }
}

/// The same i.i.d. draws as `GaussianNoise::new(seed)` on `Array2<f64>`, as tensors.
struct SharedNoise(GaussianNoise);

impl Noise<Tensor> for SharedNoise {
    fn step_normal(&mut self, t: f64, t_next: f64, like: &Tensor) -> scoresde_solvers::Result<Tensor> {
        let z: Array2<f64> = self.0.step_normal(t, t_next, &to_array(like))?;
        Ok(to_tensor(&z))
    }
    fn normal(&mut self, like: &Tensor) -> Tensor {
        let z: Array2<f64> = self.0.normal(&to_array(like));
        to_tensor(&z)
    }
}

fn mixture() -> GaussianMixture {
    GaussianMixture::ring(4, 2.0, 0.3).expect("valid mixture")
}

#[test]
fn every_sampler_agrees_across_backends() {
    let sde = VpSde::default();
    let exact = ExactScore::new(mixture(), sde);
    let grid = TimeGrid::reverse(&sde, 25).unwrap();
    let x0: Array2<f64> = prior_sample(&sde, &Array2::zeros((64, 2)), &mut GaussianNoise::new(1));
    // Every row, and the parameterised forms and options of the multistep solvers.
    let forms = ["unipc:3", "unipc-bh1:1", "dpm3m:lower-order-final", "unipc:3,lower-order-final"];
    for &name in SAMPLERS.iter().chain(&forms) {
        let mut nd_solver = by_name::<Array2<f64>>(name).unwrap();
        let nd =
            Sampler::new(&sde, &exact).run(nd_solver.as_mut(), x0.clone(), &grid, &mut GaussianNoise::new(7)).unwrap();
        let host = HostScore(&exact);
        let mut tch_solver = by_name::<Tensor>(name).unwrap();
        let tt = Sampler::new(&sde, &host)
            .run(tch_solver.as_mut(), to_tensor(&x0), &grid, &mut SharedNoise(GaussianNoise::new(7)))
            .unwrap();
        assert_eq!(tt.x.kind(), Kind::Float, "{name}: the state stays f32");
        assert_eq!((tt.score_evals, tt.steps), (nd.score_evals, nd.steps), "{name}");
        let got = to_array(&tt.x);
        // f32 rounding, relative to the sample scale, grown over 25 steps; an adaptive row
        // takes more internal steps (its evaluations over the fewest it could make), and
        // the rounding grows with them.
        let min_evals = solver_info(name).unwrap().evals.min() * 25;
        let internal = (nd.score_evals as f64 / min_evals as f64).max(1.0);
        let scale = nd.x.iter().fold(1.0f64, |m, v| m.max(v.abs())) * internal;
        let err = (&got - &nd.x).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(err <= 1e-4 * scale, "{name}: tensor and ndarray runs differ by {err} (scale {scale})");
    }
}

#[test]
fn state_operations_match_ndarray() {
    let a = Array2::from_shape_fn((5, 3), |(i, j)| (i as f64) - 0.5 * (j as f64));
    let b = Array2::from_shape_fn((5, 3), |(i, j)| ((i * j) as f64).sin());
    let c = Array2::from_shape_fn((5, 3), |(i, j)| ((i + 2 * j) as f64).cos());
    let (ta, tb, tc) = (to_tensor(&a), to_tensor(&b), to_tensor(&c));
    let close = |t: &Tensor, want: &Array2<f64>| {
        let err = (&to_array(t) - want).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!(err < 1e-5, "differs by {err}");
    };
    let mut x = ta.duplicate();
    x.axpby(0.5, -2.0, &tb).unwrap();
    close(&x, &(&a * 0.5 - &b * 2.0));
    close(&ta, &a); // duplicate() is a deep copy
    let mut x = ta.duplicate();
    x.axpbypcz(1.5, 0.25, &tb, -3.0, &tc).unwrap();
    close(&x, &(&a * 1.5 + &b * 0.25 - &c * 3.0));
    let mut x = ta.duplicate();
    x.scale(-0.75);
    close(&x, &(&a * -0.75));
    assert!((ta.mean_sample_norm() - a.mean_sample_norm()).abs() < 1e-5);
    let (en_t, en_a) = (ta.error_norm(&tb, &tc, 1e-3, 1e-4).unwrap(), a.error_norm(&b, &c, 1e-3, 1e-4).unwrap());
    assert!((en_t - en_a).abs() < 1e-5 * en_a, "error_norm {en_t} vs {en_a}");
    assert!(matches!(
        ta.error_norm(&tb, &Tensor::zeros([2], (Kind::Float, Device::Cpu)), 1e-3, 1e-4),
        Err(Error::ShapeMismatch { .. })
    ));
    // Per-sample error norms, standard deviations and scaling agree with ndarray.
    let (nt, na) =
        (ta.sample_error_norms(&tb, &tc, 1e-1, 1e-2).unwrap(), a.sample_error_norms(&b, &c, 1e-1, 1e-2).unwrap());
    let (st, sa) = (ta.sample_stds().unwrap(), a.sample_stds().unwrap());
    assert_eq!((nt.len(), st.len()), (5, 5));
    for i in 0..5 {
        assert!((nt[i] - na[i]).abs() <= 1e-5 * na[i].max(1.0), "sample_error_norms {nt:?} vs {na:?}");
        assert!((st[i] - sa[i]).abs() <= 1e-5 * sa[i].max(1.0), "sample_stds {st:?} vs {sa:?}");
    }
    let factors = [0.5, -1.0, 2.0, 0.0, 3.0];
    let (mut xt, mut xa) = (ta.duplicate(), a.clone());
    xt.scale_samples(&factors).unwrap();
    xa.scale_samples(&factors).unwrap();
    close(&xt, &xa);
    assert!(matches!(xt.scale_samples(&[1.0]), Err(Error::ShapeMismatch { .. })));
    assert_eq!(State::shape(&ta), vec![5, 3]);
    assert!(ta.all_finite());
    let mut rng = <scoresde_solvers::Rng as rand::SeedableRng>::seed_from_u64(3);
    let z = State::randn_like(&ta, &mut rng);
    assert_eq!((z.size(), z.kind(), z.device()), (ta.size(), Kind::Float, Device::Cpu));
}

#[test]
fn noise_is_reproducible_from_its_seed() {
    let like = Tensor::zeros([1000, 2], (Kind::Float, Device::Cpu));
    let draw = |seed| {
        let mut noise = GaussianNoise::new(seed);
        (noise.normal(&like), noise.normal(&like))
    };
    let ((a1, a2), (b1, _)) = (draw(5), draw(5));
    assert!(a1.equal(&b1), "same seed, same draws");
    assert!(!a1.equal(&a2), "successive draws differ");
    // The draws are standard normal: mean within 5 standard errors of 0, variance of 1.
    let n = 2000.0;
    let mean = a1.mean(Kind::Double).double_value(&[]);
    let var = a1.var(true).double_value(&[]);
    assert!(mean.abs() < 5.0 / f64::sqrt(n), "mean {mean}");
    assert!((var - 1.0).abs() < 5.0 * f64::sqrt(2.0 / n), "variance {var}");
}

#[test]
fn bad_tensors_give_errors_not_panics() {
    let a = Tensor::zeros([4, 2], (Kind::Float, Device::Cpu));
    let b = Tensor::zeros([4, 3], (Kind::Float, Device::Cpu));
    let mut x = a.duplicate();
    assert!(matches!(x.axpby(1.0, 1.0, &b), Err(Error::ShapeMismatch { .. })));
    assert!(matches!(x.axpbypcz(1.0, 1.0, &a, 1.0, &b), Err(Error::ShapeMismatch { .. })));
    let nan = Tensor::from_slice(&[1.0f32, f32::NAN]).reshape([1, 2]);
    assert!(!nan.all_finite());
    // A NaN prior sample is rejected before the first step.
    let sde = VpSde::default();
    let exact = ExactScore::new(mixture(), sde);
    let host = HostScore(&exact);
    let grid = TimeGrid::reverse(&sde, 5).unwrap();
    let mut solver = by_name::<Tensor>("ancestral").unwrap();
    let err = Sampler::new(&sde, &host).run(solver.as_mut(), nan, &grid, &mut GaussianNoise::new(0));
    assert!(matches!(err, Err(Error::NonFiniteInput { .. })), "{err:?}");
}

/// Tensor noise is drawn on the host from the noise source alone: the same
/// numbers as the ndarray backend's for the same seed and precision, whatever
/// libtorch's own generator holds.
#[test]
fn tensor_noise_is_the_ndarray_noise_and_ignores_libtorchs_generator() {
    use rand::SeedableRng;
    // 9000 f32 elements take the ndarray backend's parallel block path; 10 f64 the direct one.
    for (rows, kind) in [(3000i64, Kind::Float), (5, Kind::Double)] {
        let like = Tensor::zeros([rows, 3], (kind, Device::Cpu));
        let mut rng = scoresde_solvers::Rng::seed_from_u64(11);
        tch::manual_seed(1);
        let z = State::randn_like(&like, &mut rng);
        assert_eq!((z.size(), z.kind()), (like.size(), kind));
        let mut rng = scoresde_solvers::Rng::seed_from_u64(11);
        tch::manual_seed(2);
        let again = State::randn_like(&like, &mut rng);
        assert!(z.equal(&again), "{kind:?}: libtorch's generator must not matter");
        let mut rng = scoresde_solvers::Rng::seed_from_u64(11);
        let diff = match kind {
            Kind::Double => to_array(&z) - State::randn_like(&Array2::<f64>::zeros((rows as usize, 3)), &mut rng),
            _ => {
                let a: Array2<f32> = State::randn_like(&Array2::<f32>::zeros((rows as usize, 3)), &mut rng);
                to_array(&z) - a.mapv(f64::from)
            }
        };
        assert!(diff.iter().all(|d| *d == 0.0), "{kind:?}: tensor and ndarray draws differ");
    }
}

/// A tensor's machine epsilon follows its kind, and Dormand–Prince on f32 tensors (the
/// program's sampling state) rejects an rtol below f32's before any score evaluation.
#[test]
fn tensor_epsilon_follows_the_kind() {
    let eps = |kind| Tensor::zeros([2, 2], (kind, Device::Cpu)).epsilon();
    assert_eq!(eps(Kind::Double), f64::EPSILON);
    assert_eq!(eps(Kind::Float), f64::from(f32::EPSILON));
    assert_eq!(eps(Kind::Half), 2f64.powi(-10));
    assert_eq!(eps(Kind::BFloat16), 2f64.powi(-7));
    assert_eq!(eps(Kind::Int64), 1.0);
    let sde = VpSde::default();
    let exact = ExactScore::new(mixture(), sde);
    let host = HostScore(&exact);
    let score = CountingScore::new(&host);
    let grid = TimeGrid::uniform(1.0, 1e-3, 1).unwrap();
    let mut noise = GaussianNoise::new(0);
    let x = Tensor::zeros([4, 2], (Kind::Float, Device::Cpu));
    let err = Sampler::new(&sde, &score).run(&mut OdeDopri5::new(1e-9, 1e-9).unwrap(), x, &grid, &mut noise);
    assert!(matches!(err, Err(Error::InvalidParameter { name: "rtol", .. })), "{err:?}");
    assert_eq!(score.count(), 0);
}
