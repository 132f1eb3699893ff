//! Sizes are checked before anything that size is allocated: `.npy` headers
//! against the file, network sizes against their caps (with checked
//! arithmetic), a training step against the machine's memory. Also the pieces
//! that let sampling run in bounded memory: the streaming `.npy` writer, per-row
//! noise streams, and the out-of-range report.

use std::time::Instant;

use ndarray::{array, s, Array2};
use scoresde::checkpoint::DataInfo;
use scoresde::data::{
    load_npy, load_npy_head, npy_file_bytes, save_npy, split, split_sizes, DataRange, NpyWriter, RangeReport,
    MIN_HELDOUT_ROWS, MIN_TRAIN_ROWS,
};
use scoresde::model::SdeSpec;
use scoresde::net::{NetConfig, TimeEmbedding};
use scoresde::solvers::{Noise, RowNoise};
use scoresde::train::{step_bytes, TrainConfig, Trainer};
use scoresde::Error;
use tch::{Device, Kind, Tensor};

mod common;
use common::{npy_bytes, tmp};

fn invalid_name(e: &Error) -> &str {
    match e {
        Error::InvalidArgument { name, .. } => name,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn npy_header_shape_is_checked_against_the_file_length() {
    let dir = tmp("npy");
    // A 1 KB file claiming 1e11 x 64 float64 values: an error, not a 51 TB allocation.
    let huge = dir.join("huge.npy");
    std::fs::write(&huge, npy_bytes("<f8", &[100_000_000_000, 64], &[0u8; 1024])).unwrap();
    let e = load_npy(&huge).unwrap_err().to_string();
    assert!(e.contains("huge.npy") && e.contains("truncated") && e.contains("(100000000000, 64)"), "{e}");
    assert!(e.contains("51200000000000 bytes") && e.contains("1024"), "{e}");
    // A shape whose byte count overflows 64 bits.
    let over = dir.join("over.npy");
    std::fs::write(&over, npy_bytes("<f8", &[10_000_000_000, 10_000_000_000], &[0u8; 16])).unwrap();
    let e = load_npy(&over).unwrap_err().to_string();
    assert!(e.contains("overflows") && e.contains("(10000000000, 10000000000)"), "{e}");
    // The header as written here is a valid file when the data is all there.
    let good = dir.join("good.npy");
    let values: Vec<u8> = (0..6).flat_map(|i| f64::from(i).to_le_bytes()).collect();
    std::fs::write(&good, npy_bytes("<f8", &[3, 2], &values)).unwrap();
    assert_eq!(load_npy(&good).unwrap(), array![[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_head_of_a_large_npy_file_is_read_without_the_rest() {
    let dir = tmp("head");
    let x = Array2::from_shape_fn((100, 3), |(i, j)| (i * 3 + j) as f64);
    let p64 = dir.join("x64.npy");
    save_npy(&p64, &x).unwrap();
    let (head, rows) = load_npy_head(&p64, 10).unwrap();
    assert_eq!((head, rows), (x.slice(s![..10, ..]).to_owned(), 100));
    let p32 = dir.join("x32.npy");
    save_npy(&p32, &x.mapv(|v| v as f32)).unwrap();
    assert_eq!(load_npy_head(&p32, 7).unwrap(), (x.slice(s![..7, ..]).to_owned(), 100));
    // Fortran order and small files are read whole; the count is the file's.
    let pf = dir.join("fortran.npy");
    save_npy(&pf, &x.t().as_standard_layout().t()).unwrap();
    assert_eq!(load_npy_head(&pf, 5).unwrap(), (x.slice(s![..5, ..]).to_owned(), 100));
    assert_eq!(load_npy_head(&p64, 1000).unwrap(), (x.clone(), 100));
    // NaN past the head is not read; a lying header is still an error.
    let mut y = x.clone();
    y[[50, 1]] = f64::NAN;
    save_npy(&p64, &y).unwrap();
    assert_eq!(load_npy_head(&p64, 10).unwrap().0, x.slice(s![..10, ..]));
    assert!(load_npy_head(&p64, 60).unwrap_err().to_string().contains("row 50"));
    let huge = dir.join("huge.npy");
    std::fs::write(&huge, npy_bytes("<f8", &[100_000_000_000, 64], &[0u8; 1024])).unwrap();
    assert!(load_npy_head(&huge, 10).unwrap_err().to_string().contains("truncated"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn npy_writer_streams_blocks_and_renames_at_the_end() {
    let dir = tmp("writer");
    let path = dir.join("out/x.npy");
    let x = Array2::from_shape_fn((10, 3), |(i, j)| (i * 3 + j) as f64 - 4.5);
    let mut w = NpyWriter::create(&path, 10, 3).unwrap();
    for block in [x.slice(s![..4, ..]), x.slice(s![4..9, ..]), x.slice(s![9.., ..])] {
        assert!(!path.exists(), "nothing under the final name before finish");
        w.append(block).unwrap();
    }
    assert_eq!(w.rows_written(), 10);
    assert_eq!(w.finish().unwrap(), path);
    assert_eq!(load_npy(&path).unwrap(), x);
    // Same bytes as the in-memory writer, and the size it announces.
    let whole = dir.join("whole.npy");
    save_npy(&whole, &x).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(&whole).unwrap());
    assert_eq!(npy_file_bytes(10, 3), Some(std::fs::metadata(&path).unwrap().len()));
    assert_eq!(npy_file_bytes(u64::MAX, 2), None);

    // Wrong width, too many rows, too few rows: errors; a writer dropped
    // half-way leaves the old file untouched and no temporary behind.
    let mut w = NpyWriter::create(&path, 4, 3).unwrap();
    assert!(w.append(Array2::zeros((1, 2)).view()).is_err());
    w.append(Array2::zeros((3, 3)).view()).unwrap();
    assert!(w.append(Array2::zeros((2, 3)).view()).is_err());
    let e = w.finish().unwrap_err().to_string();
    assert!(e.contains("announces 4 rows"), "{e}");
    let w = NpyWriter::create(&path, 4, 3).unwrap();
    drop(w);
    assert_eq!(load_npy(&path).unwrap(), x, "the earlier file is kept");
    let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["x.npy"], "no temporary files left");
    assert!(NpyWriter::create(dir.join("e.npy"), 0, 3).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn range_report_counts_rows_outside_and_the_largest_factor() {
    let data = array![[0.0, -1.0], [2.0, 1.0], [1.0, 0.0]];
    let range = DataRange::fit(data.view()).unwrap();
    assert_eq!(range, DataRange { min: vec![0.0, -1.0], max: vec![2.0, 1.0] });
    let mut report = RangeReport::new(range.clone());
    report.add(data.view()).unwrap();
    assert_eq!((report.rows(), report.outside()), (3, 0));
    assert!(report.max_factor() <= 1.0);
    // Column 0 has centre 1, half-width 1: 21 is 20 half-widths out; column 1's
    // 1.5 is 1.5 out. Two rows of three are outside, streamed in two blocks.
    report.add(array![[21.0, 0.0], [1.0, 1.5]].view()).unwrap();
    report.add(array![[0.5, 0.5]].view()).unwrap();
    assert_eq!((report.rows(), report.outside()), (6, 2));
    assert_eq!((report.max_factor(), report.worst_column()), (20.0, 0));
    assert!(report.add(Array2::zeros((1, 3)).view()).is_err());
    // NaN counts as outside.
    report.add(array![[f64::NAN, 0.0]].view()).unwrap();
    assert_eq!(report.outside(), 3);
    // A range read from a file is checked.
    assert!(DataRange { min: vec![1.0], max: vec![0.0] }.check().is_err());
    assert!(DataRange { min: vec![0.0], max: vec![f64::NAN] }.check().is_err());
    assert!(DataRange { min: vec![0.0, 1.0], max: vec![1.0] }.check().is_err());
    range.check().unwrap();
}

#[test]
fn checkpoints_without_a_range_still_describe_the_same_data() {
    let range = Some(DataRange { min: vec![0.0], max: vec![1.0] });
    let info = DataInfo {
        source: "x".into(),
        rows: 9,
        mean: vec![0.5],
        std: vec![0.3],
        sha256: None,
        range: range.clone(),
        shape: vec![1],
    };
    let old = DataInfo { range: None, ..info.clone() };
    assert!(info.same_data(&old) && old.same_data(&info));
    let other = DataInfo { range: Some(DataRange { min: vec![0.0], max: vec![2.0] }), ..info.clone() };
    assert!(!info.same_data(&other));
    assert!(!info.same_data(&DataInfo { rows: 10, ..old.clone() }));
    // Old sidecars (no `range` key) parse, and new ones without a range omit it.
    let json = serde_json::to_string(&old).unwrap();
    assert!(!json.contains("range"), "{json}");
    assert_eq!(serde_json::from_str::<DataInfo>(&json).unwrap(), old);
}

#[test]
fn split_sizes_match_the_split_and_the_minimums_are_documented() {
    let x = Array2::<f64>::zeros((23, 1));
    for f in [0.05, 0.1, 0.5, 0.9] {
        let (t, h) = split(x.view(), f, 0).unwrap();
        assert_eq!(split_sizes(23, f).unwrap(), (t.nrows(), h.nrows()), "fraction {f}");
    }
    assert!(split_sizes(1, 0.1).is_err() && split_sizes(10, 1.0).is_err());
    assert_eq!((MIN_TRAIN_ROWS, MIN_HELDOUT_ROWS), (10, 2));
}

#[test]
fn network_sizes_are_capped_before_allocating_and_blame_the_right_size() {
    let base = NetConfig::mlp(2);
    let check = |c: NetConfig| {
        let started = Instant::now();
        let e = c.validate().unwrap_err();
        assert!(started.elapsed().as_secs_f64() < 1.0, "validate took {:?}", started.elapsed());
        (invalid_name(&e).to_string(), e.to_string())
    };
    let (name, msg) = check(NetConfig { depth: 1_000_000_000, ..base.clone() });
    assert_eq!(name, "depth", "{msg}");
    assert!(msg.contains("at most 1024"), "{msg}");
    let (name, _) = check(NetConfig { width: 1 << 40, ..base.clone() });
    assert_eq!(name, "width");
    let (name, _) =
        check(NetConfig { embedding: TimeEmbedding::Sinusoidal { dim: 1_000_000_000_000 }, ..base.clone() });
    assert_eq!(name, "embedding dim");
    // Each size under its cap, but too many parameters together.
    let (name, msg) = check(NetConfig { width: 60_000, depth: 1000, ..base.clone() });
    assert_eq!(name, "width", "{msg}");
    assert!(msg.contains("parameters") && msg.contains("999 more hidden layers"), "{msg}");
    let (name, msg) = check(NetConfig {
        width: 16,
        depth: 1,
        embedding: TimeEmbedding::Sinusoidal { dim: 16_000 },
        dim: usize::MAX / 2,
        ..base.clone()
    });
    assert_eq!(name, "dim", "{msg}");
    let (name, msg) = check(NetConfig {
        width: 40_000,
        depth: 1,
        embedding: TimeEmbedding::Sinusoidal { dim: 1 << 16 },
        ..base.clone()
    });
    assert_eq!(name, "embedding dim", "{msg}");
    // Counting never overflows.
    let absurd = NetConfig { width: usize::MAX, depth: usize::MAX, ..base.clone() };
    assert_eq!(absurd.num_params(), usize::MAX);
    assert!(step_bytes(&absurd, usize::MAX) == u64::MAX);
    base.validate().unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn a_training_step_larger_than_memory_is_refused_before_allocating() {
    let memory = scoresde::fsutil::memory_bytes().expect("/proc/meminfo is readable on Linux");
    let net = NetConfig { width: 64, depth: 1024, ..NetConfig::mlp(2) };
    let per_row = step_bytes(&net, 1) - step_bytes(&net, 0);
    let batch = usize::try_from(memory / per_row).unwrap() + 1;
    assert!(step_bytes(&net, batch) > memory / 2);
    let data = Array2::<f64>::zeros((4, 2));
    let config = TrainConfig { batch_size: batch, ..TrainConfig::default() };
    let started = Instant::now();
    let e = Trainer::new(net.clone(), SdeSpec::default(), config, &data, Device::Cpu).unwrap_err();
    assert!(started.elapsed().as_secs_f64() < 5.0);
    assert_eq!(invalid_name(&e), "batch size", "{e}");
    assert!(e.to_string().contains("GB") && e.to_string().contains("rows fit"), "{e}");
    // A batch that fits is accepted.
    let config = TrainConfig { batch_size: 8, ..TrainConfig::default() };
    Trainer::new(NetConfig { width: 8, depth: 1, ..net }, SdeSpec::default(), config, &data, Device::Cpu).unwrap();
}

#[test]
fn row_noise_gives_each_row_its_own_stream_whatever_the_batching() {
    let like = |rows: i64| Tensor::zeros([rows, 3], (Kind::Float, Device::Cpu));
    // Prior draw then two steps, for rows 0..10 at once and in batches 0..4, 4..10.
    let draws = |rows: std::ops::Range<u64>| -> Vec<Tensor> {
        let mut noise = RowNoise::new(7, rows.clone());
        let n = (rows.end - rows.start) as i64;
        let first = noise.normal(&like(n));
        let mut out = vec![first];
        for _ in 0..2 {
            out.push(noise.step_normal(1.0, 0.5, &like(n)).unwrap());
        }
        out
    };
    let whole = draws(0..10);
    let (a, b) = (draws(0..4), draws(4..10));
    for k in 0..3 {
        assert!(whole[k].equal(&Tensor::cat(&[&a[k], &b[k]], 0)), "draw {k} depends on the batching");
    }
    assert!(!whole[0].equal(&whole[1]), "successive draws differ");
    // Another seed, other numbers; a shape that does not fit the streams is an error.
    let mut other = RowNoise::new(8, 0..10);
    assert!(!other.normal(&like(10)).equal(&whole[0]));
    assert!(other.step_normal(1.0, 0.5, &like(9)).is_err());
    // Doubles for Double tensors.
    let d = RowNoise::new(7, 0..2).normal(&Tensor::zeros([2, 3], (Kind::Double, Device::Cpu)));
    assert_eq!(d.kind(), Kind::Double);
}
