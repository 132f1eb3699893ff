//! The scoresde side of `benches/compare_nn.py`: DSM training steps per
//! second of the default MLP, and 1,000 ancestral (DDPM) sampling steps of
//! the same MLP on a `tch::Tensor` state.
//!
//! `cargo run --release --example bench_nn -- --device cpu --what all`
//! prints one JSON line per measurement.

use std::time::Instant;

use clap::{Parser, ValueEnum};
use scoresde::data::Toy;
use scoresde::model::{NeuralScore, SdeSpec};
use scoresde::net::{NetConfig, ScoreNet};
use scoresde::solvers::prelude::*;
use scoresde::solvers::{by_name, Score};
use scoresde::train::{TrainConfig, Trainer};
use tch::{Device, Kind, Tensor};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum What {
    Train,
    Sample,
    All,
}

#[derive(Parser)]
struct Args {
    /// `cpu`, `cuda`, `cuda:N` or `auto`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// libtorch intra-op threads (default: libtorch's own choice).
    #[arg(long)]
    threads: Option<i32>,
    /// Which measurements to take.
    #[arg(long, value_enum, default_value = "all")]
    what: What,
    /// Training batch size.
    #[arg(long, default_value_t = 512)]
    train_batch: usize,
    /// Untimed training steps before the clock starts.
    #[arg(long, default_value_t = 50)]
    train_warmup: u64,
    /// Timed training steps.
    #[arg(long, default_value_t = 500)]
    train_steps: u64,
    /// Training set size (8 Gaussians on a circle).
    #[arg(long, default_value_t = 20_000)]
    data: usize,
    /// Sampling batch sizes, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "256,10000")]
    sample_batch: Vec<usize>,
    /// Ancestral steps per sampling run.
    #[arg(long, default_value_t = 1000)]
    sample_steps: usize,
    /// Sampler by name (`ancestral` is DDPM's "fixed small" variance, diffusers' default).
    #[arg(long, default_value = "ancestral")]
    solver: String,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn train(args: &Args, device: Device) -> anyhow::Result<()> {
    let data = Toy::EightGaussians.sample(args.data, args.seed)?;
    let config = TrainConfig {
        steps: args.train_warmup + args.train_steps,
        batch_size: args.train_batch,
        seed: args.seed,
        ..TrainConfig::default()
    };
    let mut trainer = Trainer::new(NetConfig::mlp(2), SdeSpec::default(), config, &data, device)?;
    for _ in 0..args.train_warmup {
        let _ = trainer.step()?;
    }
    sync(device);
    let start = Instant::now();
    let mut loss = Tensor::zeros([], (Kind::Float, device));
    for _ in 0..args.train_steps {
        loss = trainer.step()?;
    }
    // Reading the loss waits for every queued kernel.
    let last = loss.double_value(&[]);
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"measure\": \"train\", \"batch\": {}, \"steps\": {}, \"seconds\": {secs:.6}, \"steps_per_s\": {:.3}, \"loss\": {last:.5}, \"threads\": {}, \"device\": \"{device:?}\"}}",
        args.train_batch,
        args.train_steps,
        args.train_steps as f64 / secs,
        tch::get_num_threads()
    );
    Ok(())
}

fn sample_once(score: &NeuralScore, args: &Args, batch: usize, steps: usize, seed: u64) -> anyhow::Result<Tensor> {
    let spec = SdeSpec::default().build()?;
    let sde = spec.as_ref();
    let grid = TimeGrid::reverse(sde, steps)?;
    let mut solver = by_name::<Tensor>(&args.solver)?;
    let mut noise = GaussianNoise::new(seed);
    let like = Tensor::zeros([batch as i64, 2], (Kind::Float, score.device()));
    let x = prior_sample(sde, &like, &mut noise);
    let run = Sampler::new(sde, score as &dyn Score<Tensor>).run(solver.as_mut(), x, &grid, &mut noise)?;
    Ok(run.x)
}

fn sample(args: &Args, device: Device) -> anyhow::Result<()> {
    let net = ScoreNet::new(NetConfig::mlp(2), device, args.seed)?;
    let params = net.init_params(args.seed)?;
    let score = NeuralScore::new(net, params, SdeSpec::default().build()?)?;
    for &batch in &args.sample_batch {
        // A short untimed run first (allocator, thread pool, kernels).
        let _ = sample_once(&score, args, batch, 10, args.seed)?;
        sync(device);
        let start = Instant::now();
        let x = sample_once(&score, args, batch, args.sample_steps, args.seed + 1)?;
        let msq = x.to_kind(Kind::Double).square().sum(Kind::Double).double_value(&[]) / batch as f64;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{{\"measure\": \"sample\", \"batch\": {batch}, \"steps\": {}, \"seconds\": {secs:.6}, \"samples_per_s\": {:.3}, \"mean_sq_norm\": {msq:.4}, \"threads\": {}, \"device\": \"{device:?}\"}}",
            args.sample_steps,
            batch as f64 / secs,
            tch::get_num_threads()
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let device = scoresde::device::select(&args.device)?;
    if let Some(n) = args.threads {
        tch::set_num_threads(n);
    }
    if matches!(args.what, What::Train | What::All) {
        train(&args, device)?;
    }
    if matches!(args.what, What::Sample | What::All) {
        sample(&args, device)?;
    }
    Ok(())
}
