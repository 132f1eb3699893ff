//! Data sets: toy sets (determinism, documented moments, exact laws), `.npy`
//! IO and its errors (rows, images, labels), scaling, splits.
//!
//! Statistical checks use fixed seeds and tolerances of 5 standard errors,
//! `5 sd / sqrt(n)`, with `sd` the sample standard deviation of the averaged quantity.

use std::path::PathBuf;

use ndarray::{array, Array1, Array2, Array3, Array4, ArrayView1, Axis, ShapeBuilder as _};
use scoresde::data::{
    load_labels, load_npy, load_npy_data, save_npy, split, validate, DataSource, Dataset, ImageSet, Scaling, Toy,
    MAX_CLASSES,
};
use scoresde::Error;
use scoresde_solvers::score::GaussianMixture;

const PI: f64 = std::f64::consts::PI;

/// Asserts that two arrays have the same shape and differ by at most `eps` anywhere.
fn assert_close<D: ndarray::Dimension>(
    got: &ndarray::ArrayBase<impl ndarray::Data<Elem = f64>, D>,
    want: &ndarray::ArrayBase<impl ndarray::Data<Elem = f64>, D>,
    eps: f64,
) {
    assert_eq!(got.shape(), want.shape());
    for (g, w) in got.iter().zip(want.iter()) {
        assert!((g - w).abs() <= eps, "got {got}\nwant {want}");
    }
}

/// A fresh folder for this test's files.
fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("scoresde-data-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Asserts that the sample mean of `f(row)` over the rows of `x` is within
/// `5 sd / sqrt(n)` of `want`.
fn check_expectation(x: &Array2<f64>, what: &str, f: impl Fn(ArrayView1<f64>) -> f64, want: f64) {
    let v: Array1<f64> = x.rows().into_iter().map(f).collect();
    let n = v.len() as f64;
    let mean = v.sum() / n;
    let sd = (v.mapv(|e| (e - mean) * (e - mean)).sum() / (n - 1.0)).sqrt();
    let tol = 5.0 * sd / n.sqrt();
    assert!((mean - want).abs() <= tol, "{what}: sample mean {mean}, want {want} +- {tol}");
}

/// Checks E[x_j] and E[x_j x_k] against a mean and a covariance.
fn check_moments(x: &Array2<f64>, what: &str, mean: &Array1<f64>, cov: &Array2<f64>) {
    for j in 0..2 {
        check_expectation(x, &format!("{what} E[x{j}]"), |r| r[j], mean[j]);
        for k in j..2 {
            let want = cov[[j, k]] + mean[j] * mean[k];
            check_expectation(x, &format!("{what} E[x{j} x{k}]"), |r| r[j] * r[k], want);
        }
    }
}

#[test]
fn toy_sets_are_deterministic_in_their_seed() {
    for t in Toy::ALL {
        let a = t.sample(300, 5).unwrap();
        assert_eq!(a.dim(), (300, 2), "{t}");
        assert!(a.iter().all(|v| v.is_finite() && v.abs() < 6.0), "{t}");
        assert_eq!(a, t.sample(300, 5).unwrap(), "{t}");
        assert_ne!(a, t.sample(300, 6).unwrap(), "{t}");
        // A larger draw with the same seed starts with the same rows.
        assert_eq!(a, t.sample(400, 5).unwrap().slice(ndarray::s![..300, ..]), "{t}");
        assert!(matches!(t.sample(0, 5), Err(Error::InvalidArgument { .. })), "{t}");
        assert!(matches!(t.sample(usize::MAX, 5), Err(Error::InvalidArgument { .. })), "{t}");
        validate(a.view(), t.name()).unwrap();
    }
}

#[test]
fn toy_sets_have_their_documented_moments() {
    let n = 40_000;
    let zero = Array1::zeros(2);
    let iso = |v: f64| Array2::from_diag(&array![v, v]);

    let x = Toy::EightGaussians.sample(n, 1).unwrap();
    check_moments(&x, "eight-gaussians", &zero, &iso(2.0 + 0.25f64.powi(2)));

    let x = Toy::SwissRoll.sample(n, 2).unwrap();
    check_expectation(&x, "swiss-roll E[x]", |r| r[0], 0.4);
    check_expectation(&x, "swiss-roll E[y]", |r| r[1], 2.0 / (15.0 * PI));
    check_expectation(&x, "swiss-roll E|x|^2", |r| r.dot(&r), 0.39 * PI * PI + 0.02);

    let x = Toy::TwoMoons.sample(n, 3).unwrap();
    let s2 = 0.1f64.powi(2);
    let c = 0.5 - 4.0 / PI;
    check_moments(&x, "two-moons", &zero, &array![[3.0 + s2, c], [c, 4.0 * (9.0 / 16.0 - 1.0 / PI) + s2]]);

    let x = Toy::Checkerboard.sample(n, 4).unwrap();
    check_moments(&x, "checkerboard", &zero, &array![[4.0 / 3.0, 0.25], [0.25, 4.0 / 3.0]]);
    for r in x.rows() {
        assert!(r.iter().all(|v| (-2.0..2.0).contains(v)), "{r}");
        assert_eq!((r[0].floor() + r[1].floor()).rem_euclid(2.0), 0.0, "{r} is on a white square");
    }

    let x = Toy::Rings.sample(n, 5).unwrap();
    check_moments(&x, "rings", &zero, &iso(45.0 / 16.0 + 0.08f64.powi(2)));
    // Each ring holds a share proportional to its radius (0.75 k / 7.5 = k / 10);
    // rings are 0.75 apart, over 9 noise sds, so nearest-radius assignment is exact
    // but for ~1e-5 of points.
    for k in 1..=4 {
        let radius = 0.75 * k as f64;
        check_expectation(
            &x,
            &format!("rings share of ring {k}"),
            |r| f64::from(u8::from((r.dot(&r).sqrt() - radius).abs() < 0.375)),
            k as f64 / 10.0,
        );
    }

    let x = Toy::Mixture.sample(n, 6).unwrap();
    let law = Toy::Mixture.mixture().unwrap();
    assert_close(&law.mean(), &array![-0.3, -0.15], 1e-12);
    check_moments(&x, "mixture", &law.mean(), &law.covariance());
}

#[test]
fn exact_laws_of_the_mixture_sets() {
    for t in Toy::ALL {
        let has_law = matches!(t, Toy::EightGaussians | Toy::Mixture);
        assert_eq!(t.mixture().is_some(), has_law, "{t}");
        assert_eq!(DataSource::Toy(t).mixture().is_some(), has_law, "{t}");
    }
    let eight = Toy::EightGaussians.mixture().unwrap();
    assert_eq!((eight.dim(), eight.n_components()), (2, 8));
    assert_close(&eight.weights(), &Array1::from_elem(8, 0.125), 1e-12);
    for (k, m) in eight.means().rows().into_iter().enumerate() {
        let a = 2.0 * PI * k as f64 / 8.0;
        assert_close(&m, &array![2.0 * a.cos(), 2.0 * a.sin()].view(), 1e-12);
    }
    assert_close(
        &eight.covariances(),
        &Array3::from_shape_fn((8, 2, 2), |(_, i, j)| if i == j { 0.0625 } else { 0.0 }),
        1e-12,
    );

    let mix = Toy::Mixture.mixture().unwrap();
    assert_close(&mix.weights(), &array![0.5, 0.3, 0.2], 1e-12);
    let covs = Array3::from_shape_vec((3, 2, 2), vec![0.5, 0.3, 0.3, 0.4, 0.2, -0.15, -0.15, 0.6, 0.8, 0.0, 0.0, 0.1])
        .unwrap();
    assert_close(&mix.covariances(), &covs, 1e-12);
    // Exact draws of the law and the toy set's own draws agree in moments
    // (independent seeds: the law's sampler with its own RNG).
    let mut rng = <scoresde_solvers::Rng as rand::SeedableRng>::seed_from_u64(77);
    for (t, law) in [(Toy::EightGaussians, eight), (Toy::Mixture, mix)] {
        let exact = law.sample(40_000, &mut rng);
        let ours = t.sample(40_000, 78).unwrap();
        // Both against the law's moments, each within 5 standard errors.
        check_moments(&exact, &format!("{t} exact draws"), &law.mean(), &law.covariance());
        check_moments(&ours, &format!("{t} toy draws"), &law.mean(), &law.covariance());
    }
}

#[test]
fn npy_round_trips_f64_and_f32_into_new_folders() {
    let dir = tmpdir("roundtrip");
    let x = Toy::Mixture.sample(257, 9).unwrap();
    let p64 = dir.join("a/b/x64.npy");
    save_npy(&p64, &x).unwrap();
    assert_eq!(load_npy(&p64).unwrap(), x);
    let x32 = x.mapv(|v| v as f32);
    let p32 = dir.join("x32.npy");
    save_npy(&p32, &x32.view()).unwrap();
    assert_eq!(load_npy(&p32).unwrap(), x32.mapv(f64::from));
    // Overwriting works, and no temporary files are left behind.
    save_npy(&p32, &x).unwrap();
    assert_eq!(load_npy(&p32).unwrap(), x);
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    // Fortran order: the transpose of a C-order array is laid out column-major.
    let f = Array2::from_shape_fn((3, 5), |(i, j)| (10 * i + j) as f64).reversed_axes();
    let pf = dir.join("fortran.npy");
    save_npy(&pf, &f).unwrap();
    let bytes = std::fs::read(&pf).unwrap();
    assert!(String::from_utf8_lossy(&bytes[..128]).contains("'fortran_order': True"));
    assert_eq!(load_npy(&pf).unwrap(), f);
    // Through a DataSource too.
    let src: DataSource = p64.to_str().unwrap().parse().unwrap();
    assert_eq!(src, DataSource::Npy(p64.clone()));
    assert_eq!(src.load(1, 0).unwrap(), x);
}

/// The message of the `Error::Data` that loading `path` gives.
fn data_error(path: &std::path::Path) -> String {
    match load_npy(path) {
        Err(e @ Error::Data { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()), "no path in: {msg}");
            msg
        }
        other => panic!("{}: expected Error::Data, got {other:?}", path.display()),
    }
}

#[test]
fn bad_npy_files_give_clear_errors() {
    let dir = tmpdir("bad");
    // Missing file: an I/O error naming the path.
    let missing = dir.join("missing.npy");
    let e = load_npy(&missing).unwrap_err();
    assert!(
        matches!(&e, Error::Io { path, source } if path == &missing && source.kind() == std::io::ErrorKind::NotFound)
    );
    assert!(e.to_string().contains("missing.npy"), "{e}");

    let write = |name: &str, bytes: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    };
    let msg = data_error(&write("empty.npy", b""));
    assert!(msg.contains("empty (0 bytes)"), "{msg}");
    let msg = data_error(&write("text.npy", b"1.0,2.0\n3.0,4.0\n"));
    assert!(msg.contains("not a .npy file"), "{msg}");
    let msg = data_error(&write("header.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': garbage"));
    assert!(msg.contains("corrupt"), "{msg}");

    // A good file cut short, and one with bytes appended.
    let good = dir.join("good.npy");
    save_npy(&good, &Array2::<f64>::ones((10, 2))).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let msg = data_error(&write("truncated.npy", &bytes[..bytes.len() - 12]));
    assert!(msg.contains("truncated"), "{msg}");
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0u8; 5]);
    let msg = data_error(&write("longer.npy", &longer));
    assert!(msg.contains("5 unexpected bytes"), "{msg}");

    // Wrong element type.
    let ints = dir.join("ints.npy");
    ndarray_npy::write_npy(&ints, &Array2::<i32>::zeros((4, 2))).unwrap();
    let msg = data_error(&ints);
    assert!(msg.contains("unsupported element type") && msg.contains("i4"), "{msg}");

    // Wrong rank.
    let one = dir.join("one.npy");
    ndarray_npy::write_npy(&one, &Array1::<f64>::zeros(7)).unwrap();
    let msg = data_error(&one);
    assert!(msg.contains("got a 1-D array") && msg.contains("(n, 1)"), "{msg}");
    let three = dir.join("three.npy");
    ndarray_npy::write_npy(&three, &Array3::<f32>::zeros((2, 3, 4))).unwrap();
    let msg = data_error(&three);
    assert!(msg.contains("got a 3-D array"), "{msg}");

    // No rows, no columns.
    for (name, shape) in [("rows0.npy", (0, 2)), ("cols0.npy", (3, 0))] {
        let p = dir.join(name);
        save_npy(&p, &Array2::<f64>::zeros(shape)).unwrap();
        let msg = data_error(&p);
        assert!(msg.contains(&format!("shape ({}, {})", shape.0, shape.1)) && msg.contains("no data"), "{msg}");
    }

    // Non-finite values, in f64 and in f32 files: the first one, where it is.
    let mut x = Array2::<f64>::zeros((5, 3));
    x[[2, 1]] = f64::NAN;
    x[[4, 0]] = f64::INFINITY;
    let p = dir.join("nan.npy");
    save_npy(&p, &x).unwrap();
    let msg = data_error(&p);
    assert!(msg.contains("NaN at row 2, column 1"), "{msg}");
    let mut y = Array2::<f32>::zeros((5, 3));
    y[[3, 2]] = f32::NEG_INFINITY;
    let p = dir.join("inf32.npy");
    save_npy(&p, &y).unwrap();
    let msg = data_error(&p);
    assert!(msg.contains("-inf at row 3, column 2"), "{msg}");
}

#[test]
fn validate_reports_shape_and_first_bad_value() {
    let mut x = Array2::<f64>::zeros((4, 2));
    validate(x.view(), "training data").unwrap();
    x[[1, 1]] = f64::NAN;
    x[[3, 0]] = f64::NAN;
    let e = validate(x.view(), "training data").unwrap_err().to_string();
    assert_eq!(e, "invalid data in training data: non-finite value NaN at row 1, column 1 (0-based)");
    let e = validate(Array2::<f64>::zeros((0, 2)).view(), "held-out data").unwrap_err().to_string();
    assert!(e.contains("held-out data") && e.contains("shape (0, 2)"), "{e}");
}

#[test]
fn data_sources_parse_toy_names_and_npy_paths() {
    for t in Toy::ALL {
        assert_eq!(DataSource::parse(t.name()).unwrap(), DataSource::Toy(t));
        assert_eq!(DataSource::Toy(t).to_string(), t.name());
        assert_eq!(DataSource::Toy(t).load(10, 1).unwrap(), t.sample(10, 1).unwrap());
    }
    let dir = tmpdir("source");
    let msg = |s: &str| match DataSource::parse(s) {
        Err(e @ Error::InvalidArgument { .. }) => e.to_string(),
        other => panic!("{s}: expected InvalidArgument, got {other:?}"),
    };
    let e = msg("spirals");
    assert!(e.contains("unknown data set") && e.contains("two-moons") && e.contains(".npy"), "{e}");
    let e = msg(dir.join("nope.npy").to_str().unwrap());
    assert!(e.contains("no such .npy file"), "{e}");
    let csv = dir.join("x.csv");
    std::fs::write(&csv, "1,2\n").unwrap();
    let e = msg(csv.to_str().unwrap());
    assert!(e.contains("only .npy files"), "{e}");
}

#[test]
fn scaling_round_trips_and_standardises() {
    let x = Toy::SwissRoll.sample(1000, 11).unwrap();
    let s = Scaling::fit(x.view()).unwrap();
    let z = s.apply(x.view()).unwrap();
    for col in z.axis_iter(Axis(1)) {
        approx::assert_abs_diff_eq!(col.mean().unwrap(), 0.0, epsilon = 1e-12);
        approx::assert_abs_diff_eq!(col.mapv(|v| v * v).mean().unwrap(), 1.0, epsilon = 1e-12);
    }
    assert_close(&s.invert(z.view()).unwrap(), &x, 1e-12);

    // A constant column maps to 0, never NaN, and back.
    let c = array![[1.0, 5.0], [2.0, 5.0], [4.0, 5.0]];
    let s = Scaling::fit(c.view()).unwrap();
    assert_eq!(s.std[1], 1.0);
    let z = s.apply(c.view()).unwrap();
    assert!(z.column(1).iter().all(|v| *v == 0.0));
    assert_close(&s.invert(z.view()).unwrap(), &c, 1e-12);

    // Serde round trip; a scaling read back with a bad scale is refused on use.
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<Scaling>(&json).unwrap(), s);
    let bad = Scaling { mean: vec![0.0, 0.0], std: vec![1.0, 0.0] };
    assert!(matches!(bad.apply(c.view()), Err(Error::InvalidArgument { .. })));
    let short = Scaling { mean: vec![0.0, 0.0], std: vec![1.0] };
    assert!(matches!(short.apply(c.view()), Err(Error::InvalidArgument { .. })));
    // Wrong dimension, bad data.
    assert!(matches!(s.apply(Array2::zeros((2, 3)).view()), Err(Error::InvalidArgument { .. })));
    assert!(matches!(Scaling::fit(Array2::zeros((0, 2)).view()), Err(Error::Data { .. })));
    assert_eq!(Scaling::identity(2).apply(c.view()).unwrap(), c);
}

#[test]
fn scaling_maps_exact_laws_like_samples() {
    let law = Toy::Mixture.mixture().unwrap();
    let s = Scaling { mean: vec![0.7, -1.2], std: vec![2.0, 0.5] };
    let scaled = s.apply_to_mixture(&law).unwrap();
    assert_close(&scaled.weights(), &law.weights(), 1e-12);
    // Parameters by the formula.
    let d = array![2.0, 0.5];
    let m = array![0.7, -1.2];
    for k in 0..3 {
        let want_mean = (&law.means().row(k) - &m) / &d;
        assert_close(&scaled.means().row(k), &want_mean.view(), 1e-12);
        let c = law.covariances().index_axis(Axis(0), k).to_owned();
        let want_cov = Array2::from_shape_fn((2, 2), |(i, j)| c[[i, j]] / (d[i] * d[j]));
        assert_close(&scaled.covariances().index_axis(Axis(0), k), &want_cov.view(), 1e-12);
    }
    // Change of variables: log p_Z(z) = log p_X(x) + sum_j ln std_j, exactly.
    let x = law.sample(50, &mut <scoresde_solvers::Rng as rand::SeedableRng>::seed_from_u64(3));
    let z = s.apply(x.view()).unwrap();
    let lx = law.log_density(x.view(), 1.0, 0.0).unwrap();
    let lz = scaled.log_density(z.view(), 1.0, 0.0).unwrap();
    assert_close(&lz, &(&lx + (2f64.ln() + 0.5f64.ln())), 1e-9);
    // Scaled samples have the scaled law's moments.
    let z = s.apply(Toy::Mixture.sample(40_000, 12).unwrap().view()).unwrap();
    check_moments(&z, "scaled mixture", &scaled.mean(), &scaled.covariance());
    // Dimension mismatch.
    let one_d = GaussianMixture::gaussian(array![0.0].view(), array![[1.0]].view()).unwrap();
    assert!(matches!(s.apply_to_mixture(&one_d), Err(Error::InvalidArgument { .. })));
}

#[test]
fn splits_are_seeded_partitions() {
    let x = Toy::Rings.sample(1001, 13).unwrap();
    let (tr, ho) = split(x.view(), 0.2, 4).unwrap();
    assert_eq!((tr.nrows(), ho.nrows()), (801, 200));
    let (tr2, ho2) = split(x.view(), 0.2, 4).unwrap();
    assert_eq!((&tr, &ho), (&tr2, &ho2));
    assert_ne!(split(x.view(), 0.2, 5).unwrap().1, ho);
    // Together they hold every row once.
    let key = |r: ArrayView1<f64>| (r[0].to_bits(), r[1].to_bits());
    let mut all: Vec<_> = tr.rows().into_iter().chain(ho.rows()).map(key).collect();
    let mut want: Vec<_> = x.rows().into_iter().map(key).collect();
    all.sort_unstable();
    want.sort_unstable();
    assert_eq!(all, want);
}

#[test]
fn image_npy_files_flatten_to_rows_and_keep_their_shape() {
    let dir = tmpdir("images");
    // [n, H, W] of uint8: one channel, pixel range 0..=255.
    let u8s = Array3::from_shape_fn((3, 2, 4), |(n, h, w)| (n * 8 + h * 4 + w) as u8 * 10);
    let p = dir.join("u8.npy");
    ndarray_npy::write_npy(&p, &u8s).unwrap();
    let d = load_npy_data(&p).unwrap();
    assert_eq!(d.shape, vec![1, 2, 4]);
    assert_eq!(d.pixel_range, Some((0.0, 255.0)));
    assert_eq!((d.labels, d.classes), (None, 0));
    assert_eq!(d.x, u8s.mapv(f64::from).into_shape_with_order((3, 8)).unwrap());
    // [n, C, H, W] of float32, written in Fortran order: flattened C-major, range = min..max.
    let f = Array4::from_shape_fn((2, 3, 2, 2).f(), |(n, c, h, w)| (n * 12 + c * 4 + h * 2 + w) as f32 - 5.0);
    let p = dir.join("f32.npy");
    ndarray_npy::write_npy(&p, &f).unwrap();
    let d = load_npy_data(&p).unwrap();
    assert_eq!(d.shape, vec![3, 2, 2]);
    assert_eq!(d.pixel_range, Some((-5.0, 18.0)));
    assert_eq!(d.x.row(1).to_vec(), (12..24).map(|v| v as f64 - 5.0).collect::<Vec<_>>());
    // [n, d] of float64: tabular (standardised); of uint8: pixels.
    let rows = Toy::TwoMoons.sample(20, 1).unwrap();
    let p = dir.join("rows.npy");
    save_npy(&p, &rows).unwrap();
    let d = load_npy_data(&p).unwrap();
    assert_eq!((d.x.clone(), d.shape.clone(), d.pixel_range), (rows.clone(), vec![2], None));
    assert_eq!(d.scaling(d.x.view()).unwrap(), Scaling::fit(rows.view()).unwrap());
    let p = dir.join("rows-u8.npy");
    ndarray_npy::write_npy(&p, &Array2::<u8>::from_elem((4, 3), 7)).unwrap();
    assert_eq!(load_npy_data(&p).unwrap().pixel_range, Some((0.0, 255.0)));
    // Through a DataSource, with labels.
    let labels = dir.join("labels.npy");
    ndarray_npy::write_npy(&labels, &array![2i64, 0, 1]).unwrap();
    let src = DataSource::parse(dir.join("u8.npy").to_str().unwrap()).unwrap();
    let d = src.load_dataset(1, 0, Some(&labels)).unwrap();
    assert_eq!((d.labels, d.classes, d.shape), (Some(vec![2, 0, 1]), 3, vec![1, 2, 4]));
}

#[test]
fn bad_image_npy_files_give_clear_errors() {
    let dir = tmpdir("bad-images");
    let err = |name: &str| load_npy_data(dir.join(name)).unwrap_err().to_string();
    ndarray_npy::write_npy(dir.join("r1.npy"), &Array1::<u8>::zeros(5)).unwrap();
    let e = err("r1.npy");
    assert!(e.contains("r1.npy") && e.contains("got a 1-D array") && e.contains("(n, 1)"), "{e}");
    ndarray_npy::write_npy(dir.join("r5.npy"), &ndarray::Array5::<f32>::zeros((2, 1, 1, 2, 2))).unwrap();
    let e = err("r5.npy");
    assert!(e.contains("r5.npy") && e.contains("got a 5-D array") && e.contains("[n, C, H, W]"), "{e}");
    ndarray_npy::write_npy(dir.join("i16.npy"), &Array3::<i16>::zeros((2, 2, 2))).unwrap();
    let e = err("i16.npy");
    assert!(e.contains("unsupported element type <i2") && e.contains("uint8"), "{e}");
    let mut nan = Array3::<f64>::zeros((3, 2, 2));
    nan[[2, 1, 0]] = f64::NAN;
    ndarray_npy::write_npy(dir.join("nan.npy"), &nan).unwrap();
    let e = err("nan.npy");
    assert!(e.contains("nan.npy") && e.contains("NaN at row 2, column 2"), "{e}");
}

#[test]
fn labels_are_validated_against_the_rows() {
    let dir = tmpdir("labels");
    let path = |name: &str| dir.join(name);
    let write = |name: &str, a: &dyn Fn(&std::path::Path)| {
        a(&path(name));
        path(name)
    };
    let ok = |p: &std::path::Path, rows: usize| load_labels(p, rows).unwrap();
    let i32s = write("i32.npy", &|p| ndarray_npy::write_npy(p, &array![1i32, 0, 4]).unwrap());
    assert_eq!(ok(&i32s, 3), (vec![1, 0, 4], 5));
    let u8s = write("u8.npy", &|p| ndarray_npy::write_npy(p, &array![[3u8], [3]]).unwrap());
    assert_eq!(ok(&u8s, 2), (vec![3, 3], 4), "[n, 1] works too");
    let floats = write("f64.npy", &|p| ndarray_npy::write_npy(p, &array![0.0f64, 2.0]).unwrap());
    assert_eq!(ok(&floats, 2), (vec![0, 2], 3));
    let f32s = write("f32.npy", &|p| ndarray_npy::write_npy(p, &array![1.0f32]).unwrap());
    assert_eq!(ok(&f32s, 1), (vec![1], 2));

    let err = |p: &std::path::Path, rows: usize| {
        let e = load_labels(p, rows).unwrap_err();
        assert!(matches!(e, Error::Data { .. }), "{e:?}");
        let e = e.to_string();
        assert!(e.contains(&p.display().to_string()), "{e}");
        e
    };
    assert!(err(&i32s, 4).contains("3 labels for 4 rows"));
    let e = err(&write("neg.npy", &|p| ndarray_npy::write_npy(p, &array![0i64, -1]).unwrap()), 2);
    assert!(e.contains("label -1 at index 1 is negative"), "{e}");
    let e = err(&write("half.npy", &|p| ndarray_npy::write_npy(p, &array![0.5f64, 1.0]).unwrap()), 2);
    assert!(e.contains("label 0.5 at index 0 is not an integer"), "{e}");
    let e = err(&write("nan.npy", &|p| ndarray_npy::write_npy(p, &array![1.0, f64::NAN]).unwrap()), 2);
    assert!(e.contains("index 1 is not an integer"), "{e}");
    let big = MAX_CLASSES as i64;
    let e = err(&write("big.npy", &|p| ndarray_npy::write_npy(p, &array![0i64, big]).unwrap()), 2);
    assert!(e.contains(&format!("label {big} at index 1 is out of range")), "{e}");
    let e = err(&write("wide.npy", &|p| ndarray_npy::write_npy(p, &Array2::<i64>::zeros((2, 2))).unwrap()), 2);
    assert!(e.contains("1-D array") && e.contains("[2, 2]"), "{e}");
    let e = err(&write("bool.npy", &|p| ndarray_npy::write_npy(p, &array![true, false]).unwrap()), 2);
    assert!(e.contains("unsupported element type |b1"), "{e}");

    // Only .npy data take a labels file.
    for src in [DataSource::Toy(Toy::Mixture), DataSource::Images(ImageSet::Digits)] {
        let e = src.load_dataset(10, 0, Some(&i32s)).unwrap_err().to_string();
        assert!(e.contains("`labels`") && e.contains("for .npy data") && e.contains(&src.to_string()), "{e}");
    }
}

#[test]
fn images_scale_from_their_pixel_range_to_exactly_minus_one_to_one() {
    for (lo, hi) in [(0.0, 255.0), (0.0, 16.0)] {
        let s = Scaling::from_range(lo, hi, 3).unwrap();
        let z = s.apply(array![[lo, hi, 0.5 * (lo + hi)]].view()).unwrap();
        assert_eq!(z, array![[-1.0, 1.0, 0.0]], "[{lo}, {hi}]");
        assert_eq!(s.invert(z.view()).unwrap(), array![[lo, hi, 0.5 * (lo + hi)]]);
    }
    // Any float range: the ends to within rounding.
    let s = Scaling::from_range(-0.3, 0.7, 1).unwrap();
    let z = s.apply(array![[-0.3], [0.7]].view()).unwrap();
    assert!((z[[0, 0]] + 1.0).abs() < 1e-15 && (z[[1, 0]] - 1.0).abs() < 1e-15, "{z}");
    // A constant image maps to 0; a bad range is an error.
    assert_eq!(Scaling::from_range(3.0, 3.0, 2).unwrap().apply(array![[3.0, 3.0]].view()).unwrap(), array![[0.0, 0.0]]);
    for (lo, hi) in [(1.0, 0.0), (f64::NAN, 1.0), (0.0, f64::INFINITY)] {
        assert!(Scaling::from_range(lo, hi, 1).is_err(), "[{lo}, {hi}]");
    }
    // A Dataset with a pixel range scales by it, whatever the training rows span.
    let d = Dataset {
        x: array![[0.0, 10.0], [4.0, 16.0]],
        shape: vec![1, 1, 2],
        labels: None,
        classes: 0,
        pixel_range: Some((0.0, 16.0)),
    };
    assert_eq!(d.scaling(d.x.view()).unwrap(), Scaling::from_range(0.0, 16.0, 2).unwrap());
}

#[test]
fn image_sets_parse_by_name() {
    for i in ImageSet::ALL {
        assert_eq!(DataSource::parse(i.name()).unwrap(), DataSource::Images(i));
        assert_eq!(DataSource::Images(i).to_string(), i.name());
        assert!(DataSource::Images(i).mixture().is_none());
    }
    let e = DataSource::parse("spirals").unwrap_err().to_string();
    assert!(e.contains("mnist, digits"), "{e}");
}
