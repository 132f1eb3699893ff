//! Figures: the one place that draws. The library emits data (samples,
//! trajectories, densities on grids); these functions turn it into PNGs.
//!
//! * [`scatter_panels`]: a grid of 2-D sample panels on shared axes.
//! * [`scatter_matrix`]: pairwise scatter plots and histograms of the first
//!   few dimensions of higher-dimensional sample sets, overlaid.
//! * [`paths_over_density`]: 1-D sample paths over a shaded density `p_t(x)`,
//!   one panel per (density, paths) pair, in the style of Song et al. (2021), Fig. 1.
//! * [`line_chart`]: named series of `(x, y)` points, lines with markers,
//!   linear or logarithmic axes, legend beside the plot (convergence plots, loss curves).
//! * [`heatmap_panels`]: scalar fields on regular 2-D grids side by side
//!   (densities, log-likelihoods), one shared or one per-panel colour scale.
//! * [`image_grid`]: images (rows of `C*H*W` pixels) as a grid of tiles,
//!   grey-scale or RGB (samples of an image model; progressive denoising).
//!
//! Text is rendered with the DejaVu Sans font embedded in the binary (no
//! system fonts needed). Every figure is first written to a temporary file in
//! the destination folder and then renamed over the target, so a crash never
//! leaves a half-written figure behind.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ndarray::ArrayView2;
use plotters::coord::ranged1d::{AsRangedCoord, BoldPoints, Ranged, ValueFormatter};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// What can go wrong while drawing a figure (one variant of [`crate::Error`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlotError {
    /// The figure's destination cannot be used (missing folder, wrong extension, ...).
    #[error("cannot write figure to {path}: {reason}")]
    Destination {
        /// The requested output path.
        path: PathBuf,
        /// Why not.
        reason: String,
    },
    /// Writing or renaming the file failed.
    #[error("cannot write figure to {path}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The plotting backend failed (including failure to encode the PNG).
    #[error("drawing {path} failed: {reason}")]
    Draw {
        /// The requested output path.
        path: PathBuf,
        /// The backend's message.
        reason: String,
    },
    /// The data or options cannot be drawn.
    #[error("invalid plot input: {0}")]
    Invalid(String),
    /// The embedded font could not be loaded.
    #[error("the embedded font could not be registered")]
    Font,
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, PlotError>;

/// The font family name every figure uses.
const FONT: &str = "sans-serif";

/// Registers the embedded DejaVu Sans as `"sans-serif"` with plotters, once.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED
        .get_or_init(|| register_font(FONT, FontStyle::Normal, include_bytes!("../assets/DejaVuSans.ttf")).is_ok());
    if ok {
        Ok(())
    } else {
        Err(PlotError::Font)
    }
}

/// An error of the drawing backend while drawing inside [`render`]; the path
/// is filled in by `render`.
fn draw_err(e: impl std::fmt::Display) -> PlotError {
    PlotError::Draw { path: PathBuf::new(), reason: e.to_string() }
}

/// Draws into a bitmap of `size` pixels in memory, encodes it as a PNG and
/// writes it to `path` (which must end in `.png`) with
/// [`crate::fsutil::write_atomic`]: a temporary file beside it, then a rename.
fn render(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
) -> Result<()> {
    ensure_font()?;
    let dest = |reason: &str| PlotError::Destination { path: path.to_path_buf(), reason: reason.to_string() };
    let is_png = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !is_png {
        return Err(dest("only PNG output is supported (the file name must end in .png)"));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(dest(&format!("folder {} does not exist", dir.display())));
    }
    let with_path = |e: PlotError| match e {
        PlotError::Draw { reason, .. } => PlotError::Draw { path: path.to_path_buf(), reason },
        other => other,
    };
    let mut rgb = vec![0u8; 3 * size.0 as usize * size.1 as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, size).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err).map_err(with_path)?;
        draw(&root).map_err(with_path)?;
        root.present().map_err(draw_err).map_err(with_path)?;
    }
    let image = image::RgbImage::from_raw(size.0, size.1, rgb)
        .ok_or_else(|| with_path(draw_err("the bitmap does not match its size")))?;
    let mut png = std::io::Cursor::new(Vec::new());
    image.write_to(&mut png, image::ImageFormat::Png).map_err(|e| with_path(draw_err(e)))?;
    crate::fsutil::write_atomic(path, png.get_ref()).map_err(|e| match e {
        crate::Error::Io { path, source } => PlotError::Io { path, source },
        other => PlotError::Draw { path: path.to_path_buf(), reason: other.to_string() },
    })
}

/// Font size of a figure title.
const TITLE_PX: u32 = 21;

/// Pixels taken by a figure title: one line per `\n`-separated line.
fn title_height(title: Option<&str>) -> u32 {
    title.map_or(0, |t| t.lines().count() as u32 * (TITLE_PX + 10) + 6)
}

/// Draws a (possibly multi-line) figure title and returns the area below it.
fn titled<'a>(
    root: &DrawingArea<BitMapBackend<'a>, Shift>,
    title: Option<&str>,
) -> Result<DrawingArea<BitMapBackend<'a>, Shift>> {
    let mut area = root.clone();
    for line in title.into_iter().flat_map(str::lines) {
        area = area.titled(line, (FONT, TITLE_PX)).map_err(draw_err)?;
    }
    Ok(area)
}

/// A closed interval `[lo, hi]` of data coordinates, `lo < hi`, both finite.
fn check_range(what: &str, (lo, hi): (f64, f64)) -> Result<()> {
    if lo.is_finite() && hi.is_finite() && lo < hi {
        Ok(())
    } else {
        Err(PlotError::Invalid(format!("{what} range ({lo}, {hi}) must be finite with lo < hi")))
    }
}

/// Axis limits of a 2-D panel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// `(min, max)` of the horizontal axis.
    pub x: (f64, f64),
    /// `(min, max)` of the vertical axis.
    pub y: (f64, f64),
}

impl Bounds {
    /// The square `[-half, half]^2`.
    pub fn square(half: f64) -> Self {
        Self { x: (-half, half), y: (-half, half) }
    }
}

/// Options of [`scatter_panels`]; `Default` gives a 4-column grid on `[-3, 3]^2`.
#[derive(Debug, Clone, PartialEq)]
pub struct ScatterOptions {
    /// Shared axis limits of every panel. Points outside are not drawn; their
    /// count is appended to the panel title.
    pub bounds: Bounds,
    /// Panels per row.
    pub columns: usize,
    /// Width and height of one panel in pixels.
    pub panel_px: u32,
    /// Radius of a point in pixels.
    pub point_radius: u32,
    /// Opacity of a point, in `(0, 1]`.
    pub alpha: f64,
    /// A title above the whole figure; `\n` starts a new line.
    pub title: Option<String>,
}

impl Default for ScatterOptions {
    fn default() -> Self {
        Self { bounds: Bounds::square(3.0), columns: 4, panel_px: 360, point_radius: 1, alpha: 0.5, title: None }
    }
}

/// The colour of the `i`-th series (matplotlib's "tab10" palette).
fn palette(i: usize) -> RGBColor {
    const TAB10: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = TAB10[i % TAB10.len()];
    RGBColor(r, g, b)
}

/// Draws a grid of 2-D scatter panels, one per `(title, points)` pair, on the
/// same axes, and writes it as a PNG to `path`. `points` has shape `(n, 2)`.
///
/// # Errors
/// [`PlotError::Invalid`] for no panels, a panel without 2 columns, bad bounds
/// or options; [`PlotError::Destination`] / [`PlotError::Io`] /
/// [`PlotError::Draw`] when the file cannot be written.
pub fn scatter_panels<T: AsRef<str>>(
    path: impl AsRef<Path>,
    panels: &[(T, ArrayView2<'_, f64>)],
    opts: &ScatterOptions,
) -> Result<()> {
    if panels.is_empty() {
        return Err(PlotError::Invalid("scatter_panels needs at least one panel".into()));
    }
    if let Some((t, p)) = panels.iter().find(|(_, p)| p.ncols() != 2) {
        return Err(PlotError::Invalid(format!(
            "panel `{}` has {} columns; scatter panels need 2-D points",
            t.as_ref(),
            p.ncols()
        )));
    }
    check_range("x", opts.bounds.x)?;
    check_range("y", opts.bounds.y)?;
    if opts.columns == 0 || opts.panel_px < 100 || !(opts.alpha > 0.0 && opts.alpha <= 1.0) {
        return Err(PlotError::Invalid("need columns >= 1, panel_px >= 100 and alpha in (0, 1]".into()));
    }
    let cols = opts.columns.min(panels.len());
    let rows = panels.len().div_ceil(cols);
    let size = (cols as u32 * opts.panel_px, rows as u32 * opts.panel_px + title_height(opts.title.as_deref()));
    let Bounds { x: (x0, x1), y: (y0, y1) } = opts.bounds;
    render(path.as_ref(), size, |root| {
        let area = titled(root, opts.title.as_deref())?;
        for (i, (cell, (title, pts))) in area.split_evenly((rows, cols)).iter().zip(panels).enumerate() {
            let inside: Vec<(f64, f64)> = pts
                .rows()
                .into_iter()
                .map(|r| (r[0], r[1]))
                .filter(|&(x, y)| x >= x0 && x <= x1 && y >= y0 && y <= y1)
                .collect();
            let outside = pts.nrows() - inside.len();
            let caption = if outside > 0 {
                format!("{} ({outside} off-axes)", title.as_ref())
            } else {
                title.as_ref().to_string()
            };
            let mut chart = ChartBuilder::on(cell)
                .caption(caption, (FONT, 17))
                .margin(8)
                .x_label_area_size(28)
                .y_label_area_size(36)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(draw_err)?;
            let xf = axis_format(chart.as_coord_spec().x_spec(), 7);
            let yf = axis_format(chart.as_coord_spec().y_spec(), 7);
            chart
                .configure_mesh()
                .x_labels(7)
                .y_labels(7)
                .x_label_formatter(&|v| xf.label(*v))
                .y_label_formatter(&|v| yf.label(*v))
                .max_light_lines(1)
                .light_line_style(RGBColor(235, 235, 235))
                .bold_line_style(RGBColor(215, 215, 215))
                .label_style((FONT, 13))
                .draw()
                .map_err(draw_err)?;
            let style = palette(i).mix(opts.alpha).filled();
            chart
                .draw_series(inside.into_iter().map(|p| Circle::new(p, opts.point_radius, style)))
                .map_err(draw_err)?;
        }
        Ok(())
    })
}

/// Options of [`scatter_matrix`]; `Default` gives the first 4 dimensions in
/// 240-pixel cells, 40 histogram bins, ranges fitted to the first set.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixOptions {
    /// How many leading dimensions (columns) to draw, at least 1.
    pub dims: usize,
    /// Width and height of one cell in pixels.
    pub cell_px: u32,
    /// Radius of a point in pixels.
    pub point_radius: u32,
    /// Opacity of a point, in `(0, 1]`.
    pub alpha: f64,
    /// Bins of the histograms on the diagonal.
    pub bins: usize,
    /// `(min, max)` of each drawn dimension; `None` fits the first set with a
    /// 10% margin. Points outside are not drawn.
    pub ranges: Option<Vec<(f64, f64)>>,
    /// A title above the whole figure; `\n` starts a new line.
    pub title: Option<String>,
}

impl Default for MatrixOptions {
    fn default() -> Self {
        Self { dims: 4, cell_px: 240, point_radius: 1, alpha: 0.4, bins: 40, ranges: None, title: None }
    }
}

/// `(min, max)` of the finite values of a column with a 10% margin (`(-1, 1)` around a constant).
fn column_range(x: ArrayView2<'_, f64>, j: usize) -> (f64, f64) {
    let (lo, hi) = x
        .column(j)
        .iter()
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    if !(lo.is_finite() && hi.is_finite()) {
        return (-1.0, 1.0);
    }
    let pad = if hi > lo { 0.1 * (hi - lo) } else { 1.0 };
    (lo - pad, hi + pad)
}

/// Density histogram of the values in `[lo, hi]` as the corners of a step line.
fn histogram_steps(values: impl Iterator<Item = f64>, (lo, hi): (f64, f64), bins: usize) -> Vec<(f64, f64)> {
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0usize; bins];
    let mut n = 0usize;
    for v in values.filter(|v| v.is_finite()) {
        n += 1;
        if v >= lo && v <= hi {
            counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
        }
    }
    let scale = 1.0 / (n.max(1) as f64 * width);
    let mut steps = vec![(lo, 0.0)];
    for (b, &c) in counts.iter().enumerate() {
        let (a, z) = (lo + b as f64 * width, lo + (b + 1) as f64 * width);
        steps.push((a, c as f64 * scale));
        steps.push((z, c as f64 * scale));
    }
    steps.push((hi, 0.0));
    steps
}

/// Draws a scatter matrix of the first `opts.dims` dimensions of every set,
/// overlaid in the palette's colours (the first set underneath, as the
/// reference): cell `(i, j)` plots dimension `j + 1` across against dimension
/// `i + 1` up; the diagonal holds each set's density histogram of that
/// dimension. A legend row under the title names the sets, with the number of
/// points of each that fall outside the drawn ranges. Writes a PNG to `path`.
///
/// # Errors
/// [`PlotError::Invalid`] for no sets, sets of different widths, fewer
/// columns than `opts.dims`, bad ranges or options; file errors as [`scatter_panels`].
pub fn scatter_matrix<T: AsRef<str>>(
    path: impl AsRef<Path>,
    sets: &[(T, ArrayView2<'_, f64>)],
    opts: &MatrixOptions,
) -> Result<()> {
    let Some((_, first)) = sets.first() else {
        return Err(PlotError::Invalid("scatter_matrix needs at least one set".into()));
    };
    let k = opts.dims;
    if k == 0 || first.ncols() < k {
        return Err(PlotError::Invalid(format!(
            "scatter_matrix draws {k} dimensions of sets with {} columns; need 1 <= dims <= columns",
            first.ncols()
        )));
    }
    if let Some((t, x)) = sets.iter().find(|(_, x)| x.ncols() != first.ncols()) {
        return Err(PlotError::Invalid(format!(
            "set `{}` has {} columns, the first set {}",
            t.as_ref(),
            x.ncols(),
            first.ncols()
        )));
    }
    if opts.cell_px < 120 || opts.bins == 0 || !(opts.alpha > 0.0 && opts.alpha <= 1.0) {
        return Err(PlotError::Invalid("need cell_px >= 120, bins >= 1 and alpha in (0, 1]".into()));
    }
    let ranges = match &opts.ranges {
        Some(r) if r.len() != k => {
            return Err(PlotError::Invalid(format!("{} ranges for {k} dimensions", r.len())));
        }
        Some(r) => r.clone(),
        None => (0..k).map(|j| column_range(*first, j)).collect(),
    };
    for (j, r) in ranges.iter().enumerate() {
        check_range(&format!("dimension {}", j + 1), *r)?;
    }
    let legend_px = 30;
    let side = k as u32 * opts.cell_px;
    let size = (side.max(300), side + legend_px + title_height(opts.title.as_deref()));
    render(path.as_ref(), size, |root| {
        let area = titled(root, opts.title.as_deref())?;
        let (legend, grid) = area.split_vertically(legend_px);
        let mut x = 10;
        for (s, (name, points)) in sets.iter().enumerate() {
            legend.draw(&Rectangle::new([(x, 8), (x + 14, 22)], palette(s).filled())).map_err(draw_err)?;
            let off = points
                .rows()
                .into_iter()
                .filter(|r| ranges.iter().enumerate().any(|(j, &(lo, hi))| !(r[j] >= lo && r[j] <= hi)))
                .count();
            let text = if off > 0 {
                format!("{} ({off} of {} off the axes)", name.as_ref(), points.nrows())
            } else {
                name.as_ref().to_string()
            };
            legend
                .draw(&Text::new(text.clone(), (x + 20, 7), (FONT, 15).into_font().color(&BLACK)))
                .map_err(draw_err)?;
            x += 40 + 8 * text.chars().count() as i32;
        }
        let grid = grid.margin(0, 0, 0, 0);
        let cells = grid.split_evenly((k, k));
        for i in 0..k {
            for j in 0..k {
                let cell = &cells[i * k + j];
                let (xr, yr) = (ranges[j], ranges[i]);
                if i == j {
                    let hists: Vec<Vec<(f64, f64)>> =
                        sets.iter().map(|(_, x)| histogram_steps(x.column(j).iter().copied(), xr, opts.bins)).collect();
                    let top = hists.iter().flatten().fold(0.0f64, |m, p| m.max(p.1));
                    let top = if top > 0.0 { 1.1 * top } else { 1.0 };
                    let mut chart = ChartBuilder::on(cell)
                        .caption(format!("x{} (histogram)", j + 1), (FONT, 14))
                        .margin(6)
                        .x_label_area_size(22)
                        .y_label_area_size(36)
                        .build_cartesian_2d(xr.0..xr.1, 0.0..top)
                        .map_err(draw_err)?;
                    let xf = axis_format(chart.as_coord_spec().x_spec(), 5);
                    let yf = axis_format(chart.as_coord_spec().y_spec(), 5);
                    chart
                        .configure_mesh()
                        .disable_mesh()
                        .x_labels(5)
                        .y_labels(5)
                        .x_label_formatter(&|v| xf.label(*v))
                        .y_label_formatter(&|v| yf.label(*v))
                        .label_style((FONT, 11))
                        .draw()
                        .map_err(draw_err)?;
                    for (s, h) in hists.into_iter().enumerate() {
                        chart.draw_series(LineSeries::new(h, palette(s).stroke_width(2))).map_err(draw_err)?;
                    }
                } else {
                    let mut chart = ChartBuilder::on(cell)
                        .caption(format!("x{} vs x{}", i + 1, j + 1), (FONT, 14))
                        .margin(6)
                        .x_label_area_size(22)
                        .y_label_area_size(36)
                        .build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)
                        .map_err(draw_err)?;
                    let xf = axis_format(chart.as_coord_spec().x_spec(), 5);
                    let yf = axis_format(chart.as_coord_spec().y_spec(), 5);
                    chart
                        .configure_mesh()
                        .x_labels(5)
                        .y_labels(5)
                        .max_light_lines(1)
                        .light_line_style(RGBColor(240, 240, 240))
                        .bold_line_style(RGBColor(220, 220, 220))
                        .x_label_formatter(&|v| xf.label(*v))
                        .y_label_formatter(&|v| yf.label(*v))
                        .label_style((FONT, 11))
                        .draw()
                        .map_err(draw_err)?;
                    for (s, (_, x)) in sets.iter().enumerate() {
                        let style = palette(s).mix(opts.alpha).filled();
                        let inside = x
                            .rows()
                            .into_iter()
                            .map(|r| (r[j], r[i]))
                            .filter(|&(a, b)| a >= xr.0 && a <= xr.1 && b >= yr.0 && b <= yr.1);
                        chart
                            .draw_series(inside.map(|p| Circle::new(p, opts.point_radius, style)))
                            .map_err(draw_err)?;
                    }
                }
            }
        }
        Ok(())
    })
}

/// A non-negative function of `(t, x)` tabulated on a grid: `values[[i, j]]`
/// is the value at `(t[i], x[j])`. Both `t` and `x` are strictly increasing.
#[derive(Debug, Clone)]
pub struct DensityGrid<'a> {
    /// Times (rows of `values`).
    pub t: &'a [f64],
    /// Positions (columns of `values`).
    pub x: &'a [f64],
    /// The density, shape `(t.len(), x.len())`.
    pub values: ArrayView2<'a, f64>,
}

/// One-dimensional sample paths recorded at common times: `x[[i, k]]` is the
/// position of path `k` at time `t[i]`.
#[derive(Debug, Clone)]
pub struct PathSet<'a> {
    /// Recording times, monotone (either direction).
    pub t: &'a [f64],
    /// Positions, shape `(t.len(), n_paths)`.
    pub x: ArrayView2<'a, f64>,
}

/// One panel of [`paths_over_density`].
#[derive(Debug, Clone)]
pub struct DensityPanel<'a> {
    /// Panel title.
    pub title: String,
    /// The shaded background.
    pub density: DensityGrid<'a>,
    /// The paths drawn on top.
    pub paths: PathSet<'a>,
    /// Draw time decreasing from left to right (for reverse-time processes).
    pub time_reversed: bool,
}

/// How [`paths_over_density`] maps density values to colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shading {
    /// Each time slice scaled to its own maximum: shows the shape of `p_t` at
    /// every `t` even where it is spread thin.
    #[default]
    PerTime,
    /// One scale for the whole panel: shows how concentrated `p_t` is.
    Global,
}

/// Options of [`paths_over_density`].
#[derive(Debug, Clone, PartialEq)]
pub struct DensityOptions {
    /// `(min, max)` of the vertical (x) axis; path pieces outside are clipped.
    pub x_range: (f64, f64),
    /// One `(min, max)` per panel instead of `x_range` (panels of quantities on different scales).
    pub panel_x_ranges: Option<Vec<(f64, f64)>>,
    /// Colour scaling of the density.
    pub shading: Shading,
    /// Width and height of one panel in pixels.
    pub panel_px: (u32, u32),
    /// Opacity of the paths, in `(0, 1]`.
    pub path_alpha: f64,
    /// A title above the whole figure; `\n` starts a new line.
    pub title: Option<String>,
}

impl Default for DensityOptions {
    fn default() -> Self {
        Self {
            x_range: (-3.0, 3.0),
            panel_x_ranges: None,
            shading: Shading::PerTime,
            panel_px: (640, 420),
            path_alpha: 0.8,
            title: None,
        }
    }
}

/// The viridis colour map at `v` in `[0, 1]` (matplotlib's anchors, linearly interpolated).
fn viridis(v: f64) -> RGBColor {
    const ANCHORS: [(f64, f64, f64); 9] = [
        (68.0, 1.0, 84.0),
        (71.0, 44.0, 122.0),
        (59.0, 82.0, 139.0),
        (44.0, 114.0, 142.0),
        (33.0, 145.0, 140.0),
        (39.0, 173.0, 129.0),
        (94.0, 201.0, 98.0),
        (170.0, 220.0, 50.0),
        (253.0, 231.0, 37.0),
    ];
    let s = v.clamp(0.0, 1.0) * (ANCHORS.len() - 1) as f64;
    let i = (s.floor() as usize).min(ANCHORS.len() - 2);
    let f = s - i as f64;
    let (a, b) = (ANCHORS[i], ANCHORS[i + 1]);
    let mix = |p: f64, q: f64| (p + f * (q - p)).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Cell edges around grid points: midpoints, with the outer cells as wide as their neighbours.
fn edges(v: &[f64]) -> Vec<f64> {
    if v.len() == 1 {
        return vec![v[0] - 0.5, v[0] + 0.5];
    }
    let mut e = Vec::with_capacity(v.len() + 1);
    e.push(v[0] - 0.5 * (v[1] - v[0]));
    e.extend(v.windows(2).map(|w| 0.5 * (w[0] + w[1])));
    let n = v.len();
    e.push(v[n - 1] + 0.5 * (v[n - 1] - v[n - 2]));
    e
}

/// Splits a polyline into the pieces inside the band `lo <= y <= hi`, cutting
/// segments exactly where they cross the band's edges.
fn clip_polyline(points: &[(f64, f64)], lo: f64, hi: f64) -> Vec<Vec<(f64, f64)>> {
    let mut pieces = Vec::new();
    let mut cur: Vec<(f64, f64)> = Vec::new();
    let inside = |p: (f64, f64)| p.1 >= lo && p.1 <= hi;
    for w in points.windows(2) {
        let (p, q) = (w[0], w[1]);
        // Liang–Barsky in y: the parameter interval of the segment inside the band.
        let (mut s0, mut s1) = (0.0f64, 1.0f64);
        let dy = q.1 - p.1;
        if dy == 0.0 {
            if !inside(p) {
                continue;
            }
        } else {
            let (a, b) = ((lo - p.1) / dy, (hi - p.1) / dy);
            s0 = s0.max(a.min(b));
            s1 = s1.min(a.max(b));
            if s0 > s1 {
                continue;
            }
        }
        let at = |s: f64| {
            if s == 0.0 {
                p
            } else if s == 1.0 {
                q
            } else {
                (p.0 + s * (q.0 - p.0), p.1 + s * dy)
            }
        };
        let (a, b) = (at(s0), at(s1));
        if cur.is_empty() {
            cur.push(a);
        }
        cur.push(b);
        if s1 < 1.0 {
            pieces.push(std::mem::take(&mut cur));
        }
    }
    if cur.len() > 1 {
        pieces.push(cur);
    }
    pieces.retain(|p| p.len() > 1);
    pieces
}

fn strictly_increasing(v: &[f64]) -> bool {
    v.iter().all(|x| x.is_finite()) && v.windows(2).all(|w| w[1] > w[0])
}

fn check_panel(p: &DensityPanel<'_>) -> Result<()> {
    let d = &p.density;
    let bad = |why: String| Err(PlotError::Invalid(format!("panel `{}`: {why}", p.title)));
    if d.t.is_empty() || d.x.is_empty() || !strictly_increasing(d.t) || !strictly_increasing(d.x) {
        return bad("density grid t and x must be non-empty, finite and strictly increasing".into());
    }
    if d.values.dim() != (d.t.len(), d.x.len()) {
        return bad(format!("density values have shape {:?}, want ({}, {})", d.values.shape(), d.t.len(), d.x.len()));
    }
    if !d.values.iter().all(|v| v.is_finite() && *v >= 0.0) {
        return bad("density values must be finite and >= 0".into());
    }
    if p.paths.x.nrows() != p.paths.t.len() {
        return bad(format!("paths have {} rows for {} times", p.paths.x.nrows(), p.paths.t.len()));
    }
    if !p.paths.t.iter().all(|t| t.is_finite()) {
        return bad("path times must be finite".into());
    }
    Ok(())
}

/// Draws 1-D sample paths over a shaded density `p_t(x)`, one panel per
/// [`DensityPanel`] side by side, time on the horizontal axis and `x` on the
/// vertical one, and writes a PNG to `path`. The density is drawn with the
/// viridis colour map (scaled as `opts.shading` says), the paths in white.
///
/// # Errors
/// [`PlotError::Invalid`] for no panels, mis-shaped or negative densities,
/// non-monotone grids or bad options; [`PlotError::Destination`] /
/// [`PlotError::Io`] / [`PlotError::Draw`] when the file cannot be written.
pub fn paths_over_density(path: impl AsRef<Path>, panels: &[DensityPanel<'_>], opts: &DensityOptions) -> Result<()> {
    if panels.is_empty() {
        return Err(PlotError::Invalid("paths_over_density needs at least one panel".into()));
    }
    panels.iter().try_for_each(check_panel)?;
    let ranges = match &opts.panel_x_ranges {
        Some(r) if r.len() != panels.len() => {
            return Err(PlotError::Invalid(format!("{} x ranges for {} panels", r.len(), panels.len())));
        }
        Some(r) => r.clone(),
        None => vec![opts.x_range; panels.len()],
    };
    ranges.iter().try_for_each(|r| check_range("x", *r))?;
    if opts.panel_px.0 < 150 || opts.panel_px.1 < 150 || !(opts.path_alpha > 0.0 && opts.path_alpha <= 1.0) {
        return Err(PlotError::Invalid("need panel_px >= (150, 150) and path_alpha in (0, 1]".into()));
    }
    let size = (panels.len() as u32 * opts.panel_px.0, opts.panel_px.1 + title_height(opts.title.as_deref()));
    render(path.as_ref(), size, |root| {
        let area = titled(root, opts.title.as_deref())?;
        for ((cell, p), range) in area.split_evenly((1, panels.len())).iter().zip(panels).zip(ranges) {
            draw_density_panel(cell, p, opts.shading, opts.path_alpha, range)?;
        }
        Ok(())
    })
}

fn draw_density_panel(
    cell: &DrawingArea<BitMapBackend<'_>, Shift>,
    p: &DensityPanel<'_>,
    shading: Shading,
    path_alpha: f64,
    (xlo, xhi): (f64, f64),
) -> Result<()> {
    let d = &p.density;
    let te = edges(d.t);
    let xe = edges(d.x);
    let (t0, t1) = (te[0], te[te.len() - 1]);
    // Reversed time is a time axis running from t1 down to t0.
    let time_axis = if p.time_reversed { t1..t0 } else { t0..t1 };
    let mut chart = ChartBuilder::on(cell)
        .caption(&p.title, (FONT, 19))
        .margin(10)
        .x_label_area_size(44)
        .y_label_area_size(48)
        .build_cartesian_2d(time_axis, xlo..xhi)
        .map_err(draw_err)?;
    let tf = axis_format(chart.as_coord_spec().x_spec(), 6);
    let yf = axis_format(chart.as_coord_spec().y_spec(), 7);
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(6)
        .y_labels(7)
        .x_label_formatter(&|v| tf.label(*v))
        .y_label_formatter(&|v| yf.label(*v))
        .x_desc(if p.time_reversed { "t (reverse time runs left to right)" } else { "t" })
        .y_desc("x")
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(draw_err)?;
    let global_max = d.values.iter().fold(0.0f64, |m, v| m.max(*v));
    let mut cells = Vec::with_capacity(d.values.len());
    for (i, row) in d.values.rows().into_iter().enumerate() {
        let scale = match shading {
            Shading::PerTime => row.iter().fold(0.0f64, |m, v| m.max(*v)),
            Shading::Global => global_max,
        };
        let (ta, tb) = (te[i], te[i + 1]);
        for (j, v) in row.iter().enumerate() {
            let (ya, yb) = (xe[j].max(xlo), xe[j + 1].min(xhi));
            if ya >= yb {
                continue;
            }
            let c = viridis(if scale > 0.0 { v / scale } else { 0.0 });
            cells.push(Rectangle::new([(ta.min(tb), ya), (ta.max(tb), yb)], c.filled()));
        }
    }
    chart.draw_series(cells).map_err(draw_err)?;
    let style = WHITE.mix(path_alpha).stroke_width(1);
    for k in 0..p.paths.x.ncols() {
        let pts: Vec<(f64, f64)> = p.paths.t.iter().zip(p.paths.x.column(k)).map(|(t, x)| (*t, *x)).collect();
        for piece in clip_polyline(&pts, xlo, xhi) {
            chart.draw_series(LineSeries::new(piece, style)).map_err(draw_err)?;
        }
    }
    Ok(())
}

/// One named series of a [`line_chart`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// The points, drawn in the given order and joined by straight lines.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// A series named `name`.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self { name: name.into(), points }
    }
}

/// Options of [`line_chart`]; `Default` gives linear axes, markers, 900 x 560 pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChartOptions {
    /// A title above the figure; `\n` starts a new line.
    pub title: Option<String>,
    /// Label of the horizontal axis.
    pub x_label: String,
    /// Label of the vertical axis.
    pub y_label: String,
    /// Logarithmic horizontal axis (every x must then be > 0).
    pub log_x: bool,
    /// Logarithmic vertical axis (every y must then be > 0).
    pub log_y: bool,
    /// Axis limits; `None` fits the data with a small margin.
    pub x_range: Option<(f64, f64)>,
    /// Axis limits; `None` fits the data with a small margin.
    pub y_range: Option<(f64, f64)>,
    /// Draw a marker at every point (shapes cycle with the colours, so 20 series stay distinct).
    pub markers: bool,
    /// Size of the plot area without the legend, in pixels.
    pub size: (u32, u32),
    /// Width of the legend column on the right, in pixels (0: no legend).
    pub legend_px: u32,
}

impl Default for LineChartOptions {
    fn default() -> Self {
        Self {
            title: None,
            x_label: "x".into(),
            y_label: "y".into(),
            log_x: false,
            log_y: false,
            x_range: None,
            y_range: None,
            markers: true,
            size: (900, 560),
            legend_px: 230,
        }
    }
}

/// The `i`-th marker shape: circle, triangle, square, diamond.
fn draw_marker<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    (x, y): (i32, i32),
    i: usize,
    color: RGBColor,
) -> std::result::Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let style = color.filled();
    let r = 4;
    match (i / 10 + i) % 4 {
        0 => area.draw(&Circle::new((x, y), r, style)),
        1 => area.draw(&Polygon::new(vec![(x, y - r - 1), (x - r - 1, y + r), (x + r + 1, y + r)], style)),
        2 => area.draw(&Rectangle::new([(x - r, y - r), (x + r, y + r)], style)),
        _ => area.draw(&Polygon::new(vec![(x, y - r - 1), (x + r + 1, y), (x, y + r + 1), (x - r - 1, y)], style)),
    }
}

/// How one axis writes its tick labels. Each value is written in plain
/// decimals when `1e-2 <= |v| < 1e4` and in scientific notation otherwise
/// (`1.5e4`, `2e-5`), all with the same number of significant digits: the
/// fewest that write every tick exactly (to 1e-9 relative), or, for ticks that
/// are not short decimals, at least [`TickFormat::MAX_EXACT`] digits; in
/// every case distinct ticks get distinct labels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TickFormat {
    /// Significant digits of every label.
    digits: usize,
    /// Magnitudes at or below this print as `0` (rounding noise of the ticks): 1e-9 of the
    /// smallest gap between ticks, so that a log axis's small decades keep their labels.
    zero_below: f64,
}

impl TickFormat {
    /// Significant digits past which labels only need to be distinct, not exact.
    pub const MAX_EXACT: usize = 4;

    /// The format for an axis with these ticks (non-finite values are ignored).
    pub fn for_ticks(ticks: &[f64]) -> Self {
        let mut finite: Vec<f64> = ticks.iter().copied().filter(|v| v.is_finite()).collect();
        finite.sort_by(f64::total_cmp);
        let gap = finite.windows(2).map(|w| w[1] - w[0]).filter(|&d| d > 0.0).reduce(f64::min);
        let zero_below = 1e-9 * gap.unwrap_or_else(|| finite.iter().fold(0.0f64, |m, v| m.max(v.abs())));
        let mut values: Vec<f64> = finite.iter().map(|&v| if v.abs() <= zero_below { 0.0 } else { v }).collect();
        values.sort_by(f64::total_cmp);
        values.dedup();
        for digits in 1..=17 {
            let f = Self { digits, zero_below };
            let labels: Vec<String> = values.iter().map(|&v| f.label(v)).collect();
            let mut unique = labels.clone();
            unique.sort();
            unique.dedup();
            let exact = values
                .iter()
                .zip(&labels)
                .all(|(&v, l)| l.parse::<f64>().is_ok_and(|back| (back - v).abs() <= 1e-9 * v.abs()));
            if unique.len() == values.len() && (exact || digits >= Self::MAX_EXACT) {
                return f;
            }
        }
        Self { digits: 17, zero_below }
    }

    /// The label of `v`.
    pub fn label(&self, v: f64) -> String {
        if !v.is_finite() {
            return v.to_string();
        }
        if v.abs() <= self.zero_below || v == 0.0 {
            return "0".into();
        }
        let trim = |s: &str| {
            if s.contains('.') {
                s.trim_end_matches('0').trim_end_matches('.').to_string()
            } else {
                s.to_string()
            }
        };
        let a = v.abs();
        if (1e-2..1e4).contains(&a) {
            let magnitude = a.log10().floor() as i32;
            let decimals = (self.digits as i32 - 1 - magnitude).max(0) as usize;
            trim(&format!("{v:.decimals$}"))
        } else {
            let s = format!("{v:.prec$e}", prec = self.digits - 1);
            match s.split_once('e') {
                Some((mantissa, exponent)) => format!("{}e{exponent}", trim(mantissa)),
                None => s,
            }
        }
    }
}

/// The labels of a set of ticks, written as one axis writes them ([`TickFormat`]).
pub fn tick_labels(ticks: &[f64]) -> Vec<String> {
    let f = TickFormat::for_ticks(ticks);
    ticks.iter().map(|&v| f.label(v)).collect()
}

/// The tick format of an axis as the mesh will label it with `labels` ticks.
fn axis_format<R: Ranged<ValueType = f64>>(spec: &R, labels: usize) -> TickFormat {
    TickFormat::for_ticks(&spec.key_points(BoldPoints(labels)))
}

/// `(lo, hi)` covering `values` with a margin: 5% of the span, or 0.1 decade on a log axis.
fn fit_range(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(v), h.max(v)));
    if log {
        let (l, h) = (lo.log10(), hi.log10());
        let pad = 0.1 + if h - l < 1e-9 { 0.5 } else { 0.0 };
        (10f64.powf(l - pad), 10f64.powf(h + pad))
    } else {
        let span = if hi - lo > 0.0 { hi - lo } else { lo.abs().max(1.0) };
        (lo - 0.05 * span, hi + 0.05 * span)
    }
}

/// Draws named series of `(x, y)` points as lines (with markers unless turned
/// off) on linear or logarithmic axes, with a legend column on the right, and
/// writes a PNG to `path`. Colours follow matplotlib's tab10 palette; marker
/// shapes change with the colour cycle, so up to 20 series are distinct.
///
/// # Errors
/// [`PlotError::Invalid`] for no series, an empty or non-finite series, a
/// non-positive value on a log axis, bad ranges or a plot smaller than
/// 200 x 150 pixels; [`PlotError::Destination`] / [`PlotError::Io`] /
/// [`PlotError::Draw`] when the file cannot be written.
pub fn line_chart(path: impl AsRef<Path>, series: &[Series], opts: &LineChartOptions) -> Result<()> {
    if series.is_empty() {
        return Err(PlotError::Invalid("line_chart needs at least one series".into()));
    }
    for s in series {
        if s.points.is_empty() || !s.points.iter().all(|(x, y)| x.is_finite() && y.is_finite()) {
            return Err(PlotError::Invalid(format!("series `{}` must be non-empty and finite", s.name)));
        }
        if (opts.log_x && s.points.iter().any(|p| p.0 <= 0.0)) || (opts.log_y && s.points.iter().any(|p| p.1 <= 0.0)) {
            return Err(PlotError::Invalid(format!("series `{}` has values <= 0 on a logarithmic axis", s.name)));
        }
    }
    if opts.size.0 < 200 || opts.size.1 < 150 {
        return Err(PlotError::Invalid("line_chart needs a plot of at least 200 x 150 pixels".into()));
    }
    let all = || series.iter().flat_map(|s| s.points.iter().copied());
    let xr = opts.x_range.unwrap_or_else(|| fit_range(all().map(|p| p.0), opts.log_x));
    let yr = opts.y_range.unwrap_or_else(|| fit_range(all().map(|p| p.1), opts.log_y));
    check_range("x", xr)?;
    check_range("y", yr)?;
    if (opts.log_x && xr.0 <= 0.0) || (opts.log_y && yr.0 <= 0.0) {
        return Err(PlotError::Invalid("a logarithmic axis needs a range above 0".into()));
    }
    let size = (opts.size.0 + opts.legend_px, opts.size.1 + title_height(opts.title.as_deref()));
    render(path.as_ref(), size, |root| {
        let area = titled(root, opts.title.as_deref())?;
        let (plot, legend) = area.split_horizontally(opts.size.0);
        let (x, y) = (xr.0..xr.1, yr.0..yr.1);
        match (opts.log_x, opts.log_y) {
            (false, false) => draw_lines(&plot, x, y, series, opts)?,
            (true, false) => draw_lines(&plot, x.log_scale(), y, series, opts)?,
            (false, true) => draw_lines(&plot, x, y.log_scale(), series, opts)?,
            (true, true) => draw_lines(&plot, x.log_scale(), y.log_scale(), series, opts)?,
        }
        if opts.legend_px > 0 {
            let row = 22;
            for (i, s) in series.iter().enumerate() {
                let yy = 40 + i as i32 * row;
                let c = palette(i);
                legend.draw(&PathElement::new(vec![(8, yy), (40, yy)], c.stroke_width(2))).map_err(draw_err)?;
                if opts.markers {
                    draw_marker(&legend, (24, yy), i, c).map_err(draw_err)?;
                }
                legend
                    .draw(&Text::new(s.name.clone(), (48, yy - 8), (FONT, 15).into_font().color(&BLACK)))
                    .map_err(draw_err)?;
            }
        }
        Ok(())
    })
}

fn draw_lines<X, Y>(
    cell: &DrawingArea<BitMapBackend<'_>, Shift>,
    x_spec: impl AsRangedCoord<CoordDescType = X, Value = f64>,
    y_spec: impl AsRangedCoord<CoordDescType = Y, Value = f64>,
    series: &[Series],
    opts: &LineChartOptions,
) -> Result<()>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(cell)
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(70)
        .build_cartesian_2d(x_spec, y_spec)
        .map_err(draw_err)?;
    let xf = axis_format(chart.as_coord_spec().x_spec(), 10);
    let yf = axis_format(chart.as_coord_spec().y_spec(), 10);
    chart
        .configure_mesh()
        .x_labels(10)
        .y_labels(10)
        .x_label_formatter(&|v| xf.label(*v))
        .y_label_formatter(&|v| yf.label(*v))
        .light_line_style(RGBColor(238, 238, 238))
        .bold_line_style(RGBColor(210, 210, 210))
        .x_desc(opts.x_label.as_str())
        .y_desc(opts.y_label.as_str())
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .draw()
        .map_err(draw_err)?;
    for (i, s) in series.iter().enumerate() {
        let c = palette(i);
        chart.draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2))).map_err(draw_err)?;
        if opts.markers {
            let plot = chart.plotting_area();
            for p in &s.points {
                let px = plot.map_coordinate(p);
                let (w, h) = plot.dim_in_pixel();
                let (bx, by) = plot.get_base_pixel();
                let local = (px.0 - bx, px.1 - by);
                if local.0 >= 0 && local.1 >= 0 && local.0 <= w as i32 && local.1 <= h as i32 {
                    draw_marker(&plot.strip_coord_spec(), local, i, c).map_err(draw_err)?;
                }
            }
        }
    }
    Ok(())
}

/// One panel of [`heatmap_panels`]: `values[[i, j]]` at `(x[j], y[i])` (row `i` is `y[i]`).
#[derive(Debug, Clone)]
pub struct HeatmapPanel<'a> {
    /// Panel title.
    pub title: String,
    /// Horizontal grid coordinates, strictly increasing.
    pub x: &'a [f64],
    /// Vertical grid coordinates, strictly increasing.
    pub y: &'a [f64],
    /// The field, shape `(y.len(), x.len())`, finite.
    pub values: ArrayView2<'a, f64>,
}

/// Options of [`heatmap_panels`].
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapOptions {
    /// A title above the figure; `\n` starts a new line.
    pub title: Option<String>,
    /// One colour scale shared by every panel (`None`: each panel from its own min to max).
    pub shared_range: Option<(f64, f64)>,
    /// Width and height of one panel in pixels.
    pub panel_px: (u32, u32),
}

impl Default for HeatmapOptions {
    fn default() -> Self {
        Self { title: None, shared_range: None, panel_px: (460, 460) }
    }
}

/// Draws scalar fields on regular 2-D grids side by side with the viridis
/// colour map (values below the scale's minimum are clamped to it) and writes a
/// PNG to `path`. Each panel's title gets its colour range appended.
///
/// # Errors
/// [`PlotError::Invalid`] for no panels, mis-shaped or non-finite values,
/// non-monotone grids, or a bad range; file errors as [`scatter_panels`].
pub fn heatmap_panels(path: impl AsRef<Path>, panels: &[HeatmapPanel<'_>], opts: &HeatmapOptions) -> Result<()> {
    if panels.is_empty() {
        return Err(PlotError::Invalid("heatmap_panels needs at least one panel".into()));
    }
    for p in panels {
        if p.x.is_empty() || p.y.is_empty() || !strictly_increasing(p.x) || !strictly_increasing(p.y) {
            return Err(PlotError::Invalid(format!("panel `{}`: grids must be strictly increasing", p.title)));
        }
        if p.values.dim() != (p.y.len(), p.x.len()) || !p.values.iter().all(|v| v.is_finite()) {
            return Err(PlotError::Invalid(format!(
                "panel `{}`: values must be finite with shape ({}, {})",
                p.title,
                p.y.len(),
                p.x.len()
            )));
        }
    }
    if let Some(r) = opts.shared_range {
        check_range("colour", r)?;
    }
    if opts.panel_px.0 < 150 || opts.panel_px.1 < 150 {
        return Err(PlotError::Invalid("need panel_px >= (150, 150)".into()));
    }
    let size = (panels.len() as u32 * opts.panel_px.0, opts.panel_px.1 + title_height(opts.title.as_deref()));
    render(path.as_ref(), size, |root| {
        let area = titled(root, opts.title.as_deref())?;
        for (cell, p) in area.split_evenly((1, panels.len())).iter().zip(panels) {
            let (lo, hi) = opts.shared_range.unwrap_or_else(|| {
                p.values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| (l.min(*v), h.max(*v)))
            });
            let (xe, ye) = (edges(p.x), edges(p.y));
            let range = tick_labels(&[lo, hi]);
            let mut chart = ChartBuilder::on(cell)
                .caption(format!("{}  [{}, {}]", p.title, range[0], range[1]), (FONT, 17))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(40)
                .build_cartesian_2d(xe[0]..xe[xe.len() - 1], ye[0]..ye[ye.len() - 1])
                .map_err(draw_err)?;
            let xf = axis_format(chart.as_coord_spec().x_spec(), 7);
            let yf = axis_format(chart.as_coord_spec().y_spec(), 7);
            chart
                .configure_mesh()
                .disable_mesh()
                .x_labels(7)
                .y_labels(7)
                .x_label_formatter(&|v| xf.label(*v))
                .y_label_formatter(&|v| yf.label(*v))
                .label_style((FONT, 13))
                .draw()
                .map_err(draw_err)?;
            let span = if hi > lo { hi - lo } else { 1.0 };
            let cells = p.values.indexed_iter().map(|((i, j), v)| {
                let c = viridis((v - lo) / span);
                Rectangle::new([(xe[j], ye[i]), (xe[j + 1], ye[i + 1])], c.filled())
            });
            chart.draw_series(cells).map_err(draw_err)?;
        }
        Ok(())
    })
}

/// Options of [`image_grid`].
#[derive(Debug, Clone)]
pub struct ImageGridOptions {
    /// Tiles per row of the grid.
    pub cols: usize,
    /// Pixel values mapped to black and white (values outside are clipped).
    pub range: (f64, f64),
    /// Figure title (lines separated by `\n`).
    pub title: Option<String>,
}

/// Draws images as a grid of tiles, row-major: row `i` of `images` is one
/// image of `shape = [C, H, W]` (pixels in C, H, W order); 1 channel is drawn
/// grey-scale, 3 as RGB, others as the first channel's grey. A value `v`
/// becomes the intensity `(v - lo) / (hi - lo)`, clipped to `[0, 1]`; NaN is
/// drawn red. Each image pixel is a square of `max(1, 64 / max(H, W))` screen
/// pixels, tiles 2 pixels apart on white, centred under the title.
///
/// # Errors
/// [`PlotError::Invalid`] for no images, a row length that is not `C*H*W`,
/// no columns, a bad range, or a figure over 8192 pixels on a side; the
/// errors of writing the PNG.
pub fn image_grid(
    path: impl AsRef<Path>,
    images: ArrayView2<'_, f64>,
    shape: [usize; 3],
    opts: &ImageGridOptions,
) -> Result<()> {
    let [c, h, w] = shape;
    let pixels = c.checked_mul(h).and_then(|p| p.checked_mul(w));
    if images.nrows() == 0 || pixels != Some(images.ncols()) || pixels == Some(0) {
        return Err(PlotError::Invalid(format!(
            "image grid: {} rows of {} values are not images of shape {c}x{h}x{w}",
            images.nrows(),
            images.ncols()
        )));
    }
    if opts.cols == 0 {
        return Err(PlotError::Invalid("image grid: need at least 1 column".into()));
    }
    check_range("image grid pixel", opts.range)?;
    let scale = (64 / h.max(w)).max(1);
    let (tile_w, tile_h) = (w * scale, h * scale);
    const GAP: usize = 2;
    let cols = opts.cols.min(images.nrows());
    let rows = images.nrows().div_ceil(cols);
    let top = title_height(opts.title.as_deref()) as usize;
    // Wide enough for a title line of about 50 characters.
    let width = (GAP + cols * (tile_w + GAP)).max(if opts.title.is_some() { 560 } else { 0 });
    let height = top + GAP + rows * (tile_h + GAP);
    const MAX_SIDE: usize = 8192;
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(PlotError::Invalid(format!(
            "image grid of {rows}x{cols} tiles of {tile_h}x{tile_w} pixels is over {MAX_SIDE} pixels on a side"
        )));
    }
    let left = (width - cols * (tile_w + GAP) + GAP) / 2;
    let (lo, hi) = opts.range;
    let level = |v: f64| ((v - lo) / (hi - lo)).clamp(0.0, 1.0) * 255.0;
    render(path.as_ref(), (width as u32, height as u32), |root| {
        let area = titled(root, opts.title.as_deref())?;
        for (k, img) in images.rows().into_iter().enumerate() {
            let (x0, y0) = (left + (k % cols) * (tile_w + GAP), GAP + (k / cols) * (tile_h + GAP));
            for (y, x) in (0..h).flat_map(|y| (0..w).map(move |x| (y, x))) {
                let at = |ch: usize| img[(ch * h + y) * w + x];
                let colour = if (0..c).any(|ch| at(ch).is_nan()) {
                    RGBColor(255, 0, 0)
                } else if c == 3 {
                    RGBColor(level(at(0)) as u8, level(at(1)) as u8, level(at(2)) as u8)
                } else {
                    let g = level(at(0)) as u8;
                    RGBColor(g, g, g)
                };
                let (px, py) = ((x0 + x * scale) as i32, (y0 + y * scale) as i32);
                let rect = [(px, py), (px + scale as i32, py + scale as i32)];
                area.draw(&Rectangle::new(rect, colour.filled())).map_err(draw_err)?;
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array2};

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("scoresde-plot-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn image_grid_draws_pixels_and_rejects_misshapen_rows() {
        let dir = tmpdir("imagegrid");
        let path = dir.join("grid.png");
        // Two 1x4x4 images: all -1 (black) and all 0 (mid-grey); 16 px per pixel.
        let x = Array2::from_shape_fn((2, 16), |(i, _)| if i == 0 { -1.0 } else { 0.0 });
        let opts = ImageGridOptions { cols: 2, range: (-1.0, 1.0), title: None };
        image_grid(&path, x.view(), [1, 4, 4], &opts).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (2 + 2 * (64 + 2), 2 + 64 + 2));
        assert_eq!(img.get_pixel(2 + 10, 2 + 10).0, [0, 0, 0], "the first tile is black");
        assert_eq!(img.get_pixel(2 + 66 + 10, 2 + 10).0, [127, 127, 127], "the second is grey");
        assert_eq!(img.get_pixel(1, 1).0, [255, 255, 255], "on white");
        assert!(image_grid(&path, x.view(), [1, 4, 5], &opts).is_err(), "16 values are not 4x5 images");
        assert!(image_grid(&path, x.view(), [1, 4, 4], &ImageGridOptions { cols: 0, ..opts.clone() }).is_err());
        assert!(image_grid(&path, x.view(), [1, 4, 4], &ImageGridOptions { range: (1.0, 1.0), ..opts }).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn writes_scatter_png_and_leaves_no_temp_file() {
        let dir = tmpdir("scatter");
        let pts = array![[0.0, 0.0], [1.0, -1.0], [9.0, 9.0]];
        let out = dir.join("s.png");
        scatter_panels(&out, &[("a", pts.view()), ("b", pts.view())], &ScatterOptions::default()).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unwritable_destinations_are_clear_errors() {
        let pts = array![[0.0, 0.0]];
        let panels = [("a", pts.view())];
        let o = ScatterOptions::default();
        let missing = std::env::temp_dir().join("scoresde-no-such-dir-xyz/fig.png");
        let e = scatter_panels(&missing, &panels, &o).unwrap_err();
        assert!(matches!(e, PlotError::Destination { .. }), "{e}");
        assert!(e.to_string().contains("does not exist"), "{e}");
        let e = scatter_panels(std::env::temp_dir().join("fig.svg"), &panels, &o).unwrap_err();
        assert!(e.to_string().contains(".png"), "{e}");
    }

    #[test]
    fn rejects_bad_data() {
        let three = Array2::<f64>::zeros((4, 3));
        let o = ScatterOptions::default();
        assert!(matches!(scatter_panels("x.png", &[("a", three.view())], &o), Err(PlotError::Invalid(_))));
        let none: [(&str, ArrayView2<f64>); 0] = [];
        assert!(matches!(scatter_panels("x.png", &none, &o), Err(PlotError::Invalid(_))));
        let t = [0.0, 0.5, 1.0];
        let x = [-1.0, 1.0];
        let values = Array2::<f64>::ones((3, 3));
        let paths = Array2::<f64>::zeros((3, 2));
        let panel = DensityPanel {
            title: "p".into(),
            density: DensityGrid { t: &t, x: &x, values: values.view() },
            paths: PathSet { t: &t, x: paths.view() },
            time_reversed: false,
        };
        let e = paths_over_density("x.png", &[panel], &DensityOptions::default()).unwrap_err();
        assert!(e.to_string().contains("shape"), "{e}");
    }

    #[test]
    fn writes_scatter_matrix_and_rejects_bad_input() {
        let dir = tmpdir("matrix");
        let a = Array2::from_shape_fn((200, 5), |(i, j)| ((i * (j + 3)) % 17) as f64 / 4.0 - 2.0);
        let b = Array2::from_shape_fn((100, 5), |(i, j)| ((i * (j + 5)) % 13) as f64 / 3.0 - 2.0);
        let out = dir.join("m.png");
        let o = MatrixOptions { title: Some("first 4 of 5 dimensions".into()), ..MatrixOptions::default() };
        scatter_matrix(&out, &[("data", a.view()), ("samples", b.view())], &o).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(bytes.len() > 10_000, "a 4 x 4 matrix of points is more than a blank page: {} bytes", bytes.len());
        let one = MatrixOptions { dims: 1, ..MatrixOptions::default() };
        scatter_matrix(dir.join("one.png"), &[("data", a.view())], &one).unwrap();
        let six = MatrixOptions { dims: 6, ..MatrixOptions::default() };
        let e = scatter_matrix(dir.join("x.png"), &[("data", a.view())], &six).unwrap_err();
        assert!(e.to_string().contains("5 columns"), "{e}");
        let narrow = Array2::<f64>::zeros((3, 4));
        let e = scatter_matrix(dir.join("x.png"), &[("data", a.view()), ("s", narrow.view())], &o).unwrap_err();
        assert!(e.to_string().contains("`s` has 4 columns"), "{e}");
        let none: [(&str, ArrayView2<f64>); 0] = [];
        assert!(matches!(scatter_matrix(dir.join("x.png"), &none, &o), Err(PlotError::Invalid(_))));
        assert!(!dir.join("x.png").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn histogram_is_a_density() {
        let steps = histogram_steps([0.1, 0.2, 0.7, 5.0].into_iter(), (0.0, 1.0), 2);
        // 4 values, bin width 0.5: 2 in the first bin (density 1), 1 in the second (0.5); 5.0 is off the axis.
        assert_eq!(steps, vec![(0.0, 0.0), (0.0, 1.0), (0.5, 1.0), (0.5, 0.5), (1.0, 0.5), (1.0, 0.0)]);
    }

    #[test]
    fn writes_density_png() {
        let dir = tmpdir("density");
        let t = [0.0, 0.5, 1.0];
        let x = [-1.0, 0.0, 1.0];
        let values = array![[0.0, 1.0, 0.0], [0.5, 1.0, 0.5], [1.0, 1.0, 1.0]];
        let paths = array![[0.0, 1.0], [5.0, 0.5], [0.0, -0.5]];
        let panel = DensityPanel {
            title: "p".into(),
            density: DensityGrid { t: &t, x: &x, values: values.view() },
            paths: PathSet { t: &t, x: paths.view() },
            time_reversed: true,
        };
        let out = dir.join("d.png");
        paths_over_density(&out, &[panel], &DensityOptions::default()).unwrap();
        assert!(std::fs::metadata(&out).unwrap().len() > 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn clipping_cuts_at_band_edges() {
        let pieces = clip_polyline(&[(0.0, 0.0), (1.0, 2.0), (2.0, 0.0)], -1.0, 1.0);
        assert_eq!(pieces, vec![vec![(0.0, 0.0), (0.5, 1.0)], vec![(1.5, 1.0), (2.0, 0.0)]]);
        let all_out = clip_polyline(&[(0.0, 5.0), (1.0, 6.0)], -1.0, 1.0);
        assert!(all_out.is_empty());
        let through = clip_polyline(&[(0.0, -2.0), (1.0, 2.0)], -1.0, 1.0);
        assert_eq!(through, vec![vec![(0.25, -1.0), (0.75, 1.0)]]);
    }

    #[test]
    fn writes_line_chart_and_heatmap_and_rejects_bad_input() {
        let dir = tmpdir("lines");
        let a = Series::new("a", vec![(1.0, 1.0), (10.0, 0.1), (100.0, 0.01)]);
        let b = Series::new("b", vec![(1.0, 2.0), (100.0, 2e-4)]);
        for (lx, ly) in [(false, false), (true, false), (false, true), (true, true)] {
            let o = LineChartOptions { log_x: lx, log_y: ly, title: Some("t".into()), ..Default::default() };
            let out = dir.join(format!("l{lx}{ly}.png"));
            line_chart(&out, &[a.clone(), b.clone()], &o).unwrap();
            assert!(std::fs::metadata(&out).unwrap().len() > 0);
        }
        let o = LineChartOptions { log_y: true, ..Default::default() };
        let neg = Series::new("n", vec![(1.0, -1.0)]);
        assert!(matches!(line_chart(dir.join("x.png"), &[neg], &o), Err(PlotError::Invalid(_))));
        assert!(matches!(line_chart(dir.join("x.png"), &[], &o), Err(PlotError::Invalid(_))));
        let nan = Series::new("n", vec![(f64::NAN, 1.0)]);
        assert!(matches!(
            line_chart(dir.join("x.png"), &[nan], &LineChartOptions::default()),
            Err(PlotError::Invalid(_))
        ));
        let (x, y) = ([0.0, 1.0, 2.0], [0.0, 1.0]);
        let v = array![[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]];
        let p = HeatmapPanel { title: "h".into(), x: &x, y: &y, values: v.view() };
        heatmap_panels(dir.join("h.png"), &[p.clone(), p.clone()], &HeatmapOptions::default()).unwrap();
        let bad = HeatmapPanel { title: "h".into(), x: &y, y: &y, values: v.view() };
        assert!(matches!(
            heatmap_panels(dir.join("x.png"), &[bad], &HeatmapOptions::default()),
            Err(PlotError::Invalid(_))
        ));
        assert!(!dir.join("x.png").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tick_labels_are_short() {
        let one = |v: f64| tick_labels(&[v]).remove(0);
        assert_eq!(one(0.001), "1e-3");
        assert_eq!(one(0.5), "0.5");
        assert_eq!(one(100.0), "100");
        assert_eq!(one(1e5), "1e5");
        assert_eq!(one(0.0), "0");
        assert_eq!(tick_labels(&[0.0, 0.5, 1.0, 1.5]), ["0", "0.5", "1", "1.5"]);
        assert_eq!(tick_labels(&[1e-3, 1e-2, 0.1, 1.0]), ["1e-3", "0.01", "0.1", "1"]);
        // Rounding noise around zero prints as 0, not as -1e-17.
        assert_eq!(tick_labels(&[-0.5, -1.1e-17, 0.5]), ["-0.5", "0", "0.5"]);
        // A log axis over ten decades keeps its smallest labels (they once printed as 0).
        assert_eq!(tick_labels(&[1e-10, 1e-9, 1e-8, 1.0]), ["1e-10", "1e-9", "1e-8", "1"]);
    }

    fn distinct(labels: &[String]) -> usize {
        let mut unique = labels.to_vec();
        unique.sort();
        unique.dedup();
        unique.len()
    }

    /// Distinct ticks never print the same text: the loss axis once read
    /// "2e4" at both 15000 and 20000.
    #[test]
    fn distinct_ticks_get_distinct_exact_labels() {
        assert_eq!(tick_labels(&[0.0, 5000.0, 10000.0, 15000.0, 20000.0]), ["0", "5000", "1e4", "1.5e4", "2e4"]);
        assert_eq!(tick_labels(&[15000.0, 17500.0, 20000.0]), ["1.5e4", "1.75e4", "2e4"]);
        assert_eq!(tick_labels(&[0.1, 0.15, 0.2]), ["0.1", "0.15", "0.2"]);
        assert_eq!(tick_labels(&[1e-5, 1.5e-5, 2e-5]), ["1e-5", "1.5e-5", "2e-5"]);
        assert_eq!(tick_labels(&[0.3, 0.30000000000000004 + 0.05]), ["0.3", "0.35"]);
        assert_eq!(tick_labels(&[-2.5e5, 0.0, 2.5e5]), ["-2.5e5", "0", "2.5e5"]);
        // Values that are not short decimals: 4 significant digits, more only to tell them apart.
        assert_eq!(tick_labels(&[0.123456789]), ["0.1235"]);
        assert_eq!(tick_labels(&[1.000001, 1.000002]), ["1.000001", "1.000002"]);
        for ticks in [
            vec![15000.0, 20000.0],
            vec![1e-5, 1.5e-5],
            vec![9.99e3, 1e4, 1.001e4],
            vec![1e-3, 2e-3, 3e-3, 4e-3, 5e-3],
            vec![12345.0, 12345.5],
        ] {
            let labels = tick_labels(&ticks);
            assert_eq!(distinct(&labels), ticks.len(), "{ticks:?} -> {labels:?}");
        }
    }

    /// The formatter sees the ticks plotters draws: on a 0..20000 axis with
    /// 10 labels (the loss curve) they are 2500 apart and all distinct.
    #[test]
    fn axis_ticks_of_a_loss_axis_are_distinct() {
        let spec: plotters::coord::types::RangedCoordf64 = (-1000.0..21000.0).into();
        let ticks = spec.key_points(BoldPoints(10));
        let f = axis_format(&spec, 10);
        let labels: Vec<String> = ticks.iter().map(|&v| f.label(v)).collect();
        assert_eq!(distinct(&labels), ticks.len(), "{ticks:?} -> {labels:?}");
        assert!(labels.contains(&"1.5e4".to_string()) && labels.contains(&"2e4".to_string()), "{labels:?}");
    }

    #[test]
    fn colour_map_ends() {
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(253, 231, 37));
        assert_eq!(viridis(2.0), viridis(1.0));
    }
}
