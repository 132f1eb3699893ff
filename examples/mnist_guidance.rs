//! The guidance figure and table of an image model: reads the class-guided
//! sample files that `scoresde sample --class K --guidance W` wrote (one per
//! class and scale), draws one row per class with the columns grouped by
//! scale, and prints per scale the feature classifier's agreement with the
//! requested class and the classifier FID of all classes together.
//!
//! `scripts/mnist-guidance` draws the samples and runs this:
//!
//! ```text
//! cargo run --release --example mnist_guidance -- --run RUN --features FEAT \
//!     --samples DIR --kind cfg --w 0,1,3 --per-cell 6 --out paper-figs/mnist_guidance.png
//! ```
//!
//! The FID reference is one half of the run's `heldout.npy` (its rows in file
//! order, already a random split), the floor the other half against it at the
//! same `n` (`n = min(samples of one scale, half the held-out rows)`), as in
//! `scoresde eval`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::Parser;
use ndarray::{concatenate, s, Array2, ArrayView2, Axis};
use scoresde::data::load_npy;
use scoresde::features::{self, FeatureClassifier};
use scoresde::image_metrics::GaussianFit;
use scoresde::plot::{image_grid, ImageGridOptions};

/// Guidance figure and agreement table from class-guided sample files.
#[derive(Parser, Debug)]
struct Args {
    /// Run folder of the model (for heldout.npy).
    #[arg(long)]
    run: PathBuf,
    /// Feature classifier (folder of `scoresde train-features`).
    #[arg(long)]
    features: PathBuf,
    /// Folder holding the files samples-*-class{K}-{KIND}-w{W}.npy.
    #[arg(long)]
    samples: PathBuf,
    /// Guidance kind in the file names: cfg or classifier.
    #[arg(long, default_value = "cfg")]
    kind: String,
    /// Guidance scales (as written in the file names), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,1,3")]
    w: Vec<f64>,
    /// Classes 0..K.
    #[arg(long, default_value_t = 10)]
    classes: usize,
    /// Samples of each (class, scale) cell drawn in the figure.
    #[arg(long, default_value_t = 6)]
    per_cell: usize,
    /// Figure to write (no figure when absent).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// The sample file of class `k` at scale `w` in `dir`.
fn find(dir: &Path, kind: &str, k: usize, w: f64) -> anyhow::Result<PathBuf> {
    let suffix = format!("-class{k}-{kind}-w{w}.npy");
    let mut hits = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = e?.path();
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.starts_with("samples-") && name.ends_with(&suffix) {
            hits.push(p);
        }
    }
    match hits.len() {
        1 => Ok(hits.remove(0)),
        0 => bail!("no samples-*{suffix} in {}", dir.display()),
        _ => bail!("several samples-*{suffix} in {}: {hits:?}", dir.display()),
    }
}

/// Share of rows of `x` the classifier puts in class `k`.
fn agreement(c: &FeatureClassifier, x: ArrayView2<f64>, k: usize) -> anyhow::Result<f64> {
    let p = c.predict(x)?;
    Ok(p.iter().filter(|&&q| q == k).count() as f64 / p.len().max(1) as f64)
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if a.w.is_empty() || a.classes == 0 {
        bail!("need at least one scale and one class");
    }
    let (c, _meta) = features::load(&a.features, tch::Device::Cpu)?;
    let shape = c.config().shape.clone();
    let [ch, h, wd] = shape[..] else { bail!("image shape {shape:?} is not C,H,W") };
    let heldout = load_npy(a.run.join("heldout.npy"))?;
    let half = heldout.nrows() / 2;
    let (real, refs) = (heldout.slice(s![..half, ..]), heldout.slice(s![half..2 * half, ..]));
    let reference = GaussianFit::fit(c.embed(refs)?.features.view())?;
    let lo = heldout.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = heldout.iter().copied().fold(f64::NEG_INFINITY, f64::max);

    // cells[k][j]: the samples of class k at scale j.
    let mut cells: Vec<Vec<Array2<f64>>> = Vec::new();
    for k in 0..a.classes {
        let row = a.w.iter().map(|&w| load_npy(find(&a.samples, &a.kind, k, w)?).map_err(Into::into));
        cells.push(row.collect::<anyhow::Result<_>>()?);
    }

    println!("| guidance | w | samples per class | agreement with the requested class | min over classes | classifier FID | FID real-vs-real | n (FID) |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (j, &w) in a.w.iter().enumerate() {
        let mut shares = Vec::new();
        for (k, row) in cells.iter().enumerate() {
            shares.push(agreement(&c, row[j].view(), k)?);
        }
        let views: Vec<_> = cells.iter().map(|row| row[j].view()).collect();
        let all = concatenate(Axis(0), &views)?;
        // Rows interleaved class by class, so the first n hold every class.
        let per = cells.iter().map(|row| row[j].nrows()).min().unwrap_or(0);
        let order: Vec<usize> = (0..per).flat_map(|i| (0..a.classes).map(move |k| k * per + i)).collect();
        let all = if cells.iter().all(|row| row[j].nrows() == per) { all.select(Axis(0), &order) } else { all };
        let n = all.nrows().min(half);
        let fid = GaussianFit::fit(c.embed(all.slice(s![..n, ..]))?.features.view())?.frechet_distance(&reference)?;
        let floor =
            GaussianFit::fit(c.embed(real.slice(s![..n, ..]))?.features.view())?.frechet_distance(&reference)?;
        let mean = shares.iter().sum::<f64>() / shares.len() as f64;
        let min = shares.iter().copied().fold(f64::INFINITY, f64::min);
        println!(
            "| {} | {w} | {per} | {:.1}% | {:.1}% | {fid:.2} | {floor:.2} | {n} |",
            a.kind,
            100.0 * mean,
            100.0 * min
        );
    }

    if let Some(out) = &a.out {
        // Row k: per_cell samples of class k at each scale, a blank tile between scales.
        let m = a.per_cell;
        let cols = a.w.len() * m + a.w.len() - 1;
        let mut tiles = Array2::from_elem((a.classes * cols, ch * h * wd), hi);
        for (k, row) in cells.iter().enumerate() {
            for (j, x) in row.iter().enumerate() {
                if x.nrows() < m {
                    bail!("class {k}, w = {}: {} samples, fewer than --per-cell {m}", a.w[j], x.nrows());
                }
                for i in 0..m {
                    tiles.row_mut(k * cols + j * (m + 1) + i).assign(&x.row(i));
                }
            }
        }
        let ws: Vec<String> = a.w.iter().map(|w| w.to_string()).collect();
        let title =
            format!("{} guidance, rows: classes 0-{}, column groups: w = {}", a.kind, a.classes - 1, ws.join(", "));
        let opts = ImageGridOptions { cols, range: (lo, hi), title: Some(title) };
        image_grid(out, tiles.view(), [ch, h, wd], &opts)?;
        println!("\nwrote {}", out.display());
    }
    Ok(())
}
