//! `scoresde sample --shard K/N` and `scoresde merge-shards` on a tiny trained
//! network (tch tensors on the CPU): the merged shards are the unsharded run
//! bit for bit, for an SDE sampler (ancestral), an ODE sampler (ode-heun) and
//! a multistep one (dpm2m), at two batch sizes; and every bad input (a
//! malformed K/N, too many shards, shards of different runs, seeds, solvers
//! or checkpoints, a missing, repeated or reshaped shard) is a clear error.

use std::path::{Path, PathBuf};

use ndarray::Array2;

mod common;
use common::*;

fn train(dir: &Path, extra: &[&str]) {
    let mut args = vec!["train", "--steps", "20", "--out", s(dir)];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(extra);
    ok(&args);
}

/// `sample` with the test's settings and `extra`; its output.
fn sample(model: &Path, solver: &str, extra: &[&str]) -> String {
    let mut args =
        vec!["sample", "--model", s(model), "--solver", solver, "--steps", "4", "-n", "30", "--device", "cpu"];
    args.extend_from_slice(extra);
    ok(&args)
}

fn bits(x: &Array2<f64>) -> Vec<u64> {
    x.iter().map(|v| v.to_bits()).collect()
}

fn npy(path: &Path) -> Array2<f64> {
    scoresde::data::load_npy(path).unwrap()
}

/// The unsharded run's file name for `solver` and `seed`.
fn whole_name(solver: &str, seed: u32) -> String {
    format!("samples-{solver}-4-uniform-seed{seed}.npy")
}

/// The folder and file of shard `k` of `n` written to its default folder.
fn shard_file(model: &Path, solver: &str, seed: u32, k: usize, n: usize) -> PathBuf {
    model.join(format!("shard{k}of{n}")).join(format!("samples-{solver}-4-uniform-seed{seed}-shard{k}of{n}.npy"))
}

/// A run of `args` that clap refuses: exit code 2 and no panic; its stderr.
fn refused(args: &[&str]) -> String {
    let out = run(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn merged_shards_are_the_unsharded_run_bit_for_bit() {
    let dir = tmp("merge");
    let model = dir.join("m");
    train(&model, &[]);
    for (solver, batch, shards) in
        [("ancestral", "5", 3), ("ancestral", "10", 2), ("ode-heun", "5", 2), ("dpm2m", "5", 2)]
    {
        let whole_dir = dir.join(format!("whole-{solver}-{batch}"));
        sample(&model, solver, &["--batch", batch, "--out", s(&whole_dir)]);
        let whole = npy(&whole_dir.join(whole_name(solver, 0)));
        assert_eq!(whole.dim(), (30, 2));
        let mut parts = Vec::new();
        for k in 0..shards {
            let text = sample(&model, solver, &["--batch", batch, "--shard", &format!("{k}/{shards}")]);
            assert!(text.contains(&format!("shard {k}/{shards}: samples ")), "{text}");
            let file = shard_file(&model, solver, 0, k, shards);
            assert!(file.with_extension("json").is_file(), "{text}");
            parts.push(npy(&file));
            assert!(parts[k].nrows() < 30);
        }
        // The shards are contiguous blocks of the run's rows...
        let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
        let joined = ndarray::concatenate(ndarray::Axis(0), &views).unwrap();
        assert_eq!(bits(&joined), bits(&whole), "{solver} --batch {batch}: shards differ from the whole run");
        // ... and merge-shards writes them, in order, where the unsharded run writes.
        let folders: Vec<PathBuf> = (0..shards).rev().map(|k| model.join(format!("shard{k}of{shards}"))).collect();
        let mut args = vec!["merge-shards"];
        args.extend(folders.iter().map(|f| s(f)));
        let text = ok(&args);
        let merged = model.join(whole_name(solver, 0));
        assert!(text.contains(&format!("merged {shards} shards (30 samples of 2 values)")), "{text}");
        assert_eq!(bits(&npy(&merged)), bits(&whole), "{solver} --batch {batch}: merged file differs");
        // Not twice without --force; the shard folders are cleared for the next case.
        let e = fails(&args);
        assert!(e.contains("exists") && e.contains("--force"), "{e}");
        std::fs::remove_file(&merged).unwrap();
        for f in &folders {
            std::fs::remove_dir_all(f).unwrap();
        }
    }
    // Batch-size independence through the network: batches of 5 and 10 give
    // the same samples up to the f32 rounding of the network's batched kernels
    // (another seed moves them by O(1)).
    let (a, b) = (npy(&dir.join("whole-ancestral-5").join(whole_name("ancestral", 0))), {
        npy(&dir.join("whole-ancestral-10").join(whole_name("ancestral", 0)))
    });
    let diff = a.iter().zip(b.iter()).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    assert!(diff < 1e-3, "batches of 5 and 10 differ by {diff}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_shards_and_bad_merges_are_clear_errors() {
    let dir = tmp("bad");
    let model = dir.join("m");
    train(&model, &[]);
    let m = s(&model);
    let base = ["sample", "--model", m, "--steps", "4", "-n", "30", "--device", "cpu", "--solver", "ancestral"];
    let with = |extra: &[&str]| -> Vec<String> { base.iter().chain(extra).map(|v| v.to_string()).collect() };
    for (spec, says) in [
        ("2/2", "must be below N"),
        ("0/0", "at least 1"),
        ("1", "expected K/N"),
        ("a/2", "not a non-negative integer"),
        ("-1/2", "not a non-negative integer"),
    ] {
        let args = with(&["--shard", spec]);
        let e = refused(&strs(&args));
        assert!(e.contains("--shard") && e.contains(says), "{spec}: {e}");
    }
    // More shards than batches.
    let args = with(&["--shard", "0/4", "--batch", "10"]);
    let e = fails(&strs(&args));
    assert!(e.contains("3 batch(es), fewer than 4 shards") && e.contains("at most 8"), "{e}");

    // Shards of one run (seed 0, --batch 10), and of others.
    let shard = |k: usize, n: usize, extra: &[&str], out: &Path| {
        let mut args = with(&["--batch", "10", "--shard", &format!("{k}/{n}"), "--out", s(out)]);
        args.extend(extra.iter().map(|v| v.to_string()));
        ok(&strs(&args));
    };
    let sh = |name: &str| dir.join(name);
    shard(0, 3, &[], &sh("a0"));
    shard(1, 3, &[], &sh("a1"));
    shard(2, 3, &[], &sh("a2"));
    shard(1, 3, &["--seed", "1"], &sh("seed1"));
    shard(1, 3, &["--grid", "quadratic"], &sh("quadratic"));
    let mut heun = with(&["--batch", "10", "--shard", "1/3", "--out", s(&sh("heun"))]);
    let at = heun.iter().position(|v| v == "ancestral").unwrap();
    heun[at] = "ode-heun".into();
    ok(&strs(&heun));
    shard(1, 2, &[], &sh("of2"));
    let other = dir.join("other");
    train(&other, &["--seed", "1"]);
    let mut retrained = with(&["--batch", "10", "--shard", "1/3", "--out", s(&sh("other1"))]);
    retrained[2] = s(&other).to_string();
    ok(&strs(&retrained));
    let merge = |parts: &[&str]| -> String {
        let mut args = vec!["merge-shards".to_string(), "--out".into(), s(&dir.join("merged.npy")).into()];
        args.extend(parts.iter().map(|p| s(&sh(p)).to_string()));
        fails(&strs(&args))
    };
    let e = merge(&["a0", "seed1", "a2"]);
    assert!(e.contains("shards of different runs") && e.contains("seed: 0 vs 1"), "{e}");
    let e = merge(&["a0", "quadratic", "a2"]);
    assert!(e.contains("grid: \"uniform\" vs \"quadratic\""), "{e}");
    let e = merge(&["a0", "heun", "a2"]);
    assert!(e.contains("solver: \"ancestral\" vs \"ode-heun\""), "{e}");
    let e = merge(&["a0", "other1", "a2"]);
    assert!(e.contains("checkpoint_sha256"), "{e}");
    let e = merge(&["a0", "of2"]);
    assert!(e.contains("shard 1/2") && e.contains("share N"), "{e}");
    let e = merge(&["a0", "a2"]);
    assert!(e.contains("missing shard(s) 1/3") && e.contains("found 0/3, 2/3"), "{e}");
    // A copy of a shard is a second shard 1/3 (the same file twice counts once).
    copy_dir(&sh("a1"), &sh("a1-copy"));
    let e = merge(&["a0", "a1", "a1-copy", "a2"]);
    assert!(e.contains("shard 1/3 is given twice"), "{e}");
    let e = merge(&["x-none"]);
    assert!(e.contains("no such shard sidecar"), "{e}");
    // A shard's file with another shape than its sidecar says.
    let file = sh("a1").join("samples-ancestral-4-uniform-seed0-shard1of3.npy");
    let mut w = scoresde::data::NpyWriter::create(&file, 9, 2).unwrap();
    w.append(Array2::<f64>::zeros((9, 2)).view()).unwrap();
    w.finish().unwrap();
    let e = merge(&["a0", "a1", "a2"]);
    assert!(e.contains("9 x 2 samples, but shard 1/3 of this run holds 10 x 2"), "{e}");
    // A sidecar edited to claim other rows.
    let json = sh("a2").join("samples-ancestral-4-uniform-seed0-shard2of3.json");
    let text = std::fs::read_to_string(&json).unwrap().replace("\"shard\": 2", "\"shard\": 1");
    std::fs::write(&json, text).unwrap();
    let e = merge(&["a0", "a2"]);
    assert!(e.contains("holds rows 20..30, but shard 1/3"), "{e}");
    std::fs::write(&json, "{ not json").unwrap();
    let e = merge(&["a2"]);
    assert!(e.contains("not a scoresde shard sidecar"), "{e}");
    assert!(!dir.join("merged.npy").exists(), "no output from a refused merge");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}
