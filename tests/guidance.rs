//! Neural guidance on the CPU: a noise-conditional classifier and a
//! label-dropout conditional score, trained briefly on eight-gaussians, judged
//! by the exact class posterior `p_0(y | x)` of the labelled mixture.

use std::sync::atomic::AtomicBool;

use ndarray::Array2;
use scoresde::checkpoint::{self, DataInfo};
use scoresde::data::Toy;
use scoresde::model::{array_to_tensor, tensor_to_array, NeuralClassifier, NeuralScore, SdeSpec};
use scoresde::net::{Head, NetConfig, TimeEmbedding};
use scoresde::solvers::prelude::*;
use scoresde::train::{TrainConfig, Trainer};
use tch::{Device, Kind, Tensor};

mod common;
use common::{data_info, one_thread, tmp};

/// Width of every statistical acceptance band, in standard errors.
const K_SIGMA: f64 = 5.0;

fn info(d: &Array2<f64>) -> DataInfo {
    data_info("eight-gaussians", d.nrows(), &[2])
}

/// Eight-gaussians with its exact labels (component index).
fn oracle() -> LabelledMixture {
    LabelledMixture::by_component(Toy::EightGaussians.mixture().unwrap()).unwrap()
}

fn small(config: NetConfig) -> NetConfig {
    NetConfig { width: 64, depth: 2, embedding: TimeEmbedding::Sinusoidal { dim: 16 }, ..config }
}

fn train_config(steps: u64) -> TrainConfig {
    TrainConfig { steps, batch_size: 256, warmup: 20, ema_decay: 0.99, seed: 3, ..TrainConfig::default() }
}

/// Trains `net` on 4000 labelled eight-gaussians draws for `steps` steps.
fn train(net: NetConfig, steps: u64) -> Trainer {
    let (x, y) = Toy::EightGaussians.sample_labelled(4000, 1).unwrap();
    let mut tr =
        Trainer::new(net, SdeSpec::default(), train_config(steps), &x, Device::Cpu).unwrap().with_labels(&y).unwrap();
    tr.run(100, 0, &AtomicBool::new(false), |_| {}, |_| Ok(())).unwrap();
    tr
}

#[test]
fn classifier_beats_chance_and_its_gradient_is_the_derivative_of_its_log_probability() {
    one_thread();
    let tr = train(small(NetConfig::classifier(2, 8)), 400);
    let clf = tr.ema_classifier().unwrap();
    assert_eq!(clf.n_classes(), 8);
    let sde = VpSde::default();
    let n = 2000;
    let (x, y) = Toy::EightGaussians.sample_labelled(n, 2).unwrap();
    let acc = clf.accuracy(&x, &y, sde.t_eps()).unwrap();
    let chance = 1.0 / 8.0;
    let se = (chance * (1.0 - chance) / n as f64).sqrt();
    // Bayes-optimal accuracy at t = 0.3 from the exact posterior, for the record.
    let (t, data) = (0.3, oracle());
    let xt =
        data.data().marginal(&sde, t).sample(n, &mut <scoresde::solvers::Rng as rand::SeedableRng>::seed_from_u64(5));
    let bayes = exact_argmax(&data, &xt, t, &sde);
    let acc_t = agreement(&clf.predict(&xt, t).unwrap(), &bayes);
    eprintln!("classifier: clean accuracy {acc:.4} (n = {n}, chance {chance}, 5 se = {:.4}); agreement with the Bayes classifier at t = {t}: {acc_t:.4}", K_SIGMA * se);
    assert!(acc - chance > K_SIGMA * se, "accuracy {acc} is not above chance {chance} by {K_SIGMA} se ({se:.4})");

    // Autograd input gradient vs central differences of its own log-probability.
    let x = ndarray::array![[0.3, -1.2], [2.0, 0.1], [-0.5, 1.7]];
    let h = 1e-2;
    for class in [0, 3] {
        let g = ClassifierGradient::<Array2<f64>>::grad_log_prob(&clf, &x, t, class).unwrap();
        for j in 0..2 {
            let (mut xp, mut xm) = (x.clone(), x.clone());
            xp.column_mut(j).mapv_inplace(|v| v + h);
            xm.column_mut(j).mapv_inplace(|v| v - h);
            let lp = log_prob(&clf, &xp, t, class);
            let lm = log_prob(&clf, &xm, t, class);
            for r in 0..x.nrows() {
                let fd = (lp[r] - lm[r]) / (2.0 * h);
                assert!(
                    (fd - g[[r, j]]).abs() < 2e-2 * (1.0 + fd.abs()),
                    "class {class} row {r} dim {j}: fd {fd} vs {}",
                    g[[r, j]]
                );
            }
        }
    }
    // Also inside no_grad (as a sampler might call it), on tensors.
    let xt = array_to_tensor(&x).unwrap();
    let g = tch::no_grad(|| clf.grad_log_prob(&xt, t, 0)).unwrap();
    assert_eq!(g.size(), [3, 2]);
    let want = ClassifierGradient::<Array2<f64>>::grad_log_prob(&clf, &x, t, 0).unwrap();
    assert!((tensor_to_array(&g).unwrap() - want).iter().all(|v| v.abs() < 1e-6));
}

fn log_prob(clf: &NeuralClassifier, x: &Array2<f64>, t: f64, class: usize) -> Vec<f64> {
    let lp = clf.log_probs(&array_to_tensor(x).unwrap(), t).unwrap().to_kind(Kind::Double);
    (0..x.nrows()).map(|r| lp.double_value(&[r as i64, class as i64])).collect()
}

fn exact_argmax(data: &LabelledMixture, x: &Array2<f64>, t: f64, sde: &VpSde) -> Vec<usize> {
    let p = data.class_probs_at(x.view(), sde.alpha(t), sde.sigma(t)).unwrap();
    p.rows().into_iter().map(|r| (0..r.len()).fold(0, |best, c| if r[c] > r[best] { c } else { best })).collect()
}

fn agreement(a: &[usize], b: &[usize]) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

/// Samples `n` points with `score` (ancestral, 100 steps, final Tweedie step),
/// on tensors, and returns `(mean, sd)` of the exact `p_0(class | x)`.
fn class_mass(score: &dyn Score<Tensor>, class: usize, n: usize, seed: u64) -> (f64, f64) {
    let sde = VpSde::default();
    let grid = TimeGrid::reverse(&sde, 100).unwrap();
    let mut noise = GaussianNoise::new(seed);
    let x_t = prior_sample(&sde, &Tensor::zeros([n as i64, 2], (Kind::Float, Device::Cpu)), &mut noise);
    let run = Sampler::new(&sde, score).denoise(true).run(&mut Ancestral::new(), x_t, &grid, &mut noise).unwrap();
    let x = tensor_to_array(&run.x).unwrap();
    let p = oracle().class_probs_at(x.view(), 1.0, 0.0).unwrap().column(class).to_owned();
    let m = p.mean().unwrap();
    (m, p.std(1.0))
}

fn assert_greater(what: &str, a: (f64, f64), b: (f64, f64), n: usize) {
    let se = ((a.1.powi(2) + b.1.powi(2)) / n as f64).sqrt();
    assert!(a.0 - b.0 > K_SIGMA * se, "{what}: {:.4} is not above {:.4} by {K_SIGMA} x {se:.2e}", a.0, b.0);
}

#[test]
fn guided_sampling_with_trained_networks_puts_more_mass_on_the_class() {
    one_thread();
    let n = 4000;
    let class = 2;
    let cond = train(small(NetConfig::conditional(2, 8)), 600);
    let clf = train(small(NetConfig::classifier(2, 8)), 400);

    // Classifier-free guidance: w = 3 vs w = 0 (the conditional score).
    let mut cfg = ClassifierFreeGuided::new(cond.ema_score().unwrap(), class, 0.0).unwrap();
    let cfg0 = class_mass(&cfg, class, n, 7);
    cfg.set_scale(3.0).unwrap();
    let cfg3 = class_mass(&cfg, class, n, 7);
    eprintln!(
        "CFG: mean p_0(y|x) w = 0: {:.4} (sd {:.3}), w = 3: {:.4} (sd {:.3}), n = {n}",
        cfg0.0, cfg0.1, cfg3.0, cfg3.1
    );
    assert_greater("CFG w = 3 over w = 0", cfg3, cfg0, n);

    // Classifier guidance of the same network's unconditional (null-label)
    // score: w = 0 samples all classes (mass ~ 1/8), w = 3 the class.
    let uncond = Conditioned::new(cond.ema_score().unwrap(), None).unwrap();
    let mut cg = ClassifierGuided::new(uncond, clf.ema_classifier().unwrap(), class, 0.0).unwrap();
    // (The effect is large: half the samples suffice, and autograd costs more.)
    let n = n / 2;
    let cg0 = class_mass(&cg, class, n, 8);
    cg.set_scale(3.0).unwrap();
    let cg3 = class_mass(&cg, class, n, 8);
    eprintln!(
        "classifier guidance: mean p_0(y|x) w = 0: {:.4} (sd {:.3}), w = 3: {:.4} (sd {:.3}), n = {n}",
        cg0.0, cg0.1, cg3.0, cg3.1
    );
    assert_greater("classifier guidance w = 3 over w = 0", cg3, cg0, n);
}

#[test]
fn conditional_and_classifier_checkpoints_round_trip() {
    one_thread();
    let dir = tmp("roundtrip");
    let (x, _) = Toy::EightGaussians.sample_labelled(4000, 1).unwrap();
    let probe = ndarray::array![[0.3, -1.2], [2.0, 0.1]];
    let t = 0.4;

    let cond = train(small(NetConfig::conditional(2, 8)), 20);
    let ckpt = dir.join("cond");
    checkpoint::save(&ckpt, &cond, &info(&x)).unwrap();
    let loaded = checkpoint::load(&ckpt, Device::Cpu).unwrap();
    assert_eq!(loaded.meta.net.classes, 8);
    assert_eq!(loaded.meta.net.head, Head::Score);
    assert_eq!(loaded.meta.train.label_dropout, 0.1);
    let before = cond.ema_score().unwrap();
    let after = loaded.ema_score().unwrap();
    for class in [None, Some(0), Some(7)] {
        let a: Array2<f64> = before.score_cond(&probe, t, class).unwrap();
        let b: Array2<f64> = after.score_cond(&probe, t, class).unwrap();
        assert_eq!(a, b, "class {class:?}");
    }

    let clf = train(small(NetConfig::classifier(2, 8)), 20);
    let ckpt = dir.join("clf");
    checkpoint::save(&ckpt, &clf, &info(&x)).unwrap();
    let loaded = checkpoint::load(&ckpt, Device::Cpu).unwrap();
    assert_eq!((loaded.meta.net.classes, loaded.meta.net.head), (8, Head::Classifier));
    let before = clf.ema_classifier().unwrap();
    let xt = array_to_tensor(&probe).unwrap();
    let lp = before.log_probs(&xt, t).unwrap();
    // A classifier checkpoint is not a score model.
    let err = checkpoint::load(&ckpt, Device::Cpu).unwrap().ema_score().unwrap_err().to_string();
    assert!(err.contains("classifier"), "{err}");
    let after = loaded.ema_classifier().unwrap();
    assert!(after.log_probs(&xt, t).unwrap().equal(&lp));

    // Checkpoint metadata written before classes existed reads as unconditional.
    let old: NetConfig = serde_json::from_str(
        r#"{"dim":2,"width":8,"depth":1,"activation":"silu","embedding":{"kind":"sinusoidal","dim":8},"parameterization":"eps"}"#,
    )
    .unwrap();
    assert_eq!((old.classes, old.head), (0, Head::Score));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_model_without_labels_asked_for_a_class_is_an_error() {
    one_thread();
    let (x, y) = Toy::EightGaussians.sample_labelled(500, 1).unwrap();
    let tr = Trainer::new(small(NetConfig::mlp(2)), SdeSpec::default(), train_config(5), &x, Device::Cpu).unwrap();
    let uncond: NeuralScore = tr.ema_score().unwrap();
    assert_eq!(uncond.n_classes(), 0);
    let err = ClassifierFreeGuided::<Tensor>::new(tr.ema_score().unwrap(), 0, 1.0).unwrap_err().to_string();
    assert!(err.contains("no classes"), "{err}");
    let probe = ndarray::array![[0.3, -1.2]];
    let err = ConditionalScore::<Array2<f64>>::score_cond(&uncond, &probe, 0.5, Some(0)).unwrap_err().to_string();
    assert!(err.contains("no classes"), "{err}");
    // Labels for a network without classes, and a conditional network without labels.
    assert!(Trainer::new(small(NetConfig::mlp(2)), SdeSpec::default(), train_config(5), &x, Device::Cpu)
        .unwrap()
        .with_labels(&y)
        .is_err());
    let mut unlabelled =
        Trainer::new(small(NetConfig::conditional(2, 8)), SdeSpec::default(), train_config(5), &x, Device::Cpu)
            .unwrap();
    let err = unlabelled.step().unwrap_err().to_string();
    assert!(err.contains("labelled data"), "{err}");
    // Wrong label counts and labels out of range.
    let cond = || {
        Trainer::new(small(NetConfig::conditional(2, 8)), SdeSpec::default(), train_config(5), &x, Device::Cpu).unwrap()
    };
    assert!(cond().with_labels(&y[..10]).is_err());
    let mut bad = y.clone();
    bad[3] = 8;
    assert!(cond().with_labels(&bad).is_err());
    // A class out of range of a conditional model; a classifier as a score; toy sets without classes.
    let c = train(small(NetConfig::conditional(2, 8)), 2).ema_score().unwrap();
    assert!(ClassifierFreeGuided::<Tensor>::new(c, 8, 1.0).is_err());
    let clf = train(small(NetConfig::classifier(2, 8)), 2);
    assert!(clf.ema_score().is_err());
    assert!(ClassifierGradient::<Tensor>::grad_log_prob(
        &clf.ema_classifier().unwrap(),
        &array_to_tensor(&probe).unwrap(),
        0.5,
        8
    )
    .is_err());
    assert!(NetConfig::classifier(2, 1).validate().is_err());
    assert!(Toy::TwoMoons.sample_labelled(10, 0).is_err());
    assert_eq!(Toy::TwoMoons.n_classes(), 0);
}

#[test]
fn labelled_toy_samples_are_the_unlabelled_ones() {
    for (toy, k) in [(Toy::EightGaussians, 8), (Toy::Mixture, 3)] {
        let (x, y) = toy.sample_labelled(3000, 9).unwrap();
        assert_eq!(x, toy.sample(3000, 9).unwrap());
        assert_eq!(toy.n_classes(), k);
        assert!(y.iter().all(|&c| c < k));
        // Labels are the component: each class's mean is its component's mean.
        let means = toy.mixture().unwrap().means();
        for c in 0..k {
            let rows: Vec<usize> = (0..y.len()).filter(|&i| y[i] == c).collect();
            let m = x.select(ndarray::Axis(0), &rows).mean_axis(ndarray::Axis(0)).unwrap();
            let se = 1.0 / (rows.len() as f64).sqrt(); // every component sd <= 1
            assert!((&m - &means.row(c)).iter().all(|d| d.abs() < K_SIGMA * se), "{toy} class {c}: {m}");
        }
    }
}

#[test]
fn conditional_training_resumes_bit_for_bit() {
    one_thread();
    let dir = tmp("resume");
    let (x, y) = Toy::EightGaussians.sample_labelled(1000, 4).unwrap();
    let net = small(NetConfig::conditional(2, 8));
    let new = || {
        Trainer::new(net.clone(), SdeSpec::default(), train_config(30), &x, Device::Cpu)
            .unwrap()
            .with_labels(&y)
            .unwrap()
    };
    let mut full = new();
    full.run(10, 0, &AtomicBool::new(false), |_| {}, |_| Ok(())).unwrap();
    let mut first = new();
    for _ in 0..12 {
        let _loss = first.step().unwrap();
    }
    let ckpt = dir.join("model");
    checkpoint::save(&ckpt, &first, &info(&x)).unwrap();
    let loaded = checkpoint::load(&ckpt, Device::Cpu).unwrap();
    let mut resumed = Trainer::with_state(loaded.net, loaded.meta.sde, loaded.meta.train, &x, loaded.state)
        .unwrap()
        .with_labels(&y)
        .unwrap();
    resumed.run(10, 0, &AtomicBool::new(false), |_| {}, |_| Ok(())).unwrap();
    assert_eq!(resumed.state().step, 30);
    assert!(full.state().params.equal(&resumed.state().params), "weights differ after resume");
    std::fs::remove_dir_all(&dir).unwrap();
}
