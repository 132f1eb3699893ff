//! Figures of a run, and `scoresde plot` (redraws them from the files of a run folder).

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayView2};
use scoresde::data::{load_npy, load_npy_head};
use scoresde::plot::{
    image_grid, line_chart, paths_over_density, scatter_matrix, scatter_panels, Bounds, DensityGrid, DensityOptions,
    DensityPanel, ImageGridOptions, LineChartOptions, MatrixOptions, PathSet, ScatterOptions, Series,
};

use crate::common::{self, Status};
use crate::sample::MAX_KEPT;

/// How an image model's samples are drawn: one sample's shape `[C, H, W]`
/// and the pixel values shown as black and white.
#[derive(Debug, Clone, Copy)]
pub struct ImageSpec {
    /// One sample's shape.
    pub shape: [usize; 3],
    /// Values drawn black and white: the training data's range (over all
    /// pixels) when the checkpoint records it, else `[-1, 1]`.
    pub range: (f64, f64),
}

impl ImageSpec {
    /// The image spec of a checkpoint's model: a U-Net's image shape, or for
    /// another network (the MLP) the `[C, H, W]` its data recorded; `None`
    /// for tabular data.
    pub fn of(meta: &scoresde::checkpoint::Meta) -> Option<Self> {
        let shape = match (meta.net.unet_config(), meta.data.shape.as_slice()) {
            (Some(u), _) => [u.channels, u.height, u.width],
            (None, &[c, h, w]) if c.checked_mul(h).and_then(|p| p.checked_mul(w)) == Some(meta.net.dim) => [c, h, w],
            _ => return None,
        };
        let range = meta
            .data
            .range
            .as_ref()
            .map(|r| {
                let lo = r.min.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = r.max.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                (lo, hi)
            })
            .filter(|(lo, hi)| lo.is_finite() && hi.is_finite() && lo < hi)
            .unwrap_or((-1.0, 1.0));
        Some(Self { shape, range })
    }
}

/// Tiles per side of an image model's sample grid.
const IMAGE_GRID: usize = 8;

/// The first 64 samples of an image model as an 8x8 grid of images.
pub fn image_samples_figure(
    path: &Path,
    title: &str,
    x: ArrayView2<'_, f64>,
    spec: ImageSpec,
) -> anyhow::Result<String> {
    let n = x.nrows().min(IMAGE_GRID * IMAGE_GRID);
    let [c, h, w] = spec.shape;
    let what = format!("first {n} samples, {c}x{h}x{w}, black {:.3} to white {:.3}", spec.range.0, spec.range.1);
    let opts = ImageGridOptions { cols: IMAGE_GRID, range: spec.range, title: Some(format!("{title}\n{what}")) };
    image_grid(path, x.slice(ndarray::s![..n, ..]), spec.shape, &opts)?;
    Ok(what)
}

/// The progressive denoising of an image model: rows are the first 8
/// samples, columns the recorded times, latest (t ~ 0) last. `None` when
/// fewer than 2 times were recorded.
pub fn image_trajectory_figure(
    path: &Path,
    snapshots: &[(f64, Array2<f64>)],
    spec: ImageSpec,
) -> anyhow::Result<Option<String>> {
    let mut by_time: Vec<&(f64, Array2<f64>)> = snapshots.iter().collect();
    by_time.sort_by(|a, b| b.0.total_cmp(&a.0));
    by_time.dedup_by(|a, b| a.0 == b.0);
    if by_time.len() < 2 {
        return Ok(None);
    }
    let rows = by_time.iter().map(|(_, x)| x.nrows()).min().unwrap_or(0).min(IMAGE_GRID);
    let d = by_time[0].1.ncols();
    let mut tiles = Array2::<f64>::zeros((rows * by_time.len(), d));
    for i in 0..rows {
        for (j, (_, x)) in by_time.iter().enumerate() {
            tiles.row_mut(i * by_time.len() + j).assign(&x.row(i));
        }
    }
    let times: Vec<String> = by_time.iter().map(|(t, _)| format!("{t:.2}")).collect();
    let what = format!("rows: {rows} samples; columns: t = {}", times.join(" "));
    let opts = ImageGridOptions {
        cols: by_time.len(),
        range: spec.range,
        title: Some(format!("progressive denoising\n{what}")),
    };
    image_grid(path, tiles.view(), spec.shape, &opts)?;
    Ok(Some(what))
}

/// Options of `scoresde plot`.
#[derive(clap::Args, Debug, Clone)]
pub struct PlotArgs {
    /// Run folder written by `scoresde train` / `sample` / `demo`.
    #[arg(long, default_value = "out/train")]
    pub model: PathBuf,
}

/// Square bounds holding (almost) every reference point, with a margin.
fn bounds(reference: Option<&Array2<f64>>, first: ArrayView2<'_, f64>) -> Bounds {
    let max_abs = |v: ArrayView2<'_, f64>| v.iter().filter(|v| v.is_finite()).fold(0.0f64, |m, v| m.max(v.abs()));
    let mut m = match reference {
        Some(r) => max_abs(r.view()),
        None => max_abs(first),
    };
    if m == 0.0 || !m.is_finite() {
        m = 1.0;
    }
    Bounds::square((m * 1.15).max(0.5))
}

/// Scatter panels of sample sets beside the reference data (first panel), on shared axes.
pub fn samples_vs_data<T: AsRef<str>>(
    path: &Path,
    sets: &[(T, ArrayView2<'_, f64>)],
    reference: Option<&Array2<f64>>,
) -> anyhow::Result<()> {
    let Some(first) = sets.first() else { return Ok(()) };
    let mut panels: Vec<(String, ArrayView2<'_, f64>)> = Vec::new();
    if let Some(r) = reference {
        panels.push(("held-out data".to_string(), r.view()));
    }
    panels.extend(sets.iter().map(|(t, x)| (t.as_ref().to_string(), x.view())));
    let opts = ScatterOptions {
        bounds: bounds(reference, first.1),
        columns: panels.len().min(5),
        panel_px: 300,
        ..ScatterOptions::default()
    };
    scatter_panels(path, &panels, &opts)?;
    Ok(())
}

/// Dimensions drawn at most by the figures of data with other than 2 dimensions.
const MAX_DIMS: usize = 4;

/// Paths drawn by a trajectory figure of data with other than 2 dimensions.
const TRAJECTORY_PATHS: usize = 24;

/// "the 3 dimensions" or "the first 4 of 10 dimensions".
fn which_dims(k: usize, d: usize) -> String {
    if k == d {
        format!("the {d} dimension{}", if d == 1 { "" } else { "s" })
    } else {
        format!("the first {k} of {d} dimensions")
    }
}

/// The reference data if it has `d` columns (a note on stderr otherwise).
fn matching(reference: Option<&Array2<f64>>, d: usize) -> Option<&Array2<f64>> {
    let r = reference?;
    if r.ncols() == d {
        Some(r)
    } else {
        eprintln!("note: the held-out data have {} columns, the samples {d}: drawn without the data", r.ncols());
        None
    }
}

/// The figure of one sample set named `title`: for 2-D samples, scatter
/// panels beside the reference data; otherwise a scatter matrix of the first
/// (at most 4) dimensions, the samples over the data, with each dimension's
/// histogram on the diagonal. Returns what was drawn, for the user.
pub fn sample_figure(
    path: &Path,
    title: &str,
    x: ArrayView2<'_, f64>,
    reference: Option<&Array2<f64>>,
) -> anyhow::Result<String> {
    let d = x.ncols();
    let reference = matching(reference, d);
    if d == 2 {
        samples_vs_data(path, &[(title, x)], reference)?;
        return Ok(if reference.is_some() { "samples beside the held-out data" } else { "samples" }.into());
    }
    let k = d.min(MAX_DIMS);
    let mut sets: Vec<(String, ArrayView2<'_, f64>)> = Vec::new();
    if let Some(r) = reference {
        sets.push(("held-out data".into(), r.view()));
    }
    sets.push((title.to_string(), x.view()));
    let what = format!("pairwise scatter matrix of {}", which_dims(k, d));
    let opts = MatrixOptions { dims: k, title: Some(format!("{title}\n{what}")), ..MatrixOptions::default() };
    scatter_matrix(path, &sets, &opts)?;
    Ok(what)
}

/// The vertical range of dimension `j` in a trajectory figure: the held-out
/// data and the central 99% of the states at every time, with a 5% margin
/// (a few diverging paths leave the figure rather than squash it).
fn path_range(by_time: &[&(f64, Array2<f64>)], reference: Option<&Array2<f64>>, j: usize) -> (f64, f64) {
    let mut states: Vec<f64> =
        by_time.iter().flat_map(|(_, x)| x.column(j).to_vec()).filter(|v| v.is_finite()).collect();
    states.sort_by(f64::total_cmp);
    let at = |q: f64| states.get((states.len().saturating_sub(1) as f64 * q).round() as usize).copied();
    let data = reference.into_iter().flat_map(|r| r.column(j).to_vec()).filter(|v| v.is_finite());
    let (lo, hi) = data
        .chain(at(0.005))
        .chain(at(0.995))
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if !(lo.is_finite() && hi.is_finite()) {
        (-1.0, 1.0)
    } else if lo < hi {
        (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    } else {
        (lo - 1.0, lo + 1.0)
    }
}

/// The progressive denoising of a run from its `(t, states)` snapshots: for
/// 2-D data a panel per recorded time beside the data; otherwise, for each of
/// the first (at most 4) dimensions, the paths of the first samples over the
/// histogram of all samples at each recorded time. Returns what was drawn, or
/// `None` (nothing written) when fewer than 2 times were recorded.
pub fn trajectory_figure(
    path: &Path,
    snapshots: &[(f64, Array2<f64>)],
    reference: Option<&Array2<f64>>,
) -> anyhow::Result<Option<String>> {
    let Some(d) = snapshots.first().map(|(_, x)| x.ncols()) else { return Ok(None) };
    let reference = matching(reference, d);
    if d == 2 {
        let views: Vec<(String, ArrayView2<'_, f64>)> =
            snapshots.iter().map(|(t, x)| (format!("t = {t:.3}"), x.view())).collect();
        samples_vs_data(path, &views, reference)?;
        return Ok(Some(format!("the samples at {} times beside the held-out data", snapshots.len())));
    }
    let mut by_time: Vec<&(f64, Array2<f64>)> = snapshots.iter().collect();
    by_time.sort_by(|a, b| a.0.total_cmp(&b.0));
    by_time.dedup_by(|a, b| a.0 == b.0);
    if by_time.len() < 2 {
        return Ok(None);
    }
    let t: Vec<f64> = by_time.iter().map(|(t, _)| *t).collect();
    let n = by_time[0].1.nrows();
    let k = d.min(MAX_DIMS);
    let bins = 60;
    let mut fields = Vec::with_capacity(k);
    for j in 0..k {
        let (lo, hi) = path_range(&by_time, reference, j);
        let width = (hi - lo) / bins as f64;
        let centres: Vec<f64> = (0..bins).map(|b| lo + (b as f64 + 0.5) * width).collect();
        let mut density = Array2::<f64>::zeros((t.len(), bins));
        for (i, (_, x)) in by_time.iter().enumerate() {
            for &v in x.column(j).iter().filter(|v| v.is_finite() && **v >= lo && **v <= hi) {
                density[[i, (((v - lo) / width) as usize).min(bins - 1)]] += 1.0;
            }
        }
        let paths = Array2::from_shape_fn((t.len(), n.min(TRAJECTORY_PATHS)), |(i, p)| by_time[i].1[[p, j]]);
        fields.push(((lo, hi), centres, density, paths));
    }
    let panels: Vec<DensityPanel<'_>> = fields
        .iter()
        .enumerate()
        .map(|(j, (_, centres, density, paths))| DensityPanel {
            title: format!("x{}", j + 1),
            density: DensityGrid { t: &t, x: centres, values: density.view() },
            paths: PathSet { t: &t, x: paths.view() },
            time_reversed: true,
        })
        .collect();
    let what = format!(
        "{}: the paths of the first {} samples over the histogram of all {n} at each of {} recorded times",
        which_dims(k, d),
        n.min(TRAJECTORY_PATHS),
        t.len()
    );
    let opts = DensityOptions {
        panel_x_ranges: Some(fields.iter().map(|f| f.0).collect()),
        panel_px: (420, 380),
        title: Some(format!("progressive denoising, {what}")),
        ..DensityOptions::default()
    };
    paths_over_density(path, &panels, &opts)?;
    Ok(Some(what))
}

/// The loss log as a curve.
pub fn loss_curve(path: &Path, losses: &[(u64, f64)]) -> anyhow::Result<()> {
    if losses.is_empty() {
        return Ok(());
    }
    let points: Vec<(f64, f64)> = losses.iter().map(|&(s, l)| (s as f64, l)).collect();
    let opts = LineChartOptions {
        title: Some("DSM training loss (mean per logging window)".into()),
        x_label: "step".into(),
        y_label: "loss".into(),
        ..LineChartOptions::default()
    };
    line_chart(path, &[Series { name: "loss".into(), points }], &opts)?;
    Ok(())
}

/// The learned score's sigma^2-weighted error against the exact score, over t.
pub fn plot_score_error_by_time(path: &Path, errors: &[(f64, f64)]) -> anyhow::Result<()> {
    let opts = LineChartOptions {
        title: Some("learned vs exact score: E sigma^2 |s_theta - s|^2 / d".into()),
        x_label: "t".into(),
        y_label: "error".into(),
        log_x: true,
        log_y: true,
        ..LineChartOptions::default()
    };
    line_chart(path, &[Series { name: "EMA weights".into(), points: errors.to_vec() }], &opts)?;
    Ok(())
}

/// `scoresde plot`: the loss curve, and each sample file beside the held-out
/// data ([`sample_figure`]), or for an image model as an image grid
/// ([`image_samples_figure`]). These figures are drawn from files of the run
/// folder that stay there, by the same code as `train` and `sample` draw them,
/// so redrawing replaces them with the same figure or a more recent one.
pub fn run(a: &PlotArgs) -> anyhow::Result<Status> {
    let folder = common::run_folder(&a.model);
    let (_, _, meta) = common::load_model(&a.model, tch::Device::Cpu)?;
    // Writes figures there: one writer per folder.
    let _lock = common::lock_folder("--model", &folder)?;
    let loss = folder.join("loss.png");
    loss_curve(&loss, &meta.losses)?;
    println!("wrote {}", loss.display());
    let reference = load_npy(common::heldout_path(&folder)).ok();
    for f in common::sample_files(&folder)? {
        let (x, rows) = load_npy_head(&f, MAX_KEPT)?;
        if x.nrows() < rows {
            println!("{}: drawing the first {} of {rows} samples", f.display(), x.nrows());
        }
        let png = f.with_extension("png");
        let what = match ImageSpec::of(&meta).filter(|spec| spec.shape.iter().product::<usize>() == x.ncols()) {
            Some(spec) => image_samples_figure(&png, &figure_title(&f), x.view(), spec)?,
            None => sample_figure(&png, &figure_title(&f), x.view(), reference.as_ref())?,
        };
        println!("wrote {} ({what})", png.display());
    }
    Ok(Status::Done)
}

/// The title of a sample file's figure: its file name without `.npy`.
pub fn figure_title(npy: &Path) -> String {
    npy.file_stem().and_then(|s| s.to_str()).unwrap_or("samples").to_string()
}
