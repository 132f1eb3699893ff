//! The `scoresde` program with sizes that do not fit: absurd sample counts,
//! batches and networks, lying `.npy` headers, too little data; sampling in
//! batches streamed to disk; the out-of-range warning. Small sizes, CPU.

use std::path::Path;
use std::process::Output;
use std::time::Instant;

mod common;
use common::*;

/// As [`fails`], within `seconds` (sizes are checked before the work, not after).
fn fails_fast(args: &[&str], seconds: f64) -> String {
    let started = Instant::now();
    let err = fails(args);
    let took = started.elapsed().as_secs_f64();
    assert!(took < seconds, "scoresde {args:?} took {took:.1} s to fail");
    err
}

fn train(dir: &Path, steps: &str, extra: &[&str]) -> String {
    let mut args = vec!["train", "--steps", steps, "--out", s(dir)];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(extra);
    ok(&args)
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// The one samples file in `dir`.
fn samples_in(dir: &Path) -> ndarray::Array2<f64> {
    let files: Vec<String> =
        names(dir).into_iter().filter(|n| n.starts_with("samples") && n.ends_with(".npy")).collect();
    assert_eq!(files.len(), 1, "{:?}", names(dir));
    scoresde::data::load_npy(dir.join(&files[0])).unwrap()
}

fn max_abs_diff(a: &ndarray::Array2<f64>, b: &ndarray::Array2<f64>) -> f64 {
    assert_eq!(a.dim(), b.dim());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

/// `--batch` splits the run; sample i's noise comes from stream (seed, i), so
/// the samples are the same whatever the batch size, for a one-step and a
/// multistep solver: up to the f32 rounding of matrix products, whose kernels
/// depend on the number of rows (about 1e-4 here; other noise would move
/// samples by O(1), as another seed shows). Every batch
/// goes to one file; no temporary file is left.
#[test]
fn batched_sampling_gives_the_same_samples_whatever_the_batch() {
    let dir = tmp("batches");
    train(&dir, "20", &[]);
    for solver in ["ancestral", "dpm2m"] {
        let base = ["sample", "--model", s(&dir), "--solver", solver, "--steps", "10", "-n", "300", "--device", "cpu"];
        let with = |out: &Path, extra: &[&str]| -> (String, ndarray::Array2<f64>) {
            let mut args = base.to_vec();
            args.extend_from_slice(&["--out", s(out)]);
            args.extend_from_slice(extra);
            let text = ok(&args);
            (text, samples_in(out))
        };
        let (text, whole) = with(&dir.join(format!("{solver}-whole")), &[]);
        assert!(!text.contains("batches of"), "{text}");
        assert_eq!(whole.dim(), (300, 2));
        let (_, by7) = with(&dir.join(format!("{solver}-7")), &["--batch", "7"]);
        assert!(max_abs_diff(&whole, &by7) < 1e-3, "{solver}: batch 7 differs by {}", max_abs_diff(&whole, &by7));
        if solver != "ancestral" {
            continue;
        }
        let (text, by64) = with(&dir.join(format!("{solver}-64")), &["--batch", "64"]);
        assert!(text.contains("sampling in 5 batches of 64"), "{text}");
        assert!(max_abs_diff(&whole, &by64) < 1e-3, "{solver}: batch 64 differs by {}", max_abs_diff(&whole, &by64));
        // The seed does matter.
        let (_, other) = with(&dir.join(format!("{solver}-seed1")), &["--batch", "64", "--seed", "1"]);
        assert!(max_abs_diff(&whole, &other) > 0.1);
        let left = names(&dir.join(format!("{solver}-64")));
        // The folder's advisory lock file stays (by design); no temporaries do.
        let temporary = |n: &String| (n.starts_with('.') && n != ".scoresde.lock") || n.ends_with(".tmp");
        assert!(!left.iter().any(temporary), "{left:?}");
    }
    // More samples than figures hold: all go to the file, the figure (here
    // and in `plot`) draws the first 20,000 and says so.
    let many = dir.join("many");
    let text = ok(&[
        "sample",
        "--model",
        s(&dir),
        "--steps",
        "2",
        "-n",
        "20001",
        "--batch",
        "5000",
        "--out",
        s(&many),
        "--device",
        "cpu",
    ]);
    assert!(text.contains("sampling in 5 batches of 5000"), "{text}");
    assert!(text.contains("figure and class report: the first 20000 of 20001 samples"), "{text}");
    assert_eq!(samples_in(&many).nrows(), 20001);
    std::fs::copy(dir.join("model.safetensors"), many.join("model.safetensors")).unwrap();
    let text = ok(&["plot", "--model", s(&many)]);
    assert!(text.contains("drawing the first 20000 of 20001 samples"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn absurd_sample_counts_and_batches_are_clear_errors() {
    let dir = tmp("counts");
    train(&dir, "2", &[]);
    let m = s(&dir);
    let sample = |extra: &[&str]| -> String {
        let mut args = vec!["sample", "--model", m, "--steps", "5", "--device", "cpu"];
        args.extend_from_slice(extra);
        fails_fast(&args, 20.0)
    };
    assert!(sample(&["-n", "0"]).contains("-n 0: need at least 1 sample"));
    let e = sample(&["-n", "-5"]);
    assert!(e.contains("-n -5: need at least 1 sample"), "{e}");
    let e = sample(&["-n", "100000000000"]);
    assert!(e.contains("-n 100000000000: at most 4294967296 samples"), "{e}");
    let e = sample(&["-n", "100", "--batch", "0"]);
    assert!(e.contains("--batch 0"), "{e}");
    // A run that fails once the samples file is started leaves nothing behind.
    let e = sample(&["-n", "100", "--solver", "forward-em"]);
    assert!(e.contains("forward"), "{e}");
    assert!(!names(&dir).iter().any(|n| n.contains("samples")), "{:?}", names(&dir));

    // A file larger than any disk: 4e9 samples of 1000 columns (32 TB).
    let wide = dir.join("wide.npy");
    scoresde::data::save_npy(&wide, &ndarray::Array2::<f64>::from_shape_fn((20, 1000), |(i, j)| (i + j) as f64))
        .unwrap();
    let run = dir.join("wide");
    ok(&[
        "train",
        "--data",
        s(&wide),
        "--steps",
        "1",
        "--width",
        "16",
        "--depth",
        "1",
        "--out",
        s(&run),
        "--device",
        "cpu",
    ]);
    let e = fails_fast(&["sample", "--model", s(&run), "-n", "4000000000", "--steps", "5", "--device", "cpu"], 20.0);
    assert!(e.contains("-n 4000000000") && e.contains("GB are free"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn lying_npy_headers_and_huge_networks_fail_at_once_naming_the_argument() {
    let dir = tmp("networks");
    // A 1 KB file whose header claims shape (1e11, 64).
    let mut bytes = npy_bytes("<f8", &[100_000_000_000, 64], &[]);
    bytes.resize(1024, 0);
    let liar = dir.join("liar.npy");
    std::fs::write(&liar, &bytes).unwrap();
    let out = dir.join("run");
    let e = fails_fast(&["train", "--data", s(&liar), "--out", s(&out), "--device", "cpu"], 20.0);
    assert!(e.contains("liar.npy") && e.contains("truncated") && e.contains("(100000000000, 64)"), "{e}");

    let train = |extra: &[&str]| -> String {
        let mut args = vec!["train", "--n", "600", "--steps", "1", "--out", s(&out), "--device", "cpu"];
        args.extend_from_slice(extra);
        fails_fast(&args, 20.0)
    };
    let e = train(&["--depth", "1000000000"]);
    assert!(e.contains("`--depth` = \"1000000000\"") && e.contains("at most 1024 hidden layers"), "{e}");
    let e = train(&["--width", "100000000"]);
    assert!(e.contains("`--width` = \"100000000\""), "{e}");
    let e = train(&["--embed-dim", "1000000000000"]);
    assert!(e.contains("`--embed-dim` = \"1000000000000\""), "{e}");
    let e = train(&["--width", "60000", "--depth", "1000"]);
    assert!(e.contains("`--width`") && e.contains("parameters"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn batch_is_lowered_to_the_training_rows_and_checked_against_memory() {
    let dir = tmp("batch");
    // 600 rows, 60 held out: --batch 1e8 trains with 540, saying so.
    let text = ok(&[
        "train",
        "--steps",
        "2",
        "--n",
        "600",
        "--width",
        "16",
        "--depth",
        "1",
        "--batch",
        "100000000",
        "--out",
        s(&dir),
        "--device",
        "cpu",
    ]);
    assert!(text.contains("note: --batch 100000000 is more than the 540 training rows; using --batch 540"), "{text}");
    let sidecar: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap();
    assert_eq!(sidecar["train"]["batch_size"], 540);
    // A batch of 360,000 rows through 1024 layers of 64 needs ~380 GB: refused
    // before anything that size is allocated.
    let big = dir.join("big");
    let args = [
        "train",
        "--n",
        "400000",
        "--batch",
        "360000",
        "--width",
        "64",
        "--depth",
        "1024",
        "--steps",
        "1",
        "--out",
        s(&big),
        "--device",
        "cpu",
    ];
    let e = fails_fast(&args, 30.0);
    assert!(e.contains("`--batch` = \"360000\"") && e.contains("memory") && e.contains("rows fit"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_default_batch_is_the_networks_and_an_explicit_one_wins() {
    let dir = tmp("default-batch");
    // 700 8x8 images: 630 training rows, more than either default.
    let (x, _) = scoresde::features::shapes(700, 8, 0.3, 7).unwrap();
    let data = dir.join("images.npy");
    scoresde::data::save_npy(&data, &x).unwrap();
    let unet: &[&str] = &["--net", "unet", "--base-channels", "8", "--channel-mults", "1,2", "--groups", "4"];
    let mlp: &[&str] = &["--net", "mlp", "--width", "16", "--depth", "1"];
    for (tag, net, batch, want) in
        [("unet", unet, None, 128), ("mlp", mlp, None, 512), ("unet-64", unet, Some("64"), 64)]
    {
        let out = dir.join(tag);
        let mut args = vec!["train", "--data", s(&data), "--steps", "1", "--out", s(&out), "--device", "cpu"];
        args.extend_from_slice(net);
        if let Some(b) = batch {
            args.extend_from_slice(&["--batch", b]);
        }
        ok(&args);
        let sidecar: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
        assert_eq!(sidecar["train"]["batch_size"], want, "{tag}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn too_little_training_or_held_out_data_is_refused() {
    let dir = tmp("tiny");
    let out = dir.join("run");
    let train = |extra: &[&str]| -> Output {
        let mut args =
            vec!["train", "--steps", "2", "--width", "16", "--depth", "1", "--out", s(&out), "--device", "cpu"];
        args.extend_from_slice(extra);
        args.push("--force");
        run(&args)
    };
    let err = |extra: &[&str]| -> String {
        let o = train(extra);
        let e = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {e}");
        e
    };
    let e = err(&["--n", "5"]);
    assert!(
        e.contains("--holdout 0.1 splits --n 5 rows of --data eight-gaussians into 4 training and 1 held-out rows"),
        "{e}"
    );
    assert!(e.contains("need at least 10 training and 2 held-out rows; raise --holdout or --n"), "{e}");
    // Enough training rows, one held out.
    let e = err(&["--n", "14"]);
    assert!(e.contains("13 training and 1 held-out") && e.contains("raise --holdout or --n"), "{e}");
    // Two held out, too few to train on.
    let e = err(&["--n", "10", "--holdout", "0.2"]);
    assert!(e.contains("8 training and 2 held-out") && e.contains("raise --n or lower --holdout"), "{e}");
    // A .npy file of 11 rows.
    let small = dir.join("small.npy");
    scoresde::data::save_npy(&small, &ndarray::Array2::<f64>::from_shape_fn((11, 2), |(i, j)| (i * j) as f64)).unwrap();
    let e = err(&["--data", s(&small)]);
    assert!(e.contains("the 11 rows of --data") && e.contains("small.npy") && e.contains("--holdout"), "{e}");
    // At the minimum: 10 training and 2 held-out rows train.
    let o = train(&["--n", "12", "--holdout", "0.2", "--batch", "8"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A model trained for one step samples far outside the data; `sample` says
/// how many samples and how far, against the training range stored in the
/// checkpoint, or the held-out data's range for a checkpoint without one.
#[test]
fn samples_outside_the_data_range_are_reported() {
    let dir = tmp("range");
    train(&dir, "1", &[]);
    let sidecar: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("model.json")).unwrap()).unwrap();
    let range = &sidecar["data"]["range"];
    assert_eq!(range["min"].as_array().map(Vec::len), Some(2), "{sidecar}");
    let text = ok(&["sample", "--model", s(&dir), "--steps", "10", "-n", "200", "--device", "cpu"]);
    let line = text.lines().find(|l| l.starts_with("warning:")).unwrap_or_else(|| panic!("no warning in:\n{text}"));
    assert!(line.contains("of 200 samples") && line.contains("lie outside the training data's range"), "{line}");
    assert!(line.contains("x the range's half-width from its centre"), "{line}");

    // A checkpoint written without a range (as before ranges were recorded).
    let old = dir.join("old");
    let data = scoresde::data::Toy::EightGaussians.sample(100, 0).unwrap();
    let net = scoresde::net::NetConfig { width: 16, depth: 1, ..scoresde::net::NetConfig::mlp(2) };
    let config = scoresde::train::TrainConfig { batch_size: 16, ..Default::default() };
    let trainer = scoresde::train::Trainer::new(net, Default::default(), config, &data, tch::Device::Cpu).unwrap();
    let info = scoresde::checkpoint::DataInfo {
        source: "eight-gaussians".into(),
        rows: 100,
        mean: vec![0.0; 2],
        std: vec![1.0; 2],
        sha256: None,
        range: None,
        // As before the shape existed: read as flat [2].
        shape: Vec::new(),
    };
    scoresde::checkpoint::save(&old.join("model"), &trainer, &info).unwrap();
    scoresde::data::save_npy(old.join("heldout.npy"), &data).unwrap();
    let text = ok(&["sample", "--model", s(&old), "--steps", "10", "-n", "200", "--device", "cpu"]);
    assert!(
        text.contains("lie outside the held-out data's range (the checkpoint records no training range)"),
        "{text}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
