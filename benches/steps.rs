//! Criterion: one step of each integrator on ndarray states of 1e3 to 1e6 elements.
//!
//! The score is the exact score of an isotropic Gaussian (a cheap affine map),
//! so the numbers measure the integrator: its coefficient maths, array passes
//! and noise generation. `cargo bench --bench steps`.

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use ndarray::{Array1, Array2};
use scoresde::solvers::prelude::*;
use scoresde::solvers::SAMPLERS;

const DIM: usize = 2;

fn bench_steps(c: &mut Criterion) {
    let sde = VpSde::default();
    let data = GaussianMixture::gaussian(Array1::zeros(DIM).view(), Array2::eye(DIM).view()).expect("valid Gaussian");
    let score = ExactScore::new(data, sde);
    let mut names = vec!["forward-em"];
    names.extend_from_slice(SAMPLERS);
    for &elements in &[1_000usize, 10_000, 100_000, 1_000_000] {
        let mut group = c.benchmark_group(format!("step/{elements}"));
        group.throughput(Throughput::Elements(elements as u64));
        if elements >= 100_000 {
            group.sample_size(20);
        }
        for name in &names {
            let mut solver = by_name::<Array2<f64>>(name).expect("known solver");
            let mut noise = GaussianNoise::new(0);
            let x0 = Array2::<f64>::zeros((elements / DIM, DIM));
            let x0 = prior_sample(&sde, &x0, &mut noise);
            let (t, t_next) = if *name == "forward-em" { (0.5, 0.501) } else { (0.5, 0.499) };
            group.bench_with_input(BenchmarkId::from_parameter(name), &x0, |b, x0| {
                b.iter_batched(
                    || x0.clone(),
                    |x| {
                        let mut ctx = Ctx { sde: &sde, score: &score, noise: &mut noise };
                        solver.step(x, t, t_next, &mut ctx).expect("step")
                    },
                    criterion::BatchSize::LargeInput,
                )
            });
        }
        group.finish();
    }
}

// The macro defines an undocumented `pub fn benches`.
#[allow(missing_docs)]
mod group {
    criterion::criterion_group!(benches, super::bench_steps);
}
use group::benches;
criterion_main!(benches);
