//! Bad input on the command line, table-driven: every row runs `scoresde`
//! once and checks that it fails the way it should.
//!
//! For each row: the exit code (1 for a bad value or file, 2 for a command
//! line that clap or `main` rejects as usage), no panic, abort or libtorch
//! exception, and an error message that names the problem (each substring of
//! the row must appear on stderr). One tiny run folder (and the fixtures made
//! from it: corrupt checkpoints, bad `.npy` files) is built first and
//! fingerprinted; after every row has run, not one byte, mtime or file of it
//! may have changed. Rows that legitimately write use `{out}`, a fresh folder
//! of their own outside the fingerprinted tree.
//!
//! Adding a case is adding one row to [`cases`]. Placeholders in a row's
//! arguments: `{run}` (the trained run folder), `{cond}` (a class-conditional
//! run with a classifier), `{fx}` (the fixtures folder, see [`make_fixtures`]),
//! `{out}` (a fresh, not yet existing folder for this row); `''` is an empty
//! argument. Every row runs with `SCORESDE_DATA={fx}/cache`, an image-data
//! cache holding a corrupt `digits.csv.gz` and no `mnist_5k.csv.gz`.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ndarray::Array2;
use scoresde::data::save_npy;

mod common;
use common::{npy_bytes, s};

/// When a row applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    Always,
    /// Only when not running as root (root ignores file permissions).
    NotRoot,
    /// Only when this machine has no usable CUDA device.
    NoCuda,
}

/// One bad command line and how `scoresde` must answer it.
#[derive(Debug, Clone)]
struct Case {
    /// What the row is about (printed in failures).
    name: &'static str,
    /// The arguments, separated by blanks, with placeholders.
    args: &'static str,
    /// The exit code.
    exit: i32,
    /// Substrings that must all appear on stderr.
    expect: &'static [&'static str],
    when: When,
}

/// A row: `scoresde ARGS` exits with `exit` and stderr holds every `expect`.
const fn case(name: &'static str, args: &'static str, exit: i32, expect: &'static [&'static str]) -> Case {
    Case { name, args, exit, expect, when: When::Always }
}

impl Case {
    const fn unless_root(mut self) -> Self {
        self.when = When::NotRoot;
        self
    }

    const fn without_cuda(mut self) -> Self {
        self.when = When::NoCuda;
        self
    }
}

/// Exit code of a bad value or file.
const BAD: i32 = 1;
/// Exit code of a usage error (clap, or a contradictory command line).
const USAGE: i32 = 2;

/// The table. Sample and train rows pass `--device cpu` unless the device is
/// the point, so that a GPU machine does not spend seconds starting CUDA.
fn cases() -> Vec<Case> {
    vec![
        // ---- usage errors (clap): exit 2 ----
        case("no subcommand", "", USAGE, &["Usage: scoresde [OPTIONS] <COMMAND>"]),
        case("unknown subcommand", "frobnicate", USAGE, &["unrecognized subcommand 'frobnicate'"]),
        case("unknown option", "sample --bogus", USAGE, &["unexpected argument '--bogus'"]),
        case("sample --steps negative", "sample --steps=-3", USAGE, &["'--steps <STEPS>'", "invalid digit"]),
        case(
            "sample --steps absurd",
            "sample --steps 99999999999999999999999",
            USAGE,
            &["'--steps <STEPS>'", "too large"],
        ),
        case("sample -n negative", "sample -n=-5", BAD, &["-n -5", "at least 1 sample"]),
        case("sample --guidance without --class", "sample --guidance 2", USAGE, &["--class <K>", "required"]),
        case(
            "sample --classifier with --cfg",
            "sample --class 1 --cfg --classifier {cond}/classifier",
            USAGE,
            &["'--cfg' cannot be used with '--classifier <CKPT>'"],
        ),
        case(
            "train --save-train with --resume",
            "train --resume --save-train {out}/x.npy",
            USAGE,
            &["'--resume' cannot be used with '--save-train <FILE>'"],
        ),
        case(
            "train --save-train under a file",
            "train --data two-moons --n 100 --save-train {run}/model.json/x.npy",
            BAD,
            &["I/O error", "model.json"],
        ),
        case(
            "train --resume with --force",
            "train --resume --force",
            USAGE,
            &["'--resume' cannot be used with '--force'"],
        ),
        case(
            "train unknown --weighting",
            "train --weighting nope",
            USAGE,
            &["'--weighting <WEIGHTING>'", "eps, likelihood"],
        ),
        case("train --out empty", "train --out ''", USAGE, &["a value is required for '--out <OUT>'"]),
        case(
            "train-classifier --conditional",
            "train-classifier --conditional --out {out}",
            USAGE,
            &["--conditional is for `scoresde train`"],
        ),
        case("eval --samples without value", "eval --samples", USAGE, &["'--samples <FILE>'", "a value is required"]),
        // ---- devices ----
        case("sample --device unknown", "sample --model {run} --device tpu", BAD, &["`device` = \"tpu\"", "`cpu`"]),
        case("sample --device empty", "sample --model {run} --device ''", BAD, &["`device` = \"\"", "`cuda:N`"]),
        case(
            "sample --device cuda:4096 (no such GPU)",
            "sample --model {run} --device cuda:4096",
            BAD,
            &["device `cuda:4096` is not available"],
        ),
        case(
            "sample --device cuda without a GPU",
            "sample --model {run} --device cuda",
            BAD,
            &["device `cuda` is not available", "CUDA is not available"],
        )
        .without_cuda(),
        case("demo --device unknown", "demo --device gpu0 --out {out}", BAD, &["`device` = \"gpu0\""]),
        // ---- train: data ----
        case(
            "train --data a folder",
            "train --data {fx} --out {out} --device cpu",
            BAD,
            &["`data`", "only .npy files are read"],
        ),
        case(
            "train --data a folder named .npy",
            "train --data {fx}/dir.npy --out {out} --device cpu",
            BAD,
            &["`data`", "dir.npy"],
        ),
        case(
            "train --data int64 .npy",
            "train --data {fx}/int64.npy --out {out} --device cpu",
            BAD,
            &["int64.npy", "unsupported element type", "<i8"],
        ),
        case(
            "train --data 1-D .npy",
            "train --data {fx}/rank1.npy --out {out} --device cpu",
            BAD,
            &["rank1.npy", "got a 1-D array", "shape (n, 1)"],
        ),
        case(
            "train --data empty file",
            "train --data {fx}/empty.npy --out {out} --device cpu",
            BAD,
            &["empty.npy", "the file is empty"],
        ),
        case(
            "train --data text as .npy",
            "train --data {fx}/text.npy --out {out} --device cpu",
            BAD,
            &["text.npy", "not a .npy file"],
        ),
        case(
            "train --data truncated .npy",
            "train --data {fx}/truncated.npy --out {out} --device cpu",
            BAD,
            &["truncated.npy", "truncated"],
        ),
        case(
            "train --data with inf",
            "train --data {fx}/inf.npy --out {out} --device cpu",
            BAD,
            &["inf.npy", "non-finite value inf at row 4, column 0"],
        ),
        case(
            "train --data with 0 rows",
            "train --data {fx}/rows0.npy --out {out} --device cpu",
            BAD,
            &["rows0.npy", "shape (0, 2)"],
        ),
        case(
            "train --data with 1 row",
            "train --data {fx}/row1.npy --out {out} --device cpu",
            BAD,
            &["1 rows", "at least 2 rows"],
        ),
        case("train --n 0", "train --n 0 --out {out} --device cpu", BAD, &["--n 0", "need at least 12 samples"]),
        case(
            "train --n absurd",
            "train --n 99999999999 --out {out} --device cpu",
            BAD,
            &["`n` = \"99999999999\"", "at most"],
        ),
        case("train --holdout NaN", "train --holdout NaN --out {out} --device cpu", BAD, &["holdout", "NaN"]),
        case(
            "train --conditional on data without classes",
            "train --conditional --data two-moons --out {out} --device cpu",
            BAD,
            &["--conditional needs data with classes", "two-moons"],
        ),
        // ---- train: image data and labels ----
        case(
            "train --data mnist not fetched",
            "train --data mnist --out {out} --device cpu",
            BAD,
            &["mnist_5k.csv.gz", "not found", "run `bash scripts/setup`", "SCORESDE_DATA"],
        ),
        case(
            "train --data digits with a corrupt cache",
            "train --data digits --out {out} --device cpu",
            BAD,
            &["digits.csv.gz", "corrupt cache: SHA-256", "delete the file and run `bash scripts/setup`"],
        ),
        case(
            "train --data 5-D .npy",
            "train --data {fx}/rank5.npy --out {out} --device cpu",
            BAD,
            &["rank5.npy", "got a 5-D array", "[n, C, H, W]"],
        ),
        case(
            "train --data images with NaN",
            "train --data {fx}/img-nan.npy --out {out} --device cpu",
            BAD,
            &["img-nan.npy", "non-finite value NaN at row 7, column 3"],
        ),
        case(
            "train --labels with a toy set",
            "train --conditional --data mixture --labels {fx}/labels.npy --out {out} --device cpu",
            BAD,
            &["`--labels`", "for .npy data only", "--data mixture is a built-in set with its own classes"],
        ),
        case(
            "train --labels with mnist",
            "train --data mnist --labels {fx}/labels.npy --out {out} --device cpu",
            BAD,
            &["`--labels`", "--data mnist is a built-in set with its own classes"],
        ),
        case(
            "train --labels missing",
            "train --conditional --data {fx}/img.npy --labels {fx}/nolabels.npy --out {out} --device cpu",
            BAD,
            &["--labels", "nolabels.npy", "no such file"],
        ),
        case(
            "train --labels count differs",
            "train --conditional --data {fx}/img.npy --labels {fx}/labels-short.npy --out {out} --device cpu",
            BAD,
            &["labels-short.npy", "39 labels for 40 rows"],
        ),
        case(
            "train --labels not integers",
            "train --conditional --data {fx}/img.npy --labels {fx}/labels-half.npy --out {out} --device cpu",
            BAD,
            &["labels-half.npy", "label 0.5 at index 3 is not an integer"],
        ),
        case(
            "train --labels negative",
            "train-classifier --data {fx}/img.npy --labels {fx}/labels-neg.npy --out {out} --device cpu",
            BAD,
            &["labels-neg.npy", "label -1 at index 5 is negative"],
        ),
        case(
            "train --labels out of range",
            "train --conditional --data {fx}/img.npy --labels {fx}/labels-big.npy --out {out} --device cpu",
            BAD,
            &["labels-big.npy", "label 10000 at index 0 is out of range"],
        ),
        case(
            "train --labels of another type",
            "train --conditional --data {fx}/img.npy --labels {fx}/plain.npy --out {out} --device cpu",
            BAD,
            &["plain.npy", "labels must be a 1-D array", "[50, 2]"],
        ),
        case(
            "train --conditional on images without --labels",
            "train --conditional --data {fx}/img.npy --out {out} --device cpu",
            BAD,
            &["--conditional needs data with classes", "--labels", "img.npy"],
        ),
        case(
            "train-classifier on a .npy file",
            "train-classifier --data {fx}/plain.npy --out {out} --device cpu",
            BAD,
            &["a classifier needs data with classes", "plain.npy"],
        ),
        // ---- train: optimisation and network settings ----
        case("train --batch 0", "train --batch 0 --out {out} --device cpu", BAD, &["`--batch` = \"0\"", "at least 1"]),
        case("train --lr NaN", "train --lr NaN --out {out} --device cpu", BAD, &["`lr` = \"NaN\""]),
        case(
            "train --grad-clip negative",
            "train --grad-clip=-1 --out {out} --device cpu",
            BAD,
            &["`grad clip` = \"-1\""],
        ),
        case("train --ema 1", "train --ema 1 --out {out} --device cpu", BAD, &["`ema decay` = \"1\"", "[0, 1)"]),
        case(
            "train --label-dropout 2",
            "train --conditional --label-dropout 2 --out {out} --device cpu",
            BAD,
            &["`label dropout` = \"2\"", "[0, 1]"],
        ),
        case("train --width 0", "train --width 0 --out {out} --device cpu", BAD, &["`--width` = \"0\"", "at least 1"]),
        case(
            "train --width absurd",
            "train --width 100000000 --out {out} --device cpu",
            BAD,
            &["`--width` = \"100000000\"", "at most 1048576"],
        ),
        case(
            "train --embed-dim odd",
            "train --embed-dim 3 --out {out} --device cpu",
            BAD,
            &["`--embed-dim` = \"3\"", "even"],
        ),
        case(
            "train --fourier-scale 0",
            "train --embedding fourier --fourier-scale 0 --out {out} --device cpu",
            BAD,
            &["`--fourier-scale` = \"0\""],
        ),
        case("train --beta-min negative", "train --beta-min=-1 --out {out} --device cpu", BAD, &["`beta_min` = -1"]),
        case(
            "train --beta-max below --beta-min",
            "train --beta-min 5 --beta-max 1 --out {out} --device cpu",
            BAD,
            &["`beta_max` = 1", "beta_min = 5"],
        ),
        // ---- train: the output folder and --resume ----
        case(
            "train into a run folder that has a checkpoint",
            "train --out {run} --width 16 --depth 1 --steps 20 --n 200 --batch 64 --device cpu",
            BAD,
            &["model.safetensors exists", "--resume", "--force"],
        ),
        case(
            "train --resume without a checkpoint",
            "train --resume --out {out} --device cpu",
            BAD,
            &["--resume needs a checkpoint in --out", "model.safetensors"],
        ),
        case(
            "train --resume with other data",
            "train --resume --data two-moons --n 200 --out {run} --device cpu",
            BAD,
            &["the data differ from the checkpoint's", "--data"],
        ),
        case(
            "train --resume of a conditional run without --conditional",
            "train --resume --data mixture --n 200 --out {cond} --device cpu",
            BAD,
            &["the checkpoint is a conditional score over 3 classes", "an unconditional score"],
        ),
        case(
            "train-classifier --resume without a classifier",
            "train-classifier --resume --n 200 --out {run} --device cpu",
            BAD,
            &["--resume needs a checkpoint", "classifier.safetensors"],
        ),
        case(
            "train --resume of a truncated checkpoint",
            "train --resume --n 200 --out {fx}/truncated --device cpu",
            BAD,
            &["--resume needs a checkpoint", "truncated or corrupt"],
        ),
        case(
            "train --out below a file",
            "train --out {fx}/file.txt/run --width 16 --depth 1 --steps 20 --n 200 --batch 64 --device cpu",
            BAD,
            &["file.txt is a file, not a folder"],
        ),
        case(
            "train --out into a read-only folder",
            "train --out {fx}/readonly/run --width 16 --depth 1 --steps 20 --n 200 --batch 64 --device cpu",
            BAD,
            &["readonly", "Permission denied"],
        )
        .unless_root(),
        // ---- sample: the checkpoint ----
        case(
            "sample --model a folder without a model",
            "sample --model {fx}/nomodel --device cpu",
            BAD,
            &["nomodel/model.safetensors", "No such file"],
        ),
        case(
            "sample --model a .npy file",
            "sample --model {run}/heldout.npy --device cpu",
            BAD,
            &["heldout.safetensors", "No such file"],
        ),
        case(
            "sample --model truncated",
            "sample --model {fx}/truncated --device cpu",
            BAD,
            &["truncated/model.safetensors", "truncated or corrupt"],
        ),
        case(
            "sample --model weights are a folder",
            "sample --model {fx}/stdir --device cpu",
            BAD,
            &["stdir/model.safetensors", "Is a directory"],
        ),
        case(
            "sample --model without scoresde metadata",
            "sample --model {fx}/nometa --device cpu",
            BAD,
            &["nometa/model.safetensors", "no scoresde metadata"],
        ),
        case(
            "sample --model with garbage metadata",
            "sample --model {fx}/badmeta --device cpu",
            BAD,
            &["badmeta/model.safetensors", "unreadable metadata"],
        ),
        case(
            "sample --model of another format version",
            "sample --model {fx}/format2 --device cpu",
            BAD,
            &["format version 2", "reads 1"],
        ),
        case(
            "sample --model metadata of another architecture",
            "sample --model {fx}/otherarch --device cpu",
            BAD,
            &["otherarch/model.safetensors", "model:"],
        ),
        case(
            "sample --model scaling of another dimension",
            "sample --model {fx}/badscaling --device cpu",
            BAD,
            &["data scaling does not match"],
        ),
        case(
            "sample --model sample shape of another dimension",
            "sample --model {fx}/badshape --device cpu",
            BAD,
            &["badshape/model.safetensors", "data shape [1, 3, 1] does not match the network's dimension 2"],
        ),
        case(
            "sample --model with NaN weights",
            "sample --model {fx}/nanweights --device cpu",
            BAD,
            &["nanweights/model.safetensors", "non-finite values in weights"],
        ),
        case(
            "sample --model with an invalid SDE",
            "sample --model {fx}/badsde --device cpu",
            BAD,
            &["`beta_min` = -1"],
        ),
        case(
            "sample --model a classifier",
            "sample --model {cond}/classifier --device cpu",
            BAD,
            &["a classifier is not a score model"],
        ),
        // The sidecar is documented as ignored when loading: a garbage or
        // foreign one must not stop sampling.
        case(
            "sample with a garbage sidecar (ignored)",
            "sample --model {fx}/badsidecar -n 16 --steps 2 --out {out} --device cpu",
            0,
            &[],
        ),
        case(
            "sample with another model's sidecar (ignored)",
            "sample --model {fx}/othersidecar -n 16 --steps 2 --out {out} --device cpu",
            0,
            &[],
        ),
        // ---- sample: solver, grid, counts ----
        case(
            "sample --solver unknown",
            "sample --model {run} --solver Euler --device cpu",
            BAD,
            &["unknown solver `Euler`", "ancestral"],
        ),
        case(
            "sample --solver dopri5 rtol not a number",
            "sample --model {run} --solver ode-dopri5:abc --device cpu",
            BAD,
            &["`rtol` = abc", "not a number"],
        ),
        case(
            "sample --solver dopri5 rtol 0",
            "sample --model {run} --solver ode-dopri5:0 --device cpu",
            BAD,
            &["`rtol` = 0"],
        ),
        case(
            "sample --solver ddim eta negative",
            "sample --model {run} --solver ddim-eta:-1 --device cpu",
            BAD,
            &["`eta` = -1"],
        ),
        // ---- sample: x0 guard in the solver name ----
        case(
            "sample x0 clip on a solver that forms no x0",
            "sample --model {run} --solver ode-euler:clip --device cpu",
            BAD,
            &["`x0 guard` = clip=1", "`ode-euler` forms no x0 estimate", "ddim", "dpm2m"],
        ),
        case(
            "sample x0 threshold on a solver that forms no x0",
            "sample --model {run} --solver edm-heun:threshold=0.99 --device cpu",
            BAD,
            &["`x0 guard`", "`edm-heun` forms no x0 estimate"],
        ),
        case("sample x0 clip 0", "sample --model {run} --solver ddim:clip=0 --device cpu", BAD, &["`clip` = 0", "> 0"]),
        case(
            "sample x0 clip negative",
            "sample --model {run} --solver ancestral:clip=-2 --device cpu",
            BAD,
            &["`clip` = -2"],
        ),
        case("sample x0 clip NaN", "sample --model {run} --solver ddim:clip=nan --device cpu", BAD, &["`clip` = NaN"]),
        case(
            "sample x0 clip not a number",
            "sample --model {run} --solver dpm2m:clip=big --device cpu",
            BAD,
            &["`clip` = big", "not a number"],
        ),
        case(
            "sample x0 threshold above 1",
            "sample --model {run} --solver dpm2m:threshold=1.5 --device cpu",
            BAD,
            &["`threshold` = 1.5", "(0, 1]"],
        ),
        case(
            "sample x0 threshold 0",
            "sample --model {run} --solver dpm1:threshold=0 --device cpu",
            BAD,
            &["`threshold` = 0", "(0, 1]"],
        ),
        case(
            "sample x0 clip and threshold together",
            "sample --model {run} --solver ddim:clip,threshold --device cpu",
            BAD,
            &["`x0 guard`", "exclude each other"],
        ),
        case(
            "sample unknown solver option",
            "sample --model {run} --solver ddim:eta=0.5 --device cpu",
            BAD,
            &["`option` = eta=0.5", "clip[=C] and threshold[=P]"],
        ),
        // ---- --threads, global to every command ----
        case("--threads above the cap", "train --threads 5000 --out {out}", USAGE, &["5000", "0..=1024"]),
        case("--threads negative", "sample --model {run} --threads -1 --device cpu", USAGE, &["-1", "0..=1024"]),
        case("--threads not a number", "eval --model {run} --threads many", USAGE, &["many", "--threads"]),
        case("--threads empty", "plot --model {run} --threads ''", USAGE, &["--threads"]),
        case("--threads before the command", "--threads 1.5 solvers", USAGE, &["1.5", "--threads"]),
        case(
            "sample --steps beyond the grid cap (refused before allocating)",
            "sample --model {run} --steps 1000000000 -n 2 --device cpu --out {out}",
            BAD,
            &["1000000000", "at most 10,000,000 steps"],
        ),
        case(
            "sample --solver dopri5 absurd tolerance",
            "sample --model {run} --solver ode-dopri5:1e-30 -n 4 --steps 2 --device cpu --out {out}",
            BAD,
            &["`rtol` = 1e-30", "machine epsilon"],
        ),
        case(
            "sample --grid empty",
            "sample --model {run} --grid '' --device cpu",
            BAD,
            &["`grid`", "unknown time grid", "karras"],
        ),
        // ---- sample: classes and guidance ----
        case(
            "sample --class on an unconditional model via its own weights as classifier",
            "sample --model {run} --class 1 --classifier {run}/model --device cpu",
            BAD,
            &["--classifier", "not a classifier"],
        ),
        case(
            "sample --classifier trained on other data",
            "sample --model {run} --class 1 --classifier {cond}/classifier --device cpu",
            BAD,
            &["other data scaling than the model"],
        ),
        case(
            "sample --class out of range (cfg)",
            "sample --model {cond} --class 99 --device cpu",
            BAD,
            &["`class` = 99", "must be in 0..3"],
        ),
        case(
            "sample --class out of range (classifier)",
            "sample --model {cond} --class 3 --classifier {cond}/classifier --device cpu",
            BAD,
            &["`class` = 3", "must be in 0..3"],
        ),
        case(
            "sample --guidance inf",
            "sample --model {cond} --class 1 --guidance inf --device cpu",
            BAD,
            &["`guidance scale` = inf", "finite"],
        ),
        // ---- sample: output ----
        case(
            "sample --out below a file",
            "sample --model {run} -n 16 --steps 2 --out {fx}/file.txt/sub --device cpu",
            BAD,
            &["file.txt is a file, not a folder"],
        ),
        case(
            "sample --out a read-only folder",
            "sample --model {run} -n 16 --steps 2 --out {fx}/readonly --device cpu",
            BAD,
            &["readonly", "Permission denied"],
        )
        .unless_root(),
        // ---- sample and eval --torchscript: a PyTorch model (fixtures: garbage.pt, one-arg.pt, eps.pt) ----
        case(
            "sample --torchscript with --model",
            "sample --model {run} --torchscript {fx}/eps.pt",
            USAGE,
            &["'--torchscript <FILE>'", "cannot be used with", "'--model <MODEL>'"],
        ),
        case("sample --schedule without --torchscript", "sample --schedule ddpm-linear", USAGE, &["--torchscript <FILE>"]),
        case(
            "sample --torchscript missing file",
            "sample --torchscript {fx}/missing.pt --schedule ddpm-linear:1000 --shape 2 --device cpu --out {out}",
            BAD,
            &["missing.pt", "No such file"],
        ),
        case(
            "sample --torchscript not TorchScript",
            "sample --torchscript {fx}/garbage.pt --schedule ddpm-linear:1000 --shape 2 --device cpu --out {out}",
            BAD,
            &["garbage.pt", "not a TorchScript module"],
        ),
        case(
            "sample --torchscript without --schedule",
            "sample --torchscript {fx}/eps.pt --shape 2 --device cpu --out {out}",
            BAD,
            &["--torchscript needs --schedule"],
        ),
        case(
            "sample --torchscript without --shape",
            "sample --torchscript {fx}/eps.pt --schedule ddpm-linear:1000 --device cpu --out {out}",
            BAD,
            &["--torchscript needs --shape"],
        ),
        case(
            "sample --torchscript forward(x) only",
            "sample --torchscript {fx}/one-arg.pt --schedule ddpm-linear:1000 --shape 2 --device cpu --out {out}",
            BAD,
            &["one-arg.pt", "forward(x:", "t: float32[B]"],
        ),
        case(
            "sample --prediction unknown",
            "sample --torchscript {fx}/eps.pt --prediction epsilon",
            USAGE,
            &["--prediction", "eps, x0, v, score, flow"],
        ),
        case(
            "sample --time-input unknown",
            "sample --torchscript {fx}/eps.pt --time-input step",
            USAGE,
            &["--time-input", "t, timestep, sigma, c-noise"],
        ),
        case(
            "sample --spacing unknown",
            "sample --torchscript {fx}/eps.pt --spacing middle",
            USAGE,
            &["--spacing", "leading[:OFFSET], trailing, linspace"],
        ),
        case("sample --dtype unknown", "sample --torchscript {fx}/eps.pt --dtype int8", USAGE, &["--dtype", "bf16"]),
        case(
            "sample --schedule unknown",
            "sample --torchscript {fx}/eps.pt --schedule ddpm-quadratic --shape 2 --device cpu --out {out}",
            BAD,
            &["--schedule ddpm-quadratic"],
        ),
        case(
            "sample --time-input timestep on a continuous schedule",
            "sample --torchscript {fx}/eps.pt --schedule vp --time-input timestep --shape 2 --device cpu --out {out}",
            BAD,
            &["time-input", "continuous"],
        ),
        case(
            "sample --spacing on a continuous schedule",
            "sample --torchscript {fx}/eps.pt --schedule vp --spacing trailing --shape 2 --device cpu --out {out}",
            BAD,
            &["--spacing needs a discrete --schedule"],
        ),
        case(
            "sample --spacing more steps than timesteps",
            "sample --torchscript {fx}/eps.pt --schedule ddpm-linear:10 --spacing trailing --steps 20 --shape 2 --device cpu --out {out}",
            BAD,
            &["--spacing", "1 ..= N"],
        ),
        case(
            "sample --class with an unconditional --torchscript",
            "sample --torchscript {fx}/eps.pt --schedule ddpm-linear:1000 --shape 2 --class 1 --device cpu --out {out}",
            BAD,
            &["--class 1", "unconditional", "--classes N"],
        ),
        case(
            "sample --torchscript with --shard",
            "sample --torchscript {fx}/eps.pt --shard 0/2",
            USAGE,
            &["'--shard <K/N>'", "cannot be used with", "'--torchscript <FILE>'"],
        ),
        case(
            "eval --torchscript with nothing to evaluate",
            "eval --torchscript {fx}/eps.pt --schedule ddpm-linear:1000 --shape 2",
            BAD,
            &["nothing to evaluate", "--data NAME"],
        ),
        case(
            "eval --torchscript --data not a mixture",
            "eval --torchscript {fx}/eps.pt --schedule ddpm-linear:1000 --shape 2 --data {fx}/rank1.npy",
            BAD,
            &["--data", "not a Gaussian-mixture toy set"],
        ),
        // ---- eval ----
        case(
            "eval --samples with NaN",
            "eval --model {run} --samples {fx}/nan.npy",
            BAD,
            &["nan.npy", "non-finite value NaN at row 3, column 1"],
        ),
        case("eval --samples a folder", "eval --model {run} --samples {fx}", BAD, &["Is a directory"]),
        case(
            "eval --samples with 3 columns",
            "eval --model {run} --samples {fx}/cols3.npy",
            BAD,
            &["shape mismatch", "[3]"],
        ),
        case(
            "eval --against missing",
            "eval --model {run} --against {fx}/missing.npy",
            BAD,
            &["--against", "missing.npy"],
        ),
        case(
            "eval --against with NaN",
            "eval --model {run} --against {fx}/nan.npy",
            BAD,
            &["--against", "nan.npy", "non-finite value NaN"],
        ),
        case(
            "eval --model truncated",
            "eval --model {fx}/truncated --against {run}/heldout.npy --samples {fx}/plain.npy",
            BAD,
            &["truncated or corrupt"],
        ),
        case(
            "eval --device unknown (checked before any table is written)",
            "eval --model {run} --device tpu",
            BAD,
            &["`device` = \"tpu\""],
        ),
        case(
            "eval --model a missing run",
            "eval --model {fx}/nosuchrun",
            BAD,
            &["--model", "nosuchrun", "no such run folder or checkpoint"],
        ),
        case(
            "eval --samples with 1 row",
            "eval --model {run} --samples {fx}/row1.npy",
            BAD,
            &["row1.npy", "need at least 2"],
        ),
        // ---- train-features and eval's image metrics ----
        case(
            "train-features --data a toy set",
            "train-features --data eight-gaussians --labels {fx}/lab40.npy --out {out} --device cpu",
            BAD,
            &["eight-gaussians", "toy set", "--labels"],
        ),
        case(
            "train-features labels and rows disagree",
            "train-features --data {fx}/img16.npy --labels {fx}/lab10.npy --out {out} --device cpu",
            BAD,
            &["lab10.npy", "10 labels for 40 rows"],
        ),
        case(
            "train-features --labels missing",
            "train-features --data {fx}/img16.npy --labels {fx}/missing.npy --out {out} --device cpu",
            BAD,
            &["missing.npy", "No such file"],
        ),
        case(
            "train-features --labels not a .npy file",
            "train-features --data {fx}/img16.npy --labels {fx}/text.npy --out {out} --device cpu",
            BAD,
            &["text.npy", "text.npy: not a .npy file"],
        ),
        case(
            "train-features --labels 2-D",
            "train-features --data {fx}/plain.npy --labels {fx}/plain.npy --out {out} --device cpu",
            BAD,
            &["plain.npy", "labels must be a 1-D array [n] (or [n, 1]); got shape [50, 2]"],
        ),
        case(
            "train-features --labels with a fraction",
            "train-features --data {fx}/img16.npy --labels {fx}/labfrac.npy --out {out} --device cpu",
            BAD,
            &["labfrac.npy", "label 2.5 at index 3 is not an integer"],
        ),
        case(
            "train-features rows not square, no --shape",
            "train-features --data {fx}/cols3.npy --labels {fx}/lab50.npy --out {out} --device cpu",
            BAD,
            &["3 values, not a square number", "--shape C,H,W"],
        ),
        case(
            "train-features --shape of other size",
            "train-features --data {fx}/img16.npy --labels {fx}/lab40.npy --shape 1,4,5 --out {out} --device cpu",
            BAD,
            &["--shape [1, 4, 5] has 20 values per image", "rows have 16"],
        ),
        case(
            "train-features --shape malformed",
            "train-features --data {fx}/img16.npy --labels {fx}/lab40.npy --shape 4x4 --out {out} --device cpu",
            BAD,
            &["--shape \"4x4\"", "C,H,W"],
        ),
        case(
            "train-features images too small for the poolings",
            "train-features --data {fx}/img16.npy --labels {fx}/lab40.npy --shape 4,2,2 --out {out} --device cpu",
            BAD,
            &["--shape [4, 2, 2]", "at least 4x4"],
        ),
        case(
            "train-features one class",
            "train-features --data {fx}/img16.npy --labels {fx}/labone.npy --out {out} --device cpu",
            BAD,
            &["need at least 2 classes"],
        ),
        case(
            "train-features --steps 0",
            "train-features --data {fx}/img16.npy --labels {fx}/lab40.npy --steps 0 --out {out} --device cpu",
            BAD,
            &["--steps 0: must be at least 1"],
        ),
        case(
            "train-features --data with NaN",
            "train-features --data {fx}/nan.npy --labels {fx}/lab10.npy --out {out} --device cpu",
            BAD,
            &["nan.npy", "non-finite value NaN at row 3, column 1"],
        ),
        case(
            "train-features over an existing classifier",
            "train-features --data {fx}/img16.npy --labels {fx}/lab40.npy --out {fx}/feat16 --device cpu",
            BAD,
            &["feat16/features.safetensors exists", "--force"],
        ),
        case(
            "eval --features missing",
            "eval --model {run} --features {fx}/nosuchfeat",
            BAD,
            &["--features", "nosuchfeat", "no feature classifier there"],
        ),
        case(
            "eval --features truncated",
            "eval --model {run} --features {fx}/feattrunc",
            BAD,
            &["--features", "feattrunc", "truncated or corrupt"],
        ),
        case(
            "eval --features a score model",
            "eval --model {run} --features {run}/model.safetensors",
            BAD,
            &["a score-model checkpoint, not a feature classifier", "train-features"],
        ),
        case(
            "eval --features of other images",
            "eval --model {run} --features {fx}/feat16",
            BAD,
            &["shape [1, 4, 4] (16 values)", "the model's data have 2 columns"],
        ),
        // ---- plot ----
        case("plot --model missing", "plot --model {fx}/nomodel", BAD, &["nomodel/model.safetensors", "No such file"]),
        // ---- demo: checked before training ----
        case("demo --steps 0", "demo --steps 0 --out {out}", BAD, &["--steps needs positive step counts"]),
        case("demo --solver unknown", "demo --solver nope --out {out}", BAD, &["unknown solver `nope`"]),
        case(
            "demo --data unknown",
            "demo --data spirals --out {out} --device cpu",
            BAD,
            &["`data` = \"spirals\"", "eight-gaussians"],
        ),
        case(
            "demo --solver forward",
            "demo --solver forward-em --out {out} --device cpu",
            BAD,
            &["`forward-em` integrates the forward SDE"],
        ),
        case("demo --train-steps 0", "demo --train-steps 0 --out {out} --device cpu", BAD, &["`steps` = \"0\""]),
        // ---- U-Net configuration (on 8x8 images, fx/images64.npy) ----
        case(
            "train --net unet --channel-mults with a 0",
            "train --net unet --data {fx}/images64.npy --channel-mults 1,0 --out {out} --device cpu",
            BAD,
            &["`--channel-mults` = \"[1, 0]\"", "each must be 1 to 64"],
        ),
        case(
            "train --net unet --attn at a resolution it does not have",
            "train --net unet --data {fx}/images64.npy --attn 3 --out {out} --device cpu",
            BAD,
            &["`--attn` = \"3\"", "not a feature-map height", "[8, 4, 2]"],
        ),
        case(
            "train --net unet --groups not dividing the channels",
            "train --net unet --data {fx}/images64.npy --groups 3 --out {out} --device cpu",
            BAD,
            &["`--groups` = \"3\"", "must divide the base channels (16)"],
        ),
        case(
            "train --net unet on non-image data",
            "train --net unet --out {out} --device cpu",
            BAD,
            &["--net unet is for images", "2 columns", "--image-shape C,H,W"],
        ),
        case(
            "train --net unet --image-shape not the data's",
            "train --net unet --data {fx}/images64.npy --image-shape 1,4,4 --out {out} --device cpu",
            BAD,
            &["--image-shape 1,4,4 has 16 values per sample", "64 columns"],
        ),
        case(
            "train --net unet --image-shape too small",
            "train --net unet --data {fx}/plain.npy --image-shape 1,2,1 --out {out} --device cpu",
            BAD,
            &["`--image-shape` = \"1x2x1\"", "4 to 8192 pixels"],
        ),
        case(
            "train --net unet with an MLP option",
            "train --net unet --data {fx}/images64.npy --width 64 --out {out} --device cpu",
            BAD,
            &["--width does not apply to --net unet"],
        ),
        case(
            "train --net mlp with a U-Net option",
            "train --base-channels 8 --out {out} --device cpu",
            BAD,
            &["--base-channels does not apply to --net mlp"],
        ),
    ]
}

/// The tree every row runs against: `run/` (the trained run), `cond/`
/// (conditional run + classifier) and `fx/` (fixtures); `cases/` holds the
/// rows' own output folders and is not fingerprinted.
struct Tree {
    root: PathBuf,
}

impl Tree {
    fn run(&self) -> PathBuf {
        self.root.join("run")
    }
    fn cond(&self) -> PathBuf {
        self.root.join("cond")
    }
    fn fx(&self) -> PathBuf {
        self.root.join("fx")
    }
    fn out(&self, i: usize) -> PathBuf {
        self.root.join("cases").join(format!("{i:03}")).join("out")
    }
}

fn bin() -> Command {
    let mut c = common::bin();
    c.env_remove("RUST_BACKTRACE").env_remove("RUST_LIB_BACKTRACE").stdin(Stdio::null());
    c
}

/// Runs a setup command that must succeed.
fn setup(args: &[&str]) {
    let out = bin().args(args).output().expect("scoresde runs");
    assert!(
        out.status.success(),
        "setup `scoresde {}` failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const TINY: &[&str] =
    &["--width", "16", "--depth", "1", "--steps", "20", "--n", "200", "--batch", "64", "--device", "cpu"];

/// Trains the run folders (in parallel) and draws one sample file.
fn train_runs(tree: &Tree) {
    let (run, cond) = (tree.run(), tree.cond());
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut a = vec!["train", "--out", s(&run)];
            a.extend_from_slice(TINY);
            setup(&a);
            setup(&["sample", "--model", s(&run), "-n", "64", "--steps", "5", "--device", "cpu"]);
        });
        scope.spawn(|| {
            let mut a = vec!["train", "--conditional", "--data", "mixture", "--out", s(&cond)];
            a.extend_from_slice(TINY);
            setup(&a);
            let mut a = vec!["train-classifier", "--data", "mixture", "--out", s(&cond)];
            a.extend_from_slice(TINY);
            setup(&a);
        });
    });
}

fn f64_bytes(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| (i as f64 * 0.25).to_le_bytes()).collect()
}

/// A safetensors file split into its JSON header and its data.
fn read_safetensors(path: &Path) -> (serde_json::Value, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    (header, bytes[8 + n..].to_vec())
}

fn write_safetensors(path: &Path, header: &serde_json::Value, data: &[u8]) {
    let json = serde_json::to_vec(header).unwrap();
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&json);
    out.extend_from_slice(data);
    std::fs::write(path, out).unwrap();
}

/// A copy of the run's checkpoint (weights, sidecar, held-out data) in `fx/NAME`.
fn copy_run(tree: &Tree, name: &str) -> PathBuf {
    let dir = tree.fx().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["model.safetensors", "model.json", "heldout.npy"] {
        std::fs::copy(tree.run().join(f), dir.join(f)).unwrap();
    }
    dir
}

/// A copy of the run whose checkpoint metadata (the JSON in the weights
/// file's header) is changed by `edit`.
fn edit_meta(tree: &Tree, name: &str, edit: impl FnOnce(&mut serde_json::Value)) {
    let st = copy_run(tree, name).join("model.safetensors");
    let (mut header, data) = read_safetensors(&st);
    let meta = &mut header["__metadata__"]["scoresde"];
    let mut parsed: serde_json::Value = serde_json::from_str(meta.as_str().unwrap()).unwrap();
    edit(&mut parsed);
    *meta = serde_json::Value::String(parsed.to_string());
    write_safetensors(&st, &header, &data);
}

/// The files the rows read: bad `.npy` files and damaged copies of the run.
fn make_fixtures(tree: &Tree) {
    let fx = tree.fx();
    std::fs::create_dir_all(fx.join("dir.npy")).unwrap();
    std::fs::create_dir_all(fx.join("nomodel")).unwrap();
    std::fs::write(fx.join("file.txt"), "a file, not a folder\n").unwrap();
    // TorchScript modules: not one, forward(x) only, and forward(x, t) -> -x (an eps model).
    std::fs::write(fx.join("garbage.pt"), "not a TorchScript module\n").unwrap();
    let trace = |name: &str, inputs: usize, f: &dyn Fn(&[tch::Tensor]) -> tch::Tensor| {
        let mut example = vec![tch::Tensor::ones([3, 2], (tch::Kind::Float, tch::Device::Cpu))];
        if inputs > 1 {
            example.push(tch::Tensor::ones([3], (tch::Kind::Float, tch::Device::Cpu)));
        }
        let mut g = |x: &[tch::Tensor]| vec![f(x)];
        // The module's name is a TorchScript class name: no hyphens.
        let m = tch::CModule::create_by_tracing(&name.replace('-', "_"), "forward", &example, &mut g).unwrap();
        m.save(fx.join(format!("{name}.pt"))).unwrap();
    };
    trace("one-arg", 1, &|x| &x[0] * 2.0);
    trace("eps", 2, &|x| -&x[0] + x[1].sum(tch::Kind::Float) * 0.0);
    // .npy files.
    let write = |name: &str, bytes: Vec<u8>| std::fs::write(fx.join(name), bytes).unwrap();
    write("int64.npy", npy_bytes("<i8", &[10, 2], &f64_bytes(20)));
    write("rank1.npy", npy_bytes("<f8", &[10], &f64_bytes(10)));
    write("rank3.npy", npy_bytes("<f8", &[5, 2, 2], &f64_bytes(20)));
    write("truncated.npy", npy_bytes("<f8", &[10, 2], &f64_bytes(7)));
    write("empty.npy", Vec::new());
    write("text.npy", b"1.0,2.0\n3.0,4.0\n".to_vec());
    // Images [40, 1, 2, 2] of uint8, and their labels.
    write("img.npy", npy_bytes("|u1", &[40, 1, 2, 2], &[7u8; 160]));
    let mut nan = f64_bytes(48);
    nan[(7 * 4 + 3) * 8..(7 * 4 + 4) * 8].copy_from_slice(&f64::NAN.to_le_bytes());
    write("img-nan.npy", npy_bytes("<f8", &[12, 2, 2], &nan));
    write("rank5.npy", npy_bytes("<f8", &[2, 1, 1, 2, 2], &f64_bytes(8)));
    let labels = |edit: &dyn Fn(&mut Vec<f64>)| {
        let mut y: Vec<f64> = (0..40).map(|i| (i % 4) as f64).collect();
        edit(&mut y);
        y
    };
    let i64s = |y: Vec<f64>| y.iter().flat_map(|v| (*v as i64).to_le_bytes()).collect::<Vec<u8>>();
    write("labels.npy", npy_bytes("<i8", &[40], &i64s(labels(&|_| {}))));
    write("labels-short.npy", npy_bytes("<i8", &[39], &i64s(labels(&|y| y.truncate(39)))));
    write("labels-neg.npy", npy_bytes("<i8", &[40], &i64s(labels(&|y| y[5] = -1.0))));
    write("labels-big.npy", npy_bytes("<i8", &[40], &i64s(labels(&|y| y[0] = 10_000.0))));
    let half: Vec<u8> = labels(&|y| y[3] = 0.5).iter().flat_map(|v| v.to_le_bytes()).collect();
    write("labels-half.npy", npy_bytes("<f8", &[40], &half));
    // The image-data cache: a digits file that is not the pinned one, no mnist.
    std::fs::create_dir_all(fx.join("cache")).unwrap();
    write("cache/digits.csv.gz", b"not the pinned digits".to_vec());
    let grid = |rows: usize, cols: usize| Array2::from_shape_fn((rows, cols), |(i, j)| (i * cols + j) as f64 * 0.1);
    save_npy(fx.join("plain.npy"), &grid(50, 2)).unwrap();
    save_npy(fx.join("cols3.npy"), &grid(50, 3)).unwrap();
    save_npy(fx.join("images64.npy"), &grid(50, 64).mapv(|v| (v * 0.7).sin())).unwrap();
    save_npy(fx.join("rows0.npy"), &grid(0, 2)).unwrap();
    save_npy(fx.join("cols0.npy"), &grid(8, 0)).unwrap();
    save_npy(fx.join("row1.npy"), &grid(1, 2)).unwrap();
    let mut nan = grid(10, 2);
    nan[[3, 1]] = f64::NAN;
    save_npy(fx.join("nan.npy"), &nan).unwrap();
    let mut inf = grid(10, 2);
    inf[[4, 0]] = f64::INFINITY;
    save_npy(fx.join("inf.npy"), &inf).unwrap();
    // Damaged checkpoints.
    let st = |name: &str| copy_run(tree, name).join("model.safetensors");
    let whole = std::fs::read(tree.run().join("model.safetensors")).unwrap();
    std::fs::write(st("truncated"), &whole[..whole.len() / 2]).unwrap();
    std::fs::write(st("empty"), b"").unwrap();
    let stdir = st("stdir");
    std::fs::remove_file(&stdir).unwrap();
    std::fs::create_dir_all(&stdir).unwrap();
    let nometa = st("nometa");
    let (mut header, data) = read_safetensors(&nometa);
    header.as_object_mut().unwrap().remove("__metadata__");
    write_safetensors(&nometa, &header, &data);
    let badmeta = st("badmeta");
    let (mut header, data) = read_safetensors(&badmeta);
    header["__metadata__"]["scoresde"] = "{not json".into();
    write_safetensors(&badmeta, &header, &data);
    edit_meta(tree, "format2", |m| m["format"] = 2.into());
    edit_meta(tree, "otherarch", |m| m["net"]["width"] = 32.into());
    edit_meta(tree, "badscaling", |m| m["data"]["mean"] = serde_json::json!([0.0, 0.0, 0.0]));
    edit_meta(tree, "badsde", |m| m["sde"]["beta_min"] = (-1.0).into());
    edit_meta(tree, "badshape", |m| m["data"]["shape"] = serde_json::json!([1, 3, 1]));
    let nanw = st("nanweights");
    let (header, mut data) = read_safetensors(&nanw);
    let start = header["model.layers.0.weight"]["data_offsets"][0].as_u64().unwrap() as usize;
    data[start..start + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    write_safetensors(&nanw, &header, &data);
    std::fs::write(copy_run(tree, "badsidecar").join("model.json"), "{ garbage").unwrap();
    std::fs::copy(tree.cond().join("classifier.json"), copy_run(tree, "othersidecar").join("model.json")).unwrap();
    // Labelled 4x4 images and a feature classifier of them.
    save_npy(fx.join("img16.npy"), &grid(40, 16)).unwrap();
    let labels = |name: &str, y: ndarray::Array1<f64>| {
        use ndarray_npy::WriteNpyExt as _;
        y.write_npy(std::fs::File::create(fx.join(name)).unwrap()).unwrap();
    };
    let cycle = |n: usize| ndarray::Array1::from_iter((0..n).map(|i| (i % 4) as f64));
    labels("lab40.npy", cycle(40));
    labels("lab10.npy", cycle(10));
    labels("lab50.npy", cycle(50));
    labels("labone.npy", ndarray::Array1::zeros(40));
    let mut frac = cycle(40);
    frac[3] = 2.5;
    labels("labfrac.npy", frac);
    let (img, lab, feat) = (fx.join("img16.npy"), fx.join("lab40.npy"), fx.join("feat16"));
    setup(
        &["train-features", "--data", s(&img), "--labels", s(&lab), "--steps", "2"]
            .into_iter()
            .chain(["--device", "cpu", "--out", s(&feat)])
            .collect::<Vec<_>>(),
    );
    let trunc = fx.join("feattrunc");
    std::fs::create_dir_all(&trunc).unwrap();
    let whole = std::fs::read(feat.join("features.safetensors")).unwrap();
    std::fs::write(trunc.join("features.safetensors"), &whole[..whole.len() / 2]).unwrap();
    // A folder nobody but root may write to (made read-only last).
    let ro = fx.join("readonly");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o555)).unwrap();
}

/// Every file and folder under `root` but `root/cases`: relative path ->
/// (mode, mtime in ns, bytes).
type Fingerprint = BTreeMap<PathBuf, (u32, i128, Option<Vec<u8>>)>;

fn fingerprint(root: &Path) -> Fingerprint {
    fn walk(root: &Path, dir: &Path, out: &mut Fingerprint) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        // The run folders' advisory lock file (`.scoresde.lock`) holds the pid of
        // the last process to take the lock, which a command takes before it
        // reads what it would overwrite: not user data, so not compared.
        let ours =
            |p: &PathBuf| *p != root.join("cases") && p.file_name() != Some(std::ffi::OsStr::new(".scoresde.lock"));
        for p in entries.into_iter().filter(ours) {
            let m = std::fs::symlink_metadata(&p).unwrap();
            let mtime = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            if m.is_dir() {
                out.insert(rel, (m.mode(), mtime, None));
                walk(root, &p, out);
            } else {
                out.insert(rel, (m.mode(), mtime, Some(std::fs::read(&p).unwrap())));
            }
        }
    }
    let mut out = Fingerprint::new();
    walk(root, root, &mut out);
    out
}

/// The differences between two fingerprints, one line each.
fn changes(before: &Fingerprint, after: &Fingerprint) -> Vec<String> {
    let mut out = Vec::new();
    for (p, b) in before {
        match after.get(p) {
            None => out.push(format!("removed: {}", p.display())),
            Some(a) if a.2 != b.2 => out.push(format!("contents changed: {}", p.display())),
            Some(a) if a.1 != b.1 && a.2.is_some() => out.push(format!("mtime changed: {}", p.display())),
            Some(a) if a.0 != b.0 => out.push(format!("mode changed: {}", p.display())),
            _ => {}
        }
    }
    out.extend(after.keys().filter(|p| !before.contains_key(*p)).map(|p| format!("created: {}", p.display())));
    out
}

/// Longest a row may run; a bad input must fail fast.
const CASE_TIMEOUT: Duration = Duration::from_secs(60);

/// What one row did.
struct Ran {
    code: Option<i32>,
    signal: Option<i32>,
    stderr: String,
    stdout: String,
    seconds: f64,
    timed_out: bool,
}

/// Runs row `c`. Rows run in parallel and several read the shared run folders,
/// which a command locks while it may write there: a row that finds its folder
/// held by another row ([`scoresde::Error::Busy`]) runs again once it is free.
fn run_case(tree: &Tree, i: usize, c: &Case) -> Ran {
    const BUSY: &str = "is in use by another scoresde process";
    let mut ran = run_case_once(tree, i, c);
    for _ in 0..100 {
        if !ran.stderr.contains(BUSY) || c.expect.iter().any(|e| e.contains("in use")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        ran = run_case_once(tree, i, c);
    }
    ran
}

fn run_case_once(tree: &Tree, i: usize, c: &Case) -> Ran {
    let out = tree.out(i);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let args: Vec<String> = c
        .args
        .split_whitespace()
        .map(|a| {
            if a == "''" {
                return String::new();
            }
            a.replace("{run}", s(&tree.run()))
                .replace("{cond}", s(&tree.cond()))
                .replace("{fx}", s(&tree.fx()))
                .replace("{out}", s(&out))
        })
        .collect();
    let dir = out.parent().unwrap();
    let (so, se) = (dir.join("stdout"), dir.join("stderr"));
    let started = Instant::now();
    let mut child = bin()
        .env("SCORESDE_DATA", tree.fx().join("cache"))
        .args(&args)
        .current_dir(dir)
        .stdout(std::fs::File::create(&so).unwrap())
        .stderr(std::fs::File::create(&se).unwrap())
        .spawn()
        .expect("scoresde starts");
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > CASE_TIMEOUT {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Ran {
        code: status.code(),
        signal: status.signal(),
        stderr: String::from_utf8_lossy(&std::fs::read(&se).unwrap()).into_owned(),
        stdout: String::from_utf8_lossy(&std::fs::read(&so).unwrap()).into_owned(),
        seconds: started.elapsed().as_secs_f64(),
        timed_out,
    }
}

/// What is wrong with a row's run (empty: as the row says).
fn problems(c: &Case, r: &Ran) -> Vec<String> {
    let mut p = Vec::new();
    if r.timed_out {
        p.push(format!("still running after {CASE_TIMEOUT:?}: killed"));
    }
    if let Some(sig) = r.signal {
        p.push(format!("killed by signal {sig}"));
    }
    if r.code != Some(c.exit) {
        p.push(format!("exit code {:?}, expected {}", r.code, c.exit));
    }
    let all = format!("{}{}", r.stdout, r.stderr);
    for bad in ["panicked", "RUST_BACKTRACE", "Internal torch error", "Exception raised from", "stack backtrace"] {
        if all.contains(bad) {
            p.push(format!("output contains {bad:?}"));
        }
    }
    if c.exit == BAD && !r.stderr.contains("error: ") {
        p.push("stderr has no `error: ` line".into());
    }
    for want in c.expect {
        if !r.stderr.contains(want) {
            p.push(format!("stderr lacks {want:?}"));
        }
    }
    p
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[test]
fn bad_input_fails_cleanly_and_touches_nothing() {
    let root = std::env::temp_dir().join(format!("scoresde-bad-input-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let tree = Tree { root };
    let t0 = Instant::now();
    train_runs(&tree);
    make_fixtures(&tree);
    let setup_s = t0.elapsed().as_secs_f64();
    let before = fingerprint(&tree.root);

    let (root, no_cuda) = (is_root(), scoresde::device::select("cuda").is_err());
    let table = cases();
    let todo: Vec<(usize, &Case)> = table
        .iter()
        .enumerate()
        .filter(|(_, c)| match c.when {
            When::Always => true,
            When::NotRoot => !root,
            When::NoCuda => no_cuda,
        })
        .collect();
    let skipped = table.len() - todo.len();
    // Four rows at a time, whatever the core count: most of a row is
    // process start-up (loading libtorch), which overlaps well.
    let workers = 4;
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Ran)>> = Mutex::new(Vec::new());
    let t1 = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(i, c)) = todo.get(k) else { break };
                let r = run_case(&tree, i, c);
                results.lock().unwrap().push((i, r));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(i, _)| *i);

    let mut failures = Vec::new();
    for (i, r) in &results {
        let c = &table[*i];
        let p = problems(c, r);
        let first =
            r.stderr.lines().rfind(|l| l.starts_with("error")).unwrap_or("").chars().take(160).collect::<String>();
        println!("{} [{i:3}] {:5.1} s  {}: {first}", if p.is_empty() { "ok  " } else { "FAIL" }, r.seconds, c.name);
        if !p.is_empty() {
            failures.push(format!(
                "[{i}] {}\n  scoresde {}\n  {}\n  --- stderr ---\n{}",
                c.name,
                c.args,
                p.join("\n  "),
                r.stderr.trim_end()
            ));
        }
    }
    let touched = changes(&before, &fingerprint(&tree.root));
    let rows_s = t1.elapsed().as_secs_f64();
    println!("{} rows run, {skipped} skipped (root: {root}, no CUDA: {no_cuda})", results.len());
    println!("setup {setup_s:.1} s, rows {rows_s:.1} s on {workers} workers");
    assert!(
        failures.is_empty() && touched.is_empty(),
        "{} of {} rows failed:\n\n{}\n\nfiles the rows changed ({}):\n{}",
        failures.len(),
        results.len(),
        failures.join("\n\n"),
        touched.len(),
        touched.join("\n")
    );
    // Leave the tree on failure for inspection; clean up on success.
    let ro = tree.fx().join("readonly");
    let _ = std::fs::set_permissions(&ro, std::os::unix::fs::PermissionsExt::from_mode(0o755));
    std::fs::remove_dir_all(&tree.root).unwrap();
}
