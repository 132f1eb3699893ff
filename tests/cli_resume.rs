//! The `scoresde` program's run folders under stress: `--resume` on real
//! data, one writer per folder, SIGINT/SIGTERM (once and twice), SIGKILL at
//! random moments, and settings that conflict with the checkpoint. Small
//! sizes, CPU.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_scoresde"));
    c.env("NO_COLOR", "1");
    c
}

fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("scoresde runs")
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scoresde {args:?} failed:\n{text}");
    text
}

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("scoresde-resume-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const SMALL: &[&str] = &["--width", "16", "--depth", "1", "--batch", "64", "--device", "cpu"];

fn with_small<'a>(args: &[&'a str]) -> Vec<&'a str> {
    args.iter().chain(SMALL).copied().collect()
}

/// Values with 17 significant digits: what a mean or a standard deviation
/// of real data looks like, and where a float parser that is not correctly
/// rounded goes wrong.
fn awkward_data(rows: usize, cols: usize) -> ndarray::Array2<f64> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    ndarray::Array2::from_shape_fn((rows, cols), |(_, j)| {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let u = (state >> 11) as f64 / (1u64 << 53) as f64;
        (j as f64 + 1.0) * 0.37 + u * 1.7
    })
}

/// `--resume` on a .npy file: the data are recognised although their
/// statistics have 17 significant digits (the scaling stored in the
/// checkpoint must read back bit for bit, and the data are identified by
/// their hash).
#[test]
fn resume_on_npy_data() {
    let dir = tmp("npy");
    let data = dir.join("data.npy");
    scoresde::data::save_npy(&data, &awkward_data(200, 16)).unwrap();
    let out = dir.join("run");
    ok(&with_small(&["train", "--data", s(&data), "--steps", "5", "--out", s(&out)]));
    let text = ok(&with_small(&["train", "--data", s(&data), "--resume", "--steps", "10", "--out", s(&out)]));
    assert!(text.contains("resuming from"), "{text}");
    let ckpt = scoresde::checkpoint::load(&out, tch::Device::Cpu).unwrap();
    assert_eq!(ckpt.meta.step, 10);
    std::fs::remove_dir_all(&dir).unwrap();
}
