//! `scoresde demo`: the whole pipeline on the default 2-D set: train, sample
//! with every integrator at a few step counts, measure, plot.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use clap::Parser as _;
use ndarray::{Array2, ArrayView2};
use scoresde::data::DataSource;
use scoresde::solvers::SAMPLERS;
use scoresde::train::Outcome;

use crate::common::{fmt, CtrlC, SampleName, Status, Table};
use crate::eval::{exact_loglik, quality};
use crate::sample::{default_batch, sample, Spec, MAX_KEPT, SNAPSHOT_TIMES};
use crate::train::{train, TrainArgs, Trained};

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
    /// The forward process to train: vp or flow (rectified flow); run the demo once with
    /// each (same data, steps and solvers) to compare them.
    #[arg(long, value_enum, default_value_t = crate::train::Process::Vp)]
    pub process: crate::train::Process,
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

/// `scoresde demo`: train, sample with every solver at every step count,
/// measure against held-out data, plot.
pub fn run(a: &DemoArgs, ctrl_c: &CtrlC) -> anyhow::Result<Status> {
    let solvers = check_args(a)?;
    let trained = train_model(a, ctrl_c)?;
    if trained.outcome == Outcome::Interrupted {
        return Ok(Status::Interrupted);
    }
    let reference = &trained.held_out;
    let source = DataSource::parse(&a.data)?;
    let mut table =
        Table::new(&["solver", "steps", "score evals", "seconds", "samples/s", "sliced W2", "MMD^2", "exact log-lik"]);
    noise_floor(a, &source, reference, &mut table)?;
    let runs = sample_every_solver(a, &solvers, &trained, &source, &mut table, &ctrl_c.flag())?;
    println!(
        "trained {} steps in {:.1} s ({:.0} steps/s); {} samples per solver, scored against {} held-out points",
        trained.steps_run,
        trained.seconds,
        trained.steps_run as f64 / trained.seconds.max(1e-9),
        a.n,
        reference.nrows()
    );
    print!("{}", table.markdown());
    // The demo retrains its folder's model (train --force), so its table and
    // figures describe that model and are replaced with it.
    let (md, csv) = table.save(&a.out.join("metrics"), true)?;
    let mut wrote = vec![md, csv];
    wrote.extend(sample_figures(a, &runs, reference)?);
    wrote.extend(score_error_figure(a, &trained)?);
    wrote.push(a.out.join("loss.png"));
    for w in wrote {
        println!("wrote {}", w.display());
    }
    Ok(Status::Done)
}

/// Checks the step counts, every solver name and the grid before training;
/// returns the solvers to run.
fn check_args(a: &DemoArgs) -> anyhow::Result<Vec<String>> {
    if a.n == 0 || a.n > MAX_KEPT {
        anyhow::bail!(
            "-n {}: the demo keeps every sample in memory for its metrics, so 1 to {MAX_KEPT}; `scoresde sample` streams any number to disk",
            a.n
        );
    }
    if a.steps.is_empty() || a.steps.contains(&0) {
        anyhow::bail!("--steps needs positive step counts, e.g. 20,200");
    }
    let solvers: Vec<String> =
        if a.solvers.is_empty() { SAMPLERS.iter().map(|s| s.to_string()).collect() } else { a.solvers.clone() };
    for s in &solvers {
        if scoresde::solvers::by_name::<tch::Tensor>(s)?.direction() != scoresde::solvers::Direction::Reverse {
            anyhow::bail!("`{s}` integrates the forward SDE; pick samplers (see `scoresde solvers`)");
        }
    }
    let vp = scoresde::solvers::VpSde::default();
    for &steps in &a.steps {
        scoresde::solvers::TimeGrid::by_name(&a.grid, &vp, 1.0, 1e-3, steps)?;
    }
    Ok(solvers)
}

/// Step 1: train with the train subcommand's defaults, and the demo's data,
/// steps, seed, device and folder.
fn train_model(a: &DemoArgs, ctrl_c: &CtrlC) -> anyhow::Result<Trained> {
    let mut targs = Defaults::parse_from(["train"]).args;
    targs.data = a.data.clone();
    targs.steps = Some(a.train_steps);
    targs.seed = a.seed;
    targs.process = a.process;
    targs.device = a.device.clone();
    targs.out = a.out.clone();
    targs.force = true;
    train(&targs, ctrl_c)
}

/// Mean exact log-density of `x` as a table cell ("-" when the data have no exact law).
fn loglik(source: &DataSource, x: &Array2<f64>) -> anyhow::Result<String> {
    Ok(exact_loglik(source, x)?.map_or("-".into(), |v| fmt(v, 3)))
}

/// The metrics' noise floor: fresh data of the same size against the
/// held-out set, as the table's first row (toy data only).
fn noise_floor(a: &DemoArgs, source: &DataSource, reference: &Array2<f64>, table: &mut Table) -> anyhow::Result<()> {
    let DataSource::Toy(toy) = source else { return Ok(()) };
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
        loglik(source, &fresh)?,
    ]);
    Ok(())
}

/// What the sampling runs leave for the figures.
#[derive(Default)]
struct Runs {
    /// `(title, samples)` of each solver at the largest step count.
    panels: Vec<(String, Array2<f64>)>,
    /// Progressive denoising of the ancestral sampler at the largest step count.
    snapshots: Vec<(f64, Array2<f64>)>,
}

/// Step 2: samples with every solver at every step count, measured against
/// the held-out data (one table row each); the largest step count's samples
/// are saved as `samples-SOLVER-STEPS-GRID-seedSEED.npy` ([`SampleName`]).
fn sample_every_solver(
    a: &DemoArgs,
    solvers: &[String],
    trained: &Trained,
    source: &DataSource,
    table: &mut Table,
    stop: &AtomicBool,
) -> anyhow::Result<Runs> {
    let score = trained.trainer.ema_score()?;
    let max_steps = *a.steps.iter().max().unwrap_or(&200);
    let mut runs = Runs::default();
    for name in solvers {
        for &steps in &a.steps {
            let spec = Spec {
                solver: name,
                steps,
                grid: &a.grid,
                n: a.n,
                first: 0,
                batch: default_batch(score.net().config(), a.n),
                keep: a.n,
                seed: a.seed,
                denoise: true,
                snapshot_times: if name == "ancestral" && steps == max_steps { &SNAPSHOT_TIMES } else { &[] },
                times: None,
            };
            let s = sample(&score, &trained.scaling, &spec, stop)?;
            let (sw2, mmd) = quality(&s.x, &trained.held_out, a.seed)?;
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
                loglik(source, &s.x)?,
            ]);
            if steps == max_steps {
                let file = SampleName { solver: name, steps, grid: &a.grid, seed: a.seed, denoise: true, guidance: "" };
                let npy = file.npy(&a.out);
                scoresde::data::save_npy(&npy, &s.x)?;
                runs.panels.push((format!("{name}: SW2 {sw2:.3}"), s.x));
            }
            if !s.snapshots.is_empty() {
                runs.snapshots = s.snapshots;
            }
        }
    }
    Ok(runs)
}

/// Step 3: every solver's samples beside the data, and the progressive
/// denoising (2-D data only); returns the files written.
fn sample_figures(a: &DemoArgs, runs: &Runs, reference: &Array2<f64>) -> anyhow::Result<Vec<PathBuf>> {
    let mut wrote = Vec::new();
    if reference.ncols() != 2 {
        eprintln!(
            "note: samples.png and denoising.png are drawn for 2-D data only; `scoresde plot --model {}` draws each sample file's pairwise figure",
            a.out.display()
        );
        return Ok(wrote);
    }
    let png = a.out.join("samples.png");
    let views: Vec<(String, ArrayView2<'_, f64>)> = runs.panels.iter().map(|(t, x)| (t.clone(), x.view())).collect();
    crate::plot::samples_vs_data(&png, &views, Some(reference))?;
    wrote.push(png);
    if !runs.snapshots.is_empty() {
        let png = a.out.join("denoising.png");
        let views: Vec<(String, ArrayView2<'_, f64>)> =
            runs.snapshots.iter().map(|(t, x)| (format!("ancestral, t = {t:.3}"), x.view())).collect();
        crate::plot::samples_vs_data(&png, &views, Some(reference))?;
        wrote.push(png);
    }
    Ok(wrote)
}

/// Step 4: the learned score's error against the exact one over t, for
/// Gaussian-mixture data; returns the figure written, if any.
fn score_error_figure(a: &DemoArgs, trained: &Trained) -> anyhow::Result<Option<PathBuf>> {
    let device = scoresde::device::select(&a.device)?;
    let Some(errors) = crate::eval::model_score_error_by_time(&trained.checkpoint, device, a.seed)? else {
        return Ok(None);
    };
    let png = a.out.join("score_error.png");
    crate::plot::plot_score_error_by_time(&png, &errors)?;
    let mean = errors.iter().map(|e| e.1).sum::<f64>() / errors.len() as f64;
    println!("learned vs exact score, sigma^2-weighted error averaged over t: {mean:.4}");
    Ok(Some(png))
}
