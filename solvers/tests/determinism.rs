//! Reproducibility: every sampler known by name gives bit-identical output for
//! the same seed and different output for a different seed, in f64 and f32.

mod common;

use ndarray::Array2;
use scoresde_solvers::prelude::*;
use scoresde_solvers::{Element, SAMPLERS};

/// Runs the sampler `name` from the prior with `seed` (prior draw, noise and all), with
/// the final Tweedie step, on the 8-Gaussians ring in 2-D.
fn sample<F: Element>(name: &str, seed: u64, n: usize, steps: usize) -> Array2<F>
where
    rand_distr::StandardNormal: rand_distr::Distribution<F>,
    ExactScore<VpSde>: Score<Array2<F>>,
{
    let sde = VpSde::default();
    let score = ExactScore::new(GaussianMixture::ring(8, 2.0, 0.1).unwrap(), sde);
    let grid = TimeGrid::reverse(&sde, steps).unwrap();
    let mut noise = GaussianNoise::new(seed);
    let x_t = prior_sample(&sde, &Array2::<F>::zeros((n, 2)), &mut noise);
    let mut solver = by_name::<Array2<F>>(name).unwrap();
    Sampler::new(&sde, &score).denoise(true).run(&mut solver, x_t, &grid, &mut noise).unwrap().x
}

/// The exact bit patterns (f32 values widen to f64 exactly, so distinct f32 bits stay distinct).
fn bits<F: Copy + Into<f64>>(x: &Array2<F>) -> Vec<u64> {
    x.iter().map(|v| (*v).into().to_bits()).collect()
}

fn check_all<F: Element + Into<f64>>()
where
    rand_distr::StandardNormal: rand_distr::Distribution<F>,
    ExactScore<VpSde>: Score<Array2<F>>,
{
    for name in SAMPLERS {
        let a = sample::<F>(name, 7, 256, 12);
        let b = sample::<F>(name, 7, 256, 12);
        assert!(a.iter().all(|v| v.is_finite()), "{name}: non-finite output");
        assert_eq!(bits(&a), bits(&b), "{name}: same seed, different output");
        let c = sample::<F>(name, 8, 256, 12);
        let differing = a.iter().zip(c.iter()).filter(|(x, y)| x != y).count();
        assert!(
            differing > a.len() / 2,
            "{name}: seeds 7 and 8 agree on {} of {} values",
            a.len() - differing,
            a.len()
        );
    }
}

/// For every name in `SAMPLERS` (f64): same seed twice gives bit-identical output, another seed differs.
#[test]
fn every_sampler_is_deterministic_given_the_seed_f64() {
    check_all::<f64>();
}

/// For every name in `SAMPLERS` (f32): same seed twice gives bit-identical output, another seed differs.
#[test]
fn every_sampler_is_deterministic_given_the_seed_f32() {
    check_all::<f32>();
}

/// With a batch large enough for the parallel score kernel (2048 x 2, 8 components), the PC
/// sampler is still bit-for-bit reproducible (f64 and f32).
#[test]
fn parallel_score_path_is_deterministic() {
    let a = sample::<f64>("pc", 3, 2048, 4);
    let b = sample::<f64>("pc", 3, 2048, 4);
    assert_eq!(bits(&a), bits(&b));
    let a = sample::<f32>("pc", 3, 2048, 4);
    let b = sample::<f32>("pc", 3, 2048, 4);
    assert_eq!(bits(&a), bits(&b));
}

/// Each solver built by name reports that name (the registry and the solvers agree).
#[test]
fn solvers_report_their_registry_names() {
    for name in SAMPLERS.iter().chain(&["forward-em"]) {
        assert_eq!(by_name::<Array2<f64>>(name).unwrap().name(), *name);
    }
}

/// The forward sampler by name with a `BrownianPath` is a deterministic function of the path seed.
#[test]
fn forward_em_with_brownian_path_is_deterministic() {
    let sde = VpSde::default();
    let score = ExactScore::new(GaussianMixture::ring(8, 2.0, 0.1).unwrap(), sde);
    let grid = TimeGrid::uniform(0.0, 1.0, 37).unwrap();
    let x0 = GaussianMixture::ring(8, 2.0, 0.1).unwrap().sample(128, &mut common::rng(1));
    let run = |seed: u64| {
        let mut path = BrownianPath::new(seed, 0.0, 1.0, 1e-6).unwrap();
        let mut solver = by_name::<Array2<f64>>("forward-em").unwrap();
        Sampler::new(&sde, &score).run(&mut solver, x0.clone(), &grid, &mut path).unwrap().x
    };
    assert_eq!(bits(&run(5)), bits(&run(5)));
    assert_ne!(bits(&run(5)), bits(&run(6)));
}
