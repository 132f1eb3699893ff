//! `scoresde train-features`: the convolutional feature classifier of
//! labelled images that `scoresde eval` uses for the classifier FID and the
//! other image metrics ([`scoresde::features`], [`scoresde::image_metrics`]);
//! and the image table of `eval`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use ndarray::{s, Array2, ArrayView2, Axis};
use scoresde::checkpoint::Meta;
use scoresde::data::{fingerprint, load_npy, split_indices, split_sizes, DataSource, MIN_HELDOUT_ROWS, MIN_TRAIN_ROWS};
use scoresde::features::{self, FeatureClassifier, FeatureConfig, FeatureMeta, FeatureTrainConfig};
use scoresde::image_metrics::{
    class_histogram, kl_from_uniform, mean_max_softmax, median, nn_distances, out_of_range_share, GaussianFit,
};

use crate::common::{self, fmt, Status, Table};

/// Options of `scoresde train-features`.
#[derive(clap::Args, Debug, Clone)]
pub struct TrainFeaturesArgs {
    /// Labelled images: mnist, digits, or a .npy file of images ([n, H, W], [n, C, H, W], or
    /// rows [n, C*H*W] in row-major [C, H, W] order, with --shape).
    #[arg(long)]
    pub data: String,
    /// Class of each row of a .npy --data: a .npy file of n integers (shape [n] or [n, 1]),
    /// classes 0..K (mnist and digits carry their own).
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Image shape C,H,W [default: 1,S,S when the row length is a square S^2].
    #[arg(long, value_name = "C,H,W")]
    pub shape: Option<String>,
    /// Fraction of the images held out to measure the accuracy (the same split
    /// as `scoresde train` with the same --holdout and --seed).
    #[arg(long, default_value_t = 0.1)]
    pub holdout: f64,
    /// Adam steps.
    #[arg(long, default_value_t = 2000)]
    pub steps: u64,
    /// Images per step (at most the training rows).
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Seed of the split, the initialisation and the batches.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Output folder: OUT/features.safetensors + OUT/features.json (a score
    /// model's run folder, where `eval` finds it).
    #[arg(long, default_value = "out/train")]
    pub out: PathBuf,
    /// Replace an existing OUT/features checkpoint.
    #[arg(long)]
    pub force: bool,
}

/// The image shape from `--shape`, or `[1, S, S]` for rows of `S^2` values.
fn image_shape(spec: Option<&str>, cols: usize) -> anyhow::Result<Vec<usize>> {
    let shape = match spec {
        Some(text) => {
            let parsed: Option<Vec<usize>> = text.split(',').map(|v| v.trim().parse().ok()).collect();
            match parsed {
                Some(v) if v.len() == 3 && v.iter().all(|&d| d > 0) => v,
                _ => bail!("--shape {text:?}: expected three positive integers C,H,W (e.g. 1,28,28)"),
            }
        }
        None => {
            let side = (cols as f64).sqrt().round() as usize;
            if side * side != cols {
                bail!("--data rows have {cols} values, not a square number: pass --shape C,H,W");
            }
            vec![1, side, side]
        }
    };
    let values = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if values != Some(cols) {
        bail!(
            "--shape {shape:?} has {} values per image, but --data rows have {cols}",
            values.map_or("too many".into(), |v| v.to_string())
        );
    }
    Ok(shape)
}

/// `scoresde train-features`: loads the images and labels, splits them like
/// `train`, trains the classifier, and saves it with its held-out accuracy.
pub fn run(a: &TrainFeaturesArgs) -> anyhow::Result<Status> {
    let device = common::device(&a.device)?;
    let source = DataSource::parse(&a.data)?;
    if let DataSource::Toy(_) = source {
        bail!("--data {source} is a 2-D toy set: train-features needs labelled images (mnist, digits, or a .npy file of images with --labels)");
    }
    // The same reader (and labels rules) as `scoresde train`.
    let data = source.load_dataset(usize::MAX, a.seed, a.labels.as_deref()).map_err(|e| match &e {
        scoresde::Error::InvalidArgument { name, .. } if name == "labels" => anyhow::anyhow!("--labels: {e}"),
        _ => e.into(),
    })?;
    let Some(labels) = data.labels else {
        bail!("--data {source} has no labels: pass --labels FILE (a .npy file of one integer class per row)");
    };
    let x = data.x;
    let known = Some(data.shape.as_slice()).filter(|s| s.len() == 3 && a.shape.is_none());
    let shape = match known {
        Some(s) => s.to_vec(),
        None => image_shape(a.shape.as_deref(), x.ncols())?,
    };
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    if classes < 2 {
        bail!("--data {source}: every label is {}; need at least 2 classes", classes.saturating_sub(1));
    }
    let (n_train, n_held) = split_sizes(x.nrows(), a.holdout)
        .map_err(|e| anyhow::anyhow!("--holdout {} with the {} rows of --data: {e}", a.holdout, x.nrows()))?;
    if n_train < MIN_TRAIN_ROWS || n_held < MIN_HELDOUT_ROWS {
        bail!(
            "--holdout {} splits the {} rows of --data into {n_train} training and {n_held} held-out rows: need at least {MIN_TRAIN_ROWS} and {MIN_HELDOUT_ROWS}",
            a.holdout,
            x.nrows()
        );
    }
    // The split of `scoresde train` with the same --holdout and --seed.
    let (ti, hi) = split_indices(x.nrows(), a.holdout, a.seed ^ 0x5eed)?;
    let (train_x, held_x) = (x.select(Axis(0), &ti), x.select(Axis(0), &hi));
    let train_y: Vec<usize> = ti.iter().map(|&i| labels[i]).collect();
    let held_y: Vec<usize> = hi.iter().map(|&i| labels[i]).collect();
    let config = FeatureConfig::new(&shape, classes);
    config.validate().with_context(|| format!("--shape {shape:?}"))?;
    let settings =
        FeatureTrainConfig { steps: a.steps, batch_size: a.batch, lr: a.lr, seed: a.seed, ..Default::default() };
    // The library's names of the settings as this command's options.
    settings.validate().map_err(|e| match e {
        scoresde::Error::InvalidArgument { name, value, reason } => {
            let flag = match name.as_str() {
                "batch size" => "--batch",
                "steps" => "--steps",
                "lr" => "--lr",
                _ => name.as_str(),
            };
            anyhow::anyhow!("{flag} {value}: {reason}")
        }
        e => e.into(),
    })?;
    let _lock = common::lock_folder("--out", &a.out)?;
    let spec = a.out.join("features");
    let (weights, _) = features::paths(&spec);
    if weights.exists() && !a.force {
        bail!("{} exists: pass --force to replace it", weights.display());
    }
    eprintln!(
        "training a feature classifier ({} parameters, images {shape:?}, {classes} classes) on {} of {} images of {} (seed {}) for {} steps",
        config.num_params(),
        n_train,
        x.nrows(),
        source,
        a.seed,
        a.steps
    );
    let pb = common::bar(a.steps, "features");
    let started = std::time::Instant::now();
    let trained = features::train(train_x.view(), &train_y, config.clone(), &settings, device, |step, loss| {
        pb.set_position(step);
        if let Some(l) = loss {
            pb.set_message(format!("loss {l:.4}"));
        }
    })?;
    pb.finish();
    eprintln!("{} steps in {:.1} s", a.steps, started.elapsed().as_secs_f64());
    let accuracy = trained.classifier.accuracy(held_x.view(), &held_y)?;
    let meta = FeatureMeta {
        format: features::FORMAT_VERSION,
        net: config,
        train: settings,
        scaling: trained.classifier.scaling(),
        source: match &a.labels {
            Some(l) => format!("{source} (labels {})", l.display()),
            None => source.to_string(),
        },
        train_rows: train_x.nrows(),
        train_sha256: fingerprint(train_x.view()),
        heldout_rows: held_x.nrows(),
        heldout_sha256: fingerprint(held_x.view()),
        heldout_accuracy: accuracy,
        range: scoresde::data::DataRange::fit(train_x.view())?,
        losses: trained.losses,
    };
    let written = features::save(&spec, &trained.classifier, &meta)?;
    let mut csv = String::from("step,loss\n");
    for (s, l) in &meta.losses {
        csv += &format!("{s},{l}\n");
    }
    let loss_csv = a.out.join("features-loss.csv");
    scoresde::fsutil::write_atomic(&loss_csv, csv.as_bytes())?;
    let loss_png = a.out.join("features-loss.png");
    crate::plot::loss_curve(&loss_png, &meta.losses)?;
    println!("held-out accuracy: {} ({} images, {classes} classes)", fmt(accuracy, 4), held_x.nrows());
    println!("wrote {} (+ .json sidecar)", written.display());
    println!("wrote {} and {}", loss_csv.display(), loss_png.display());
    Ok(Status::Done)
}

/// Most rows whose nearest-neighbour distance to the training set is computed
/// (brute force: rows x training rows x pixels).
pub const NN_MAX_ROWS: usize = 1000;

/// The feature classifier `eval` uses: `--features`, else `FOLDER/features`
/// when it exists; `None` when there is none.
pub fn find(
    given: Option<&Path>,
    folder: &Path,
    device: tch::Device,
) -> anyhow::Result<Option<(FeatureClassifier, FeatureMeta)>> {
    let spec = match given {
        Some(p) => {
            if !features::paths(p).0.exists() {
                bail!(
                    "--features {}: no feature classifier there (train one with `scoresde train-features --out {}`)",
                    p.display(),
                    p.display()
                );
            }
            p.to_path_buf()
        }
        None if features::paths(&folder.join("features")).0.exists() => folder.join("features"),
        None => return Ok(None),
    };
    let loaded = features::load(&spec, device).with_context(|| format!("--features {}", spec.display()))?;
    Ok(Some(loaded))
}

/// The training rows of the model's data: its `.npy` source minus the rows of
/// the run's held-out file (as a multiset), when that gives back the recorded
/// number of training rows; `None` (with a note) otherwise.
fn training_rows(meta: &Meta, folder: &Path) -> anyhow::Result<Option<Array2<f64>>> {
    let note = |why: String| {
        eprintln!("note: no nearest-neighbour distances: {why}");
        Ok(None)
    };
    let path = match DataSource::parse(&meta.data.source) {
        Ok(s @ (DataSource::Npy(_) | DataSource::Images(_))) => s,
        _ => {
            return note(format!(
                "the model's data {} is not an image set or .npy file found from here",
                meta.data.source
            ))
        }
    };
    let all = path.load_dataset(usize::MAX, 0, None)?.x;
    let held = load_npy(common::heldout_path(folder)).with_context(|| "the run's held-out data")?;
    let key = |r: ndarray::ArrayView1<f64>| r.iter().map(|v| v.to_bits()).collect::<Vec<u64>>();
    let mut count: HashMap<Vec<u64>, usize> = HashMap::new();
    for r in held.rows() {
        *count.entry(key(r)).or_default() += 1;
    }
    let keep: Vec<usize> = (0..all.nrows())
        .filter(|&i| match count.get_mut(&key(all.row(i))) {
            Some(c) if *c > 0 => {
                *c -= 1;
                false
            }
            _ => true,
        })
        .collect();
    if keep.len() != meta.data.rows {
        return note(format!(
            "{} minus the run's held-out rows leaves {} rows, but the model was trained on {}",
            path,
            keep.len(),
            meta.data.rows
        ));
    }
    Ok(Some(all.select(Axis(0), &keep)))
}

/// Columns of the image table.
pub const IMAGE_COLUMNS: [&str; 14] = [
    "samples",
    "n",
    "classifier FID",
    "FID real-vs-real",
    "coverage KL",
    "KL real",
    "confidence",
    "confidence real",
    "out of range",
    "out of range real",
    "NN median",
    "NN median held-out",
    "NN ratio",
    "class shares",
];

/// Per-set values of the image metrics.
struct SetMetrics {
    fid: f64,
    /// Share of each predicted class.
    shares: Vec<f64>,
    kl: f64,
    confidence: f64,
    out_of_range: f64,
    nn_median: Option<f64>,
}

/// The image table of `eval`, one row per sample file: each file against
/// one half of the reference images (the run's held-out images, or
/// --against), with the other half's values at the same n beside it as the
/// noise floor (real vs real).
pub struct ImageEval {
    k: FeatureClassifier,
    /// Gaussian fit of the reference half's features.
    reference: GaussianFit,
    /// The other half: real images scored like samples.
    real: Array2<f64>,
    /// The model's training range (else the classifier's).
    range: scoresde::data::DataRange,
    /// The model's training rows, for nearest-neighbour distances.
    train: Option<Array2<f64>>,
    /// The real half's metrics by n.
    floors: HashMap<usize, SetMetrics>,
    table: Table,
}

impl ImageEval {
    /// Splits `reference` and fits its reference half; finds the model's training rows.
    pub fn new(
        k: FeatureClassifier,
        k_meta: &FeatureMeta,
        meta: &Meta,
        folder: &Path,
        reference: &Array2<f64>,
        seed: u64,
    ) -> anyhow::Result<Self> {
        let d = k.config().dim();
        if meta.net.dim != d {
            bail!(
                "the feature classifier takes images of shape {:?} ({d} values), but the model's data have {} columns: pass the --features of this data set",
                k.config().shape,
                meta.net.dim
            );
        }
        if reference.ncols() != d {
            bail!("the reference data have {} columns; the feature classifier takes {d}", reference.ncols());
        }
        if reference.nrows() < 4 {
            bail!(
                "the image metrics split the reference data into two halves of at least 2 rows; it has {}",
                reference.nrows()
            );
        }
        if k_meta.heldout_sha256 != fingerprint(reference.view()) {
            eprintln!(
                "note: the reference images are not the feature classifier's held-out split: if it was trained on some of them, their features fit it better than new images would"
            );
        }
        let (q_idx, r_idx) = split_indices(reference.nrows(), 0.5, seed ^ 0xfea7)?;
        let (real, refs) = (reference.select(Axis(0), &q_idx), reference.select(Axis(0), &r_idx));
        let fit = GaussianFit::fit(k.embed(refs.view())?.features.view())?;
        let range = meta.data.range.clone().unwrap_or_else(|| k_meta.range.clone());
        let train = training_rows(meta, folder)?;
        Ok(Self { k, reference: fit, real, range, train, floors: HashMap::new(), table: Table::new(&IMAGE_COLUMNS) })
    }

    /// The image metrics of the rows `x` (data coordinates).
    fn metrics(&self, x: ArrayView2<f64>) -> anyhow::Result<SetMetrics> {
        let e = self.k.embed(x)?;
        let fid = GaussianFit::fit(e.features.view())?.frechet_distance(&self.reference)?;
        let predicted = features::argmax_rows(e.logits.view());
        let shares = class_histogram(&predicted, self.k.config().classes)?;
        let kl = kl_from_uniform(&shares)?;
        let confidence = mean_max_softmax(e.logits.view())?;
        let out_of_range = out_of_range_share(&self.range, x)?;
        let nn_median = match &self.train {
            Some(t) => Some(median(&nn_distances(x.slice(s![..x.nrows().min(NN_MAX_ROWS), ..]), t.view())?)?),
            None => None,
        };
        Ok(SetMetrics { fid, shares, kl, confidence, out_of_range, nn_median })
    }

    /// Adds the row of the sample file `name` holding `x`: its first
    /// `n = min(rows, real half)` rows, and the real half's first `n` beside.
    pub fn push(&mut self, name: &str, x: &Array2<f64>) -> anyhow::Result<()> {
        let d = self.k.config().dim();
        if x.ncols() != d {
            bail!("{name}: {} columns; the feature classifier takes {d}", x.ncols());
        }
        let n = x.nrows().min(self.real.nrows());
        if n < 2 {
            bail!("{name}: the image metrics need at least 2 samples");
        }
        if !self.floors.contains_key(&n) {
            let floor = self.metrics(self.real.slice(s![..n, ..]))?;
            self.floors.insert(n, floor);
        }
        let gen = self.metrics(x.slice(s![..n, ..])).with_context(|| format!("image metrics of {name}"))?;
        let floor = &self.floors[&n];
        let opt = |v: Option<f64>, digits| v.map_or("-".to_string(), |v| fmt(v, digits));
        let ratio = gen.nn_median.zip(floor.nn_median).map(|(g, r)| g / r);
        self.table.push(vec![
            name.to_string(),
            n.to_string(),
            fmt(gen.fid, 4),
            fmt(floor.fid, 4),
            fmt(gen.kl, 4),
            fmt(floor.kl, 4),
            fmt(gen.confidence, 4),
            fmt(floor.confidence, 4),
            fmt(gen.out_of_range, 4),
            fmt(floor.out_of_range, 4),
            opt(gen.nn_median, 4),
            opt(floor.nn_median, 4),
            opt(ratio, 3),
            gen.shares.iter().map(|v| fmt(*v, 3)).collect::<Vec<_>>().join(" "),
        ]);
        Ok(())
    }

    /// The table so far.
    pub fn table(&self) -> &Table {
        &self.table
    }
}

/// The image table's file stem for the quality table's stem `stem`.
pub fn image_stem(stem: &str) -> String {
    format!("{stem}-images")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_from_the_command_line() {
        assert_eq!(image_shape(None, 64).unwrap(), vec![1, 8, 8]);
        assert_eq!(image_shape(Some("3,4,4"), 48).unwrap(), vec![3, 4, 4]);
        assert!(image_shape(None, 48).unwrap_err().to_string().contains("--shape"));
        assert!(image_shape(Some("1,8,9"), 64).unwrap_err().to_string().contains("72 values per image"));
        assert!(image_shape(Some("1,8"), 64).is_err());
        assert!(image_shape(Some("1,x,8"), 64).is_err());
        assert!(image_shape(Some("0,8,8"), 64).is_err());
    }
}
