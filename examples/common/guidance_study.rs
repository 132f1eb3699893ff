//! The guidance study shared by `examples/guidance.rs` (a table) and
//! `examples/paper_figs.rs` (a figure): on eight-gaussians (class = component),
//! train a label-dropout conditional score and a noise-conditional classifier,
//! then sample one class with classifier guidance and classifier-free guidance
//! at several scales `w`, each judged against the exact labelled mixture:
//!
//! * accuracy: the fraction of samples whose most probable class under the
//!   exact clean posterior `p_0(. | x)` is the target class;
//! * sliced W2 to exact samples of the class, `p_0(x | y)`;
//! * spread: `sqrt(tr Cov(samples) / tr Cov(class data))` (1: as diverse as the
//!   class; below 1: guidance has narrowed it).
#![allow(dead_code)] // each includer uses a part

use std::sync::atomic::AtomicBool;

use ndarray::Array2;
use rand::SeedableRng;
use scoresde::data::Toy;
use scoresde::metrics::sliced_wasserstein2;
use scoresde::model::{tensor_to_array, NeuralClassifier, NeuralScore, SdeSpec};
use scoresde::net::NetConfig;
use scoresde::solvers::prelude::*;
use scoresde::solvers::Rng;
use scoresde::train::{TrainConfig, Trainer};
use tch::{Device, Kind, Tensor};

/// Sizes of a study run.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Class sampled.
    pub class: usize,
    /// Guidance scales.
    pub scales: Vec<f64>,
    /// Samples per run.
    pub n: usize,
    /// Ancestral sampling steps.
    pub steps: usize,
    /// Training steps of the conditional score.
    pub score_steps: u64,
    /// Training steps of the classifier.
    pub classifier_steps: u64,
    /// Seed of the data, training and sampling.
    pub seed: u64,
}

/// One guided run and its measurements.
#[derive(Debug)]
pub struct Row {
    /// "classifier" or "classifier-free".
    pub kind: &'static str,
    /// Guidance scale.
    pub w: f64,
    /// Fraction of samples whose most probable class is the target.
    pub accuracy: f64,
    /// Mean exact `p_0(class | x)`.
    pub mass: f64,
    /// Sliced W2 to exact samples of the class.
    pub sw2: f64,
    /// `sqrt(tr Cov(x) / tr Cov(class data))`.
    pub spread: f64,
    /// The samples.
    pub x: Array2<f64>,
    /// Wall-clock seconds of the sampling run.
    pub seconds: f64,
}

/// The trained models.
pub struct Models {
    /// The conditional score (its null label is the unconditional score).
    pub score: Trainer,
    /// The noise-conditional classifier.
    pub classifier: Trainer,
}

fn train_one(net: NetConfig, steps: u64, seed: u64, x: &Array2<f64>, y: &[usize]) -> anyhow::Result<Trainer> {
    let config = TrainConfig { steps, batch_size: 512, seed, ..TrainConfig::default() };
    let mut tr = Trainer::new(net, SdeSpec::default(), config, x, Device::Cpu)?.with_labels(y)?;
    tr.run(100, 0, &AtomicBool::new(false), |_| {}, |_| Ok(()))?;
    Ok(tr)
}

/// Trains both networks on 20 000 labelled eight-gaussians draws (CPU).
pub fn train(setup: &Setup) -> anyhow::Result<Models> {
    let (x, y) = Toy::EightGaussians.sample_labelled(20_000, setup.seed)?;
    let k = Toy::EightGaussians.n_classes();
    let score = train_one(NetConfig::conditional(2, k), setup.score_steps, setup.seed, &x, &y)?;
    let classifier = train_one(NetConfig::classifier(2, k), setup.classifier_steps, setup.seed ^ 1, &x, &y)?;
    Ok(Models { score, classifier })
}

fn sample(score: &dyn Score<Tensor>, setup: &Setup) -> anyhow::Result<(Array2<f64>, f64)> {
    let sde = VpSde::default();
    let grid = TimeGrid::reverse(&sde, setup.steps)?;
    let mut noise = GaussianNoise::new(setup.seed ^ 0x5a);
    let like = Tensor::zeros([setup.n as i64, 2], (Kind::Float, Device::Cpu));
    let x_t = prior_sample(&sde, &like, &mut noise);
    let started = std::time::Instant::now();
    let run = Sampler::new(&sde, score).denoise(true).run(&mut Ancestral::new(), x_t, &grid, &mut noise)?;
    let x = tensor_to_array(&run.x)?;
    Ok((x, started.elapsed().as_secs_f64()))
}

fn trace_cov(x: &Array2<f64>) -> f64 {
    let n = x.nrows() as f64;
    let mean = x.mean_axis(ndarray::Axis(0)).unwrap_or_else(|| ndarray::Array1::zeros(x.ncols()));
    (x - &mean).mapv(|v| v * v).sum() / (n - 1.0).max(1.0)
}

/// Measures samples `x` of class `class` against the exact labelled law.
fn measure(kind: &'static str, w: f64, x: Array2<f64>, seconds: f64, setup: &Setup) -> anyhow::Result<Row> {
    let oracle = Toy::EightGaussians.labelled().ok_or_else(|| anyhow::anyhow!("eight-gaussians has classes"))?;
    let p = oracle.class_probs_at(x.view(), 1.0, 0.0)?;
    let c = setup.class;
    let n = x.nrows() as f64;
    let accuracy = p.rows().into_iter().filter(|r| r.iter().all(|&v| v <= r[c])).count() as f64 / n;
    let mass = p.column(c).sum() / n;
    let reference = oracle.class_data(c)?.sample(setup.n, &mut Rng::seed_from_u64(setup.seed ^ 0xc1a55));
    let sw2 = sliced_wasserstein2(x.view(), reference.view(), 256, setup.seed)?;
    let spread = (trace_cov(&x) / trace_cov(&reference)).sqrt();
    Ok(Row { kind, w, accuracy, mass, sw2, spread, x, seconds })
}

/// Samples the class with both kinds of guidance at every scale.
pub fn run(models: &Models, setup: &Setup) -> anyhow::Result<Vec<Row>> {
    let score = || -> anyhow::Result<NeuralScore> { Ok(models.score.ema_score()?) };
    let classifier = || -> anyhow::Result<NeuralClassifier> { Ok(models.classifier.ema_classifier()?) };
    let mut rows = Vec::new();
    // Classifier guidance of the null-label (unconditional) score.
    let mut cg = ClassifierGuided::new(score()?, classifier()?, setup.class, 0.0)?;
    for &w in &setup.scales {
        cg.set_scale(w)?;
        let (x, s) = sample(&cg, setup)?;
        rows.push(measure("classifier", w, x, s, setup)?);
    }
    let mut cfg = ClassifierFreeGuided::new(score()?, setup.class, 0.0)?;
    for &w in &setup.scales {
        cfg.set_scale(w)?;
        let (x, s) = sample(&cfg, setup)?;
        rows.push(measure("classifier-free", w, x, s, setup)?);
    }
    Ok(rows)
}

/// The noise floor of the sliced W2: two independent exact sample sets of the class.
pub fn sw2_floor(setup: &Setup) -> anyhow::Result<f64> {
    let oracle = Toy::EightGaussians.labelled().ok_or_else(|| anyhow::anyhow!("eight-gaussians has classes"))?;
    let a = oracle.class_data(setup.class)?.sample(setup.n, &mut Rng::seed_from_u64(setup.seed ^ 0xc1a55));
    let b = oracle.class_data(setup.class)?.sample(setup.n, &mut Rng::seed_from_u64(setup.seed ^ 0xf100));
    Ok(sliced_wasserstein2(a.view(), b.view(), 256, setup.seed)?)
}
