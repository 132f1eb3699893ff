//! The TorchScript path against diffusers itself (0.42.1, pinned in `scripts/setup`).
//!
//! `python/scoresde/diffusers_ref.py` builds a tiny diffusers `UNet2DModel` (eps, integer
//! timesteps) and a small score_sde-style network (v, continuous `t`, knots `t_i = i/999`),
//! fits each for 200 steps so that their outputs have a realistic size, traces both, and
//! runs diffusers' `DDPMScheduler`, `DDIMScheduler`, `DPMSolverMultistepScheduler`,
//! `EulerDiscreteScheduler` and `HeunDiscreteScheduler` through the traced networks on
//! DDPM's linear schedule (1000 steps), 10 inference steps, a batch of 4 samples of
//! 1x8x8, from an `x_T` given by this test and with every per-step normal recorded.
//!
//! Here the same TorchScript files are loaded through [`TorchScriptScore`], and each
//! scoresde solver the script pairs with a loop runs on diffusers' own float32
//! `alphas_cumprod` ([`DiscreteVp::from_alphas_cumprod`]), on the grid through the same
//! timesteps ([`DiscreteVp::diffusers_grid`], checked against the recorded list), with
//! the recorded normals replayed in order ([`Replay`]). The final samples agree within
//! [`TOL`] relative to the samples' size (see there). Pairings the script marks as not
//! the same arithmetic must differ by more than that (`ddim:clip` against `DDIMPipeline`'s
//! default clipping; `ode-euler` against `EulerDiscreteScheduler`; Euler and Heun started
//! from `z` rather than diffusers' `sigma(T) z`): their measured differences are printed, as
//! are all the others (`cargo test --test diffusers_parity -- --nocapture`; the README's
//! table quotes them). The same runs on `ddpm-linear:1000` (betas built in float64) are
//! within [`TOL_TABLE`]. `scoresde sample --torchscript`, whose prior draw (`--seed`) the
//! reference runs start from, matches diffusers' DDIM and DPM-Solver++(2M) loops, and
//! the library's `edm-heun` run from the same draw.
//!
//! The Python script takes about 20 s of CPU (imports, the two 200-step fits, 15 loops);
//! the Rust side a few seconds (the library runs twice per pairing, the command three
//! times). Without `import torch, diffusers` in .venv the tests print why
//! they skip, unless SCORESDE_PYTHON=required (CI), where they fail.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::{python, run_py, s, skip_python, tmp};
use scoresde::solvers::prelude::*;
use scoresde::solvers::{FinalStep, ModelConvention, Prediction, Spacing, TimeConvention, TimeInput};
use scoresde::torchscript::TorchScriptScore;
use serde_json::Value;
use tch::{Device, Kind, Tensor};

/// The batch, the sample shape, the inference steps and the seed of `x_T` (the prior draw
/// of `scoresde sample --seed SEED`).
const BATCH: i64 = 4;
const SHAPE: [i64; 3] = [1, 8, 8];
const STEPS: usize = 10;
const SEED: u64 = 11;

/// Agreement of the final samples on diffusers' own float32 table,
/// `max |diff| <= TOL * max(1, max |reference|)`.
///
/// Both sides run in float32 and evaluate the same TorchScript network on inputs that
/// agree to rounding; they differ in how the step coefficients are formed (float32 tensor
/// arithmetic in diffusers, float64 scalars rounded once here) and in the order of a few
/// products (the score is `-eps/sigma` here, multiplied back by `sigma`). Each step so adds
/// a few float32 ulps (`2^-24 = 6e-8` relative) to the state, and the network passes them
/// on with a gain of order one: ~1e-6 relative after 10 steps. Measured: at most 8.6e-7;
/// `TOL = 1e-5` leaves a factor of 11. A wrong coefficient, timestep or noise draw gives
/// 1e-4 and more: starting Euler from `z` rather than diffusers' `sigma(T) z` (`2e-5`
/// relative in `x_T`) is already `2.3e-4`.
const TOL: f64 = 1e-5;

/// As [`TOL`], for the runs on `ddpm-linear:1000` (the command line's `--schedule`), whose
/// betas are built in float64: diffusers' float32 `cumprod` differs from it by up to
/// 3.6e-7 relative (1.5e-7 at timestep 999), which the first step's `x0_hat =
/// (x - sigma eps)/sqrt(alphabar)` (`|x0_hat|` ~ 60 here) turns into ~4e-6 absolute, large
/// next to the clipped runs' samples (`|x| <= 1`). Measured: at most 3.8e-6 relative (the
/// clipped runs; 1.2e-6 for the others); `TOL_TABLE = 3e-5` leaves a factor of 8.
const TOL_TABLE: f64 = 3e-5;

fn tensor_f64(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).flatten(0, -1)).unwrap()
}

/// `max |a - b|` and `max |b|`.
fn diff(a: &Tensor, b: &Tensor) -> (f64, f64) {
    let (a, b) = (a.reshape([BATCH, -1]), b.reshape([BATCH, -1]));
    assert_eq!(a.size(), b.size());
    let d = (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[]);
    (d, b.abs().max().double_value(&[]))
}

/// The reference folder, made once per test process: `None` when the tests skip.
fn reference() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let py = python()?;
        let dir = tmp("reference");
        // x_T: the prior draw of `scoresde sample --seed SEED` (RowNoise draw 0 of rows 0..B).
        let like = Tensor::zeros([BATCH, SHAPE.iter().product()], (Kind::Float, Device::Cpu));
        let x_t = RowNoise::new(SEED, 0..BATCH as u64).normal(&like);
        x_t.write_npy(dir.join("x_t.npy")).unwrap();
        let (steps, x_t_file) = (STEPS.to_string(), dir.join("x_t.npy"));
        let args = ["python/scoresde/diffusers_ref.py", s(&dir), "--x-t", s(&x_t_file), "--steps", &steps];
        let out = run_py(&py, &args, &[]);
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        if out.status.code() == Some(3) {
            let why = text.lines().find(|l| l.contains("unavailable")).unwrap_or(&text).to_string();
            skip_python(&format!("{why}; run `bash scripts/setup --python`"));
            return None;
        }
        assert!(out.status.success(), "diffusers_ref.py failed ({:?}):\n{text}", out.status);
        Some(dir)
    })
    .as_deref()
}

fn manifest(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
}

/// The tensors of one reference run.
fn load_run(dir: &Path, name: &str) -> std::collections::HashMap<String, Tensor> {
    Tensor::read_safetensors(dir.join(format!("{name}.safetensors"))).unwrap().into_iter().collect()
}

/// diffusers' float32 `alphas_cumprod`, as f64.
fn diffusers_table(dir: &Path) -> Vec<f64> {
    let t = Tensor::read_safetensors(dir.join("schedule.safetensors")).unwrap();
    tensor_f64(&t.into_iter().find(|(k, _)| k == "alphas_cumprod").unwrap().1)
}

/// Replays recorded standard normals, one per [`Noise::step_normal`] call, in order.
struct Replay {
    draws: Tensor,
    used: i64,
}

impl Noise<Tensor> for Replay {
    fn step_normal(&mut self, t: f64, _t_next: f64, like: &Tensor) -> scoresde::solvers::Result<Tensor> {
        if self.used >= self.draws.size()[0] {
            return Err(Error::param("noise", t, "more draws than diffusers recorded"));
        }
        let z = self.draws.get(self.used).reshape(like.size()).to_kind(like.kind());
        self.used += 1;
        Ok(z)
    }

    fn normal(&mut self, _like: &Tensor) -> Tensor {
        panic!("the solvers paired with diffusers draw no normals outside a step")
    }
}

fn spacing(name: &str) -> Spacing {
    match name {
        "leading" => Spacing::Leading { steps_offset: 0 },
        "leading:1" => Spacing::Leading { steps_offset: 1 },
        "trailing" => Spacing::Trailing,
        "linspace" => Spacing::Linspace,
        _ => panic!("unknown spacing {name}"),
    }
}

/// One library run of `pair` on the reference run `run` (on diffusers' table, or on
/// `ddpm-linear:1000` when `named`), returning the final samples, the noise draws used and
/// the grid's steps.
fn library_run(dir: &Path, run: &Value, pair: &Value, named: bool) -> (Tensor, i64, usize) {
    let name = run["name"].as_str().unwrap();
    let data = load_run(dir, name);
    let convention = match run["convention"].as_str().unwrap() {
        "shifted" => TimeConvention::Shifted,
        "endpoints" => TimeConvention::Endpoints,
        c => panic!("unknown convention {c}"),
    };
    let sde = if named {
        scoresde::solvers::discrete_by_name("ddpm-linear:1000").unwrap()
    } else {
        DiscreteVp::from_alphas_cumprod(&diffusers_table(dir)).unwrap()
    }
    .with_convention(convention);
    let sp = spacing(run["spacing"].as_str().unwrap());
    // diffusers' timesteps (Heun's list repeats each but the first: its second stages).
    let mut recorded = tensor_f64(&data["timesteps"]);
    recorded.dedup();
    let ours: Vec<f64> = sde.diffusers_timesteps(sp, STEPS).unwrap().iter().map(|&i| i as f64).collect();
    assert_eq!(ours, recorded, "{name}: timesteps");
    let (end, denoise) = match pair["end"].as_str().unwrap() {
        "alpha-one" => (FinalStep::AlphaOne, false),
        "tweedie" => (FinalStep::Tweedie, true),
        e => panic!("unknown end {e}"),
    };
    let grid = sde.diffusers_grid(sp, STEPS, end).unwrap();
    let prediction: Prediction = run["prediction"].as_str().unwrap().parse().unwrap();
    let time_input: TimeInput = run["time_input"].as_str().unwrap().parse().unwrap();
    let score = TorchScriptScore::load(
        dir.join(run["net"].as_str().unwrap()),
        Box::new(sde.clone()),
        ModelConvention::new(prediction, time_input),
        Device::Cpu,
    )
    .unwrap()
    .with_sample_shape(&SHAPE.map(|d| d as usize))
    .unwrap();
    let solver_name = pair["solver"].as_str().unwrap();
    let mut solver = by_name::<Tensor>(solver_name).unwrap();
    // diffusers' Euler and Heun start from sigma_max z in x/a, i.e. sigma(T) z here.
    let x_t = match pair["prior"].as_str().unwrap() {
        "z" => data["x_T"].reshape([BATCH, -1]),
        "sigma" => data["x_T"].reshape([BATCH, -1]) * sde.sigma(grid.times()[0]),
        p => panic!("unknown prior {p}"),
    };
    let mut noise = Replay { draws: data["noise"].shallow_clone(), used: 0 };
    let out = Sampler::new(&sde, &score)
        .denoise(denoise)
        .run(solver.as_mut(), x_t, &grid, &mut noise)
        .unwrap_or_else(|e| panic!("{name} with {solver_name}: {e}"));
    // As many network calls as diffusers made.
    assert_eq!(out.score_evals as i64, run["model_calls"].as_i64().unwrap(), "{name} with {solver_name}");
    (out.x, noise.used, grid.steps())
}

#[test]
fn solvers_match_diffusers_schedulers() {
    let Some(dir) = reference() else { return };
    tch::set_num_threads(1);
    let m = manifest(dir);
    eprintln!("diffusers {} (torch {}), {STEPS} steps, batch {BATCH}x1x8x8", m["diffusers"], m["torch"]);
    eprintln!(
        "{:<28} {:<24} {:<10} {:<6} {:>10} {:>9} {:>10}",
        "diffusers loop", "scoresde", "ends", "x_T", "max|diff|", "max|ref|", "f64 table"
    );
    let mut failures = Vec::new();
    for run in m["runs"].as_array().unwrap() {
        let name = run["name"].as_str().unwrap();
        let reference = &load_run(dir, name)["final"];
        for pair in run["pairs"].as_array().unwrap() {
            let solver = pair["solver"].as_str().unwrap();
            let exact = pair["exact"].as_bool().unwrap();
            let (x, used, steps) = library_run(dir, run, pair, false);
            let (d, size) = diff(&x, reference);
            // Each step of a stochastic sampler draws one normal: diffusers' k-th, replayed.
            let stochastic = solver.starts_with("ancestral") || solver == "ddim-eta1";
            assert_eq!(used, if stochastic { steps as i64 } else { 0 }, "{name} with {solver}: noise draws");
            let named = if exact {
                let (xn, _, _) = library_run(dir, run, pair, true);
                let (dn, _) = diff(&xn, reference);
                if dn > TOL_TABLE * size.max(1.0) {
                    failures.push(format!("{name} / {solver} on ddpm-linear:1000: max|diff| {dn:.3e}"));
                }
                format!("{dn:.2e}")
            } else {
                "-".into()
            };
            let (ends, prior) = (pair["end"].as_str().unwrap(), pair["prior"].as_str().unwrap());
            eprintln!("{name:<28} {solver:<24} {ends:<10} {prior:<6} {d:>10.2e} {size:>9.3} {named:>10}");
            let within = d <= TOL * size.max(1.0);
            if within != exact {
                let want = if exact { "within" } else { "beyond" };
                failures
                    .push(format!("{name} / {solver}: max|diff| {d:.3e} (max|ref| {size:.3}), expected {want} TOL"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `scoresde sample --torchscript` from the same prior draw (`--seed SEED`) as the reference
/// runs, on `ddpm-linear:1000` (float64 betas), ending with the Tweedie step: DDIM and
/// DPM-Solver++(2M) against diffusers' loops; Heun, which diffusers starts from
/// `sigma(T) z`, against the library's `edm-heun` run from `z`.
#[test]
fn cli_matches_diffusers() {
    let Some(dir) = reference() else { return };
    tch::set_num_threads(1);
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_scoresde"));
    let m = manifest(dir);
    let runs = m["runs"].as_array().unwrap();
    for (run, solver, against) in [
        ("ddim-eta0-trailing", "ddim", "diffusers"),
        ("dpmpp-2m-trailing", "dpm2m", "diffusers"),
        ("heun-trailing", "edm-heun", "library"),
    ] {
        let (out_dir, unet) = (dir.join(format!("cli-{run}")), dir.join("unet.pt"));
        let (steps, n, seed) = (STEPS.to_string(), BATCH.to_string(), SEED.to_string());
        let args = [
            "--threads",
            "1",
            "sample",
            "--torchscript",
            s(&unet),
            "--schedule",
            "ddpm-linear:1000",
            "--prediction",
            "eps",
            "--time-input",
            "timestep",
            "--spacing",
            "trailing",
            "--shape",
            "1,8,8",
            "--solver",
            solver,
            "--steps",
            &steps,
            "-n",
            &n,
            "--seed",
            &seed,
            "--device",
            "cpu",
            "--out",
            s(&out_dir),
        ];
        let out = Command::new(&exe).args(args).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "scoresde {}:\n{text}", args.join(" "));
        let npy: Vec<PathBuf> = std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "npy"))
            .collect();
        assert_eq!(npy.len(), 1, "one samples file in {}: {npy:?}", out_dir.display());
        let x = Tensor::read_npy(&npy[0]).unwrap();
        let diffusers = &load_run(dir, run)["final"];
        let reference = if against == "diffusers" {
            diffusers.shallow_clone()
        } else {
            let entry = runs.iter().find(|r| r["name"] == run).unwrap();
            let pair = serde_json::json!({"solver": solver, "end": "tweedie", "prior": "z"});
            library_run(dir, entry, &pair, true).0
        };
        let (d, size) = diff(&x, &reference);
        let (dd, _) = diff(&x, diffusers);
        eprintln!(
            "scoresde sample --solver {solver} --spacing trailing: max|diff| {d:.2e} from the {against} run \
             (max|ref| {size:.3}); {dd:.2e} from diffusers' {run}"
        );
        assert!(d <= TOL_TABLE * size.max(1.0), "{run}: the CLI's {solver} is {d:.3e} from the {against} run");
    }
}
