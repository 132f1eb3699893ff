//! What the program writes, and that it never replaces earlier results
//! silently: sample files named by every setting that changes them, `--force`
//! to replace one, eval tables per input, figures for data of any dimension.
//! Small sizes, CPU.

use std::path::Path;

mod common;
use common::*;

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Trains a tiny model on `data` into `dir`.
fn train(dir: &Path, data: &str) {
    ok(&[
        "train",
        "--data",
        data,
        "--steps",
        "20",
        "--n",
        "400",
        "--width",
        "16",
        "--depth",
        "1",
        "--batch",
        "64",
        "--device",
        "cpu",
        "--out",
        s(dir),
    ]);
}

/// `sample` with `extra` options, by default 200 samples in 10 dpm2m steps.
fn sample_args<'a>(dir: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["sample", "--model", s(dir), "--device", "cpu"];
    for (option, default) in [("--solver", "dpm2m"), ("--steps", "10"), ("-n", "200")] {
        if !extra.contains(&option) {
            args.extend([option, default]);
        }
    }
    args.extend_from_slice(extra);
    args
}

/// A PNG of at least `min_size` pixels with some drawing on it.
fn assert_drawn_png(path: &Path, min_size: (u32, u32)) {
    let img = image::open(path).unwrap_or_else(|e| panic!("{} is not a readable image: {e}", path.display())).to_rgb8();
    assert!(img.width() >= min_size.0 && img.height() >= min_size.1, "{}: {:?}", path.display(), img.dimensions());
    let inked = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    let share = inked as f64 / (img.width() * img.height()) as f64;
    assert!(share > 0.02, "{} is almost blank ({:.1}% drawn)", path.display(), 100.0 * share);
}

/// Grid, seed and denoising are in the file name, so runs that differ in
/// them keep their own files (a log-snr run used to replace a uniform one);
/// the same settings again are refused without --force, and nothing changes.
#[test]
fn sample_files_are_named_by_their_settings_and_kept() {
    let dir = tmp("names");
    train(&dir, "mixture");
    let uniform = dir.join("samples-dpm2m-10-uniform-seed0.npy");
    let text = ok(&sample_args(&dir, &[]));
    assert!(text.contains(s(&uniform)), "{text}");
    let before = (read(&uniform), read(&uniform.with_extension("png")));
    for (extra, file) in [
        (&["--grid", "log-snr"][..], "samples-dpm2m-10-log-snr-seed0.npy"),
        (&["--seed", "1"][..], "samples-dpm2m-10-uniform-seed1.npy"),
        (&["--no-denoise"][..], "samples-dpm2m-10-uniform-seed0-no-denoise.npy"),
        (&["--steps", "12"][..], "samples-dpm2m-12-uniform-seed0.npy"),
        (&["--solver", "ddim-eta:0.5"][..], "samples-ddim-eta_0.5-10-uniform-seed0.npy"),
    ] {
        let text = ok(&sample_args(&dir, extra));
        assert!(text.contains(file) && dir.join(file).is_file(), "{extra:?}: {text}");
    }
    assert_eq!((read(&uniform), read(&uniform.with_extension("png"))), before, "another run replaced the first");

    // The same settings again: refused before sampling, the files untouched.
    let err = fails(&sample_args(&dir, &["-n", "100"]));
    assert!(err.contains(s(&uniform)) && err.contains("--force"), "{err}");
    assert_eq!(read(&uniform), before.0);
    // A trajectory figure of an earlier run is refused as well.
    std::fs::write(dir.join("trajectory-dpm2m-10-uniform-seed3.png"), b"mine").unwrap();
    let err = fails(&sample_args(&dir, &["--seed", "3", "--trajectory"]));
    assert!(err.contains("trajectory-dpm2m-10-uniform-seed3.png") && err.contains("--force"), "{err}");
    assert!(!dir.join("samples-dpm2m-10-uniform-seed3.npy").exists());
    // --force replaces.
    ok(&sample_args(&dir, &["-n", "100", "--force"]));
    assert_eq!(scoresde::data::load_npy(&uniform).unwrap().nrows(), 100);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `eval --samples F` writes a table named after F, so evaluating another
/// file keeps the first table (it used to replace `eval.md`); a table that
/// would lose rows is refused without --force; re-running is harmless.
#[test]
fn eval_tables_are_per_input_and_kept() {
    let dir = tmp("eval");
    train(&dir, "mixture");
    ok(&sample_args(&dir, &[]));
    ok(&sample_args(&dir, &["--solver", "ddim"]));
    let (a, b) = (dir.join("samples-dpm2m-10-uniform-seed0.npy"), dir.join("samples-ddim-10-uniform-seed0.npy"));
    let table_a = dir.join("eval-samples-dpm2m-10-uniform-seed0.md");
    let table_b = dir.join("eval-samples-ddim-10-uniform-seed0.csv");
    let text = ok(&["eval", "--model", s(&dir), "--samples", s(&a)]);
    assert!(text.contains(s(&table_a)), "{text}");
    let first = read(&table_a);
    ok(&["eval", "--model", s(&dir), "--samples", s(&b)]);
    assert!(table_b.is_file());
    assert_eq!(read(&table_a), first, "evaluating another file replaced the first table");
    // Other seeds and references get their own tables.
    ok(&["eval", "--model", s(&dir), "--samples", s(&a), "--seed", "2"]);
    assert!(dir.join("eval-samples-dpm2m-10-uniform-seed0-seed2.md").is_file());
    ok(&["eval", "--model", s(&dir), "--samples", s(&a), "--against", s(&b)]);
    assert!(dir.join("eval-samples-dpm2m-10-uniform-seed0-vs-samples-ddim-10-uniform-seed0.md").is_file());
    // The default table over every sample file, then once more after another
    // sample: the new table holds every earlier row, so it may replace it.
    ok(&["eval", "--model", s(&dir)]);
    let score_error = read(&dir.join("score_error.csv"));
    ok(&sample_args(&dir, &["--solver", "ancestral"]));
    let text = ok(&["eval", "--model", s(&dir)]);
    let all = String::from_utf8(read(&dir.join("eval.md"))).unwrap();
    assert!(all.contains("samples-ddim") && all.contains("samples-ancestral"), "{all}\n{text}");
    assert_eq!(read(&dir.join("score_error.csv")), score_error, "the score error is reproducible");

    // New samples under the old name: the old table's numbers would be lost.
    ok(&sample_args(&dir, &["-n", "150", "--force"]));
    let err = fails(&["eval", "--model", s(&dir), "--samples", s(&a)]);
    assert!(err.contains(s(&table_a)) && err.contains("--force"), "{err}");
    assert_eq!(read(&table_a), first);
    ok(&["eval", "--model", s(&dir), "--samples", s(&a), "--force"]);
    assert_ne!(read(&table_a), first);
    // A score-error figure without its table is not redrawn over.
    std::fs::remove_file(dir.join("score_error.csv")).unwrap();
    let png = read(&dir.join("score_error.png"));
    let err = fails(&["eval", "--model", s(&dir), "--samples", s(&a)]);
    assert!(err.contains("score_error.png") && err.contains("--force"), "{err}");
    assert_eq!(read(&dir.join("score_error.png")), png);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Rows of a 5-D data set: two clusters with correlated coordinates.
fn five_d(n: usize) -> ndarray::Array2<f64> {
    let mut state = 12345u64;
    let mut uniform = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    let mut x = ndarray::Array2::<f64>::zeros((n, 5));
    for mut row in x.rows_mut() {
        let centre = if uniform() < 0.5 { -2.0 } else { 2.0 };
        let z: Vec<f64> =
            (0..5).map(|_| (-2.0 * uniform().ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos()).collect();
        for j in 0..5 {
            row[j] = centre * (j as f64 + 1.0) / 3.0 + 0.4 * z[j] + 0.3 * z[0];
        }
    }
    x
}

/// Data with more than 2 dimensions: `sample` draws a scatter matrix of the
/// first 4 dimensions (it drew nothing), `--trajectory` the paths of each of
/// them; `plot` redraws the same figure.
#[test]
fn figures_of_data_with_more_than_two_dimensions() {
    let dir = tmp("5d");
    let data = dir.join("five.npy");
    scoresde::data::save_npy(&data, &five_d(400)).unwrap();
    let run = dir.join("run");
    train(&run, s(&data));
    let text = ok(&sample_args(&run, &["--trajectory"]));
    let png = run.join("samples-dpm2m-10-uniform-seed0.png");
    let trajectory = run.join("trajectory-dpm2m-10-uniform-seed0.png");
    assert!(text.contains("pairwise scatter matrix of the first 4 of 5 dimensions"), "{text}");
    assert!(text.contains(s(&trajectory)) && text.contains("the paths of the first 24 samples"), "{text}");
    assert_drawn_png(&png, (900, 900));
    assert_drawn_png(&trajectory, (1600, 380));
    let drawn = read(&png);
    let text = ok(&["plot", "--model", s(&run)]);
    assert!(text.contains(s(&png)) && text.contains("pairwise"), "{text}");
    assert_eq!(read(&png), drawn, "plot redraws the figure `sample` drew");
    std::fs::remove_dir_all(&dir).unwrap();
}
