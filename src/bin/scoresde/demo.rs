//! `scoresde demo`: the whole pipeline on the default 2-D set: train, sample
//! with every integrator at a few step counts, measure, plot.

use std::path::PathBuf;

use clap::Parser as _;
use scoresde::data::DataSource;
use scoresde::solvers::SAMPLERS;

use crate::common::{fmt, Table};
use crate::eval::{exact_loglik, quality};
use crate::sample::{sample, Spec, SNAPSHOT_TIMES};
use crate::train::{train, TrainArgs};

/// Options of `scoresde demo`.
#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Output folder (model, samples, figures, metrics).
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
    /// Training data: a toy set or a .npy file.
    #[arg(long, default_value = "eight-gaussians")]
    pub data: String,
    /// Training steps.
    #[arg(long, default_value_t = 8000)]
    pub train_steps: u64,
    /// Sampling step counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "20,200")]
    pub steps: Vec<usize>,
    /// Time grid of every run: uniform, quadratic, log-snr or karras.
    #[arg(long, default_value = "uniform")]
    pub grid: String,
    /// Samples per solver.
    #[arg(short, long, default_value_t = 2000)]
    pub n: usize,
    /// Integrators to run (repeat); default: every sampler.
    #[arg(long = "solver", value_name = "NAME")]
    pub solvers: Vec<String>,
    /// Seed of everything.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// `scoresde train`'s defaults.
#[derive(clap::Parser)]
struct Defaults {
    #[command(flatten)]
    args: TrainArgs,
}

pub fn run(a: &DemoArgs) -> anyhow::Result<()> {
    if a.steps.is_empty() || a.steps.contains(&0) {
        anyhow::bail!("--steps needs positive step counts, e.g. 20,200");
    }
    let solvers: Vec<String> =
        if a.solvers.is_empty() { SAMPLERS.iter().map(|s| s.to_string()).collect() } else { a.solvers.clone() };
    // Check every name before training.
    for s in &solvers {
        scoresde::solvers::by_name::<tch::Tensor>(s)?;
    }
    let vp = scoresde::solvers::VpSde::default();
    scoresde::solvers::TimeGrid::by_name(&a.grid, &vp, 1.0, 1e-3, a.steps[0])?;
    // 1. Train (the train subcommand's defaults, with the demo's data, steps, seed and folder).
    let mut targs = Defaults::parse_from(["train"]).args;
    targs.data = a.data.clone();
    targs.steps = Some(a.train_steps);
    targs.seed = a.seed;
    targs.device = a.device.clone();
    targs.out = a.out.clone();
    targs.force = true;
    let trained = train(&targs)?;
    if trained.outcome == scoresde::train::Outcome::Interrupted {
        std::process::exit(130);
    }
    let score = trained.trainer.ema_score()?;
    let reference = &trained.held_out;

    // 2. Sample with every solver at every step count; measure against held-out data.
    let mut table =
        Table::new(&["solver", "steps", "score evals", "seconds", "samples/s", "sliced W2", "MMD^2", "exact log-lik"]);
    let source = DataSource::parse(&a.data)?;
    let loglik = |x: &ndarray::Array2<f64>| -> anyhow::Result<String> {
        Ok(exact_loglik(&source, x)?.map_or("-".into(), |v| fmt(v, 3)))
    };
    // The metrics' noise floor: fresh data of the same size against the held-out set.
    if let DataSource::Toy(toy) = &source {
        let fresh = toy.sample(a.n, a.seed.wrapping_add(12_345))?;
        let (sw2, mmd) = quality(&fresh, reference, a.seed)?;
        let dash = || "-".to_string();
        table.push(vec![
            "(fresh data)".into(),
            dash(),
            dash(),
            dash(),
            dash(),
            fmt(sw2, 4),
            fmt(mmd, 5),
            loglik(&fresh)?,
        ]);
    }
    let max_steps = *a.steps.iter().max().unwrap_or(&200);
    let mut panels: Vec<(String, ndarray::Array2<f64>)> = Vec::new();
    let mut snapshots = Vec::new();
    for name in &solvers {
        for &steps in &a.steps {
            let spec = Spec {
                solver: name,
                steps,
                grid: &a.grid,
                n: a.n,
                seed: a.seed,
                denoise: true,
                snapshot_times: if name == "ancestral" && steps == max_steps { &SNAPSHOT_TIMES } else { &[] },
            };
            let s = sample(&score, &trained.scaling, &spec, true)?;
            let (sw2, mmd) = quality(&s.x, reference, a.seed)?;
            eprintln!(
                "{name:>18} {steps:>5} steps: {:>5} score evals, {:.2} s, sliced W2 {sw2:.4}",
                s.score_evals, s.seconds
            );
            table.push(vec![
                name.clone(),
                steps.to_string(),
                s.score_evals.to_string(),
                fmt(s.seconds, 3),
                fmt(a.n as f64 / s.seconds, 0),
                fmt(sw2, 4),
                fmt(mmd, 5),
                loglik(&s.x)?,
            ]);
            if steps == max_steps {
                panels.push((format!("{name}: SW2 {sw2:.3}"), s.x.clone()));
                let npy = a.out.join(format!("samples-{name}-{steps}.npy"));
                scoresde::data::save_npy(&npy, &s.x)?;
            }
            if !s.snapshots.is_empty() {
                snapshots = s.snapshots;
            }
        }
    }

    // 3. Figures and tables.
    println!(
        "trained {} steps in {:.1} s ({:.0} steps/s); {} samples per solver, scored against {} held-out points",
        trained.steps_run,
        trained.seconds,
        trained.steps_run as f64 / trained.seconds.max(1e-9),
        a.n,
        reference.nrows()
    );
    print!("{}", table.markdown());
    let (md, csv) = table.save(&a.out.join("metrics"))?;
    let mut wrote = vec![md, csv];
    if reference.ncols() == 2 {
        let png = a.out.join("samples.png");
        let views: Vec<(String, ndarray::ArrayView2<'_, f64>)> =
            panels.iter().map(|(t, x)| (t.clone(), x.view())).collect();
        crate::plot::samples_vs_data(&png, &views, Some(reference))?;
        wrote.push(png);
        if !snapshots.is_empty() {
            let png = a.out.join("denoising.png");
            let views: Vec<(String, ndarray::ArrayView2<'_, f64>)> =
                snapshots.iter().map(|(t, x)| (format!("ancestral, t = {t:.3}"), x.view())).collect();
            crate::plot::samples_vs_data(&png, &views, Some(reference))?;
            wrote.push(png);
        }
    }
    let device = scoresde::device::select(&a.device)?;
    if let Some(errors) = crate::eval::model_score_error_by_time(&trained.checkpoint, device, a.seed)? {
        let png = a.out.join("score_error.png");
        crate::plot::plot_score_error_by_time(&png, &errors)?;
        wrote.push(png);
        let mean = errors.iter().map(|e| e.1).sum::<f64>() / errors.len() as f64;
        println!("learned vs exact score, sigma^2-weighted error averaged over t: {mean:.4}");
    }
    wrote.push(a.out.join("loss.png"));
    for w in wrote {
        println!("wrote {}", w.display());
    }
    Ok(())
}
