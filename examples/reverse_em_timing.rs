//! The scoresde side of `benches/compare_reverse_em.py`: reverse-SDE
//! Euler–Maruyama on the 8-Gaussian mixture with its exact score.
//!
//! `cargo run --release --example reverse_em_timing -- --n 10000 --steps 1000 --repeats 3`
//! prints one JSON line per element type with the best wall time of the repeats.

use std::time::Instant;

use clap::Parser;
use ndarray::Array2;
use scoresde::solvers::prelude::*;
use scoresde::solvers::Element;

#[derive(Parser)]
struct Args {
    /// Number of samples.
    #[arg(long, default_value_t = 10_000)]
    n: usize,
    /// Number of reverse-EM steps.
    #[arg(long, default_value_t = 1_000)]
    steps: usize,
    /// Timed repeats; the best is reported.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn time<F: Element>(args: &Args) -> anyhow::Result<(f64, f64)>
where
    rand_distr::StandardNormal: rand_distr::Distribution<F>,
{
    let sde = VpSde::default();
    let score = ExactScore::new(GaussianMixture::ring(8, 2.0, 0.1)?, sde);
    let grid = TimeGrid::reverse(&sde, args.steps)?;
    let mut best = f64::INFINITY;
    let mut checksum = 0.0;
    for r in 0..args.repeats.max(1) {
        let mut noise = GaussianNoise::new(args.seed + r as u64);
        let start = Instant::now();
        let x = prior_sample(&sde, &Array2::<F>::zeros((args.n, 2)), &mut noise);
        let run = Sampler::new(&sde, &score).run(&mut ReverseEulerMaruyama, x, &grid, &mut noise)?;
        best = best.min(start.elapsed().as_secs_f64());
        checksum = run.x.iter().map(|v| v.to_f64().unwrap_or(f64::NAN).powi(2)).sum::<f64>() / args.n as f64;
    }
    Ok((best, checksum))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    for (dtype, (secs, msq)) in [("float64", time::<f64>(&args)?), ("float32", time::<f32>(&args)?)] {
        println!(
            "{{\"impl\": \"scoresde\", \"dtype\": \"{dtype}\", \"n\": {}, \"steps\": {}, \"seconds\": {secs:.6}, \"mean_sq_norm\": {msq:.4}}}",
            args.n, args.steps
        );
    }
    Ok(())
}
