//! Helpers shared by the integration tests: running the `scoresde` program
//! and checking how it exits, temporary folders, small training settings,
//! and tiny data sets with their [`DataInfo`].
//!
//! Each test file includes this module with `mod common;`, so each test crate
//! compiles its own copy and uses only part of it.
// Every test crate uses a different subset of these helpers; the rest would
// warn as dead code in each of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ndarray::Array2;
use scoresde::checkpoint::DataInfo;

/// A fresh, empty folder for the test `tag` of this test crate and process.
pub fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "scoresde-{}-{tag}-{}",
        env!("CARGO_CRATE_NAME").replace('_', "-"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `p` as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Tiny tensors: one intra-op thread is fastest, and stays fast on a busy
/// machine. (No lock: a trainer draws from its own generators, so tests
/// training at once in one test binary's threads do not disturb each other.)
pub fn one_thread() {
    tch::set_num_threads(1);
}

/// The [`DataInfo`] of `rows` standardised rows (mean 0, scale 1) from
/// `source`, one sample of shape `shape`.
pub fn data_info(source: &str, rows: usize, shape: &[usize]) -> DataInfo {
    let dim = shape.iter().product();
    DataInfo {
        source: source.into(),
        rows,
        mean: vec![0.0; dim],
        std: vec![1.0; dim],
        sha256: None,
        range: None,
        shape: shape.to_vec(),
    }
}

/// A `.npy` file (format 1.0) whose header announces any descriptor and
/// shape, followed by `payload` as it is (which need not match the header).
pub fn npy_bytes(descr: &str, shape: &[usize], payload: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 { format!("({},)", dims[0]) } else { format!("({})", dims.join(", ")) };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// `n` 8x8 images in [-1, 1], one row of 64 pixels each: a bright horizontal
/// or vertical bar.
pub fn bars(n: usize) -> Array2<f64> {
    Array2::from_shape_fn((n, 64), |(i, p)| {
        let (y, x, k) = (p / 8, p % 8, 1 + (i * 5) % 6);
        let on = if i % 2 == 0 { y == k && (1..7).contains(&x) } else { x == k && (1..7).contains(&y) };
        if on {
            1.0
        } else {
            -1.0
        }
    })
}

// Unused in the tests that do not run the program.
#[allow(unused_imports)]
#[cfg(feature = "cli")]
pub use cli::*;

/// Running the program (built only with the `cli` feature).
#[cfg(feature = "cli")]
mod cli {
    use std::process::{Command, Output, Stdio};
    use std::time::{Duration, Instant};

    /// Tiny training settings: 600 rows, a 16-wide one-layer network,
    /// batches of 64, on the CPU.
    pub const SMALL: &[&str] = &["--n", "600", "--width", "16", "--depth", "1", "--batch", "64", "--device", "cpu"];

    /// The program, without colours in its output.
    pub fn bin() -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_scoresde"));
        c.env("NO_COLOR", "1");
        c
    }

    /// Runs the program to the end.
    pub fn run(args: &[&str]) -> Output {
        bin().args(args).output().expect("scoresde runs")
    }

    /// Runs the program, killing it (and failing) after `limit`.
    pub fn run_within(args: &[&str], limit: Duration) -> Output {
        let mut child = bin().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("scoresde runs");
        let start = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("scoresde {args:?} still running after {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    }

    /// Stdout then stderr of a run of `args` that must have succeeded.
    pub fn succeeded(args: &[&str], out: &Output) -> String {
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "scoresde {args:?} failed:\n{text}");
        text
    }

    /// Stderr of a run of `args` that must have failed cleanly: exit code 1,
    /// no panic.
    pub fn failed_cleanly(args: &[&str], out: &Output) -> String {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "scoresde {args:?} should fail cleanly (exit 1), got {:?}\n{err}",
            out.status
        );
        assert!(!err.contains("panicked"), "{err}");
        err
    }

    /// Runs `args`, which must succeed; stdout then stderr.
    pub fn ok(args: &[&str]) -> String {
        succeeded(args, &run(args))
    }

    /// Runs `args`, which must fail cleanly ([`failed_cleanly`]); stderr.
    pub fn fails(args: &[&str]) -> String {
        failed_cleanly(args, &run(args))
    }
}

/// The checkout's root (this package's manifest folder).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// .venv's Python when the Python set-up is done; `None` (after saying why) when the test
/// should skip. Panics instead of skipping under SCORESDE_PYTHON=required.
pub fn python() -> Option<PathBuf> {
    let py = root().join(".venv/bin/python");
    let stamp = root().join(".venv/.scoresde-python");
    let reason = if !py.is_file() {
        format!("{} not found", py.display())
    } else if !stamp.is_file() {
        format!("{} missing: `import torch` is not set up", stamp.display())
    } else {
        return Some(py);
    };
    skip_python(&format!("{reason}; run `bash scripts/setup --python`"));
    None
}

/// Says why a Python test skips; panics instead under SCORESDE_PYTHON=required.
pub fn skip_python(msg: &str) {
    assert!(std::env::var("SCORESDE_PYTHON").as_deref() != Ok("required"), "SCORESDE_PYTHON=required: {msg}");
    eprintln!("skipping the Python parity test: {msg}");
}

/// Runs `py args` (one torch thread, no GPU) in the checkout's root, returning its output.
pub fn run_py(py: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(py)
        .args(args)
        .current_dir(root())
        .env("OMP_NUM_THREADS", "1")
        .env("CUDA_VISIBLE_DEVICES", "")
        .envs(envs.iter().copied())
        .output()
        .expect("python runs")
}
