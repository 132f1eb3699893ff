//! Helpers shared by the subcommands: device choice, Ctrl-C and SIGTERM,
//! progress bars, run folders (locking, model loading, sample files) and tables.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressStyle};
use scoresde::checkpoint;
use scoresde::data::Scaling;
use scoresde::fsutil::FolderLock;
use scoresde::model::NeuralScore;
use tch::Device;

/// How a subcommand ended when it did not fail; `main` turns it into the exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Ran to the end.
    Done,
    /// Stopped early by Ctrl-C or SIGTERM, after saving what there was to save.
    Interrupted,
}

/// The default of `--threads`: one thread each for libtorch and rayon. Measured on a
/// 2-core machine shared with other builds (README, "Threads"): training the default
/// MLP runs several times faster with 1 thread than with libtorch's default.
pub const DEFAULT_THREADS: u32 = 1;
/// The largest `--threads` accepted.
pub const MAX_THREADS: u32 = 1024;

/// `--threads N`: libtorch's intra-op threads and rayon's global pool get `n` threads;
/// 0 leaves both at their own defaults (one per core). Called once, in `main`, before
/// any tensor work. libtorch's inter-op pool is left alone: nothing here runs
/// independent ops concurrently, and it can only be set before its first use.
///
/// # Errors
/// When rayon's global pool was already built.
pub fn set_threads(n: u32) -> anyhow::Result<()> {
    if n == 0 {
        return Ok(());
    }
    tch::set_num_threads(n as i32);
    rayon::ThreadPoolBuilder::new()
        .num_threads(n as usize)
        .build_global()
        .map_err(|e| anyhow::anyhow!("--threads {n}: cannot size the thread pool ({e})"))
}

/// The device from `--device`, printed with how CUDA was found and the threads tensor
/// work runs on (`--threads`).
pub fn device(spec: &str) -> anyhow::Result<Device> {
    let device = scoresde::device::select(spec)?;
    eprintln!("device: {device:?} (cuda: {}); threads: {}", scoresde::device::cuda_report(), tch::get_num_threads());
    Ok(device)
}

/// SIGINT (Ctrl-C) and SIGTERM as a stop flag for the library's loops. The
/// handlers are installed on the first call of [`CtrlC::flag`], so commands
/// that never ask keep the default behaviour, which ends them at once. The
/// first signal raises the flag (the loop then saves and stops); a second one
/// ends the process at once with `_exit`, from the handler itself: no
/// destructor or exit handler runs while another thread is inside libtorch,
/// and a file being written stays a temporary (every file is written
/// atomically), so the last complete checkpoint is kept.
pub struct CtrlC {
    state: OnceLock<(Arc<AtomicBool>, Arc<AtomicI32>)>,
}

/// The signals [`CtrlC`] handles.
const STOP_SIGNALS: [i32; 2] = [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM];

impl CtrlC {
    /// Signal handling, not yet installed.
    pub const fn new() -> Self {
        Self { state: OnceLock::new() }
    }

    fn state(&self) -> &(Arc<AtomicBool>, Arc<AtomicI32>) {
        self.state.get_or_init(|| {
            let state = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicI32::new(0)));
            for sig in STOP_SIGNALS {
                if let Err(e) = install(sig, &state.0, &state.1) {
                    eprintln!("warning: cannot handle signal {sig} ({e}); it will stop the program without saving");
                }
            }
            state
        })
    }

    /// The flag the first SIGINT or SIGTERM raises (installing the handlers if needed).
    pub fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.state().0)
    }

    /// The exit code of a run the signal stopped: 128 + the signal number, as
    /// shells report it (130 for Ctrl-C, 143 for SIGTERM; 130 when no signal came).
    pub fn exit_code(&self) -> u8 {
        let sig = self.state.get().map_or(0, |s| s.1.load(Ordering::SeqCst));
        u8::try_from(128 + sig).ok().filter(|_| sig > 0).unwrap_or(130)
    }
}

/// Writes `msg` to stderr with `write(2)` (async-signal-safe; no lock, no allocation).
fn write_stderr(msg: &[u8]) {
    // SAFETY: `msg` is a valid buffer of `msg.len()` bytes for the whole call.
    let _ = unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

/// Handles `sig`: the first stop signal raises `raised` and records itself in
/// `which`; the next one (of either kind) exits at once with 128 + its number.
fn install(sig: i32, raised: &Arc<AtomicBool>, which: &Arc<AtomicI32>) -> std::io::Result<()> {
    let (raised, which) = (Arc::clone(raised), Arc::clone(which));
    let first: &'static [u8] = if sig == signal_hook::consts::SIGINT {
        b"\nCtrl-C: finishing the current step and saving (press again to quit at once)\n"
    } else {
        b"\nSIGTERM: finishing the current step and saving (a second signal quits at once)\n"
    };
    let action = move || {
        if raised.swap(true, Ordering::SeqCst) {
            write_stderr(b"\nsecond interrupt: exiting now, without saving; the last checkpoint saved is kept\n");
            signal_hook::low_level::exit(128 + sig);
        }
        which.store(sig, Ordering::SeqCst);
        write_stderr(first);
    };
    // SAFETY: the action is async-signal-safe: lock-free atomics, write(2) and
    // _exit(2) only; it allocates nothing and takes no lock.
    unsafe { signal_hook::low_level::register(sig, action) }.map(|_| ())
}

/// Takes the folder `dir`, given as the option `arg`, for this process's
/// writes (see [`scoresde::fsutil::lock_folder`]), held until the lock is
/// dropped or the process ends.
pub fn lock_folder(arg: &str, dir: &Path) -> anyhow::Result<FolderLock> {
    let existing = dir.ancestors().filter(|p| !p.as_os_str().is_empty()).find(|p| p.exists());
    if let Some(file) = existing.filter(|p| !p.is_dir()) {
        if file == dir {
            anyhow::bail!("{arg} {} is a file, not a folder", dir.display());
        }
        anyhow::bail!("{arg} {}: {} is a file, not a folder", dir.display(), file.display());
    }
    Ok(scoresde::fsutil::lock_folder(dir)?)
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
    if !model.exists() && !model.with_extension("safetensors").exists() {
        anyhow::bail!(
            "--model {}: no such run folder or checkpoint (pass the --out of `scoresde train`, or its model.safetensors)",
            model.display()
        );
    }
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
