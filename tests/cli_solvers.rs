//! `scoresde sample` with solver parameters and guidance scales a user can get
//! wrong: a clear error (exit 1) naming the parameter, in seconds, never a hang
//! or a silent run; and a note when a guidance scale does not steer towards the
//! class. Small sizes, CPU.

use std::time::Duration;

mod common;
use common::*;

const LIMIT: Duration = Duration::from_secs(120);

/// As [`common::ok`], failing after [`LIMIT`] rather than hanging.
fn ok(args: &[&str]) -> String {
    succeeded(args, &run_within(args, LIMIT))
}

/// As [`common::fails`], failing after [`LIMIT`] rather than hanging.
fn fails(args: &[&str]) -> String {
    failed_cleanly(args, &run_within(args, LIMIT))
}

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
