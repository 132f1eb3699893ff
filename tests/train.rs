//! Denoising score matching, checkpoints, resume and interruption, on the CPU.

use std::sync::atomic::AtomicBool;

use ndarray::Array2;
use rand::SeedableRng;
use scoresde::checkpoint::{self, DataInfo};
use scoresde::model::SdeSpec;
use scoresde::net::{NetConfig, Parameterization};
use scoresde::solvers::{ExactScore, GaussianMixture, Rng, Score, Sde, VpSde};
use scoresde::train::{Outcome, TrainConfig, Trainer, Weighting};
use scoresde::Error;
use tch::Device;

mod common;
use common::{data_info, one_thread, tmp};

fn gaussian() -> GaussianMixture {
    GaussianMixture::gaussian(ndarray::array![0.5, -1.0].view(), ndarray::array![[0.5, 0.2], [0.2, 0.3]].view())
        .unwrap()
}

fn data(n: usize, seed: u64) -> Array2<f64> {
    gaussian().sample(n, &mut Rng::seed_from_u64(seed))
}

fn info(d: &Array2<f64>) -> DataInfo {
    data_info("test", d.nrows(), &[2])
}

fn small_net() -> NetConfig {
    NetConfig { width: 32, depth: 2, ..NetConfig::mlp(2) }
}

fn config(steps: u64) -> TrainConfig {
    TrainConfig { steps, batch_size: 128, warmup: 10, seed: 11, ..TrainConfig::default() }
}

/// `E_t E_{x ~ p_t} sigma(t)^2 |s_theta(x, t) - s(x, t)|^2 / d` on a fixed
/// grid of t, with exact samples of p_t: the DSM objective minus its constant.
fn mean_weighted_score_mse(score: &dyn Score<Array2<f64>>) -> f64 {
    mean_weighted_score_mse_on(score, &VpSde::default())
}

/// As [`mean_weighted_score_mse`] on any SDE (times up to its `t_max`).
fn mean_weighted_score_mse_on(score: &dyn Score<Array2<f64>>, sde: &dyn Sde) -> f64 {
    let exact = ExactScore::new(gaussian(), DynSde(sde));
    let mut rng = Rng::seed_from_u64(99);
    let ts = [0.01, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, sde.t_max()];
    let mut total = 0.0;
    for &t in &ts {
        let x = gaussian().marginal(sde, t).sample(2000, &mut rng);
        let diff = score.score(&x, t).unwrap() - exact.score(&x, t).unwrap();
        total += sde.sigma(t).powi(2) * diff.mapv(|v| v * v).mean().unwrap();
    }
    total / ts.len() as f64
}

/// A borrowed `dyn Sde` as a sized `Sde` (for `ExactScore`).
#[derive(Debug)]
struct DynSde<'a>(&'a dyn Sde);

impl Sde for DynSde<'_> {
    fn name(&self) -> &'static str {
        self.0.name()
    }
    fn t_max(&self) -> f64 {
        self.0.t_max()
    }
    fn t_eps(&self) -> f64 {
        self.0.t_eps()
    }
    fn drift_coef(&self, t: f64) -> f64 {
        self.0.drift_coef(t)
    }
    fn diffusion(&self, t: f64) -> f64 {
        self.0.diffusion(t)
    }
    fn alpha(&self, t: f64) -> f64 {
        self.0.alpha(t)
    }
    fn sigma(&self, t: f64) -> f64 {
        self.0.sigma(t)
    }
}

/// Rectified flow (`--process flow`): a velocity network trained by the flow-matching
/// loss learns the exact score through the velocity conversion (sigma^2-weighted score
/// error on the flow's marginals falls below a tenth of the untrained one), and a VP model
/// trained with a velocity head does too (the conversion holds for any (a, sigma)).
#[test]
fn flow_velocity_training_learns_the_exact_score() {
    one_thread();
    let d = data(4000, 1);
    let flow = SdeSpec::Flow { t_max: scoresde::solvers::interpolant::FLOW_T_MAX };
    for spec in [flow, SdeSpec::default()] {
        let net = NetConfig { parameterization: Parameterization::Flow, ..small_net() };
        let run = |steps: u64| {
            let mut tr = Trainer::new(net.clone(), spec, config(steps), &d, Device::Cpu).unwrap();
            tr.run(50, 0, &AtomicBool::new(false), |_| {}, |_| Ok(())).unwrap();
            tr
        };
        let (untrained, trained) = (run(1), run(800));
        let sde = spec.build().unwrap();
        let before = mean_weighted_score_mse_on(&untrained.ema_score().unwrap(), sde.as_ref());
        let after = mean_weighted_score_mse_on(&trained.ema_score().unwrap(), sde.as_ref());
        eprintln!("{}: score error {before} -> {after}", spec.name());
        assert!(after < 0.1 * before, "{}: score error {before} -> {after}", spec.name());
        assert!(trained.state().losses.iter().all(|(_, l)| l.is_finite()));
        // The checkpoint restores the process; a sidecar without one reads as the default VP.
        let dir = tmp(&format!("flow-ckpt-{}", spec.name()));
        let ckpt = dir.join("model");
        checkpoint::save(&ckpt, &trained, &info(&d)).unwrap();
        let loaded = checkpoint::load(&ckpt, Device::Cpu).unwrap();
        assert_eq!(loaded.meta.sde, spec);
        let mut json = serde_json::to_value(&loaded.meta).unwrap();
        json.as_object_mut().unwrap().remove("sde");
        let old: checkpoint::Meta = serde_json::from_value(json).unwrap();
        assert_eq!(old.sde, SdeSpec::default());
        assert_eq!(loaded.ema_score().unwrap().sde().name(), spec.name());
        std::fs::remove_dir_all(&dir).unwrap();
    }
    // A flow t_max out of range, or a t_min above it, is an error.
    let net = NetConfig { parameterization: Parameterization::Flow, ..small_net() };
    assert!(Trainer::new(net.clone(), SdeSpec::Flow { t_max: 1.0 }, config(1), &d, Device::Cpu).is_err());
    let high = TrainConfig { t_min: 0.9995, ..config(1) };
    assert!(Trainer::new(net, flow, high, &d, Device::Cpu).is_err());
}

fn train(steps: u64, cfg: TrainConfig, net: NetConfig) -> Trainer {
    let d = data(4000, 1);
    let mut tr = Trainer::new(net, SdeSpec::default(), TrainConfig { steps, ..cfg }, &d, Device::Cpu).unwrap();
    tr.run(50, 0, &AtomicBool::new(false), |_| {}, |_| Ok(())).unwrap();
    tr
}

#[test]
fn training_learns_the_exact_score() {
    one_thread();
    for parameterization in [Parameterization::Eps, Parameterization::Score] {
        let net = NetConfig { parameterization, ..small_net() };
        let untrained = train(1, config(1), net.clone());
        let trained = train(800, config(800), net);
        let (before, after) = (
            mean_weighted_score_mse(&untrained.ema_score().unwrap()),
            mean_weighted_score_mse(&trained.ema_score().unwrap()),
        );
        // The irreducible DSM error is 0 here (the net can represent a linear
        // score); 800 steps must remove most of the initial error.
        assert!(after < 0.1 * before, "{parameterization:?}: score error {before} -> {after}");
        let losses = &trained.state().losses;
        assert!(losses.len() >= 16 && losses.last().unwrap().1 < losses[0].1, "{losses:?}");
    }
}

#[test]
fn likelihood_weighting_trains_without_diverging() {
    one_thread();
    let tr = train(200, TrainConfig { weighting: Weighting::Likelihood, ..config(200) }, small_net());
    assert!(tr.state().losses.iter().all(|(_, l)| l.is_finite()));
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    one_thread();
    let dir = tmp("resume");
    let d = data(4000, 1);
    let full = train(40, config(40), small_net());

    // Interrupt at step 15 with the stop flag (what Ctrl-C raises), save, load, go on.
    let stop = AtomicBool::new(false);
    let mut first = Trainer::new(small_net(), SdeSpec::default(), config(40), &d, Device::Cpu).unwrap();
    let ckpt = dir.join("model");
    let outcome = first
        .run(
            50,
            0,
            &stop,
            |p| {
                if p.step == 15 {
                    stop.store(true, std::sync::atomic::Ordering::Relaxed)
                }
            },
            |t| checkpoint::save(&ckpt, t, &info(&d)).map(|_| ()),
        )
        .unwrap();
    assert_eq!(outcome, Outcome::Interrupted);
    assert!(ckpt.with_extension("json").is_file(), "the sidecar is written");
    let loaded = checkpoint::load(&ckpt, Device::Cpu).unwrap();
    assert_eq!(loaded.meta.step, 15);
    assert_eq!(loaded.meta.data.shape, vec![2]);
    let mut resumed = Trainer::with_state(loaded.net, loaded.meta.sde, loaded.meta.train, &d, loaded.state).unwrap();
    let outcome = resumed.run(50, 0, &AtomicBool::new(false), |_| {}, |_| Ok(())).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    let (a, b) = (full.state(), resumed.state());
    assert_eq!(b.step, 40);
    assert!(a.params.equal(&b.params), "weights differ after resume");
    assert!(a.ema.equal(&b.ema), "EMA differs after resume");
    assert!(a.adam_v.equal(&b.adam_v), "optimiser state differs after resume");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A trainer owns its randomness: stepping two trainers in turn, with
/// libtorch's global generator reseeded in between, gives each the same
/// weights as training it alone.
#[test]
fn interleaved_trainers_equal_lone_ones() {
    one_thread();
    let d = data(1000, 4);
    let new = |seed| {
        let cfg = TrainConfig { seed, ..config(12) };
        let net = NetConfig { embedding: scoresde::net::TimeEmbedding::Fourier { dim: 8, scale: 2.0 }, ..small_net() };
        Trainer::new(net, SdeSpec::default(), cfg, &d, Device::Cpu).unwrap()
    };
    let alone = |seed| {
        let mut t = new(seed);
        t.run(50, 0, &AtomicBool::new(false), |_| {}, |_| Ok(())).unwrap();
        t
    };
    let (mut a, mut b) = (new(1), new(2));
    for k in 0..12 {
        tch::manual_seed(k);
        let _ = a.step().unwrap();
        tch::manual_seed(-k);
        let _ = b.step().unwrap();
    }
    for (mixed, lone) in [(&a, alone(1)), (&b, alone(2))] {
        assert!(mixed.state().params.equal(&lone.state().params), "interleaving changed the weights");
        assert!(mixed.net().freqs().equal(lone.net().freqs()), "interleaving changed the Fourier frequencies");
    }
    assert!(!a.state().params.equal(&b.state().params), "different seeds, different runs");
}

#[test]
fn checkpoint_round_trip_keeps_the_score() {
    one_thread();
    let dir = tmp("roundtrip");
    let d = data(1000, 2);
    for net in [
        small_net(),
        NetConfig { embedding: scoresde::net::TimeEmbedding::Fourier { dim: 16, scale: 4.0 }, ..small_net() },
    ] {
        let tr = train(20, config(20), net);
        let path = checkpoint::save(&dir.join("m"), &tr, &info(&d)).unwrap();
        assert_eq!(path, dir.join("m.safetensors"));
        let score = checkpoint::load(&dir, Device::Cpu).err(); // a folder means FOLDER/model: absent here
        assert!(matches!(score, Some(Error::Io { .. })));
        let loaded = checkpoint::load(&path, Device::Cpu).unwrap().ema_score().unwrap();
        let x = data(64, 3);
        let (s1, s2) = (tr.ema_score().unwrap().score(&x, 0.3).unwrap(), loaded.score(&x, 0.3).unwrap());
        assert_eq!(s1, s2);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_checkpoints_give_clear_errors() {
    one_thread();
    let dir = tmp("bad");
    let d = data(500, 2);
    let tr = train(5, config(5), small_net());
    let good = checkpoint::save(&dir.join("good"), &tr, &info(&d)).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let message = |name: &str, contents: &[u8]| {
        let p = dir.join(name);
        std::fs::write(&p, contents).unwrap();
        let e = checkpoint::load(&p, Device::Cpu).unwrap_err();
        assert!(matches!(e, Error::Checkpoint { .. }), "{name}: {e:?}");
        e.to_string()
    };
    assert!(message("truncated.safetensors", &bytes[..bytes.len() / 2]).contains("truncated or corrupt"));
    assert!(message("garbage.safetensors", b"definitely not a checkpoint").contains("corrupt"));
    assert!(message("empty.safetensors", b"").contains("corrupt"));
    // A valid safetensors file from elsewhere (no scoresde metadata).
    let other = dir.join("other.safetensors");
    tch::Tensor::write_safetensors(&[("w", tch::Tensor::zeros([2], (tch::Kind::Float, Device::Cpu)))], &other).unwrap();
    let e = checkpoint::load(&other, Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("not a checkpoint written by scoresde"), "{e}");
    // Metadata that promises another architecture than the tensors hold.
    let (from, to) = (&b"\\\"width\\\": 32"[..], &b"\\\"width\\\": 33"[..]);
    let at = bytes.windows(from.len()).position(|w| w == from).expect("the metadata holds the width");
    let mut hacked = bytes.clone();
    hacked[at..at + to.len()].copy_from_slice(to);
    let e = message("mismatch.safetensors", &hacked);
    assert!(e.contains("layers.0.weight") && e.contains("shape"), "{e}");
    // Missing file.
    assert!(matches!(checkpoint::load(&dir.join("nope"), Device::Cpu), Err(Error::Io { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_training_input_is_rejected() {
    one_thread();
    let d = data(100, 0);
    let new = |cfg: TrainConfig, d: &Array2<f64>| Trainer::new(small_net(), SdeSpec::default(), cfg, d, Device::Cpu);
    let mut nan = d.clone();
    nan[[7, 1]] = f64::NAN;
    let e = new(config(5), &nan).unwrap_err().to_string();
    assert!(e.contains("row 7, column 1"), "{e}");
    assert!(new(config(5), &Array2::zeros((0, 2))).is_err());
    assert!(new(config(5), &Array2::zeros((10, 3))).unwrap_err().to_string().contains("columns"));
    for bad in [
        TrainConfig { steps: 0, ..config(5) },
        TrainConfig { batch_size: 0, ..config(5) },
        TrainConfig { lr: f64::NAN, ..config(5) },
        TrainConfig { ema_decay: 1.0, ..config(5) },
        TrainConfig { t_min: 0.0, ..config(5) },
    ] {
        assert!(new(bad, &d).is_err());
    }
    // A learning rate that blows up is reported as divergence, not NaN weights.
    let mut tr = new(TrainConfig { lr: 1e12, grad_clip: 0.0, warmup: 0, ..config(30) }, &d).unwrap();
    let r = tr.run(5, 0, &AtomicBool::new(false), |_| {}, |_| Ok(()));
    if let Err(e) = r {
        assert!(e.to_string().contains("diverged"), "{e}");
    }
}

#[test]
fn step_on_a_given_batch_is_the_dsm_step_and_checks_its_input() {
    one_thread();
    let d = data(64, 1);
    let make = || Trainer::new(small_net(), SdeSpec::default(), config(10), &d, Device::Cpu).unwrap();
    let (mut a, mut b) = (make(), make());
    let before = a.state().params.detach().copy();
    tch::manual_seed(5);
    let x0 = tch::Tensor::randn([8, 2], (tch::Kind::Float, Device::Cpu));
    let eps = tch::Tensor::randn([8, 2], (tch::Kind::Float, Device::Cpu));
    let t = [1e-3, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0];
    // The loss by hand: mean |eps - net(a x0 + sigma eps, t)|^2 (eps-prediction, w = 1).
    let sde = VpSde::default();
    let col = |f: &dyn Fn(f64) -> f64| {
        tch::Tensor::from_slice(&t.iter().map(|&t| f(t) as f32).collect::<Vec<_>>()).view([8, 1])
    };
    let (al, sig) = (col(&|t| sde.alpha(t)), col(&|t| sde.sigma(t)));
    let xt = &x0 * &al + &eps * &sig;
    let tt = tch::Tensor::from_slice(&t.map(|t| t as f32));
    let out = a.net().forward(&before, &xt, &tt).unwrap();
    let want = (&eps - out).square().mean(tch::Kind::Float).double_value(&[]);
    let loss = a.step_on(&x0, &t, &eps, None).unwrap().double_value(&[]);
    assert!((loss - want).abs() <= 1e-6 * want, "step_on's loss {loss} vs {want} by hand");
    let _ = b.step_on(&x0, &t, &eps, None).unwrap();
    assert_eq!(a.state().step, 1);
    assert!(a.state().params.equal(&b.state().params), "the same batch gives the same step");
    assert!(!a.state().params.equal(&before), "the step moved the weights");
    // Bad input is named.
    let bad = |r: scoresde::Result<tch::Tensor>, what: &str| {
        let e = r.unwrap_err().to_string();
        assert!(e.contains(what), "{e}");
    };
    bad(a.step_on(&x0.narrow(0, 0, 4), &t, &eps, None), "x0");
    bad(a.step_on(&x0, &t, &eps.narrow(1, 0, 1), None), "eps");
    bad(a.step_on(&x0, &[0.0; 8], &eps, None), "times must be in (0, 1]");
    bad(a.step_on(&x0, &[f64::NAN; 8], &eps, None), "times must be in (0, 1]");
    bad(a.step_on(&x0, &t, &eps, Some(&tch::Tensor::zeros([8], (tch::Kind::Int64, Device::Cpu)))), "labels");
    assert_eq!(a.state().step, 1, "a refused batch takes no step");
}
