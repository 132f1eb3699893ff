//! [`TorchScriptScore`] against the exact score: TorchScript modules traced here, in Rust
//! (`tch::CModule::create_by_tracing`), compute the exact eps / x0 / v prediction of
//! Gaussian-mixture data from `(x, timestep)` with tensor ops on DDPM's discrete schedule;
//! saved and loaded back, the score they give is the exact one, and DDIM / DPM-Solver++(2M)
//! runs on diffusers' grid match the runs with the exact score. bfloat16 modules sample
//! without NaN, close to the float32 run. Bad modules are clear errors.

use std::path::{Path, PathBuf};

use ndarray::Array2;
use rand::SeedableRng;
use scoresde::error::Error;
use scoresde::model::{array_to_tensor, tensor_to_array};
use scoresde::solvers::prelude::*;
use scoresde::solvers::{
    by_name, discrete_by_name, ExactConditional, FinalStep, LabelledMixture, ModelConvention, Prediction, Rng,
    RowNoise, Spacing, TimeInput,
};
use scoresde::torchscript::TorchScriptScore;
use tch::{CModule, Device, Kind, Tensor};

mod common;
use common::{s, tmp};

const K: usize = 4;
const RADIUS: f64 = 2.0;
const STD: f64 = 0.3;

fn data() -> GaussianMixture {
    GaussianMixture::ring(K, RADIUS, STD).unwrap()
}

fn sde() -> DiscreteVp {
    discrete_by_name("ddpm-linear:1000").unwrap()
}

/// `log a` at the knots of `sde` (`Shifted`: 0, then `1/2 ln alphabar_i`), float64.
fn log_a_table(sde: &DiscreteVp) -> Tensor {
    let v: Vec<f64> = std::iter::once(0.0).chain(sde.alphas_cumprod().iter().map(|a| 0.5 * a.ln())).collect();
    Tensor::from_slice(&v)
}

/// `(a, sigma)` as `[B, 1]` tensors of kind `ck` from the `[B]` timestep `tau`: `log a` linear
/// between knots at `u = tau + 1` (the schedule's own interpolation, written as tensor ops).
fn kernel_of_timestep(table: &Tensor, tau: &Tensor, ck: Kind) -> (Tensor, Tensor) {
    let m = table.size()[0] - 1;
    let u = tau.to_kind(Kind::Double) + 1.0;
    let k = u.floor().clamp(0.0, (m - 1) as f64);
    let w = &u - &k;
    let k = k.to_kind(Kind::Int64);
    let lo = table.index_select(0, &k);
    let hi = table.index_select(0, &(&k + 1));
    let la = &lo + &w * (&hi - &lo);
    let a = la.exp();
    let sigma = (-(la * 2.0).expm1()).clamp_min(0.0).sqrt();
    (a.to_kind(ck).unsqueeze(1), sigma.to_kind(ck).unsqueeze(1))
}

/// A ring's means as a `[1, k, 2]` float64 tensor and its components' std. (Made outside the
/// traced closure: a tensor created inside it from host data is not kept in the saved module.)
fn ring_of(law: &GaussianMixture) -> (Tensor, f64) {
    let mu = Tensor::from_slice(&law.means().iter().copied().collect::<Vec<f64>>());
    (mu.view([1, law.n_components() as i64, 2]), law.covariances()[[0, 0, 0]].sqrt())
}

fn means() -> Tensor {
    ring_of(&data()).0
}

/// The exact score of the ring mixture at `x` (`[B, 2]`, kind `ck`; means `mu`) with the kernel `(a, sigma)`,
/// restricted to the components where `mask` (`[B, K]` of 0/1) is 1: `sum_k r_k (a mu_k - x)/v`,
/// `v = a^2 std^2 + sigma^2`, `r` the responsibilities.
fn mixture_score(x: &Tensor, mu: &Tensor, a: &Tensor, sigma: &Tensor, mask: Option<&Tensor>) -> Tensor {
    mixture_score_std(x, mu, STD, a, sigma, mask)
}

/// [`mixture_score`] for a ring of any equal-weight isotropic components of std `std`.
fn mixture_score_std(x: &Tensor, mu: &Tensor, std: f64, a: &Tensor, sigma: &Tensor, mask: Option<&Tensor>) -> Tensor {
    let ck = x.kind();
    let mu = mu.to_kind(ck);
    let v = a * a * (std * std) + sigma * sigma; // [B, 1]
    let d = x.unsqueeze(1) - a.unsqueeze(2) * mu; // [B, K, 2]
    let mut logits = -(&d * &d).sum_dim_intlist(2, false, ck) / (&v * 2.0); // [B, K]
    if let Some(mask) = mask {
        logits += mask.to_kind(ck).log();
    }
    let r = logits.softmax(1, ck).unsqueeze(2);
    -(r * d).sum_dim_intlist(1, false, ck) / v
}

/// The network output of `p` from the exact score: `eps = -sigma s`, `x0 = (x + sigma^2 s)/a`,
/// `v = a eps - sigma x0`.
fn prediction_of(p: Prediction, x: &Tensor, a: &Tensor, sigma: &Tensor, score: Tensor) -> Tensor {
    let eps = -(sigma * &score);
    let x0 = (x + sigma * sigma * &score) / a;
    match p {
        Prediction::Eps => eps,
        Prediction::X0 => x0,
        Prediction::V => a * eps - sigma * x0,
        Prediction::Score => score,
        Prediction::Flow => unreachable!("not traced here"),
    }
}

/// Traces and saves the exact `p`-prediction module `forward(x, timestep)` computing in `ck`
/// (float64: the exact model rounded to the input's dtype; bfloat16: a bf16 model).
fn exact_module(dir: &Path, p: Prediction, io: Kind, ck: Kind) -> PathBuf {
    exact_module_of(dir, &data(), p, io, ck)
}

/// [`exact_module`] for any ring-shaped `law` (equal weights, one isotropic std).
fn exact_module_of(dir: &Path, law: &GaussianMixture, p: Prediction, io: Kind, ck: Kind) -> PathBuf {
    let table = log_a_table(&sde());
    let (mu, std) = ring_of(law);
    let mut f = |inputs: &[Tensor]| {
        let (x, tau) = (&inputs[0], &inputs[1]);
        let (a, sigma) = kernel_of_timestep(&table, tau, ck);
        let xc = x.to_kind(ck);
        let score = mixture_score_std(&xc, &mu, std, &a, &sigma, None);
        vec![prediction_of(p, &xc, &a, &sigma, score).to_kind(io)]
    };
    let example = [Tensor::zeros([3, 2], (io, Device::Cpu)), Tensor::full([3], 10.0, (Kind::Float, Device::Cpu))];
    let m = CModule::create_by_tracing("Exact", "forward", &example, &mut f).unwrap();
    let path = dir.join(format!("{p}-{io:?}-{ck:?}-{}.pt", law.n_components()));
    m.save(&path).unwrap();
    path
}

fn load(path: &Path, p: Prediction) -> TorchScriptScore {
    let conv = ModelConvention::new(p, TimeInput::Timestep);
    TorchScriptScore::load(path, Box::new(sde()), conv, Device::Cpu).unwrap()
}

fn max_abs(a: &Array2<f64>) -> f64 {
    a.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// At knots and between them, the loaded module's score is the exact score at the (f32)
/// state. The module's f32 output carries a relative rounding of 2^-24 ~ 6e-8; the
/// conversion divides it by sigma (eps), multiplies it by a/sigma^2 (x0) or a/sigma
/// (v), and cancels x against it in f32: the bound is 1e-6 (16 f32 ulps) of the largest term,
/// `|s| + |x|/sigma^2`.
#[test]
fn traced_modules_give_the_exact_score() {
    let dir = tmp("exact");
    let sde = sde();
    let exact = ExactScore::new(data(), sde.clone());
    let mut rng = Rng::seed_from_u64(1);
    for p in [Prediction::Eps, Prediction::X0, Prediction::V] {
        let score = load(&exact_module(&dir, p, Kind::Float, Kind::Double), p);
        assert_eq!(score.kind(), Kind::Float);
        for t in [sde.t_of_timestep(0).unwrap(), sde.t_of_timestep(499).unwrap(), 0.2345, 0.75, 1.0] {
            let (a, sigma) = (sde.alpha(t), sde.sigma(t));
            let x = data().perturbed(a, sigma).sample(100, &mut rng);
            let xt = array_to_tensor(&x).unwrap();
            let x32 = tensor_to_array(&xt).unwrap();
            let want = exact.score(&x32, t).unwrap();
            let got = tensor_to_array(&Score::<Tensor>::score(&score, &xt, t).unwrap()).unwrap();
            let bound = 1e-6 * (max_abs(&want) + max_abs(&x32) / (sigma * sigma));
            let err = max_abs(&(&got - &want));
            assert!(err <= bound, "{p} t = {t}: error {err:.3e} > {bound:.3e}");
            // The ndarray path is the same score.
            let host = Score::<Array2<f64>>::score(&score, &x32, t).unwrap();
            assert!(max_abs(&(&host - &got)) <= bound, "{p} ndarray path");
        }
    }
}

/// A sampling run `solver` on diffusers' trailing 50-step grid: the exact score on float64
/// arrays, and `score` on a tensor state of kind `kind` from the same prior sample.
fn runs(score: &TorchScriptScore, solver: &str, kind: Kind, end: FinalStep) -> (Array2<f64>, Array2<f64>) {
    let sde = sde();
    let grid = sde.diffusers_grid(Spacing::Trailing, 50, end).unwrap();
    let denoise = end == FinalStep::Tweedie;
    let mut noise = GaussianNoise::new(7);
    let x_t = prior_sample(&sde, &Array2::<f64>::zeros((256, 2)), &mut noise);
    let xt = array_to_tensor(&x_t).unwrap().to_kind(kind);
    let x_t = tensor_to_array(&xt).unwrap();
    let exact = ExactScore::new(data(), sde.clone());
    let mut s1 = by_name::<Array2<f64>>(solver).unwrap();
    let want = Sampler::new(&sde, &exact).denoise(denoise).run(s1.as_mut(), x_t, &grid, &mut noise).unwrap();
    let mut s2 = by_name::<Tensor>(solver).unwrap();
    let got = Sampler::new(&sde, score).denoise(denoise).run(s2.as_mut(), xt, &grid, &mut noise).unwrap();
    assert_eq!(got.x.kind(), kind);
    (tensor_to_array(&got.x).unwrap(), want.x)
}

/// DDIM (to alphabar = 1) and DPM-Solver++(2M) (ending with the Tweedie step) with the traced
/// eps module equal the exact-score runs within f32 accumulation: 1e-5 of the data's radius, 2e-5
/// (50 steps of a few f32 ulps, 1.2e-7 relative, each on values of size ~2; measured 1.5e-6 and
/// 2.5e-6).
#[test]
fn ddim_and_dpm2m_runs_match_the_exact_score() {
    let dir = tmp("runs");
    let score = load(&exact_module(&dir, Prediction::Eps, Kind::Float, Kind::Double), Prediction::Eps);
    for (solver, end) in [("ddim", FinalStep::AlphaOne), ("dpm2m", FinalStep::Tweedie)] {
        let (got, want) = runs(&score, solver, Kind::Float, end);
        let err = max_abs(&(&got - &want));
        eprintln!("{solver}: max |x_f32 - x_exact| = {err:.3e}");
        assert!(err <= 1e-5 * RADIUS, "{solver}: {err:.3e}");
    }
}

/// A bfloat16 module (its mixture computed in bf16) on a bfloat16 state: the DDIM run has no
/// NaN and stays close to the run of the float32 module on the same bf16 states. bf16 keeps 8
/// significant bits (a relative rounding of 2^-9 = 2e-3, spacing 0.016 at |x| = 2); over 50
/// steps whose x0 predictions the bf16 mixture rounds too, the bound is 0.25 (16 bf16 spacings
/// at |x| = 2) for the largest and 0.03 for the mean difference (measured: 0.086 and 0.005).
#[test]
fn bfloat16_modules_sample_close_to_float32() {
    let dir = tmp("bf16");
    let bf = load(&exact_module(&dir, Prediction::Eps, Kind::BFloat16, Kind::BFloat16), Prediction::Eps)
        .with_dtype(Kind::BFloat16);
    let f32m = load(&exact_module(&dir, Prediction::Eps, Kind::Float, Kind::Double), Prediction::Eps);
    let (x_bf, _) = runs(&bf, "ddim", Kind::BFloat16, FinalStep::AlphaOne);
    let (x_32, _) = runs(&f32m, "ddim", Kind::BFloat16, FinalStep::AlphaOne);
    assert!(x_bf.iter().all(|v| v.is_finite()));
    let diff = &x_bf - &x_32;
    let (err, mean) = (max_abs(&diff), diff.mapv(f64::abs).mean().unwrap());
    eprintln!("bf16 module vs f32 module (bf16 states): max diff {err:.3e}, mean {mean:.3e}");
    assert!(err <= 0.25 && mean <= 0.03, "{err:.3e} {mean:.3e}");
    // The f32 state with the bf16 module: the input cast to bf16, the score back in f32.
    let (x_mixed, want) = runs(&bf, "ddim", Kind::Float, FinalStep::AlphaOne);
    let err = max_abs(&(&x_mixed - &want));
    eprintln!("bf16 module, f32 state vs exact: max diff {err:.3e}");
    assert!(err <= 0.1, "{err:.3e}");
}

/// A class-conditional module `forward(x, timestep, class_labels)`: class k is component k,
/// label K the null label (the whole mixture). Its conditional and unconditional scores are
/// the exact ones, so classifier-free guidance works through it.
#[test]
fn class_conditional_modules_take_labels() {
    let dir = tmp("cond");
    let sde = sde();
    let (table, mu) = (log_a_table(&sde), means());
    let mut f = |inputs: &[Tensor]| {
        let (x, tau, y) = (&inputs[0], &inputs[1], &inputs[2]);
        let (a, sigma) = kernel_of_timestep(&table, tau, Kind::Double);
        let xc = x.to_kind(Kind::Double);
        let hot = y.one_hot(K as i64 + 1).to_kind(Kind::Double);
        let mask = hot.narrow(1, 0, K as i64) + hot.narrow(1, K as i64, 1);
        let score = mixture_score(&xc, &mu, &a, &sigma, Some(&mask));
        vec![prediction_of(Prediction::Eps, &xc, &a, &sigma, score).to_kind(Kind::Float)]
    };
    let example = [
        Tensor::zeros([3, 2], (Kind::Float, Device::Cpu)),
        Tensor::full([3], 10.0, (Kind::Float, Device::Cpu)),
        Tensor::from_slice(&[0i64, 1, K as i64]),
    ];
    let path = dir.join("cond.pt");
    CModule::create_by_tracing("Cond", "forward", &example, &mut f).unwrap().save(&path).unwrap();
    let score = load(&path, Prediction::Eps).with_classes(K);
    let exact = ExactConditional::new(LabelledMixture::by_component(data()).unwrap(), sde.clone());
    let t = sde.t_of_timestep(300).unwrap();
    let mut rng = Rng::seed_from_u64(2);
    let x = data().perturbed(sde.alpha(t), sde.sigma(t)).sample(50, &mut rng);
    let x32 = tensor_to_array(&array_to_tensor(&x).unwrap()).unwrap();
    let bound = 1e-6 * (max_abs(&x32) / sde.sigma(t).powi(2) + 10.0);
    for class in [None, Some(0), Some(3)] {
        let got = ConditionalScore::<Array2<f64>>::score_cond(&score, &x32, t, class).unwrap();
        let want = exact.score_cond(&x32, t, class).unwrap();
        assert!(max_abs(&(&got - &want)) <= bound, "{class:?}");
    }
    let e = ConditionalScore::<Array2<f64>>::score_cond(&score, &x32, t, Some(K)).unwrap_err().to_string();
    assert!(e.contains("class"), "{e}");
    // Guided: CFG with w = 1 is the exact guided score.
    let guided = ClassifierFreeGuided::new(&score, 1, 1.0).unwrap();
    let guided_exact = ClassifierFreeGuided::new(&exact, 1, 1.0).unwrap();
    let got = guided.score(&x32, t).unwrap();
    let want = guided_exact.score(&x32, t).unwrap();
    assert!(max_abs(&(&got - &want)) <= 3.0 * bound);
}

fn expect_model_error(e: &Error, what: &[&str]) {
    let msg = e.to_string();
    assert!(matches!(e, Error::Model { .. }), "{e:?}");
    for w in what {
        assert!(msg.contains(w), "`{w}` not in: {msg}");
    }
}

fn trace(dir: &Path, name: &str, inputs: usize, f: &mut dyn FnMut(&[Tensor]) -> Tensor) -> PathBuf {
    let mut example = vec![Tensor::zeros([3, 2], (Kind::Float, Device::Cpu))];
    if inputs > 1 {
        example.push(Tensor::full([3], 10.0, (Kind::Float, Device::Cpu)));
    }
    let mut g = |i: &[Tensor]| vec![f(i)];
    let path = dir.join(format!("{name}.pt"));
    CModule::create_by_tracing(name, "forward", &example, &mut g).unwrap().save(&path).unwrap();
    path
}

/// Missing and non-TorchScript files, a forward taking other arguments, an output of another
/// shape or an integer dtype, and NaN outputs: each a clear error, none a panic.
#[test]
fn bad_modules_are_clear_errors() {
    let dir = tmp("bad");
    let conv = ModelConvention::new(Prediction::Eps, TimeInput::Timestep);
    let open = |p: &Path| TorchScriptScore::load(p, Box::new(sde()), conv, Device::Cpu);
    let e = open(&dir.join("missing.pt")).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e:?}");
    let garbage = dir.join("garbage.pt");
    std::fs::write(&garbage, b"this is not a zip archive of a TorchScript module").unwrap();
    expect_model_error(&open(&garbage).unwrap_err(), &["not a TorchScript module", s(&garbage)]);

    let x = Tensor::zeros([4, 2], (Kind::Float, Device::Cpu));
    let t = 0.5;
    let call = |p: &Path| open(p).unwrap().score_tensor(&x, t, None).unwrap_err();
    // forward(x) only: the call names the signature expected.
    let one = trace(&dir, "one_arg", 1, &mut |i| &i[0] * 2.0);
    expect_model_error(&call(&one), &["forward(x:", "t: float32[B]"]);
    // A conditional signature asked of an unconditional module.
    let two = trace(&dir, "two_args", 2, &mut |i| &i[0] * 2.0);
    let e = open(&two).unwrap().with_classes(3).score_tensor(&x, t, Some(1)).unwrap_err();
    expect_model_error(&e, &["class_labels: int64[B]"]);
    // Wrong shape, wrong dtype, NaN.
    let narrow = trace(&dir, "narrow", 2, &mut |i| i[0].narrow(1, 0, 1));
    expect_model_error(&call(&narrow), &["shape [4, 1]", "[4, 2]"]);
    let ints = trace(&dir, "ints", 2, &mut |i| i[0].to_kind(Kind::Int64));
    expect_model_error(&call(&ints), &["dtype Int64"]);
    let nan = trace(&dir, "nan", 2, &mut |i| &i[0] * f64::NAN);
    expect_model_error(&call(&nan), &["NaN", "t = 0.5", "timestep = 499"]);
    // Through the Score trait and a sampler: a solver error at the time.
    let m = open(&nan).unwrap();
    let e = Score::<Tensor>::score(&m, &x, t).unwrap_err();
    assert!(matches!(e, scoresde::solvers::Error::Score { t: tt, .. } if tt == t), "{e:?}");
    // A timestep module on a continuous SDE: the adapter's error.
    let cont = TorchScriptScore::load(&two, Box::new(VpSde::default()), conv, Device::Cpu).unwrap();
    let e = cont.score_tensor(&x, t, None).unwrap_err().to_string();
    assert!(e.contains("time-input"), "{e}");
}

/// `scoresde sample --torchscript` on diffusers' trailing grid writes the samples of the
/// same DDIM run with the exact score (from the same prior draws, f32 tolerance as above),
/// and `scoresde eval --torchscript --data eight-gaussians` finds a score error of f32
/// rounding only (the module is that data set's exact model).
#[test]
fn cli_samples_and_evaluates_a_torchscript_model() {
    let dir = tmp("cli");
    let law = scoresde::data::DataSource::parse("eight-gaussians").unwrap().mixture().unwrap();
    let module = exact_module_of(&dir, &law, Prediction::Eps, Kind::Float, Kind::Double);
    let out = dir.join("out");
    let args = [
        "sample",
        "--torchscript",
        s(&module),
        "--schedule",
        "ddpm-linear:1000",
        "--prediction",
        "eps",
        "--time-input",
        "timestep",
        "--shape",
        "2",
        "-n",
        "64",
        "--solver",
        "ddim",
        "--steps",
        "20",
        "--spacing",
        "trailing",
        "--out",
        s(&out),
        "--device",
        "cpu",
        "--threads",
        "1",
    ];
    let o = common::run(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let npy = out.join("samples-ddim-20-trailing-seed0.npy");
    let got = scoresde::data::load_npy(&npy).unwrap();
    assert!(out.join("samples-ddim-20-trailing-seed0.png").exists());
    // The same run by hand: the prior of sample i from RowNoise(seed 0, i), the Tweedie end.
    let sde = sde();
    let mut noise = RowNoise::new(0, 0..64);
    let like = Tensor::zeros([64, 2], (Kind::Float, Device::Cpu));
    let x_t = tensor_to_array(&prior_sample(&sde, &like, &mut noise)).unwrap();
    let grid = sde.diffusers_grid(Spacing::Trailing, 20, FinalStep::Tweedie).unwrap();
    let exact = ExactScore::new(law.clone(), sde.clone());
    let mut ddim = by_name::<Array2<f64>>("ddim").unwrap();
    let want = Sampler::new(&sde, &exact).denoise(true).run(ddim.as_mut(), x_t, &grid, &mut noise).unwrap().x;
    let err = max_abs(&(&got - &want));
    eprintln!("CLI ddim run vs exact: max diff {err:.3e}");
    assert!(err <= 1e-5 * RADIUS, "CLI run vs exact: {err:.3e}");
    // Again: refused without --force.
    let o = common::run(&args);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--force"));

    let o = common::run(&[
        "eval",
        "--torchscript",
        s(&module),
        "--schedule",
        "ddpm-linear:1000",
        "--shape",
        "2",
        "--data",
        "eight-gaussians",
        "--device",
        "cpu",
        "--threads",
        "1",
    ]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stem = module.file_stem().unwrap().to_string_lossy().into_owned();
    let csv = std::fs::read_to_string(dir.join(format!("score_error-{stem}-eight-gaussians.csv"))).unwrap();
    let errors: Vec<f64> = csv.lines().skip(1).map(|l| l.split(',').nth(1).unwrap().parse().unwrap()).collect();
    eprintln!("{stdout}");
    assert_eq!(errors.len(), 9, "{stdout}");
    assert!(errors.iter().all(|e| *e < 1e-8), "{stdout}");
}
