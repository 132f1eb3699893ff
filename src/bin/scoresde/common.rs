//! Helpers shared by the subcommands: device choice, Ctrl-C, progress bars,
//! run folders (model loading, sample files) and tables.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressStyle};
use scoresde::checkpoint;
use scoresde::data::Scaling;
use scoresde::model::NeuralScore;
use tch::Device;

/// How a subcommand ended when it did not fail; `main` turns it into the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Ran to the end.
    Done,
    /// Stopped early by Ctrl-C, after saving what there was to save.
    Interrupted,
}

/// The device from `--device`, printed with how CUDA was found.
pub fn device(spec: &str) -> anyhow::Result<Device> {
    let device = scoresde::device::select(spec)?;
    eprintln!("device: {device:?} (cuda: {})", scoresde::device::cuda_report());
    Ok(device)
}

/// Ctrl-C as a stop flag for the library's loops. The handler is installed
/// on the first call of [`CtrlC::flag`], so commands that never ask keep the
/// default Ctrl-C, which ends them at once. The first Ctrl-C raises the flag;
/// a second one calls `on_second` (every file this program writes is written
/// atomically, so quitting then leaves nothing torn).
pub struct CtrlC {
    flag: OnceLock<Arc<AtomicBool>>,
    on_second: fn(),
}

impl CtrlC {
    /// Ctrl-C handling that calls `on_second` at the second Ctrl-C.
    pub const fn new(on_second: fn()) -> Self {
        Self { flag: OnceLock::new(), on_second }
    }

    /// The flag the first Ctrl-C raises (installing the handler if needed).
    pub fn flag(&self) -> Arc<AtomicBool> {
        self.flag
            .get_or_init(|| {
                let flag = Arc::new(AtomicBool::new(false));
                let (raised, on_second) = (Arc::clone(&flag), self.on_second);
                let handler = ctrlc::set_handler(move || {
                    if raised.swap(true, Ordering::SeqCst) {
                        eprintln!("\nsecond Ctrl-C: exiting now");
                        on_second();
                    } else {
                        eprintln!("\nCtrl-C: finishing the current step and saving (press again to quit at once)");
                    }
                });
                if let Err(e) = handler {
                    eprintln!("warning: cannot install the Ctrl-C handler ({e}); Ctrl-C will not save");
                }
                flag
            })
            .clone()
    }
}

/// The folder a checkpoint spec (a run folder or a checkpoint path) lives in.
pub fn run_folder(model: &Path) -> PathBuf {
    if model.is_dir() {
        model.to_path_buf()
    } else {
        model.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
    }
}

/// The model checkpoint stem inside a run folder.
pub fn model_path(out: &Path) -> PathBuf {
    out.join("model")
}

/// The classifier checkpoint stem inside a run folder.
pub fn classifier_path(out: &Path) -> PathBuf {
    out.join("classifier")
}

/// The held-out data of a run folder.
pub fn heldout_path(folder: &Path) -> PathBuf {
    folder.join("heldout.npy")
}

/// Loads a run folder's model: the EMA score and the data scaling.
pub fn load_model(model: &Path, device: Device) -> anyhow::Result<(NeuralScore, Scaling, checkpoint::Meta)> {
    let ckpt = checkpoint::load(model, device)?;
    let meta = ckpt.meta.clone();
    let scaling = Scaling { mean: meta.data.mean.clone(), std: meta.data.std.clone() };
    Ok((ckpt.ema_score()?, scaling, meta))
}

/// The `samples-*.npy` files of a run folder, sorted by name.
pub fn sample_files(folder: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(folder).with_context(|| format!("reading {}", folder.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with("samples-") && name.ends_with(".npy")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Everything that decides what a sample file holds, besides the model and
/// the number of samples; [`SampleName::stem`] writes all of it into the file
/// name, so runs with different settings never share a file.
#[derive(Debug, Clone, Copy)]
pub struct SampleName<'a> {
    /// Integrator name (with its parameters, `ddim-eta:0.5`).
    pub solver: &'a str,
    /// Steps from t = 1 down to t = eps.
    pub steps: usize,
    /// Time grid name.
    pub grid: &'a str,
    /// Seed of the prior sample and the sampler noise.
    pub seed: u64,
    /// Ends with the noise-free Tweedie denoising step.
    pub denoise: bool,
    /// Guidance: `-class3-cfg-w2`, `-class3-classifier-w1`, or empty.
    pub guidance: &'a str,
}

impl SampleName<'_> {
    /// `samples-SOLVER-STEPS-GRID-seedSEED[-no-denoise][GUIDANCE]`; characters
    /// other than letters, digits, `.`, `-` and `_` (the `:` of solver
    /// parameters) become `_`.
    pub fn stem(&self) -> String {
        let grid = if self.grid == "logsnr" { "log-snr" } else { self.grid };
        let raw = if self.denoise { "" } else { "-no-denoise" };
        let name = format!("samples-{}-{}-{grid}-seed{}{raw}{}", self.solver, self.steps, self.seed, self.guidance);
        name.chars().map(|c| if c.is_ascii_alphanumeric() || ".-_".contains(c) { c } else { '_' }).collect()
    }

    /// The sample file in `folder`.
    pub fn npy(&self, folder: &Path) -> PathBuf {
        folder.join(format!("{}.npy", self.stem()))
    }

    /// The progressive-denoising figure of the run in `folder`.
    pub fn trajectory_png(&self, folder: &Path) -> PathBuf {
        folder.join(format!("trajectory{}.png", &self.stem()["samples".len()..]))
    }
}

/// Fails, naming the first of `paths` that exists, unless `force`: outputs of
/// an earlier run are not replaced without `--force`.
pub fn refuse_existing(paths: &[PathBuf], force: bool) -> anyhow::Result<()> {
    match paths.iter().find(|p| p.exists()) {
        Some(p) if !force => bail!(
            "{} exists (from an earlier run with the same settings): pass --force to replace it, or --out to write elsewhere",
            p.display()
        ),
        _ => Ok(()),
    }
}

/// Whether writing `new` over the file at `path` loses nothing: the file is
/// absent, or every line of it is also a line of `new` (the same table, or
/// one with more rows).
pub fn keeps_every_line(path: &Path, new: &str) -> bool {
    match std::fs::read(path) {
        Ok(old) => {
            let lines: std::collections::HashSet<&str> = new.lines().collect();
            String::from_utf8_lossy(&old).lines().all(|l| lines.contains(l))
        }
        Err(_) => !path.exists(),
    }
}

/// A progress bar with rate and ETA; hidden when stderr is not a terminal.
pub fn bar(total: u64, prefix: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    let style = ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {per_sec:>12} ETA {eta:>4} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    pb.set_style(style);
    pb.set_prefix(prefix.to_string());
    pb
}

/// A table printed as markdown and saved as markdown and CSV.
#[derive(Debug, Default)]
pub struct Table {
    /// Column names.
    pub header: Vec<String>,
    /// Cells, row by row.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new(header: &[&str]) -> Self {
        Self { header: header.iter().map(|s| s.to_string()).collect(), rows: Vec::new() }
    }

    /// Appends a row.
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// The table in markdown.
    pub fn markdown(&self) -> String {
        let mut s = format!("| {} |\n|{}\n", self.header.join(" | "), "---|".repeat(self.header.len()));
        for r in &self.rows {
            s += &format!("| {} |\n", r.join(" | "));
        }
        s
    }

    /// The table as CSV (cells with commas quoted).
    pub fn csv(&self) -> String {
        let quote = |c: &String| if c.contains(',') { format!("\"{c}\"") } else { c.clone() };
        let line = |r: &Vec<String>| r.iter().map(quote).collect::<Vec<_>>().join(",");
        let mut s = line(&self.header) + "\n";
        for r in &self.rows {
            s += &(line(r) + "\n");
        }
        s
    }

    /// Writes `STEM.md` and `STEM.csv`; returns their paths. Unless `force`,
    /// refuses (writing neither) when either file holds a line the new table
    /// lacks: an earlier table with other results is never replaced silently.
    pub fn save(&self, stem: &Path, force: bool) -> anyhow::Result<(PathBuf, PathBuf)> {
        let (md, csv) = (with_suffix(stem, "md"), with_suffix(stem, "csv"));
        if !force {
            for (path, text) in [(&md, self.markdown()), (&csv, self.csv())] {
                if !keeps_every_line(path, &text) {
                    bail!(
                        "{} holds other results (from an earlier run): pass --force to replace it, or move it away",
                        path.display()
                    );
                }
            }
        }
        scoresde::fsutil::write_atomic(&md, self.markdown().as_bytes()).with_context(|| "writing the table")?;
        scoresde::fsutil::write_atomic(&csv, self.csv().as_bytes()).with_context(|| "writing the table")?;
        Ok((md, csv))
    }
}

/// `STEM.EXT`, keeping any dots of the stem (`with_extension` would cut `w0.5`).
pub fn with_suffix(stem: &Path, ext: &str) -> PathBuf {
    let mut name = stem.as_os_str().to_owned();
    name.push(".");
    name.push(ext);
    PathBuf::from(name)
}

/// Formats a float with `digits` significant decimals for tables.
pub fn fmt(v: f64, digits: usize) -> String {
    format!("{v:.digits$}")
}
