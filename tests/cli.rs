//! The `scoresde` program end to end: train, sample, eval, plot, resume after
//! Ctrl-C, and clear errors for bad input. Small sizes, CPU.

use std::path::Path;
use std::process::{Command, Stdio};

mod common;
use common::*;

#[test]
fn train_sample_eval_plot() {
    let dir = tmp("pipeline");
    let mut args = vec!["train", "--data", "mixture", "--steps", "40", "--out", s(&dir)];
    args.extend_from_slice(SMALL);
    let text = ok(&args);
    assert!(text.contains("model.safetensors"), "{text}");
    for f in ["model.safetensors", "model.json", "heldout.npy", "loss.csv"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let sidecar: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap();
    assert_eq!(sidecar["step"], 40);
    assert_eq!(sidecar["net"]["width"], 16);
    // A second train into the same folder refuses to overwrite.
    assert!(fails(&args).contains("--resume"));

    for solver in ["ancestral", "dpm2m"] {
        let text =
            ok(&["sample", "--model", s(&dir), "--solver", solver, "--steps", "10", "-n", "300", "--device", "cpu"]);
        assert!(text.contains(&format!("samples-{solver}-10-uniform-seed0.npy")), "{text}");
    }
    let x = scoresde::data::load_npy(dir.join("samples-dpm2m-10-uniform-seed0.npy")).unwrap();
    assert_eq!(x.dim(), (300, 2));
    let text = ok(&["eval", "--model", s(&dir)]);
    assert!(text.contains("sliced W2") && text.contains("score error"), "{text}");
    assert!(dir.join("eval.csv").is_file() && dir.join("score_error.csv").is_file());
    ok(&["plot", "--model", s(&dir)]);
    assert!(dir.join("samples-dpm2m-10-uniform-seed0.png").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = tmp("bad");
    let mut train = vec!["train", "--steps", "5", "--out", s(&dir)];
    train.extend_from_slice(SMALL);
    ok(&train);
    let m = s(&dir);
    assert!(fails(&["sample", "--model", m, "--solver", "nope", "--device", "cpu"]).contains("unknown solver"));
    assert!(fails(&["sample", "--model", m, "--steps", "0", "--device", "cpu"]).contains("step"));
    assert!(fails(&["sample", "--model", m, "--grid", "zigzag", "--device", "cpu"]).contains("grid"));
    assert!(fails(&["sample", "--model", m, "--solver", "forward-em", "--device", "cpu"]).contains("forward"));
    assert!(fails(&["sample", "--model", m, "-n", "0", "--device", "cpu"]).contains("-n"));
    assert!(fails(&["sample", "--model", "/no/such/run", "--device", "cpu"]).contains("/no/such/run"));
    assert!(fails(&["sample", "--model", m, "--device", "tpu"]).contains("device"));
    // A corrupt checkpoint.
    let bad = dir.join("corrupt");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("model.safetensors"), b"\x10\0\0\0\0\0\0\0{not json}").unwrap();
    assert!(fails(&["sample", "--model", s(&bad), "--device", "cpu"]).contains("corrupt"));
    // Bad data files: NaN values, wrong rank, missing, unknown set.
    let nan = dir.join("nan.npy");
    let mut a = ndarray::Array2::<f64>::zeros((10, 2));
    a[[3, 1]] = f64::NAN;
    scoresde::data::save_npy(&nan, &a).unwrap();
    let d2 = dir.join("d2");
    assert!(fails(&["train", "--data", s(&nan), "--out", s(&d2), "--device", "cpu"]).contains("row 3"));
    assert!(fails(&["train", "--data", "/no/such.npy", "--out", s(&d2), "--device", "cpu"]).contains("no such"));
    assert!(fails(&["train", "--data", "spirals", "--out", s(&d2), "--device", "cpu"]).contains("eight-gaussians"));
    assert!(fails(&["train", "--steps", "0", "--out", s(&d2), "--device", "cpu"]).contains("steps"));
    assert!(fails(&["train", "--lr=-1", "--out", s(&d2), "--device", "cpu"]).contains("lr"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Ctrl-C (SIGINT) during training saves a checkpoint and exits 130; `--resume`
/// then finishes the run, and the result equals an uninterrupted run.
#[cfg(unix)]
#[test]
fn ctrl_c_saves_and_resume_finishes_identically() {
    let (a, b) = (tmp("sigint-a"), tmp("sigint-b"));
    let steps = "1500";
    let mut args = vec!["train", "--steps", steps, "--save-every", "0", "--out", s(&a)];
    args.extend_from_slice(SMALL);
    let child = bin().args(&args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // Wait until training has started (the held-out file is written just before).
    let start = std::time::Instant::now();
    while !a.join("heldout.npy").exists() && start.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    // SAFETY: sending SIGINT to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("--resume"), "{err}");
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(a.join("model.json")).unwrap()).unwrap();
    let stopped = meta["step"].as_u64().unwrap();
    assert!(stopped > 0 && stopped < 1500, "stopped at {stopped}");

    let mut resume = vec!["train", "--resume", "--out", s(&a)];
    resume.extend_from_slice(SMALL);
    ok(&resume);
    let mut straight = vec!["train", "--steps", steps, "--save-every", "0", "--out", s(&b)];
    straight.extend_from_slice(SMALL);
    ok(&straight);
    // Same weights, EMA and optimiser state (the loss logs differ: the
    // interruption closed a logging window early).
    let load = |d: &Path| scoresde::checkpoint::load(d, tch::Device::Cpu).unwrap();
    let (ca, cb) = (load(&a), load(&b));
    assert_eq!(ca.meta.step, 1500);
    assert!(ca.state.params.equal(&cb.state.params), "resumed and uninterrupted weights differ");
    assert!(ca.state.ema.equal(&cb.state.ema), "resumed and uninterrupted EMA differ");
    assert!(ca.state.adam_m.equal(&cb.state.adam_m) && ca.state.adam_v.equal(&cb.state.adam_v));
    std::fs::remove_dir_all(&a).unwrap();
    std::fs::remove_dir_all(&b).unwrap();
}

fn ok_owned(args: &[String]) -> String {
    ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

fn fails_owned(args: &[String]) -> String {
    fails(&args.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn guided_sampling_and_its_errors() {
    let dir = tmp("guidance");
    let mut args = vec!["train", "--conditional", "--steps", "30", "--out", s(&dir)];
    args.extend_from_slice(SMALL);
    ok(&args);
    let sidecar: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap();
    assert_eq!(sidecar["net"]["classes"], 8, "{sidecar}");
    let mut args = vec!["train-classifier", "--steps", "30", "--out", s(&dir)];
    args.extend_from_slice(SMALL);
    ok(&args);
    assert!(dir.join("classifier.safetensors").is_file() && dir.join("classifier-loss.csv").is_file());
    let clf = dir.join("classifier");
    let base = ["sample", "--model", s(&dir), "-n", "64", "--steps", "10", "--device", "cpu"];
    let with = |extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|a| a.to_string()).collect() };
    let text = ok_owned(&with(&["--class", "3", "--guidance", "2"]));
    assert!(
        text.contains("samples-ancestral-10-uniform-seed0-class3-cfg-w2.npy") && text.contains("class 3: exact"),
        "{text}"
    );
    let text = ok_owned(&with(&["--class", "3", "--guidance", "2", "--classifier", s(&clf)]));
    assert!(text.contains("samples-ancestral-10-uniform-seed0-class3-classifier-w2.npy"), "{text}");

    // A class out of range, a non-finite scale, a score as the classifier.
    let err = fails_owned(&with(&["--class", "8"]));
    assert!(err.contains("`class` = 8") && err.contains("0..8"), "{err}");
    let err = fails_owned(&with(&["--class", "1", "--guidance", "NaN"]));
    assert!(err.contains("guidance scale"), "{err}");
    let err = fails_owned(&with(&["--class", "1", "--classifier", s(&dir.join("model"))]));
    assert!(err.contains("not a classifier"), "{err}");
    // A model without labels asked for a class; data without classes.
    let plain = dir.join("plain");
    let mut args = vec!["train", "--steps", "5", "--out", s(&plain)];
    args.extend_from_slice(SMALL);
    ok(&args);
    let err = fails(&["sample", "--model", s(&plain), "--class", "1", "--device", "cpu"]);
    assert!(err.contains("trained without labels"), "{err}");
    let mut args = vec!["train", "--conditional", "--data", "two-moons", "--steps", "5", "--out", s(&plain), "--force"];
    args.extend_from_slice(SMALL);
    let err = fails(&args);
    assert!(err.contains("needs data with classes"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The digits the set-up caches, fetched here through `scripts/setup --images`
/// when missing; `None` (the test is skipped with a note) only when that
/// fails too, and never when `SCORESDE_IMAGES=required` (CI).
fn digits_cached() -> Option<()> {
    use scoresde::data::ImageSet;
    let file = ImageSet::Digits.cache_file(&ImageSet::default_dir()).unwrap();
    if !file.is_file() {
        let setup = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/setup");
        let _ = Command::new("bash").arg(setup).arg("--images").status();
    }
    if file.is_file() {
        return Some(());
    }
    assert_ne!(std::env::var("SCORESDE_IMAGES").as_deref(), Ok("required"), "{} missing", file.display());
    eprintln!("note: skipped: {} is not cached and `bash scripts/setup --images` could not fetch it", file.display());
    None
}

/// The sidecar of a checkpoint as JSON.
fn sidecar(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn digits_train_conditional_and_a_classifier() {
    if digits_cached().is_none() {
        return;
    }
    let dir = tmp("digits");
    let tiny = ["--data", "digits", "--steps", "5", "--width", "16", "--depth", "1", "--batch", "64", "--out", s(&dir)];
    let text = ok(&[&["train", "--conditional", "--device", "cpu"], &tiny[..]].concat());
    assert!(text.contains("on 1617 rows of digits"), "{text}");
    let model = sidecar(&dir.join("model.json"));
    assert_eq!(model["data"]["shape"], serde_json::json!([1, 8, 8]));
    assert_eq!(model["net"]["classes"], 10);
    // Scaled from the pixel range 0..=16 to [-1, 1]: centre 8, half-width 8.
    for key in ["mean", "std"] {
        let v = model["data"][key].as_array().unwrap();
        assert!(v.len() == 64 && v.iter().all(|m| m == 8.0), "{key}: {v:?}");
    }
    // The range samples are checked against is the pixel range.
    for (key, want) in [("min", 0.0), ("max", 16.0)] {
        let v = model["data"]["range"][key].as_array().unwrap();
        assert!(v.len() == 64 && v.iter().all(|m| m == want), "range.{key}: {v:?}");
    }
    ok(&[&["train-classifier", "--device", "cpu"], &tiny[..]].concat());
    let classifier = sidecar(&dir.join("classifier.json"));
    assert_eq!(
        (classifier["net"]["classes"].as_u64(), classifier["net"]["head"].as_str()),
        (Some(10), Some("classifier"))
    );
}

#[test]
fn image_npy_with_labels_trains_conditional() {
    let dir = tmp("npy-images");
    let x = ndarray::Array4::from_shape_fn((40, 1, 3, 3), |(n, _, h, w)| ((n * 7 + h * 3 + w) % 256) as u8);
    let y = ndarray::Array1::from_shape_fn(40, |n| (n % 3) as i64);
    let (xp, yp) = (dir.join("x.npy"), dir.join("y.npy"));
    ndarray_npy::write_npy(&xp, &x).unwrap();
    ndarray_npy::write_npy(&yp, &y).unwrap();
    let out = dir.join("run");
    let mut args =
        vec!["train", "--conditional", "--data", s(&xp), "--labels", s(&yp), "--steps", "5", "--out", s(&out)];
    args.extend_from_slice(SMALL);
    ok(&args);
    let model = sidecar(&out.join("model.json"));
    assert_eq!(model["data"]["shape"], serde_json::json!([1, 3, 3]));
    assert_eq!(model["net"]["classes"], 3);
    assert!(model["data"]["mean"].as_array().unwrap().iter().all(|m| m == 127.5));
    // An MLP on images still draws its samples as an image grid, over the pixel range.
    let text = ok(&["sample", "--model", s(&out), "-n", "8", "--steps", "3", "--device", "cpu"]);
    assert!(text.contains("first 8 samples, 1x3x3, black 0.000 to white"), "{text}");
    // Without --labels there are no classes to condition on.
    let e = fails(&["train", "--conditional", "--data", s(&xp), "--out", s(&dir.join("r2")), "--device", "cpu"]);
    assert!(e.contains("--conditional needs data with classes") && e.contains("--labels"), "{e}");
}

/// `--threads N` is global: every subcommand takes it (before or after its name), the
/// commands that pick a device report the count on their device line, and 0 leaves
/// libtorch's default. Bad values are rows of tests/bad_input.rs.
#[test]
fn threads_option_on_every_command() {
    let subcommands = ["train", "train-classifier", "sample", "eval", "plot", "demo", "solvers"];
    let before = vec!["--threads", "0", "sample", "--help"];
    for args in subcommands.iter().map(|sub| vec![*sub, "--threads", "3", "--help"]).chain([before]) {
        let text = ok(&args);
        assert!(text.contains("--threads <N>"), "scoresde {args:?}:\n{text}");
    }
    let dir = tmp("threads");
    let m = s(&dir);
    let mut train = vec!["train", "--steps", "5", "--out", m, "--threads", "2"];
    train.extend_from_slice(SMALL);
    assert!(ok(&train).contains("threads: 2"), "train --threads 2");
    let sample = ["sample", "--model", m, "--steps", "3", "-n", "50", "--device", "cpu", "--threads", "1"];
    assert!(ok(&sample).contains("threads: 1"), "sample --threads 1");
    // The default is one thread.
    let text = ok(&["sample", "--model", m, "--steps", "3", "-n", "50", "--device", "cpu", "--seed", "1"]);
    assert!(text.contains("threads: 1"), "{text}");
    let text = ok(&["--threads", "0", "eval", "--model", m, "--device", "cpu"]);
    let n: usize = text
        .split("threads: ")
        .nth(1)
        .and_then(|r| r.trim_start().split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    assert!(n >= 1, "eval --threads 0 reports libtorch's default:\n{text}");
    ok(&["plot", "--model", m, "--threads", "1"]);
    ok(&["solvers", "--threads", "4"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `train-classifier` reports the held-out accuracy on noisy inputs: high at
/// `t_eps` on eight well-separated Gaussians, chance (1/8) at `t = T`, where
/// `x_T` carries almost nothing of the class (`a(1) = 0.0066`). 400 held-out
/// rows: chance accuracy has sd `sqrt(1/8 * 7/8 / 400) = 0.017`, so 0.1 is six sd.
#[test]
fn classifier_accuracy_on_noisy_inputs() {
    let dir = tmp("clf-acc");
    let args = [
        "train-classifier",
        "--steps",
        "300",
        "--n",
        "4000",
        "--width",
        "32",
        "--depth",
        "2",
        "--batch",
        "128",
        "--device",
        "cpu",
        "--out",
        s(&dir),
    ];
    let text = ok(&args);
    assert!(text.contains("held-out accuracy on noisy inputs (400 rows)"), "{text}");
    let csv = std::fs::read_to_string(dir.join("classifier-accuracy.csv")).unwrap();
    let rows: Vec<(f64, f64)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<f64> = l.split(',').map(|v| v.parse().unwrap()).collect();
            assert_eq!(f[2], 400.0, "{csv}");
            (f[0], f[1])
        })
        .collect();
    assert_eq!(rows.len(), 7, "{csv}");
    assert!(rows[0].0 > 0.0 && rows[0].0 < 0.01 && rows[6].0 == 1.0, "{csv}");
    assert!(rows[0].1 > 0.9, "accuracy at t_eps: {csv}");
    assert!((rows[6].1 - 0.125).abs() < 0.1, "accuracy at T should be chance: {csv}");
    std::fs::remove_dir_all(&dir).unwrap();
}
