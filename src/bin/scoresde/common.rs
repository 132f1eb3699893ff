//! Helpers shared by the subcommands: device choice, Ctrl-C, progress bars, tables.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use anyhow::Context as _;
use indicatif::{ProgressBar, ProgressStyle};
use tch::Device;

/// The device from `--device`, printed with how CUDA was found.
pub fn device(spec: &str) -> anyhow::Result<Device> {
    let device = scoresde::device::select(spec)?;
    eprintln!("device: {device:?} (cuda: {})", scoresde::device::cuda_report());
    Ok(device)
}

/// Raised by the first Ctrl-C; a second Ctrl-C exits at once (every file this
/// program writes is written atomically, so nothing is left torn).
pub fn interrupted() -> &'static AtomicBool {
    static FLAG: OnceLock<&'static AtomicBool> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
        let handler = ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                eprintln!("\nsecond Ctrl-C: exiting now");
                std::process::exit(130);
            }
            eprintln!("\nCtrl-C: finishing the current step and saving (press again to quit at once)");
        });
        if let Err(e) = handler {
            eprintln!("warning: cannot install the Ctrl-C handler ({e}); Ctrl-C will not save");
        }
        flag
    })
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
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self { header: header.iter().map(|s| s.to_string()).collect(), rows: Vec::new() }
    }

    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    pub fn markdown(&self) -> String {
        let mut s = format!("| {} |\n|{}\n", self.header.join(" | "), "---|".repeat(self.header.len()));
        for r in &self.rows {
            s += &format!("| {} |\n", r.join(" | "));
        }
        s
    }

    pub fn csv(&self) -> String {
        let quote = |c: &String| if c.contains(',') { format!("\"{c}\"") } else { c.clone() };
        let line = |r: &Vec<String>| r.iter().map(quote).collect::<Vec<_>>().join(",");
        let mut s = line(&self.header) + "\n";
        for r in &self.rows {
            s += &(line(r) + "\n");
        }
        s
    }

    /// Writes `STEM.md` and `STEM.csv`; returns their paths.
    pub fn save(&self, stem: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
        let (md, csv) = (stem.with_extension("md"), stem.with_extension("csv"));
        scoresde::fsutil::write_atomic(&md, self.markdown().as_bytes()).with_context(|| "writing the table")?;
        scoresde::fsutil::write_atomic(&csv, self.csv().as_bytes()).with_context(|| "writing the table")?;
        Ok((md, csv))
    }
}

/// Formats a float with `digits` significant decimals for tables.
pub fn fmt(v: f64, digits: usize) -> String {
    format!("{v:.digits$}")
}
