//! Figures of a run, and `scoresde plot` (redraws them from the files of a run folder).

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayView2};
use scoresde::data::{load_npy, load_npy_head};
use scoresde::plot::{line_chart, scatter_panels, Bounds, LineChartOptions, ScatterOptions, Series};

use crate::common::{self, Status};
use crate::sample::MAX_KEPT;

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

/// `scoresde plot`: the loss curve, and each 2-D sample file beside the held-out data.
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
        if x.ncols() != 2 {
            continue;
        }
        let name = f.file_stem().and_then(|s| s.to_str()).unwrap_or("samples").to_string();
        let png = f.with_extension("png");
        samples_vs_data(&png, &[(name, x.view())], reference.as_ref())?;
        println!("wrote {}", png.display());
    }
    Ok(Status::Done)
}
