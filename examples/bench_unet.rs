//! DSM training steps per second of the default U-Net
//! ([`UnetConfig::small`]) on random images, and its parameter count.
//!
//! `cargo run --release --example bench_unet -- --threads 1 --shape 1,28,28`
//! prints one JSON line per measurement.

use std::time::Instant;

use clap::Parser;
use ndarray::Array2;
use scoresde::model::SdeSpec;
use scoresde::net::NetConfig;
use scoresde::train::{TrainConfig, Trainer};
use scoresde::unet::UnetConfig;
use tch::Device;

#[derive(Parser)]
struct Args {
    /// libtorch intra-op threads.
    #[arg(long, default_value_t = 1)]
    threads: i32,
    /// Image shapes C,H,W to measure (repeat the option for several).
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 28, 28])]
    shape: Vec<usize>,
    /// Base channels [default: `UnetConfig::small`'s].
    #[arg(long)]
    base: Option<usize>,
    /// Training batch size.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Untimed steps before the clock starts.
    #[arg(long, default_value_t = 3)]
    warmup: u64,
    /// Timed steps.
    #[arg(long, default_value_t = 20)]
    steps: u64,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    tch::set_num_threads(a.threads);
    let [c, h, w] = a.shape[..] else { anyhow::bail!("--shape C,H,W") };
    let small = UnetConfig::small(c, h, w);
    let net = NetConfig::unet(UnetConfig { base: a.base.unwrap_or(small.base), ..small });
    let data =
        Array2::from_shape_fn((1000, c * h * w), |(i, j)| ((i * 7919 + j * 104_729) % 1000) as f64 / 500.0 - 1.0);
    let config = TrainConfig { steps: a.warmup + a.steps, batch_size: a.batch, ..TrainConfig::default() };
    let mut trainer = Trainer::new(net.clone(), SdeSpec::default(), config, &data, Device::Cpu)?;
    for _ in 0..a.warmup {
        let _ = trainer.step()?;
    }
    let start = Instant::now();
    for _ in 0..a.steps {
        trainer.step()?.double_value(&[]);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"shape\": [{c}, {h}, {w}], \"base\": {}, \"params\": {}, \"batch\": {}, \"threads\": {}, \"steps_per_s\": {:.3}}}",
        net.unet_config().map_or(0, |u| u.base),
        net.num_params(),
        a.batch,
        a.threads,
        a.steps as f64 / secs
    );
    Ok(())
}
