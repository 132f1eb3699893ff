//! `scoresde eval`: sample quality against held-out data, and the learned
//! score's error against the exact one for Gaussian-mixture data.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use ndarray::Array2;
use scoresde::data::{load_npy, load_npy_head, DataSource};
use scoresde::metrics::{median_bandwidth, mmd2, sliced_wasserstein2};

use crate::common::{self, fmt, load_model, run_folder, Status, Table};
use crate::sample::MAX_KEPT;

/// Options of `scoresde eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// Run folder (or checkpoint path) written by `scoresde train`.
    #[arg(long, default_value = "out/train")]
    pub model: PathBuf,
    /// Sample files (.npy) to score; default: every samples-*.npy in the run folder.
    #[arg(long = "samples", value_name = "FILE")]
    pub samples: Vec<PathBuf>,
    /// Reference data [default: the run's heldout.npy].
    #[arg(long)]
    pub against: Option<PathBuf>,
    /// Seed of the metrics' random projections and exact samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// auto, cpu, cuda or cuda:N (for the score error).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Replace tables and figures of an earlier eval that hold other results.
    #[arg(long)]
    pub force: bool,
    /// Feature classifier of `scoresde train-features` (a folder holding
    /// features.safetensors, or its path) for the image metrics (classifier
    /// FID, coverage, confidence, memorisation) [default: MODEL/features when it exists].
    #[arg(long, value_name = "DIR")]
    pub features: Option<PathBuf>,
    /// With --torchscript: the toy data set (a Gaussian mixture: ring, grid, ...) whose exact
    /// score the module's is compared with over t (the module's coordinates, unscaled).
    #[arg(long, value_name = "NAME", requires = "torchscript")]
    pub data: Option<String>,
    /// A TorchScript model instead of --model: the score error against --data's exact
    /// score, and the quality of --samples against --against; tables and figures go next
    /// to the module.
    #[command(flatten)]
    pub ts: crate::torchscript::TorchScriptArgs,
}

/// The file stem (in the run folder) of the quality table of these inputs:
/// `eval` for every sample file of the run against its held-out data with
/// seed 0; otherwise `eval-FIRST[-and-K-more][-vs-AGAINST][-seedS]`, named
/// after the files given.
pub fn table_stem(samples: &[PathBuf], against: Option<&Path>, seed: u64) -> String {
    let stem = |p: &Path| p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let mut name = String::from("eval");
    if let Some(first) = samples.first() {
        name += &format!("-{}", stem(first));
        if samples.len() > 1 {
            name += &format!("-and-{}-more", samples.len() - 1);
        }
    }
    if let Some(against) = against {
        name += &format!("-vs-{}", stem(against));
    }
    if seed != 0 {
        name += &format!("-seed{seed}");
    }
    name
}

/// Sliced W2 (256 projections) and unbiased MMD^2 (RBF, bandwidths h/2, h, 2h
/// around the median distance h) of `x` against `reference`.
pub fn quality(x: &Array2<f64>, reference: &Array2<f64>, seed: u64) -> anyhow::Result<(f64, f64)> {
    let sw2 = sliced_wasserstein2(x.view(), reference.view(), 256, seed)?;
    let h = median_bandwidth(x.view(), reference.view())?;
    let mmd = mmd2(x.view(), reference.view(), &[0.5 * h, h, 2.0 * h])?;
    Ok((sw2, mmd))
}

/// The quality cells of one sample file `f` (`x`, its rows): sliced W2 and MMD^2 against
/// `reference`, and the exact log-likelihood under `source` where it has one ("-" otherwise).
fn quality_cells(
    f: &Path,
    x: &Array2<f64>,
    reference: &Array2<f64>,
    source: Option<&DataSource>,
    seed: u64,
) -> anyhow::Result<[String; 3]> {
    if x.nrows() < 2 {
        bail!("{}: {} sample(s); the metrics (sliced W2, MMD) need at least 2", f.display(), x.nrows());
    }
    let (sw2, mmd) = quality(x, reference, seed).with_context(|| format!("evaluating {}", f.display()))?;
    let ll = match source {
        Some(s) => exact_loglik(s, x)?.map_or("-".into(), |v| fmt(v, 3)),
        None => "-".into(),
    };
    Ok([fmt(sw2, 4), fmt(mmd, 5), ll])
}

/// Mean log-density of `x` under the exact data law, for the toy sets that
/// are Gaussian mixtures (None otherwise). Blurred or misplaced samples score
/// visibly lower than fresh data, at sample sizes where W2/MMD cannot tell.
pub fn exact_loglik(source: &DataSource, x: &Array2<f64>) -> anyhow::Result<Option<f64>> {
    let Some(law) = source.mixture() else { return Ok(None) };
    let lp = law.log_density(x.view(), 1.0, 0.0)?;
    Ok(Some(lp.mean().unwrap_or(f64::NAN)))
}

/// Times at which the score error is reported.
pub const ERROR_TIMES: [f64; 9] = [0.001, 0.01, 0.03, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0];

/// The learned score's error over t when the run's data is a Gaussian mixture; None otherwise.
pub fn model_score_error_by_time(
    model: &std::path::Path,
    device: tch::Device,
    seed: u64,
) -> anyhow::Result<Option<Vec<(f64, f64)>>> {
    let (score, scaling, meta) = load_model(model, device)?;
    let Some(law) = DataSource::parse(&meta.data.source).ok().and_then(|s| s.mixture()) else {
        return Ok(None);
    };
    let law = scaling.apply_to_mixture(&law)?;
    // A process ending before t = 1 (rectified flow: t_max = 0.999) is measured at its end.
    let times = ERROR_TIMES.map(|t| t.min(score.sde().t_max()));
    Ok(Some(scoresde::eval::score_mse_by_time(&score, &law, score.sde(), &times, 2000, seed)?))
}

/// `scoresde eval`: a quality table of the sample files, and the score error
/// over t. Tables are named after what was evaluated ([`table_stem`]); one that
/// would replace an earlier table holding other results needs `--force`.
pub fn run(a: &EvalArgs) -> anyhow::Result<Status> {
    if a.ts.torchscript.is_some() {
        return run_torchscript(a);
    }
    let folder = run_folder(&a.model);
    let device = common::device(&a.device)?;
    let (_, _, meta) = load_model(&a.model, tch::Device::Cpu)?;
    let against = a.against.clone().unwrap_or_else(|| common::heldout_path(&folder));
    let reference = load_npy(&against).with_context(|| "reference data (--against)")?;
    let listed = a.samples.is_empty();
    let files = if listed { common::sample_files(&folder)? } else { a.samples.clone() };
    // Writes eval.* and score_error.* there: one writer per folder.
    let _lock = common::lock_folder("--model", &folder)?;
    let source = DataSource::parse(&meta.data.source).ok();
    let mut images = match crate::features::find(a.features.as_deref(), &folder, device)? {
        Some((k, k_meta)) => {
            eprintln!(
                "image metrics with the feature classifier of {} (held-out accuracy {})",
                k_meta.source,
                fmt(k_meta.heldout_accuracy, 4)
            );
            Some(crate::features::ImageEval::new(k, &k_meta, &meta, &folder, &reference, a.seed)?)
        }
        None => None,
    };
    let mut table = Table::new(&["samples", "n", "sliced W2", "MMD^2", "exact log-lik"]);
    for f in &files {
        let (x, rows) = load_npy_head(f, MAX_KEPT)?;
        if x.nrows() < rows {
            println!("{}: metrics of the first {} of {rows} samples", f.display(), x.nrows());
        }
        let [sw2, mmd, ll] = quality_cells(f, &x, &reference, source.as_ref(), a.seed)?;
        let name = match f.file_name() {
            Some(n) if listed => n.to_string_lossy().into_owned(),
            _ => f.display().to_string(),
        };
        if let Some(images) = &mut images {
            images.push(&name, &x)?;
        }
        table.push(vec![name, x.nrows().to_string(), sw2, mmd, ll]);
    }
    if !files.is_empty() {
        print!("{}", table.markdown());
        let stem = table_stem(&a.samples, a.against.as_deref(), a.seed);
        let (md, csv) = table.save(&folder.join(&stem), a.force)?;
        println!("wrote {} and {}", md.display(), csv.display());
        if let Some(images) = &images {
            print!("{}", images.table().markdown());
            let (md, csv) = images.table().save(&folder.join(crate::features::image_stem(&stem)), a.force)?;
            println!("wrote {} and {}", md.display(), csv.display());
        }
    } else {
        eprintln!("no samples-*.npy in {}: run `scoresde sample` first or pass --samples", folder.display());
    }
    if let Some(errors) = model_score_error_by_time(&a.model, device, a.seed)? {
        let name = if a.seed == 0 { "score_error".to_string() } else { format!("score_error-seed{}", a.seed) };
        write_score_error(&folder.join(name), &errors, a.force)?;
    }
    Ok(Status::Done)
}

/// The score-error table (printed, and saved as `STEM.md`/`.csv`) and its figure `STEM.png`.
fn write_score_error(stem: &Path, errors: &[(f64, f64)], force: bool) -> anyhow::Result<()> {
    let mut t = Table::new(&["t", "sigma^2-weighted score error"]);
    for (time, e) in errors {
        t.push(vec![fmt(*time, 3), fmt(*e, 5)]);
    }
    print!("{}", t.markdown());
    let png = common::with_suffix(stem, "png");
    // The figure shows the table's numbers: it may be redrawn when the
    // table is (unchanged, or with --force), not when only the figure is left.
    if png.exists() && !common::with_suffix(stem, "csv").exists() && !force {
        bail!("{} exists (from an earlier eval): pass --force to replace it, or move it away", png.display());
    }
    let (md, _) = t.save(stem, force)?;
    crate::plot::plot_score_error_by_time(&png, errors)?;
    println!("wrote {} and {}", md.display(), png.display());
    Ok(())
}

/// `scoresde eval --torchscript FILE`: the module's score error against the exact score of
/// `--data` (a Gaussian-mixture toy set, in the module's coordinates), over the times of
/// [`ERROR_TIMES`] inside the schedule; and the quality table of `--samples` against
/// `--against`. Written next to the module, named after it.
fn run_torchscript(a: &EvalArgs) -> anyhow::Result<Status> {
    if a.data.is_none() && a.samples.is_empty() {
        bail!("--torchscript: nothing to evaluate; pass --data NAME (a Gaussian-mixture toy set) for the score error, and/or --samples FILE with --against REFERENCE");
    }
    if !a.samples.is_empty() && a.against.is_none() {
        bail!("--samples with --torchscript needs --against REFERENCE.npy (there is no run folder with held-out data)");
    }
    let law = match &a.data {
        Some(data) => match DataSource::parse(data).with_context(|| "--data")?.mixture() {
            Some(law) => Some((data, law)),
            None => bail!("--data {data}: not a Gaussian-mixture toy set, so it has no exact score to compare with"),
        },
        None => None,
    };
    let device = common::device(&a.device)?;
    let loaded = crate::torchscript::load(&a.ts, device)?;
    if let Some((data, law)) = &law {
        if law.dim() != loaded.dim {
            bail!("--data {data} has {} dimensions but the module's samples (--shape) have {}", law.dim(), loaded.dim);
        }
    }
    let path = a.ts.torchscript.as_deref().context("--torchscript")?;
    let folder = crate::torchscript::default_out(path);
    let _lock = common::lock_folder("--torchscript", &folder)?;
    let module = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    if let Some(against) = &a.against {
        let reference = load_npy(against).with_context(|| "reference data (--against)")?;
        let source = a.data.as_deref().and_then(|d| DataSource::parse(d).ok());
        let mut table = Table::new(&["samples", "n", "sliced W2", "MMD^2", "exact log-lik"]);
        for f in &a.samples {
            let (x, _) = load_npy_head(f, MAX_KEPT)?;
            let [sw2, mmd, ll] = quality_cells(f, &x, &reference, source.as_ref(), a.seed)?;
            table.push(vec![f.display().to_string(), x.nrows().to_string(), sw2, mmd, ll]);
        }
        print!("{}", table.markdown());
        let stem = table_stem(&a.samples, a.against.as_deref(), a.seed);
        let (md, csv) = table.save(&folder.join(stem), a.force)?;
        println!("wrote {} and {}", md.display(), csv.display());
    }
    if let Some((data, law)) = &law {
        let sde = loaded.score.sde();
        let times = ERROR_TIMES.map(|t| t.min(sde.t_max()));
        let errors = scoresde::eval::score_mse_by_time(&loaded.score, law, sde, &times, 2000, a.seed)?;
        let seed = if a.seed == 0 { String::new() } else { format!("-seed{}", a.seed) };
        write_score_error(&folder.join(format!("score_error-{module}-{data}{seed}")), &errors, a.force)?;
    }
    Ok(Status::Done)
}
