//! `scoresde sample`: any integrator, driven by a trained network; with
//! `--class K`, guided towards a class (classifier-free with a conditional
//! network, or by a classifier checkpoint).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context as _};
use ndarray::Array2;
use scoresde::checkpoint;
use scoresde::data::{save_npy, Scaling};
use scoresde::model::{tensor_to_array, NeuralScore};
use scoresde::solvers::{
    by_name, prior_sample, ClassifierFreeGuided, ClassifierGuided, Direction, Error as SolverError, GaussianNoise,
    Sampler, Score, Sde, StepEvent, TimeGrid,
};
use tch::{Device, Kind, Tensor};

use crate::common::{self, load_model, run_folder, CtrlC, SampleName, Status};

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
    /// Also draw the progressive denoising, from the state at t = 1, 0.5, 0.3,
    /// 0.2, 0.1, 0.05 and the end (2-D data: the samples at each time; more
    /// dimensions: paths of the first four dimensions over their histograms).
    #[arg(long)]
    pub trajectory: bool,
    /// Output folder [default: the model's folder]. Files are named after the
    /// settings (samples-SOLVER-STEPS-GRID-seedSEED[-no-denoise][-classK-...].npy).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace the files of an earlier run with the same settings.
    #[arg(long)]
    pub force: bool,
    /// Sample class K: classifier-free guidance of a model trained with
    /// `train --conditional`, or classifier guidance with --classifier.
    #[arg(long, value_name = "K")]
    pub class: Option<usize>,
    /// Guidance scale w [default: 0 with classifier-free guidance, the
    /// conditional score; 1 with --classifier, p(x | y)]. Larger w: purer classes, less diversity.
    #[arg(long, value_name = "W", requires = "class")]
    pub guidance: Option<f64>,
    /// Classifier guidance with this classifier (a checkpoint from `train-classifier`).
    #[arg(long, value_name = "CKPT", requires = "class", conflicts_with = "cfg")]
    pub classifier: Option<PathBuf>,
    /// Classifier-free guidance (the default with --class when no --classifier is given).
    #[arg(long, requires = "class")]
    pub cfg: bool,
}

/// Times of the progressive-denoising figures (0 stands for the end of the run).
pub const SNAPSHOT_TIMES: [f64; 7] = [1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.0];

/// A finished sampling run.
pub struct Sampled {
    /// Samples in data coordinates.
    pub x: Array2<f64>,
    /// `(t, states)` snapshots in data coordinates, when asked for.
    pub snapshots: Vec<(f64, Array2<f64>)>,
    /// Score evaluations of the run.
    pub score_evals: usize,
    /// Wall-clock seconds of the run (with the final host copy).
    pub seconds: f64,
}

/// What to sample.
pub struct Spec<'a> {
    /// Integrator name.
    pub solver: &'a str,
    /// Steps from t = 1 down to t = eps.
    pub steps: usize,
    /// Time grid name.
    pub grid: &'a str,
    /// Number of samples.
    pub n: usize,
    /// Seed of the prior sample and the sampler noise.
    pub seed: u64,
    /// End with the noise-free Tweedie denoising step.
    pub denoise: bool,
    /// Keep the state at the first grid time at or below each of these times.
    pub snapshot_times: &'a [f64],
}

/// Samples `spec.n` points with a neural score; the whole run stays on the
/// model's device (`tch::Tensor` state), one host copy at the end. A progress
/// bar shows on a terminal; raising `stop` ends the run with
/// [`SolverError::Stopped`].
pub fn sample(score: &NeuralScore, scaling: &Scaling, spec: &Spec<'_>, stop: &AtomicBool) -> anyhow::Result<Sampled> {
    let on = Target { sde: score.sde(), dim: score.net().config().dim, device: score.device() };
    sample_with(score, &on, scaling, spec, stop)
}

/// Where a score model samples: its SDE, data dimension and device.
pub struct Target<'a> {
    /// The forward SDE the score was trained for.
    pub sde: &'a dyn Sde,
    /// Data dimension.
    pub dim: usize,
    /// Where the state lives.
    pub device: Device,
}

/// As [`sample`], for any tensor score (a guided one, say).
pub fn sample_with(
    score: &dyn Score<Tensor>,
    on: &Target<'_>,
    scaling: &Scaling,
    spec: &Spec<'_>,
    stop: &AtomicBool,
) -> anyhow::Result<Sampled> {
    if spec.n == 0 {
        bail!("-n must be at least 1");
    }
    let sde = on.sde;
    let grid = TimeGrid::by_name(spec.grid, sde, sde.t_max(), sde.t_eps(), spec.steps)?;
    let mut solver = by_name::<Tensor>(spec.solver)?;
    if solver.direction() != Direction::Reverse {
        bail!("`{}` integrates the forward SDE; pick a sampler (see `scoresde solvers`)", spec.solver);
    }
    let mut noise = GaussianNoise::new(spec.seed);
    let like = Tensor::zeros([spec.n as i64, on.dim as i64], (Kind::Float, on.device));
    let x = prior_sample(sde, &like, &mut noise);
    let pb = common::bar(grid.steps() as u64, spec.solver);
    let mut pending: Vec<f64> = spec.snapshot_times.to_vec();
    pending.sort_by(|a, b| b.total_cmp(a));
    let mut snapshots: Vec<(f64, Tensor)> = Vec::new();
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

/// The score to sample with: the model itself, or guided towards `--class`;
/// and a file-name tag saying which.
fn guided(
    a: &SampleArgs,
    model: NeuralScore,
    meta: &checkpoint::Meta,
) -> anyhow::Result<(Box<dyn Score<Tensor>>, String)> {
    let Some(class) = a.class else { return Ok((Box::new(model), String::new())) };
    if let Some(path) = &a.classifier {
        let ckpt = checkpoint::load(path, model.device())?;
        if ckpt.meta.data.mean != meta.data.mean || ckpt.meta.data.std != meta.data.std {
            bail!(
                "the classifier {} was trained on other data scaling than the model ({} vs {}): train both on the same --data, --n, --holdout and --seed",
                path.display(),
                ckpt.meta.data.source,
                meta.data.source
            );
        }
        if ckpt.meta.sde != meta.sde {
            bail!("the classifier {} was trained for another SDE than the model", path.display());
        }
        let classifier = ckpt.ema_classifier().with_context(|| format!("--classifier {}", path.display()))?;
        let w = a.guidance.unwrap_or(1.0);
        let guided = ClassifierGuided::new(model, classifier, class, w).context("--class")?;
        return Ok((Box::new(guided), format!("-class{class}-classifier-w{w}")));
    }
    if model.n_classes() == 0 {
        bail!(
            "the model {} was trained without labels, so it cannot be asked for class {class}: train it with `scoresde train --conditional`, or pass --classifier CKPT (from `scoresde train-classifier`)",
            a.model.display()
        );
    }
    let w = a.guidance.unwrap_or(0.0);
    let guided = ClassifierFreeGuided::new(model, class, w).context("--class")?;
    Ok((Box::new(guided), format!("-class{class}-cfg-w{w}")))
}

/// The exact class posterior of toy data with classes, as `(mean p_0(class | x),
/// fraction whose most probable class is `class`)`; `None` for other data.
pub fn class_report(source: &str, x: &Array2<f64>, class: usize) -> Option<(f64, f64)> {
    let oracle = scoresde::data::Toy::from_name(source).ok()?.labelled()?;
    let p = oracle.class_probs_at(x.view(), 1.0, 0.0).ok()?;
    let n = x.nrows().max(1) as f64;
    let mean = p.column(class).sum() / n;
    let hits = p.rows().into_iter().filter(|r| r.iter().all(|&v| v <= r[class])).count();
    Some((mean, hits as f64 / n))
}

/// `scoresde sample`: samples, their figure, and the class report with `--class`.
pub fn run(a: &SampleArgs, ctrl_c: &CtrlC) -> anyhow::Result<Status> {
    let device = common::device(&a.device)?;
    let (model, scaling, meta) = load_model(&a.model, device)?;
    let sde = meta.sde.build()?;
    let on = Target { sde: sde.as_ref(), dim: meta.net.dim, device };
    let (score, tag) = guided(a, model, &meta)?;
    let out = a.out.clone().unwrap_or_else(|| run_folder(&a.model));
    let name = SampleName {
        solver: &a.solver,
        steps: a.steps,
        grid: &a.grid,
        seed: a.seed,
        denoise: !a.no_denoise,
        guidance: &tag,
    };
    let (npy, trajectory_png) = (name.npy(&out), name.trajectory_png(&out));
    let png = npy.with_extension("png");
    let mut outputs = vec![npy.clone(), png.clone()];
    if a.trajectory {
        outputs.push(trajectory_png.clone());
    }
    common::refuse_existing(&outputs, a.force)?;
    let spec = Spec {
        solver: &a.solver,
        steps: a.steps,
        grid: &a.grid,
        n: a.n,
        seed: a.seed,
        denoise: !a.no_denoise,
        snapshot_times: if a.trajectory { &SNAPSHOT_TIMES } else { &[] },
    };
    let s = sample_with(score.as_ref(), &on, &scaling, &spec, &ctrl_c.flag())?;
    eprintln!(
        "{} samples, {} score evaluations, {:.2} s ({:.0} samples/s, {:.0} steps/s)",
        a.n,
        s.score_evals,
        s.seconds,
        a.n as f64 / s.seconds,
        a.steps as f64 / s.seconds
    );
    if let Some(class) = a.class {
        match class_report(&meta.data.source, &s.x, class) {
            Some((mean, freq)) => println!(
                "class {class}: exact p(y = {class} | x) averages {mean:.4}; {:.1}% of samples are most likely class {class}",
                100.0 * freq
            ),
            None => println!("class {class}: no exact class posterior for {}", meta.data.source),
        }
    }
    save_npy(&npy, &s.x)?;
    println!("wrote {}", npy.display());
    let held = scoresde::data::load_npy(common::heldout_path(&run_folder(&a.model))).ok();
    let what = crate::plot::sample_figure(&png, &crate::plot::figure_title(&npy), s.x.view(), held.as_ref())?;
    println!("wrote {} ({what})", png.display());
    if a.trajectory {
        match crate::plot::trajectory_figure(&trajectory_png, &s.snapshots, held.as_ref())? {
            Some(what) => println!("wrote {} ({what})", trajectory_png.display()),
            None => eprintln!("note: no trajectory figure: fewer than 2 times were recorded ({} steps)", a.steps),
        }
    }
    Ok(Status::Done)
}
