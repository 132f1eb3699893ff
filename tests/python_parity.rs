//! The PyTorch side (python/scoresde) against the Rust one, on the CPU:
//!
//! (a) identical weights: the networks' outputs (MLP and U-Net; each output
//!     parameterisation through `eps_hat`; class-conditional; classifiers)
//!     agree within 1e-5;
//! (b) one DSM step (`Trainer::step_on` and train_ddp's step) from identical
//!     weights on the same batch (x0, t, noise, labels) gives the same
//!     weights, EMA and Adam moments; the Python checkpoints are read by the
//!     Rust loader unchanged;
//! (c) `torchrun --nproc_per_node=2` (gloo) equals one process with the same
//!     global batch, and `scoresde sample --model DIR` samples its checkpoint;
//! (d) a rank killed mid-training leaves the last checkpoint intact, and a
//!     resumed run ends where the uninterrupted one does.
//!
//! They need `import torch` in .venv (`bash scripts/setup --python`, which
//! writes the stamp `.venv/.scoresde-python`). Without it each test prints
//! why it skips, unless SCORESDE_PYTHON=required (CI), where it fails.

mod common;

use std::path::Path;
use std::process::Output;

use common::{data_info, ok, python, run_py, s, tmp};
use ndarray::Array2;
use scoresde::checkpoint;
use scoresde::model::SdeSpec;
use scoresde::net::{Activation, Head, NetConfig, Parameterization, TimeEmbedding};
use scoresde::train::{TrainConfig, Trainer, Weighting};
use scoresde::unet::UnetConfig;
use tch::{Device, Kind, Tensor};

/// Forward agreement (float32; the two sides sum the same products in other orders).
const FORWARD_TOL: f64 = 1e-5;

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn succeeded(what: &str, out: Output) -> String {
    let t = text(&out);
    assert!(out.status.success(), "{what} failed ({:?}):\n{t}", out.status);
    t
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

/// Smooth rows of `dim` values, deterministic.
fn rows(n: usize, dim: usize) -> Array2<f64> {
    Array2::from_shape_fn((n, dim), |(i, j)| ((i * 7 + j * 3) as f64 * 0.37).sin())
}

struct Case {
    name: &'static str,
    net: NetConfig,
    weighting: Weighting,
}

fn mlp(dim: usize) -> NetConfig {
    NetConfig { width: 16, depth: 2, embedding: TimeEmbedding::Sinusoidal { dim: 8 }, ..NetConfig::mlp(dim) }
}

fn unet() -> UnetConfig {
    UnetConfig { base: 8, mults: vec![1, 2], groups: 4, attn: vec![4], ..UnetConfig::small(1, 8, 8) }
}

fn cases() -> Vec<Case> {
    let eps = Weighting::Eps;
    let m = mlp(3);
    vec![
        Case { name: "mlp-eps-silu", net: m.clone(), weighting: eps },
        Case {
            name: "mlp-score-gelu-fourier",
            net: NetConfig {
                parameterization: Parameterization::Score,
                activation: Activation::Gelu,
                embedding: TimeEmbedding::Fourier { dim: 8, scale: 16.0 },
                ..m.clone()
            },
            weighting: Weighting::Likelihood,
        },
        Case {
            name: "mlp-x0-relu",
            net: NetConfig { parameterization: Parameterization::X0, activation: Activation::Relu, ..m.clone() },
            weighting: eps,
        },
        Case {
            name: "mlp-v-tanh",
            net: NetConfig { parameterization: Parameterization::V, activation: Activation::Tanh, ..m.clone() },
            weighting: eps,
        },
        Case { name: "mlp-conditional", net: NetConfig { classes: 3, ..m.clone() }, weighting: eps },
        Case { name: "mlp-classifier", net: NetConfig { classes: 3, head: Head::Classifier, ..m }, weighting: eps },
        Case {
            name: "unet-eps-attn",
            net: NetConfig { embedding: TimeEmbedding::Sinusoidal { dim: 8 }, ..NetConfig::unet(unet()) },
            weighting: eps,
        },
        Case {
            name: "unet-conditional-v",
            net: NetConfig { classes: 3, parameterization: Parameterization::V, ..NetConfig::unet(unet()) },
            weighting: eps,
        },
        Case {
            name: "unet-classifier",
            net: NetConfig { classes: 3, head: Head::Classifier, ..NetConfig::unet(unet()) },
            weighting: eps,
        },
    ]
}

fn train_config(weighting: Weighting) -> TrainConfig {
    // Warm-up over 4 steps (step 0 uses lr / 4), clipping on, a visible EMA step.
    TrainConfig {
        steps: 10,
        batch_size: 6,
        lr: 1e-3,
        warmup: 4,
        grad_clip: 1.0,
        ema_decay: 0.5,
        weighting,
        seed: 3,
        ..TrainConfig::default()
    }
}

/// A fresh trainer for `case` (labels 0..3 for the networks with classes), saved as
/// a step-0 checkpoint in `dir`.
fn trainer(case: &Case, dir: &Path) -> Trainer {
    let dim = case.net.dim;
    let data = rows(12, dim);
    let mut t =
        Trainer::new(case.net.clone(), SdeSpec::default(), train_config(case.weighting), &data, Device::Cpu).unwrap();
    if case.net.classes > 0 {
        t = t.with_labels(&(0..12).map(|i| i % 3).collect::<Vec<_>>()).unwrap();
    }
    let shape = case.net.unet_config().map_or(vec![dim], |u| vec![u.channels, u.height, u.width]);
    checkpoint::save(dir, &t, &data_info("parity", 12, &shape)).unwrap();
    t
}

fn labels(case: &Case, b: i64, with_null: bool) -> Option<Tensor> {
    // A conditional score also takes the null label (index `classes`).
    let top = if with_null && case.net.head == Head::Score { 4 } else { 3 };
    (case.net.classes > 0).then(|| Tensor::from_slice(&(0..b).map(|i| i % top).collect::<Vec<i64>>()))
}

#[test]
fn networks_and_one_dsm_step_match_pytorch() {
    let Some(py) = python() else { return };
    tch::set_num_threads(1);
    tch::manual_seed(0);
    let dir = tmp("nets");
    let mut jobs = Vec::new();
    let mut checks = Vec::new();
    for case in cases() {
        let d = dir.join(case.name);
        let before = d.join("before");
        let mut tr = trainer(&case, &before);
        let dim = case.net.dim as i64;
        let b = 5i64;
        // (a) forward on the step-0 weights (= the EMA the Python side loads).
        let x = Tensor::randn([b, dim], (Kind::Float, Device::Cpu));
        let t = Tensor::from_slice(&[1e-3f32, 0.1, 0.37, 0.8, 1.0]);
        let sde = SdeSpec::default().build().unwrap();
        let a = Tensor::from_slice(&[1e-3, 0.1, 0.37, 0.8, 1.0].map(|t| sde.alpha(t) as f32)).view([b, 1]);
        let sigma = Tensor::from_slice(&[1e-3, 0.1, 0.37, 0.8, 1.0].map(|t| sde.sigma(t) as f32)).view([b, 1]);
        // A classifier takes no labels (they are its targets).
        let y = labels(&case, b, true).filter(|_| case.net.head == Head::Score);
        let out = tch::no_grad(|| tr.net().forward_labelled(&tr.state().params, &x, &t, y.as_ref())).unwrap();
        let eps_hat = (case.net.head == Head::Score)
            .then(|| case.net.parameterization.eps_hat(out.copy(), &x, &a, &sigma).unwrap());
        let mut inputs = vec![("x", x), ("t", t), ("a", a), ("sigma", sigma)];
        inputs.extend(y.map(|y| ("y", y)));
        let fwd_in = d.join("forward-in.safetensors");
        Tensor::write_safetensors(&inputs, &fwd_in).unwrap();
        let fwd_out = d.join("forward-out.safetensors");
        jobs.push(serde_json::json!({"kind": "forward", "ckpt": before, "inputs": fwd_in, "out": fwd_out}));

        // (b) one step on a given batch.
        let b = 6i64;
        let x0 = Tensor::randn([b, dim], (Kind::Float, Device::Cpu));
        let eps = Tensor::randn([b, dim], (Kind::Float, Device::Cpu));
        let times = [2e-3, 0.05, 0.2, 0.5, 0.75, 1.0];
        let y = labels(&case, b, true);
        let _ = tr.step_on(&x0, &times, &eps, y.as_ref()).unwrap();
        let mut inputs = vec![("x0", x0), ("t", Tensor::from_slice(&times)), ("eps", eps)];
        inputs.extend(y.map(|y| ("y", y)));
        let step_in = d.join("step-in.safetensors");
        Tensor::write_safetensors(&inputs, &step_in).unwrap();
        let after = d.join("after-python");
        std::fs::create_dir_all(&after).unwrap();
        jobs.push(serde_json::json!({"kind": "step", "ckpt": before, "inputs": step_in, "out": after}));
        checks.push((case, out, eps_hat, fwd_out, tr, before, after));
    }
    let manifest = dir.join("cases.json");
    std::fs::write(&manifest, serde_json::to_vec(&jobs).unwrap()).unwrap();
    let out = run_py(&py, &["python/scoresde/parity.py", s(&manifest)], &[]);
    if out.status.code() == Some(3) {
        panic!("the Python set-up stamp exists but torch does not import:\n{}", text(&out));
    }
    succeeded("parity.py", out);

    let mut worst = (0f64, 0f64, 0f64, 0f64);
    for (case, out, eps_hat, fwd_out, tr, before, after) in checks {
        let got: std::collections::HashMap<String, Tensor> =
            Tensor::read_safetensors(&fwd_out).unwrap().into_iter().collect();
        let d_out = max_diff(&out, &got["out"]);
        assert!(d_out <= FORWARD_TOL, "{}: forward max |diff| {d_out:e}", case.name);
        if let Some(e) = eps_hat {
            let d = max_diff(&e, &got["eps_hat"]);
            // eps_hat divides by sigma(1e-3) ~ 0.014 for x0/v: relative to its size.
            let scale = e.abs().max().double_value(&[]).max(1.0);
            assert!(d <= FORWARD_TOL * scale, "{}: eps_hat max |diff| {d:e} (scale {scale})", case.name);
        }
        worst.0 = worst.0.max(d_out);
        // The Python step's checkpoint, read by the Rust loader unchanged.
        let py = checkpoint::load(&after, Device::Cpu).unwrap();
        assert_eq!(py.state.step, 1, "{}", case.name);
        let rs = tr.state();
        let (dp, de) = (max_diff(&rs.params, &py.state.params), max_diff(&rs.ema, &py.state.ema));
        let (dm, dv) = (max_diff(&rs.adam_m, &py.state.adam_m), max_diff(&rs.adam_v, &py.state.adam_v));
        eprintln!("{}: forward {d_out:.1e}; step: params {dp:.1e}, EMA {de:.1e}, m {dm:.1e}, v {dv:.1e}", case.name);
        // The step moves each weight by about lr / 4 = 2.5e-4 (Adam's first step is ~lr * sign(g));
        // gradients agree to float32 rounding (~1e-7 relative), so weights agree far below that.
        assert!(dp <= 1e-6 && de <= 1e-6, "{}: weights {dp:e}, EMA {de:e}", case.name);
        assert!(dm <= 1e-6 && dv <= 1e-8, "{}: Adam moments m {dm:e}, v {dv:e}", case.name);
        // And the step did something.
        let start = checkpoint::load(&before, Device::Cpu).unwrap();
        assert!(max_diff(&rs.params, &start.state.params) > 1e-5, "{}: the step moved nothing", case.name);
        worst = (worst.0, worst.1.max(dp), worst.2.max(de), worst.3.max(dm));
    }
    eprintln!(
        "max |diff| over all cases: forward {:.1e}, weights after one step {:.1e}, EMA {:.1e}, Adam m {:.1e}",
        worst.0, worst.1, worst.2, worst.3
    );
}

/// `python -m torch.distributed.run` (torchrun) with `n` CPU processes on this machine.
fn torchrun(py: &Path, n: usize, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let nproc = format!("--nproc_per_node={n}");
    let mut all = vec!["-m", "torch.distributed.run", "--standalone", nproc.as_str(), "python/scoresde/train_ddp.py"];
    all.extend_from_slice(args);
    run_py(py, &all, envs)
}

/// DDP over gloo: 1 process vs 2 with the same global batch; TorchScript export; a rank
/// killed mid-training and the resumed run.
#[test]
fn torchrun_matches_one_process_and_survives_a_killed_rank() {
    let Some(py) = python() else { return };
    tch::set_num_threads(1);
    let dir = tmp("ddp");
    // The Rust program's toy set, exported for other trainers.
    let data = dir.join("moons.npy");
    let exported = ok(&["train", "--data", "two-moons", "--n", "80", "--save-train", s(&data), "--out", s(&dir)]);
    assert!(exported.contains("72 training rows"), "{exported}");
    assert_eq!(scoresde::data::load_npy(&data).unwrap().dim(), (72, 2));
    let (one, two, killed, ts) = (dir.join("one"), dir.join("two"), dir.join("killed"), dir.join("ema.pt"));
    let common = [
        "--data",
        s(&data),
        "--steps",
        "6",
        "--batch-size",
        "8",
        "--width",
        "16",
        "--depth",
        "2",
        "--lr",
        "1e-2",
        "--warmup",
        "2",
        "--log-every",
        "2",
        "--seed",
        "1",
    ];
    let with = |out: &Path, extra: &[&str]| -> Vec<String> {
        common.iter().chain(&["--out", s(out)]).chain(extra).map(|a| a.to_string()).collect()
    };
    let a = with(&one, &[]);
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let mut single = vec!["python/scoresde/train_ddp.py"];
    single.extend(&a);
    let t1 = succeeded("train_ddp.py (1 process)", run_py(&py, &single, &[]));
    let b = with(&two, &["--torchscript", s(&ts)]);
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    let t2 = succeeded("torchrun --nproc_per_node=2", torchrun(&py, 2, &b, &[]));
    assert!(t1.contains("on 1 process(es)") && t2.contains("on 2 process(es)"), "{t1}\n{t2}");

    // (c) The same global batch on 1 and 2 processes: the same weights after 6 steps.
    let (c1, c2) = (checkpoint::load(&one, Device::Cpu).unwrap(), checkpoint::load(&two, Device::Cpu).unwrap());
    assert_eq!((c1.state.step, c2.state.step), (6, 6));
    let (dp, de) = (max_diff(&c1.state.params, &c2.state.params), max_diff(&c1.state.ema, &c2.state.ema));
    eprintln!("1 vs 2 processes after 6 steps: weights max |diff| {dp:.1e}, EMA {de:.1e}");
    // The gradient mean over two halves differs from the one over the whole batch by float32
    // rounding (~1e-7 relative); six Adam steps of lr 1e-2 keep that far below 1e-5.
    assert!(dp <= 1e-5 && de <= 1e-5, "weights {dp:e}, EMA {de:e}");
    assert!(max_diff(&c1.state.params, &c1.state.ema) > 1e-4, "the EMA lags the weights");
    let (l1, l2) = (&c1.meta.losses, &c2.meta.losses);
    assert_eq!(l1.len(), 3);
    for ((s1, v1), (s2, v2)) in l1.iter().zip(l2) {
        assert!(s1 == s2 && (v1 - v2).abs() <= 1e-5 * v1.abs().max(1.0), "losses {l1:?} vs {l2:?}");
    }

    // The TorchScript export is the EMA network: libtorch runs it and agrees with Rust's.
    let module = tch::CModule::load(&ts).unwrap();
    let x = Tensor::randn([4, 2], (Kind::Float, Device::Cpu));
    let t = Tensor::from_slice(&[0.01f32, 0.3, 0.6, 0.9]);
    let got = module.forward_ts(&[x.copy(), t.copy()]).unwrap();
    let want = c2.net.forward(&c2.state.ema, &x, &t).unwrap();
    assert!(max_diff(&got, &want) <= FORWARD_TOL, "TorchScript vs Rust: {}", max_diff(&got, &want));

    // The Rust program samples the DDP checkpoint.
    let sampled = ok(&["sample", "--model", s(&two), "-n", "40", "--steps", "5", "--device", "cpu"]);
    assert!(sampled.contains("wrote"), "{sampled}");

    // (d) Rank 1 killed (SIGKILL) before step 5, checkpoints every 2 steps.
    let k = with(&killed, &["--save-every", "2"]);
    let k: Vec<&str> = k.iter().map(String::as_str).collect();
    let out = torchrun(&py, 2, &k, &[("SCORESDE_DDP_KILL_AT", "5:1")]);
    assert!(!out.status.success(), "the run with a killed rank must fail:\n{}", text(&out));
    let saved = checkpoint::load(&killed, Device::Cpu).expect("the last checkpoint is intact");
    assert!([2, 4].contains(&saved.state.step), "last checkpoint at step {}", saved.state.step);
    let mut resume = k.clone();
    resume.push("--resume");
    succeeded("torchrun --resume", torchrun(&py, 2, &resume, &[]));
    let resumed = checkpoint::load(&killed, Device::Cpu).unwrap();
    assert_eq!(resumed.state.step, 6);
    let (dp, de) = (max_diff(&resumed.state.params, &c2.state.params), max_diff(&resumed.state.ema, &c2.state.ema));
    eprintln!("resumed (from step {}) vs uninterrupted: weights {dp:.1e}, EMA {de:.1e}", saved.state.step);
    assert!(dp <= 1e-6 && de <= 1e-6, "resumed run: weights {dp:e}, EMA {de:e}");
}
