//! `scoresde train-features` and `eval`'s image table end to end, on a
//! synthetic labelled image set (8x8 images of 4 shapes plus noise,
//! [`scoresde::features::shapes`]) saved as `[n, 64]` images and `[n]` labels.

use std::path::{Path, PathBuf};
use std::process::Output;

use ndarray_npy::WriteNpyExt as _;

mod common;
use common::*;

/// As [`common::run`] with one libtorch thread: on a machine shared with
/// other builds, spinning OpenMP workers make the small convolutions ten times
/// slower.
fn run(args: &[&str]) -> Output {
    bin().env("OMP_NUM_THREADS", "1").args(args).output().expect("scoresde runs")
}

/// As [`common::ok`], with one libtorch thread.
fn ok(args: &[&str]) -> String {
    succeeded(args, &run(args))
}

/// `n` shapes images in `dir/images.npy`, their labels (int64) in `dir/labels.npy`.
fn write_shapes(dir: &Path, n: usize) -> (PathBuf, PathBuf) {
    let (x, y) = scoresde::features::shapes(n, 8, 0.3, 7).unwrap();
    let (images, labels) = (dir.join("images.npy"), dir.join("labels.npy"));
    scoresde::data::save_npy(&images, &x).unwrap();
    let y = ndarray::Array1::from_iter(y.iter().map(|&v| v as i64));
    y.write_npy(std::fs::File::create(&labels).unwrap()).unwrap();
    (images, labels)
}

/// The rows of a CSV table (header first), cells split at commas.
fn csv(path: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| l.split(',').map(String::from).collect()).collect()
}

#[test]
fn train_features_then_eval_images() {
    let dir = tmp("pipeline");
    let (images, labels) = write_shapes(&dir, 600);
    let run_dir = dir.join("run");
    let common = ["--device", "cpu", "--out", s(&run_dir)];
    let mut train = vec!["train", "--data", s(&images), "--steps", "30", "--width", "32", "--depth", "1"];
    train.extend_from_slice(&["--batch", "64"]);
    train.extend_from_slice(&common);
    ok(&train);
    ok(&["sample", "--model", s(&run_dir), "-n", "200", "--steps", "5", "--device", "cpu"]);

    let mut features = vec!["train-features", "--data", s(&images), "--labels", s(&labels)];
    features.extend_from_slice(&["--steps", "150", "--batch", "64"]);
    features.extend_from_slice(&common);
    let text = ok(&features);
    // 60 held-out images (--holdout 0.1 of 600): a classifier right with
    // probability p >= 0.99 scores below 0.9 with probability < 1e-4
    // (binomial tail, sd sqrt(p (1 - p) / 60) <= 0.013).
    let acc: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("held-out accuracy: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no accuracy in\n{text}"));
    assert!(acc >= 0.9, "held-out accuracy {acc}");
    for f in ["features.safetensors", "features.json", "features-loss.csv", "features-loss.png"] {
        assert!(run_dir.join(f).is_file(), "{f} missing");
    }
    let sidecar: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("features.json")).unwrap()).unwrap();
    assert_eq!(sidecar["net"]["shape"], serde_json::json!([1, 8, 8]));
    assert_eq!(sidecar["net"]["classes"], 4);
    assert_eq!(sidecar["heldout_rows"], 60);
    // A second run into the same folder refuses to overwrite.
    let again = run(&features);
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("--force"));

    // Found in the run folder: an image table beside the quality table.
    let text = ok(&["eval", "--model", s(&run_dir)]);
    assert!(text.contains("classifier FID"), "{text}");
    let table = csv(&run_dir.join("eval-images.csv"));
    assert!(run_dir.join("eval-images.md").is_file());
    let header: Vec<&str> = table[0].iter().map(String::as_str).collect();
    assert_eq!(
        header,
        [
            "samples",
            "n",
            "classifier FID",
            "FID real-vs-real",
            "coverage KL",
            "KL real",
            "confidence",
            "confidence real",
            "out of range",
            "out of range real",
            "NN median",
            "NN median held-out",
            "NN ratio",
            "class shares"
        ]
    );
    assert_eq!(table.len(), 2, "one row per sample file");
    // The held-out images (60) are split in two halves of 30: n = 30.
    assert_eq!(table[1][1], "30");
    let num = |row: &[String], col: usize| -> f64 { row[col].parse().unwrap_or_else(|_| panic!("{row:?}")) };
    for col in 2..13 {
        assert!(num(&table[1], col).is_finite() && num(&table[1], col) >= 0.0, "column {col}: {:?}", table[1]);
    }
    let shares: Vec<f64> = table[1][13].split(' ').map(|v| v.parse().unwrap()).collect();
    assert_eq!(shares.len(), 4, "{:?}", table[1]);
    assert!((shares.iter().sum::<f64>() - 1.0).abs() < 0.01, "{shares:?}");

    // Memorisation and a bad generator, side by side: training images copied
    // (nearest-neighbour distance exactly 0) and pure noise.
    let all = scoresde::data::load_npy(&images).unwrap();
    let held = scoresde::data::load_npy(run_dir.join("heldout.npy")).unwrap();
    let copies: Vec<usize> =
        (0..all.nrows()).filter(|&i| !held.rows().into_iter().any(|h| h == all.row(i))).take(40).collect();
    let copies = all.select(ndarray::Axis(0), &copies);
    let (copy_path, noise_path) = (dir.join("copies.npy"), dir.join("noise.npy"));
    scoresde::data::save_npy(&copy_path, &copies).unwrap();
    let noise =
        ndarray::Array2::from_shape_fn((40, 64), |(i, j)| (((i * 64 + j) * 2_654_435_761) % 1000) as f64 / 250.0 - 2.0);
    scoresde::data::save_npy(&noise_path, &noise).unwrap();
    ok(&["eval", "--model", s(&run_dir), "--samples", s(&copy_path), "--samples", s(&noise_path)]);
    let table = csv(&run_dir.join("eval-copies-and-1-more-images.csv"));
    let (copied, noisy) = (&table[1], &table[2]);
    assert_eq!((num(copied, 10), num(copied, 12)), (0.0, 0.0), "copies sit on training images: {copied:?}");
    assert!(num(copied, 11) > 0.5, "held-out images do not: {copied:?}");
    // Uniform noise on [-2, 2) is far from every shape: its FID is well above
    // the real-vs-real floor at the same n, and most rows leave the data range.
    assert!(num(noisy, 2) > 2.0 * num(noisy, 3), "{noisy:?}");
    assert!(num(noisy, 8) > 0.9, "{noisy:?}");
    // Training images lie inside the training range by definition.
    assert_eq!(num(copied, 8), 0.0, "{copied:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
