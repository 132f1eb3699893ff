//! `scoresde sample`: any integrator, driven by a trained network.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{bail, Context as _};
use ndarray::Array2;
use scoresde::checkpoint;
use scoresde::data::{save_npy, Scaling};
use scoresde::model::{tensor_to_array, NeuralScore};
use scoresde::solvers::{
    by_name, prior_sample, Direction, Error as SolverError, GaussianNoise, Sampler, StepEvent, TimeGrid,
};
use tch::{Kind, Tensor};

use crate::common;

/// Options of `scoresde sample`.
#[derive(clap::Args, Debug, Clone)]
pub struct SampleArgs {
    /// Run folder (or checkpoint path) written by `scoresde train`.
    #[arg(long, default_value = "out/train")]
    pub model: PathBuf,
    /// Integrator (see `scoresde solvers`).
    #[arg(long, default_value = "ancestral")]
    pub solver: String,
    /// Steps from t = 1 down to t = eps.
    #[arg(long, default_value_t = 500)]
    pub steps: usize,
    /// Time grid: uniform, quadratic, log-snr or karras.
    #[arg(long, default_value = "uniform")]
    pub grid: String,
    /// Number of samples.
    #[arg(short, long, default_value_t = 2000)]
    pub n: usize,
    /// Seed of the prior sample and of the sampler noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Skip the final noise-free Tweedie denoising step.
    #[arg(long)]
    pub no_denoise: bool,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Also draw the progressive denoising of the first samples (2-D data):
    /// the state at t = 1, 0.5, 0.3, 0.2, 0.1, 0.05 and the end.
    #[arg(long)]
    pub trajectory: bool,
    /// Output folder [default: the model's folder].
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Times of the progressive-denoising figures (0 stands for the end of the run).
pub const SNAPSHOT_TIMES: [f64; 7] = [1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.0];

/// A finished sampling run.
pub struct Sampled {
    /// Samples in data coordinates.
    pub x: Array2<f64>,
    /// `(t, states)` snapshots in data coordinates, when asked for.
    pub snapshots: Vec<(f64, Array2<f64>)>,
    pub score_evals: usize,
    pub seconds: f64,
}

/// What to sample.
pub struct Spec<'a> {
    pub solver: &'a str,
    pub steps: usize,
    pub grid: &'a str,
    pub n: usize,
    pub seed: u64,
    pub denoise: bool,
    /// Keep the state at the first grid time at or below each of these times.
    pub snapshot_times: &'a [f64],
}

/// Samples `spec.n` points with a neural score; the whole run stays on the
/// model's device (`tch::Tensor` state), one host copy at the end.
pub fn sample(score: &NeuralScore, scaling: &Scaling, spec: &Spec<'_>, show_bar: bool) -> anyhow::Result<Sampled> {
    if spec.n == 0 {
        bail!("-n must be at least 1");
    }
    let sde = score.sde();
    let grid = TimeGrid::by_name(spec.grid, sde, sde.t_max(), sde.t_eps(), spec.steps)?;
    let mut solver = by_name::<Tensor>(spec.solver)?;
    if solver.direction() != Direction::Reverse {
        bail!("`{}` integrates the forward SDE; pick a sampler (see `scoresde solvers`)", spec.solver);
    }
    let dim = score.net().config().dim as i64;
    let mut noise = GaussianNoise::new(spec.seed);
    let like = Tensor::zeros([spec.n as i64, dim], (Kind::Float, score.device()));
    let x = prior_sample(sde, &like, &mut noise);
    let pb = if show_bar { common::bar(grid.steps() as u64, spec.solver) } else { indicatif::ProgressBar::hidden() };
    let mut pending: Vec<f64> = spec.snapshot_times.to_vec();
    pending.sort_by(|a, b| b.total_cmp(a));
    let mut snapshots: Vec<(f64, Tensor)> = Vec::new();
    let stop = common::interrupted();
    let mut observer = |e: &StepEvent<'_, Tensor>| -> scoresde::solvers::Result<()> {
        pb.set_position(e.step as u64);
        if pending.first().is_some_and(|&target| e.t <= target || e.step == e.n_steps) {
            snapshots.push((e.t, e.x.copy()));
            pending.retain(|&target| target < e.t);
        }
        if stop.load(Ordering::Relaxed) {
            return Err(SolverError::Stopped { step: e.step, reason: "Ctrl-C".into() });
        }
        Ok(())
    };
    let started = Instant::now();
    let run = Sampler::new(sde, score)
        .denoise(spec.denoise)
        .observe(&mut observer)
        .run(solver.as_mut(), x, &grid, &mut noise)
        .with_context(|| format!("sampling with {}", spec.solver))?;
    let z = tensor_to_array(&run.x)?; // the host copy waits for the device
    let seconds = started.elapsed().as_secs_f64();
    pb.finish_and_clear();
    let x = scaling.invert(z.view())?;
    let snapshots = snapshots
        .into_iter()
        .map(|(t, s)| Ok((t, scaling.invert(tensor_to_array(&s)?.view())?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Sampled { x, snapshots, score_evals: run.score_evals, seconds })
}

/// Loads a run folder's model: the EMA score and the data scaling.
pub fn load_model(model: &Path, device: tch::Device) -> anyhow::Result<(NeuralScore, Scaling, checkpoint::Meta)> {
    let ckpt = checkpoint::load(model, device)?;
    let meta = ckpt.meta.clone();
    let scaling = Scaling { mean: meta.data.mean.clone(), std: meta.data.std.clone() };
    Ok((ckpt.ema_score()?, scaling, meta))
}

/// The folder a checkpoint spec lives in.
pub fn run_folder(model: &Path) -> PathBuf {
    if model.is_dir() {
        model.to_path_buf()
    } else {
        model.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
    }
}

pub fn run(a: &SampleArgs) -> anyhow::Result<()> {
    let device = common::device(&a.device)?;
    let (score, scaling, _) = load_model(&a.model, device)?;
    let spec = Spec {
        solver: &a.solver,
        steps: a.steps,
        grid: &a.grid,
        n: a.n,
        seed: a.seed,
        denoise: !a.no_denoise,
        snapshot_times: if a.trajectory { &SNAPSHOT_TIMES } else { &[] },
    };
    let s = sample(&score, &scaling, &spec, true)?;
    eprintln!(
        "{} samples, {} score evaluations, {:.2} s ({:.0} samples/s, {:.0} steps/s)",
        a.n,
        s.score_evals,
        s.seconds,
        a.n as f64 / s.seconds,
        a.steps as f64 / s.seconds
    );
    let out = a.out.clone().unwrap_or_else(|| run_folder(&a.model));
    let path = out.join(format!("samples-{}-{}.npy", a.solver, a.steps));
    save_npy(&path, &s.x)?;
    println!("wrote {}", path.display());
    if s.x.ncols() == 2 {
        let png = path.with_extension("png");
        let held = scoresde::data::load_npy(run_folder(&a.model).join("heldout.npy")).ok();
        crate::plot::samples_vs_data(
            &png,
            &[(format!("{} ({} steps)", a.solver, a.steps), s.x.view())],
            held.as_ref(),
        )?;
        println!("wrote {}", png.display());
        if !s.snapshots.is_empty() {
            let png = out.join(format!("trajectory-{}-{}.png", a.solver, a.steps));
            let views: Vec<(String, ndarray::ArrayView2<'_, f64>)> =
                s.snapshots.iter().map(|(t, x)| (format!("t = {t:.3}"), x.view())).collect();
            crate::plot::samples_vs_data(&png, &views, held.as_ref())?;
            println!("wrote {}", png.display());
        }
    }
    Ok(())
}
