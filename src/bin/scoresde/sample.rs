//! `scoresde sample`: any integrator, driven by a trained network; with
//! `--class K`, guided towards a class (classifier-free with a conditional
//! network, or by a classifier checkpoint).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context as _};
use ndarray::{s, Array2, ArrayView2, Axis};
use scoresde::checkpoint;
use scoresde::data::{npy_file_bytes, DataRange, NpyWriter, RangeReport, Scaling};
use scoresde::model::{tensor_to_array, NeuralScore};
use scoresde::net::NetConfig;
use scoresde::solvers::{
    by_name, prior_sample, ClassifierFreeGuided, ClassifierGuided, ConditionalScore, Direction, Error as SolverError,
    EvalEvent, OnEval, RowNoise, Sampler, Score, Sde, StepEvent, TimeGrid, X0Guard,
};
use tch::{Device, Kind, Tensor};

use crate::common::{self, load_model, run_folder, CtrlC, SampleName, Status};

/// Options of `scoresde sample`.
#[derive(clap::Args, Debug, Clone)]
pub struct SampleArgs {
    /// Run folder (or checkpoint path) written by `scoresde train`.
    #[arg(long, default_value = "out/train")]
    pub model: PathBuf,
    /// Integrator (see `scoresde solvers`). The ancestral, DDIM and DPM-Solver++ rows
    /// also take an x0 guard: NAME:clip[=C] clips the predicted clean sample to
    /// [-C, C] (default 1), NAME:threshold[=P] is Imagen's dynamic thresholding at
    /// quantile P (default 0.995); e.g. ddim:clip, dpm2m:threshold=0.99, ddim-eta:0.5,clip.
    /// The multistep rows (dpm2m, dpm3m, unipc, ...) take lower-order-final (a first-order
    /// last step, diffusers' lower_order_final); e.g. unipc:3,lower-order-final.
    #[arg(long, default_value = "ancestral")]
    pub solver: String,
    /// Steps from t = 1 down to t = eps.
    #[arg(long, default_value_t = 500)]
    pub steps: usize,
    /// Time grid: uniform, quadratic, log-snr or karras.
    #[arg(long, default_value = "uniform")]
    pub grid: String,
    /// Number of samples (at most 2^32). They are written to disk batch by
    /// batch, so any number fits in memory.
    #[arg(short, long, default_value_t = 2000, allow_negative_numbers = true)]
    pub n: i64,
    /// Samples integrated at once [default: as many as fit in about 1 GiB of
    /// working memory, at most 65536; with --shard K/N, at most -n / N]. Sample
    /// i draws its noise from a counter-based generator keyed by (--seed, i,
    /// draw), so the samples do not depend on --batch (up to the f32 rounding of
    /// the network's batched kernels), except with pc, langevin,
    /// annealed-langevin and ode-dopri5, whose step sizes are set from the whole batch.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Draw only shard K of N (0 <= K < N) of the run: a contiguous block of
    /// its batches, written as samples-...-shardKofN.npy with a .json sidecar
    /// naming the run, into MODEL/shardKofN (or --out: one folder per shard);
    /// `scoresde merge-shards` joins the N shards into the
    /// run's samples, bit for bit those of the unsharded run with the same
    /// --batch. E.g. --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT.
    #[arg(long, value_name = "K/N", value_parser = crate::shard::parse_shard, allow_hyphen_values = true, conflicts_with = "torchscript")]
    pub shard: Option<crate::shard::Shard>,
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
    /// 0.2, 0.1, 0.05 and the end (2-D data: the samples at each time; image
    /// models: a grid, rows the first 8 samples, columns the times; more
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
    /// conditional score; 1 with --classifier, p(x | y)]. Larger w: purer classes, less diversity;
    /// below 0 (--classifier) or -1 (classifier-free; -1 is unconditional): away from the class.
    #[arg(long, value_name = "W", requires = "class", allow_negative_numbers = true)]
    pub guidance: Option<f64>,
    /// Classifier guidance with this classifier (a checkpoint from `train-classifier`).
    #[arg(long, value_name = "CKPT", requires = "class", conflicts_with_all = ["cfg", "torchscript"])]
    pub classifier: Option<PathBuf>,
    /// Classifier-free guidance (the default with --class when no --classifier is given).
    #[arg(long, requires = "class")]
    pub cfg: bool,
    /// Classifier-free guidance only while EDM's noise level sigma(t)/a(t) is in
    /// [LO, HI], the conditional score elsewhere (Kynkaanniemi et al. 2024; EDM2 on
    /// ImageNet used 0.28,5.42 for data of std 0.5): finite, 0 <= LO < HI.
    #[arg(long, value_name = "LO,HI", value_parser = parse_interval, requires = "class", conflicts_with = "classifier")]
    pub guidance_interval: Option<(f64, f64)>,
    /// CFG rescale (Lin et al. 2024): scale each guided sample's score to the
    /// conditional score's standard deviation over its elements, blended by PHI in
    /// [0, 1] (0: off; the paper uses 0.7). Made for images: on data of a few
    /// dimensions a sample's std is that of a few numbers and the rescale misbehaves.
    #[arg(long, value_name = "PHI", value_parser = parse_rescale, requires = "class", conflicts_with = "classifier")]
    pub cfg_rescale: Option<f64>,
    /// A TorchScript model instead of --model.
    #[command(flatten)]
    pub ts: crate::torchscript::TorchScriptArgs,
}

/// `--guidance-interval LO,HI`: two finite noise levels, `0 <= LO < HI`.
fn parse_interval(v: &str) -> Result<(f64, f64), String> {
    let (lo, hi) = v.split_once(',').ok_or_else(|| format!("`{v}`: give LO,HI (two numbers and a comma)"))?;
    let num = |x: &str| x.trim().parse::<f64>().map_err(|_| format!("`{x}` is not a number"));
    let (lo, hi) = (num(lo)?, num(hi)?);
    if !(lo.is_finite() && hi.is_finite()) {
        return Err(format!("`{v}`: both noise levels must be finite"));
    }
    if lo < 0.0 || lo >= hi {
        return Err(format!("`{v}`: needs 0 <= LO < HI"));
    }
    Ok((lo, hi))
}

/// `--cfg-rescale PHI`: a number in [0, 1].
fn parse_rescale(v: &str) -> Result<f64, String> {
    let phi = v.trim().parse::<f64>().map_err(|_| format!("`{v}` is not a number"))?;
    if (0.0..=1.0).contains(&phi) {
        Ok(phi)
    } else {
        Err(format!("`{v}`: the blend PHI must be in [0, 1]"))
    }
}

/// Times of the progressive-denoising figures (0 stands for the end of the run).
pub const SNAPSHOT_TIMES: [f64; 7] = [1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.0];

/// Most samples held in memory for figures and metrics: what `scoresde
/// sample` keeps for its figure and class report ([`Spec::keep`]; the rest
/// only go to the file), and what `eval` and `plot` read of a samples file.
pub const MAX_KEPT: usize = 20_000;
/// Most samples of one `scoresde sample` run (2^32).
pub const MAX_SAMPLES: u64 = 1 << 32;
/// Largest default batch.
const MAX_DEFAULT_BATCH: usize = 1 << 16;
/// Working memory the default batch is sized for.
const BATCH_MEMORY: u64 = 1 << 30;

/// A finished sampling run.
pub struct Sampled {
    /// The first [`Spec::keep`] samples, in data coordinates.
    pub x: Array2<f64>,
    /// `(t, states)` snapshots of the first batch in data coordinates, when asked for.
    pub snapshots: Vec<(f64, Array2<f64>)>,
    /// Score evaluations each sample went through (the most over batches).
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
    /// Index of the first sample in the whole run (a shard's first row; 0 otherwise).
    pub first: usize,
    /// Samples integrated at once (see [`default_batch`]).
    pub batch: usize,
    /// Samples kept in memory ([`Sampled::x`]): the first `keep`.
    pub keep: usize,
    /// Seed of the prior sample and the sampler noise: sample `i` (counted
    /// from the run's first, `first + row`) draws from [`RowNoise`] keyed by `(seed, i, draw)`.
    pub seed: u64,
    /// End with the noise-free Tweedie denoising step.
    pub denoise: bool,
    /// Keep the state of the first batch at the first grid time at or below each of these times.
    pub snapshot_times: &'a [f64],
    /// The time grid, when not [`Spec::grid`] by name (diffusers' timesteps).
    pub times: Option<&'a TimeGrid>,
}

/// Rough bytes one sample row takes while sampling with `net`: the network's
/// activations, the integrator's stages and, for classifier guidance, the
/// autograd graph (a factor of 3 over the plain forward pass).
pub fn sample_bytes_per_row(net: &NetConfig) -> u64 {
    let n = |v: usize| v as u64;
    let floats = [
        n(net.dim).saturating_mul(12),
        n(net.embedding.dim()).saturating_mul(3),
        n(net.label_width()),
        match net.unet_config() {
            Some(u) => u.activation_floats(),
            None => n(net.depth).saturating_add(1).saturating_mul(n(net.width).saturating_mul(2)),
        },
        n(net.out_width()).saturating_mul(2),
    ]
    .iter()
    .fold(0u64, |acc, &f| acc.saturating_add(f));
    floats.saturating_mul(4 * 3)
}

/// The default batch: as many rows as fit in [`BATCH_MEMORY`], between 256
/// and [`MAX_DEFAULT_BATCH`], and no more than `n`.
pub fn default_batch(net: &NetConfig, n: usize) -> usize {
    let fit = (BATCH_MEMORY / sample_bytes_per_row(net).max(1)).clamp(256, MAX_DEFAULT_BATCH as u64) as usize;
    fit.min(n).max(1)
}

/// Samples `spec.n` points with a neural score, `spec.batch` at a time; each
/// batch stays on the model's device (`tch::Tensor` state), one host copy at
/// its end. A progress bar shows on a terminal; raising `stop` ends the run
/// with [`SolverError::Stopped`].
pub fn sample(score: &NeuralScore, scaling: &Scaling, spec: &Spec<'_>, stop: &AtomicBool) -> anyhow::Result<Sampled> {
    let on = Target { sde: score.sde(), dim: score.net().config().dim, device: score.device(), kind: Kind::Float };
    sample_with(score, &on, scaling, spec, stop, &mut |_| Ok(()))
}

/// Where a score model samples: its SDE, data dimension and device.
pub struct Target<'a> {
    /// The forward SDE the score was trained for.
    pub sde: &'a dyn Sde,
    /// Data dimension.
    pub dim: usize,
    /// Where the state lives.
    pub device: Device,
    /// The state's dtype (float32 for the native networks).
    pub kind: Kind,
}

/// As [`sample`], for any tensor score (a guided one, say); `on_batch` sees
/// every batch of samples (data coordinates) in order, to stream them to disk.
pub fn sample_with(
    score: &dyn Score<Tensor>,
    on: &Target<'_>,
    scaling: &Scaling,
    spec: &Spec<'_>,
    stop: &AtomicBool,
    on_batch: &mut dyn FnMut(ArrayView2<'_, f64>) -> anyhow::Result<()>,
) -> anyhow::Result<Sampled> {
    if spec.n == 0 {
        bail!("-n must be at least 1");
    }
    if spec.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let sde = on.sde;
    let grid = match spec.times {
        Some(times) => times.clone(),
        None => TimeGrid::by_name(spec.grid, sde, sde.t_max(), sde.t_eps(), spec.steps)?,
    };
    if by_name::<Tensor>(spec.solver)?.direction() != Direction::Reverse {
        bail!("`{}` integrates the forward SDE; pick a sampler (see `scoresde solvers`)", spec.solver);
    }
    let batches = spec.n.div_ceil(spec.batch);
    let steps = grid.steps() as u64;
    let pb = common::bar(steps * batches as u64, spec.solver);
    let mut kept: Vec<Array2<f64>> = Vec::new();
    let mut kept_rows = 0;
    let mut snapshots: Vec<(f64, Array2<f64>)> = Vec::new();
    let (mut score_evals, mut seconds) = (0, 0.0);
    for b in 0..batches {
        let start = b * spec.batch;
        let rows = spec.batch.min(spec.n - start);
        let first = (spec.first + start) as u64;
        let mut noise = RowNoise::new(spec.seed, first..first + rows as u64);
        let like = Tensor::f_zeros([rows as i64, on.dim as i64], (on.kind, on.device))?;
        let x = prior_sample(sde, &like, &mut noise);
        let mut pending: Vec<f64> = if b == 0 { spec.snapshot_times.to_vec() } else { Vec::new() };
        pending.sort_by(|a, b| b.total_cmp(a));
        let mut states: Vec<(f64, Tensor)> = Vec::new();
        let done = steps * b as u64;
        let mut observer = |e: &StepEvent<'_, Tensor>| -> scoresde::solvers::Result<()> {
            pb.set_position(done + e.step as u64);
            if pending.first().is_some_and(|&target| e.t <= target || e.step == e.n_steps) {
                states.push((e.t, e.x.copy()));
                pending.retain(|&target| target < e.t);
            }
            if stop.load(Ordering::Relaxed) {
                return Err(SolverError::Stopped { step: e.step, reason: "Ctrl-C".into() });
            }
            Ok(())
        };
        // Work inside a step (an adaptive solver's many evaluations): where it is, and Ctrl-C.
        let mut within = OnEval(|e: &EvalEvent| {
            pb.set_message(format!("t = {:.4}, {} score evals", e.t, e.score_evals));
            if stop.load(Ordering::Relaxed) {
                return Err(SolverError::Stopped { step: e.step, reason: "Ctrl-C".into() });
            }
            Ok(())
        });
        // A fresh solver per batch: multistep methods keep a history.
        let mut solver = by_name::<Tensor>(spec.solver)?;
        let started = Instant::now();
        let run = Sampler::new(sde, score)
            .denoise(spec.denoise)
            .observe(&mut observer)
            .observe(&mut within)
            .run(solver.as_mut(), x, &grid, &mut noise)
            .with_context(|| {
                let (a, b) = (spec.first + start, spec.first + start + rows);
                let which = if batches > 1 || spec.first > 0 { format!(" (samples {a}..{b})") } else { String::new() };
                format!("sampling with {}{which}", spec.solver)
            })?;
        let z = tensor_to_array(&run.x)?; // the host copy waits for the device
        seconds += started.elapsed().as_secs_f64();
        score_evals = score_evals.max(run.score_evals);
        let x = scaling.invert(z.view())?;
        on_batch(x.view())?;
        if kept_rows < spec.keep {
            let take = rows.min(spec.keep - kept_rows);
            kept.push(x.slice(s![..take, ..]).to_owned());
            kept_rows += take;
        }
        for (t, state) in states {
            snapshots.push((t, scaling.invert(tensor_to_array(&state)?.view())?));
        }
    }
    pb.finish_and_clear();
    let views: Vec<ArrayView2<'_, f64>> = kept.iter().map(|k| k.view()).collect();
    let x = if views.is_empty() { Array2::zeros((0, on.dim)) } else { ndarray::concatenate(Axis(0), &views)? };
    Ok(Sampled { x, snapshots, score_evals, seconds })
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
        note_direction(class, w, guided.exponent());
        return Ok((Box::new(guided), format!("-class{class}-classifier-w{w}")));
    }
    if model.n_classes() == 0 {
        bail!(
            "the model {} was trained without labels, so it cannot be asked for class {class}: train it with `scoresde train --conditional`, or pass --classifier CKPT (from `scoresde train-classifier`)",
            a.model.display()
        );
    }
    cfg_guided(a, model, class, || Ok(meta.sde.build()?))
}

/// Classifier-free guidance of `model` towards `class` with `--guidance`, `--guidance-interval`
/// (on the SDE `sde` builds) and `--cfg-rescale`; and the file-name tag saying so.
fn cfg_guided<'a>(
    a: &SampleArgs,
    model: impl ConditionalScore<Tensor> + 'a,
    class: usize,
    sde: impl FnOnce() -> anyhow::Result<Box<dyn Sde>>,
) -> anyhow::Result<(Box<dyn Score<Tensor> + 'a>, String)> {
    let w = a.guidance.unwrap_or(0.0);
    let mut guided = ClassifierFreeGuided::new(model, class, w).context("--class")?;
    let mut tag = format!("-class{class}-cfg-w{w}");
    if let Some((lo, hi)) = a.guidance_interval {
        guided = guided.with_interval(sde()?, lo, hi).context("--guidance-interval")?;
        tag.push_str(&format!("-interval{lo}-{hi}"));
    }
    if let Some(phi) = a.cfg_rescale.filter(|&phi| phi != 0.0) {
        guided = guided.with_rescale(phi).context("--cfg-rescale")?;
        tag.push_str(&format!("-rescale{phi}"));
    }
    note_direction(class, w, guided.exponent());
    Ok((Box::new(guided), tag))
}

/// Says so when `--guidance` does not steer towards the class: the guided
/// density is `p(x) p(y | x)^exponent` (see `scoresde_solvers::guidance`).
fn note_direction(class: usize, w: f64, exponent: f64) {
    if exponent == 0.0 {
        eprintln!("note: --guidance {w} ignores class {class}: this samples the unconditional model");
    } else if exponent < 0.0 {
        eprintln!("note: --guidance {w} steers away from class {class} (p(x) / p(y | x)^{})", -exponent);
    }
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

/// `-n` as a count: at least 1, at most [`MAX_SAMPLES`].
fn sample_count(n: i64) -> anyhow::Result<usize> {
    if n < 1 {
        bail!("-n {n}: need at least 1 sample");
    }
    if n as u64 > MAX_SAMPLES {
        bail!("-n {n}: at most {MAX_SAMPLES} samples per run");
    }
    usize::try_from(n).with_context(|| format!("-n {n}: more samples than this machine can index"))
}

/// The batch: `--batch` (at least 1, no more than `n`, and fitting in half of
/// the machine's memory on the CPU) or [`default_batch`].
fn batch_size(a: &SampleArgs, net: &NetConfig, n: usize, device: Device) -> anyhow::Result<usize> {
    let Some(batch) = a.batch else { return Ok(default_batch(net, n)) };
    if batch == 0 {
        bail!("--batch 0: need at least 1 sample per batch");
    }
    let batch = batch.min(n);
    let need = sample_bytes_per_row(net).saturating_mul(batch as u64);
    if let (Device::Cpu, Some(memory)) = (device, scoresde::fsutil::memory_bytes()) {
        if need > memory / 2 {
            bail!(
                "--batch {batch}: a batch would need about {:.1} GB, more than half of this machine's {:.1} GB of memory; leave --batch out for a batch that fits",
                need as f64 / 1e9,
                memory as f64 / 1e9
            );
        }
    }
    Ok(batch)
}

/// Refuses a samples file larger than the free space where it goes.
fn check_disk(path: &Path, n: usize, dim: usize) -> anyhow::Result<()> {
    let need = npy_file_bytes(n as u64, dim).unwrap_or(u64::MAX);
    let dir = path.parent().unwrap_or(Path::new("."));
    if let Some(free) = scoresde::fsutil::free_bytes(dir) {
        if need > free {
            bail!(
                "-n {n}: {} would take {:.1} GB ({n} rows of {dim} float64 values), but only {:.1} GB are free there; lower -n",
                path.display(),
                need as f64 / 1e9,
                free as f64 / 1e9
            );
        }
    }
    Ok(())
}

/// The range to check samples against: the training data's (recorded in the
/// checkpoint), else the run folder's held-out data's, with words saying
/// which; for an image model, the pixel range of [`crate::plot::ImageSpec`] in every column.
fn data_range(meta: &checkpoint::Meta, model: &Path) -> Option<(DataRange, &'static str)> {
    if let Some(spec) = crate::plot::ImageSpec::of(meta) {
        // Images: a pixel's range is every pixel's (a border pixel that is
        // always black in the data is not out of range when nearly black).
        let dim = meta.net.dim;
        let range = DataRange { min: vec![spec.range.0; dim], max: vec![spec.range.1; dim] };
        return Some((range, "the training images' pixel range"));
    }
    if let Some(range) = &meta.data.range {
        return Some((range.clone(), "the training data's range"));
    }
    let held = scoresde::data::load_npy(common::heldout_path(&run_folder(model))).ok()?;
    let range = DataRange::fit(held.view()).ok().filter(|r| r.dim() == meta.net.dim)?;
    Some((range, "the held-out data's range (the checkpoint records no training range)"))
}

/// With an x0 guard in the solver name, a note that it acts on the network's standardized
/// coordinates (per column mean 0, sd 1), with how far the data's range reaches there.
fn guard_note(guard: X0Guard, scaling: &Scaling, range: Option<&DataRange>) -> Option<String> {
    if guard.is_off() {
        return None;
    }
    let reach = range.map(|r| {
        let col = |j: usize| {
            let (m, s) = (scaling.mean[j], scaling.std[j]);
            ((r.min[j] - m) / s).abs().max(((r.max[j] - m) / s).abs())
        };
        (0..r.min.len().min(scaling.mean.len())).map(col).fold(0.0f64, f64::max)
    });
    Some(match reach {
        Some(reach) => format!(
            "note: x0 guard {guard} acts on the network's standardized data (per column mean 0, sd 1), where the data's range reaches |x| = {reach:.2}"
        ),
        None => format!("note: x0 guard {guard} acts on the network's standardized data (per column mean 0, sd 1)"),
    })
}

/// Samples outside the data's range make a `warning:` (rather than a `note:`)
/// when more than this share of them is outside...
const WARN_SHARE: f64 = 0.01;
/// ... or when one lies further out than this many half-widths from the centre.
const WARN_FACTOR: f64 = 1.5;

/// The line about samples outside the data's range, if any are: a `note:`
/// for a few just outside, a `warning:` past [`WARN_SHARE`] or [`WARN_FACTOR`].
fn range_warning(report: &RangeReport, what: &str) -> Option<String> {
    if report.outside() == 0 {
        return None;
    }
    let (j, r) = (report.worst_column(), report.range());
    let share = report.outside() as f64 / report.rows().max(1) as f64;
    let level = if share > WARN_SHARE || report.max_factor() > WARN_FACTOR { "warning" } else { "note" };
    Some(format!(
        "{level}: {} of {} samples ({:.2}%) lie outside {what} (per-column min..max); the farthest is {:.1}x the range's half-width from its centre (column {j}, range [{:.4}, {:.4}])",
        report.outside(),
        report.rows(),
        100.0 * share,
        report.max_factor(),
        r.min[j],
        r.max[j]
    ))
}

/// `scoresde sample`: samples streamed to a .npy file batch by batch, their
/// range check, figure, and the class report with `--class`.
pub fn run(a: &SampleArgs, ctrl_c: &CtrlC) -> anyhow::Result<Status> {
    if a.ts.torchscript.is_some() {
        return run_torchscript(a, ctrl_c);
    }
    let total = sample_count(a.n)?;
    // The solver name (and its x0 guard) is checked before anything is loaded or locked.
    let guard = by_name::<Tensor>(&a.solver)?.x0_guard();
    let device = common::device(&a.device)?;
    let (model, scaling, meta) = load_model(&a.model, device)?;
    // One writer per folder: not while a training writes there.
    // A shard's default folder is its own (MODEL/shardKofN), so N shards run at once.
    let out = match (&a.out, a.shard) {
        (Some(out), _) => out.clone(),
        (None, Some(shard)) => crate::shard::default_folder(&run_folder(&a.model), shard),
        (None, None) => run_folder(&a.model),
    };
    let _lock = match &a.out {
        Some(out) => common::lock_folder("--out", out)?,
        None => common::lock_folder("--model", &out)?,
    };
    let sde = meta.sde.build()?;
    let on = Target { sde: sde.as_ref(), dim: meta.net.dim, device, kind: Kind::Float };
    let (score, tag) = guided(a, model, &meta)?;
    let name = SampleName {
        solver: &a.solver,
        steps: a.steps,
        grid: &a.grid,
        seed: a.seed,
        denoise: !a.no_denoise,
        guidance: &tag,
    };
    // With --shard: this shard's rows of the whole run, in batches of the whole run's.
    let batch = match (a.shard, a.batch) {
        (Some(shard), None) => default_batch(&meta.net, total.div_ceil(shard.count)),
        _ => batch_size(a, &meta.net, total, device)?,
    };
    let rows = match a.shard {
        Some(shard) => crate::shard::rows(total, batch, shard)?,
        None => 0..total,
    };
    let n = rows.len();
    let (mut npy, trajectory_png) = (name.npy(&out), name.trajectory_png(&out));
    if let Some(shard) = a.shard {
        npy = crate::shard::shard_npy(&npy, shard);
        eprintln!("shard {shard}: samples {}..{} of {total}", rows.start, rows.end);
    }
    let png = npy.with_extension("png");
    let mut outputs = vec![npy.clone(), png.clone()];
    if a.shard.is_some() {
        outputs.push(crate::shard::sidecar(&npy));
    }
    if a.trajectory {
        outputs.push(trajectory_png.clone());
    }
    common::refuse_existing(&outputs, a.force)?;
    check_disk(&npy, n, meta.net.dim)?;
    let spec = Spec {
        solver: &a.solver,
        steps: a.steps,
        grid: &a.grid,
        n,
        first: rows.start,
        batch,
        keep: n.min(MAX_KEPT),
        seed: a.seed,
        denoise: !a.no_denoise,
        snapshot_times: if a.trajectory { &SNAPSHOT_TIMES } else { &[] },
        times: None,
    };
    if spec.batch < n {
        eprintln!("sampling in {} batches of {}", n.div_ceil(spec.batch), spec.batch);
    }
    let range = data_range(&meta, &a.model);
    if let Some(line) = guard_note(guard, &scaling, range.as_ref().map(|(r, _)| r)) {
        eprintln!("{line}");
    }
    let mut report = range.as_ref().map(|(r, _)| RangeReport::new(r.clone()));
    let mut writer = NpyWriter::create(&npy, n as u64, meta.net.dim)?;
    let mut on_batch = |x: ArrayView2<'_, f64>| -> anyhow::Result<()> {
        writer.append(x)?;
        if let Some(r) = report.as_mut() {
            r.add(x)?;
        }
        Ok(())
    };
    let s = sample_with(score.as_ref(), &on, &scaling, &spec, &ctrl_c.flag(), &mut on_batch)?;
    writer.finish()?;
    if let Some(shard) = a.shard {
        let run = crate::shard::RunId {
            n: total,
            batch,
            dim: meta.net.dim,
            seed: a.seed,
            solver: a.solver.clone(),
            steps: a.steps,
            grid: a.grid.clone(),
            denoise: !a.no_denoise,
            guidance: tag.clone(),
            checkpoint_sha256: crate::shard::file_sha256(&checkpoint::paths(&a.model).0)?,
            checkpoint_step: meta.step,
            scoresde: env!("CARGO_PKG_VERSION").into(),
            noise: crate::shard::NOISE.into(),
            precision: "f32".into(),
        };
        let sidecar = crate::shard::sidecar(&npy);
        crate::shard::ShardMeta::new(shard, rows.clone(), run, &npy).write(&sidecar)?;
        println!("wrote {}", sidecar.display());
    }
    summary(&s, n, a.steps, spec.batch);
    if let Some(line) = report.as_ref().zip(range.as_ref()).and_then(|(r, (_, what))| range_warning(r, what)) {
        eprintln!("{line}");
    }
    if s.x.nrows() < n {
        println!("figure and class report: the first {} of {n} samples", s.x.nrows());
    }
    if let Some(class) = a.class {
        match class_report(&meta.data.source, &s.x, class) {
            Some((mean, freq)) => println!(
                "class {class}: exact p(y = {class} | x) averages {mean:.4}; {:.1}% of samples are most likely class {class}",
                100.0 * freq
            ),
            None => println!("class {class}: no exact class posterior for {}", meta.data.source),
        }
    }
    let held = scoresde::data::load_npy(common::heldout_path(&run_folder(&a.model))).ok();
    let trajectory = a.trajectory.then_some(trajectory_png.as_path());
    draw(&npy, &s, crate::plot::ImageSpec::of(&meta), held.as_ref(), trajectory, a.steps)?;
    Ok(Status::Done)
}

/// The run's timing line.
fn summary(s: &Sampled, n: usize, steps: usize, batch: usize) {
    eprintln!(
        "{} samples, {} score evaluations, {:.2} s ({:.0} samples/s, {:.0} steps/s)",
        n,
        s.score_evals,
        s.seconds,
        n as f64 / s.seconds,
        steps as f64 * n.div_ceil(batch) as f64 / s.seconds
    );
}

/// Says where the samples went, and draws their figure (`npy` as `.png`: images as a grid
/// with `image`, else points over `held`) and, with `trajectory`, the progressive denoising.
fn draw(
    npy: &Path,
    s: &Sampled,
    image: Option<crate::plot::ImageSpec>,
    held: Option<&Array2<f64>>,
    trajectory: Option<&Path>,
    steps: usize,
) -> anyhow::Result<()> {
    println!("wrote {}", npy.display());
    let png = npy.with_extension("png");
    let title = crate::plot::figure_title(npy);
    let what = match image {
        Some(spec) => crate::plot::image_samples_figure(&png, &title, s.x.view(), spec)?,
        None => crate::plot::sample_figure(&png, &title, s.x.view(), held)?,
    };
    println!("wrote {} ({what})", png.display());
    if let Some(trajectory_png) = trajectory {
        let drawn = match image {
            Some(spec) => crate::plot::image_trajectory_figure(trajectory_png, &s.snapshots, spec)?,
            None => crate::plot::trajectory_figure(trajectory_png, &s.snapshots, held)?,
        };
        match drawn {
            Some(what) => println!("wrote {} ({what})", trajectory_png.display()),
            None => eprintln!("note: no trajectory figure: fewer than 2 times were recorded ({steps} steps)"),
        }
    }
    Ok(())
}

/// `scoresde sample --torchscript FILE`: as [`run`], with the module as the score (and
/// classifier-free guidance with `--class` for a `--classes` module); samples in the
/// module's coordinates (no data scaling), written to `--out` or the module's folder.
fn run_torchscript(a: &SampleArgs, ctrl_c: &CtrlC) -> anyhow::Result<Status> {
    let total = sample_count(a.n)?;
    by_name::<Tensor>(&a.solver)?; // the solver name is checked before anything is loaded
    let device = common::device(&a.device)?;
    let loaded = crate::torchscript::load(&a.ts, device)?;
    let path = a.ts.torchscript.as_deref().context("--torchscript")?;
    let times = crate::torchscript::grid(&a.ts, &loaded, a.steps, !a.no_denoise)?;
    let (score, mut tag): (Box<dyn Score<Tensor> + '_>, String) = match a.class {
        None => (Box::new(&loaded.score), String::new()),
        Some(class) => {
            if loaded.score.n_classes() == 0 {
                bail!("--class {class}: the TorchScript model is unconditional; pass --classes N for a class-conditional module (forward(x, t, class_labels))");
            }
            cfg_guided(a, &loaded.score, class, || Ok(crate::torchscript::schedule(&a.ts)?.0))?
        }
    };
    let out = a.out.clone().unwrap_or_else(|| crate::torchscript::default_out(path));
    let _lock = common::lock_folder("--out", &out)?;
    let grid_name = a.ts.spacing.map(crate::torchscript::spacing_name).unwrap_or_else(|| a.grid.clone());
    if a.ts.dtype != Kind::Float {
        tag.push_str(&format!("-{}", crate::torchscript::dtype_name(a.ts.dtype)));
    }
    let name = SampleName {
        solver: &a.solver,
        steps: a.steps,
        grid: &grid_name,
        seed: a.seed,
        denoise: !a.no_denoise,
        guidance: &tag,
    };
    let batch = match a.batch {
        Some(0) => bail!("--batch 0: need at least 1 sample per batch"),
        Some(b) => b.min(total),
        None => total.min(256),
    };
    let (npy, trajectory_png) = (name.npy(&out), name.trajectory_png(&out));
    let mut outputs = vec![npy.clone(), npy.with_extension("png")];
    if a.trajectory {
        outputs.push(trajectory_png.clone());
    }
    common::refuse_existing(&outputs, a.force)?;
    check_disk(&npy, total, loaded.dim)?;
    let spec = Spec {
        solver: &a.solver,
        steps: a.steps,
        grid: &grid_name,
        n: total,
        first: 0,
        batch,
        keep: total.min(MAX_KEPT),
        seed: a.seed,
        denoise: !a.no_denoise,
        snapshot_times: if a.trajectory { &SNAPSHOT_TIMES } else { &[] },
        times: times.as_ref(),
    };
    let on = Target { sde: loaded.score.sde(), dim: loaded.dim, device, kind: a.ts.dtype };
    let mut writer = NpyWriter::create(&npy, total as u64, loaded.dim)?;
    let mut on_batch = |x: ArrayView2<'_, f64>| -> anyhow::Result<()> { Ok(writer.append(x)?) };
    let s = sample_with(score.as_ref(), &on, &Scaling::identity(loaded.dim), &spec, &ctrl_c.flag(), &mut on_batch)?;
    writer.finish()?;
    summary(&s, total, a.steps, batch);
    let image = match a.ts.shape.as_slice() {
        &[c, h, w] => Some(crate::plot::ImageSpec { shape: [c, h, w], range: (-1.0, 1.0) }),
        _ => None,
    };
    let trajectory = a.trajectory.then_some(trajectory_png.as_path());
    draw(&npy, &s, image, None, trajectory, a.steps)?;
    Ok(Status::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guidance_interval_and_rescale_are_validated() {
        assert_eq!(parse_interval("0.28,5.42"), Ok((0.28, 5.42)));
        assert_eq!(parse_interval(" 0 , 1e3"), Ok((0.0, 1000.0)));
        for bad in ["1", "1,1", "2,1", "-1,1", "0,inf", "nan,1", "a,1", "1,2,3"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_rescale("0.7"), Ok(0.7));
        assert_eq!(parse_rescale("0"), Ok(0.0));
        for bad in ["-0.1", "1.5", "nan", "x"] {
            assert!(parse_rescale(bad).is_err(), "{bad}");
        }
        // Through clap: parsed with --class, refused without it or with --classifier.
        #[derive(clap::Parser)]
        struct Cmd {
            #[command(flatten)]
            a: SampleArgs,
        }
        let parse = |args: &[&str]| {
            <Cmd as clap::Parser>::try_parse_from(std::iter::once("sample").chain(args.iter().copied()))
        };
        let a = parse(&["--class", "1", "--guidance-interval", "0.3,5", "--cfg-rescale", "0.7"]).unwrap().a;
        assert_eq!((a.guidance_interval, a.cfg_rescale), (Some((0.3, 5.0)), Some(0.7)));
        assert!(parse(&["--guidance-interval", "0.3,5"]).is_err());
        assert!(parse(&["--class", "1", "--cfg-rescale", "2"]).is_err());
        assert!(parse(&["--class", "1", "--guidance-interval", "5,0.3"]).is_err());
        assert!(parse(&["--class", "1", "--classifier", "c", "--cfg-rescale", "0.5"]).is_err());
    }

    #[test]
    fn range_line_is_a_note_for_a_few_just_outside_and_a_warning_past_the_thresholds() {
        let range = DataRange { min: vec![-1.0], max: vec![1.0] };
        let line = |values: &[f64]| {
            let mut r = RangeReport::new(range.clone());
            r.add(Array2::from_shape_vec((values.len(), 1), values.to_vec()).unwrap().view()).unwrap();
            range_warning(&r, "the range")
        };
        let inside = vec![0.5; 200];
        assert_eq!(line(&inside), None);
        let mut few = inside.clone();
        few[0] = 1.2; // 1 of 200 (0.5%), 1.2 half-widths out
        let l = line(&few).unwrap();
        assert!(l.starts_with("note: 1 of 200 samples (0.50%)") && l.contains("1.2x"), "{l}");
        let mut far = inside.clone();
        far[0] = -3.0; // 3 half-widths out
        assert!(line(&far).unwrap().starts_with("warning: 1 of 200"));
        let mut many = inside;
        many[..3].fill(1.1); // 1.5% out
        assert!(line(&many).unwrap().starts_with("warning: 3 of 200 samples (1.50%)"));
    }
}
