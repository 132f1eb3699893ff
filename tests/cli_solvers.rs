//! `scoresde sample` with solver parameters and guidance scales a user can get
//! wrong: a clear error (exit 1) naming the parameter, in seconds, never a hang
//! or a silent run; and a note when a guidance scale does not steer towards the
//! class. Small sizes, CPU.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_scoresde"));
    c.env("NO_COLOR", "1");
    c
}

/// Runs the program, killing it (and failing) after `limit`.
fn run_within(args: &[&str], limit: Duration) -> Output {
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

const LIMIT: Duration = Duration::from_secs(120);

fn ok(args: &[&str]) -> String {
    let out = run_within(args, LIMIT);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "scoresde {args:?} failed:\n{text}");
    text
}

fn fails(args: &[&str]) -> String {
    let out = run_within(args, LIMIT);
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

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("scoresde-cli-solvers-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const SMALL: &[&str] = &["--n", "600", "--width", "16", "--depth", "1", "--batch", "64", "--device", "cpu"];

#[test]
fn bad_solver_parameters_and_guidance_directions() {
    let dir = tmp("params");
    let mut args = vec!["train", "--conditional", "--steps", "5", "--out", s(&dir)];
    args.extend_from_slice(SMALL);
    ok(&args);
    let base = ["sample", "--model", s(&dir), "-n", "64", "--device", "cpu"];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        base.iter().chain(extra).copied().collect()
    }

    // DDIM's eta outside [0, 1] (it used to sample with a clamped variance).
    let err = fails(&with(&base, &["--solver", "ddim-eta:5", "--steps", "10"]));
    assert!(err.contains("`eta` = 5") && err.contains("[0, 1]"), "{err}");
    // A tolerance below f64's epsilon (it used to exit 0 with garbage samples).
    let err = fails(&with(&base, &["--solver", "ode-dopri5:1e-200", "--steps", "10"]));
    assert!(err.contains("`rtol` = 1e-200") && err.contains("machine epsilon"), "{err}");
    // One below f32's, the program's sampling precision (it used to creep for hours
    // over the default 500-step grid): an error before any work.
    let err = fails(&with(&base, &["--solver", "ode-dopri5:1e-14"]));
    assert!(err.contains("`rtol` = 1e-14") && err.contains("1.19e-7"), "{err}");
    let err = fails(&with(&base, &["--solver", "ode-dopri5:1e-5:-1", "--steps", "10"]));
    assert!(err.contains("`atol` = -1:"), "{err}");

    // Classifier-free guidance at w = -1 is the unconditional model, and below it
    // steers away from the class: both run, and say so.
    let text = ok(&with(&base, &["--steps", "10", "--class", "3", "--guidance", "-1"]));
    assert!(text.contains("--guidance -1 ignores class 3") && text.contains("unconditional"), "{text}");
    let text = ok(&with(&base, &["--steps", "10", "--class", "3", "--guidance", "-2"]));
    assert!(text.contains("--guidance -2 steers away from class 3"), "{text}");
    let text = ok(&with(&base, &["--steps", "10", "--class", "3", "--guidance", "-0.5"]));
    assert!(!text.contains("note:"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}
