//! Guidance against the closed-form labelled mixture: the exact classifier
//! gradient is the derivative of `ln p_t(y | x)`; classifier guidance at `w = 1`
//! is the class-conditional score; classifier-free guidance at `w` is classifier
//! guidance at `1 + w`; guided sampling puts the predicted mass on the class
//! (exactly `E_{p(x|y)} p(y | x)` at `w = 1`) and more as `w` grows; negative
//! scales ignore the class (CFG at `w = -1`) or steer away from it.

mod common;

use common::*;
use ndarray::{Array1, Array2};
use scoresde_solvers::prelude::*;

/// Two overlapping classes in 2-D: four isotropic components (std 0.6) on a
/// circle of radius 1.5; class 0 is component 0 (prior 1/4), class 1 the other three.
fn two_classes() -> LabelledMixture {
    LabelledMixture::new(GaussianMixture::ring(4, 1.5, 0.6).unwrap(), vec![0, 1, 1, 1]).unwrap()
}

/// Evaluation points: exact draws of `p_t` for several `t`, plus a few far away.
fn points(data: &LabelledMixture, sde: &VpSde, t: f64, seed: u64) -> Array2<f64> {
    let mut x = data.data().marginal(sde, t).sample(64, &mut rng(seed));
    x.row_mut(0).assign(&ndarray::array![6.0, -5.0]);
    x.row_mut(1).assign(&ndarray::array![-9.0, 0.5]);
    x
}

const TIMES: [f64; 5] = [1e-3, 0.05, 0.2, 0.5, 1.0];

/// `max |a - b| / (1 + max |b|)`.
fn rel_max_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    let scale = 1.0 + b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn exact_classifier_gradient_is_the_derivative_of_log_class_probability() {
    let sde = VpSde::default();
    let data = two_classes();
    let exact = ExactConditional::new(data.clone(), sde);
    let h = 1e-5;
    for (i, &t) in TIMES.iter().enumerate() {
        let (a, sigma) = (sde.alpha(t), sde.sigma(t));
        let x = points(&data, &sde, t, i as u64);
        for y in 0..2 {
            let g = exact.grad_log_prob(&x, t, y).unwrap();
            for j in 0..2 {
                let (mut xp, mut xm) = (x.clone(), x.clone());
                xp.column_mut(j).mapv_inplace(|v| v + h);
                xm.column_mut(j).mapv_inplace(|v| v - h);
                let lp = data.class_log_probs_at(xp.view(), a, sigma).unwrap();
                let lm = data.class_log_probs_at(xm.view(), a, sigma).unwrap();
                for r in 0..x.nrows() {
                    let fd = (lp[[r, y]] - lm[[r, y]]) / (2.0 * h);
                    let tol = 1e-5 * (1.0 + g[[r, j]].abs());
                    assert!((fd - g[[r, j]]).abs() < tol, "t={t} y={y} row {r} dim {j}: fd {fd} vs {}", g[[r, j]]);
                }
            }
        }
    }
}

#[test]
fn classifier_guidance_at_w1_is_the_conditional_score() {
    let sde = VpSde::default();
    let data = two_classes();
    let exact = ExactConditional::new(data.clone(), sde);
    for (i, &t) in TIMES.iter().enumerate() {
        let x = points(&data, &sde, t, 10 + i as u64);
        for y in 0..2 {
            let guided = ClassifierGuided::new(&exact, &exact, y, 1.0).unwrap();
            let want = exact.score_cond(&x, t, Some(y)).unwrap();
            let got = guided.score(&x, t).unwrap();
            let err = rel_max_diff(&got, &want);
            assert!(err < 1e-10, "t={t} y={y}: relative error {err:e}");
            // w = 0 is the unguided score.
            let plain = ClassifierGuided::new(&exact, &exact, y, 0.0).unwrap();
            assert_eq!(plain.score(&x, t).unwrap(), exact.score(&x, t).unwrap());
        }
    }
}

#[test]
fn cfg_at_w0_is_the_conditional_score_and_at_w_is_classifier_guidance_at_1_plus_w() {
    let sde = VpSde::default();
    let data = two_classes();
    let exact = ExactConditional::new(data.clone(), sde);
    for (i, &t) in TIMES.iter().enumerate() {
        let x = points(&data, &sde, t, 20 + i as u64);
        for y in 0..2 {
            let cond = exact.score_cond(&x, t, Some(y)).unwrap();
            let cfg0 = ClassifierFreeGuided::new(&exact, y, 0.0).unwrap();
            assert_eq!(cfg0.score(&x, t).unwrap(), cond);
            let fixed = Conditioned::new(&exact, Some(y)).unwrap();
            assert_eq!(fixed.score(&x, t).unwrap(), cond);
            for w in [-3.0, -0.5, 0.5, 1.0, 3.0, 10.0] {
                // (1 + w) s(x|y) - w s(x) = s(x) + (1 + w) grad log p(y|x).
                let cfg = ClassifierFreeGuided::new(&exact, y, w).unwrap().score(&x, t).unwrap();
                let cg = ClassifierGuided::new(&exact, &exact, y, 1.0 + w).unwrap().score(&x, t).unwrap();
                let err = rel_max_diff(&cfg, &cg);
                assert!(err < 1e-10, "t={t} y={y} w={w}: relative error {err:e}");
            }
        }
    }
}

#[test]
fn guidance_runs_in_f32() {
    let sde = VpSde::default();
    let data = two_classes();
    let exact = ExactConditional::new(data.clone(), sde);
    let x = points(&data, &sde, 0.3, 30);
    let x32 = x.mapv(|v| v as f32);
    for w in [1.0, 4.0] {
        let s64 = ClassifierFreeGuided::new(&exact, 0, w).unwrap().score(&x, 0.3).unwrap();
        let s32 = ClassifierFreeGuided::new(&exact, 0, w).unwrap().score(&x32, 0.3).unwrap();
        let err = rel_max_diff(&s32.mapv(f64::from), &s64);
        assert!(err < 1e-5, "w={w}: f32 vs f64 relative error {err:e}");
    }
}

/// Chains per sampling run.
const N: usize = 20_000;

/// `(mean, standard deviation)` of a sample.
fn mean_sd(v: &Array1<f64>) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.sum() / n;
    (m, (v.mapv(|x| (x - m).powi(2)).sum() / (n - 1.0)).sqrt())
}

/// Per sample, the exact clean-data posterior `p_0(y | x)` of class `y`.
fn posterior(data: &LabelledMixture, x: &Array2<f64>, y: usize) -> Array1<f64> {
    data.class_probs_at(x.view(), 1.0, 0.0).unwrap().column(y).to_owned()
}

/// Fraction of samples whose most probable class under `p_0(. | x)` is `y`.
fn hard_frequency(data: &LabelledMixture, x: &Array2<f64>, y: usize) -> f64 {
    let p = data.class_probs_at(x.view(), 1.0, 0.0).unwrap();
    let hits = p.rows().into_iter().filter(|r| (0..r.len()).all(|c| r[y] >= r[c])).count();
    hits as f64 / x.nrows() as f64
}

/// Samples with `score` by ancestral sampling, 1000 steps (discretisation bias of
/// the class statistics ~1e-3, below one standard error; 200 steps gave ~6e-3), final Tweedie step.
fn sample(score: &dyn Score<Array2<f64>>, seed: u64) -> Array2<f64> {
    let sde = VpSde::default();
    let grid = TimeGrid::reverse(&sde, 1000).unwrap();
    let mut noise = GaussianNoise::new(seed);
    let x_t = prior_sample(&sde, &Array2::<f64>::zeros((N, 2)), &mut noise);
    Sampler::new(&sde, score).denoise(true).run(&mut Ancestral::new(), x_t, &grid, &mut noise).unwrap().x
}

/// `a` exceeds `b` by more than `K_SIGMA` standard errors of the difference
/// (the independent-samples error, conservative under common random numbers).
fn assert_greater(what: &str, a: (f64, f64), b: (f64, f64), n: usize) {
    let se = (a.1.powi(2) / n as f64 + b.1.powi(2) / n as f64).sqrt();
    assert!(a.0 - b.0 > K_SIGMA * se, "{what}: {} is not above {} by {K_SIGMA} x {se:.2e}", a.0, b.0);
}

#[test]
fn guided_sampling_puts_more_mass_on_the_class() {
    let sde = VpSde::default();
    let data = two_classes();
    let exact = ExactConditional::new(data.clone(), sde);
    let y = 0;
    let prior = data.class_weights()[y];
    // The w = 1 target: E p_0(y | x) over exact draws of p_0(x | y).
    let exact_cond = data.class_data(y).unwrap().sample(N, &mut rng(40));
    let target = mean_sd(&posterior(&data, &exact_cond, y));

    let mut stats = Vec::new();
    for w in [0.0, 1.0, 3.0] {
        let guided = ClassifierGuided::new(&exact, &exact, y, w).unwrap();
        let x = sample(&guided, 41);
        let p = mean_sd(&posterior(&data, &x, y));
        eprintln!(
            "classifier guidance w = {w}: mean p_0(y|x) = {:.4} (sd {:.3}), argmax frequency {:.4}, n = {N}",
            p.0,
            p.1,
            hard_frequency(&data, &x, y)
        );
        stats.push(p);
    }
    eprintln!("prior p(y) = {prior:.4}; exact E[p_0(y|x) | y] = {:.4} (sd {:.3})", target.0, target.1);
    // w = 0 samples p_0: E p_0(y | x) = p(y) exactly.
    let se0 = stats[0].1 / (N as f64).sqrt();
    assert!((stats[0].0 - prior).abs() < K_SIGMA * se0, "w = 0: {} vs prior {prior} (se {se0:.2e})", stats[0].0);
    // w = 1 samples p_0(x | y).
    let se1 = (stats[1].1.powi(2) / N as f64 + target.1.powi(2) / N as f64).sqrt();
    assert!(
        (stats[1].0 - target.0).abs() < K_SIGMA * se1,
        "w = 1: {} vs exact {} (se {se1:.2e})",
        stats[1].0,
        target.0
    );
    assert_greater("w = 1 over w = 0", stats[1], stats[0], N);
    assert_greater("w = 3 over w = 1", stats[2], stats[1], N);

    // Classifier-free guidance at w = 3 (= classifier guidance at 4) beats w = 0
    // (= the conditional score, i.e. classifier guidance at 1).
    let cfg0 = mean_sd(&posterior(&data, &sample(&ClassifierFreeGuided::new(&exact, y, 0.0).unwrap(), 42), y));
    let cfg3 = mean_sd(&posterior(&data, &sample(&ClassifierFreeGuided::new(&exact, y, 3.0).unwrap(), 42), y));
    eprintln!("CFG w = 0: mean p_0(y|x) = {:.4}; w = 3: {:.4}, n = {N}", cfg0.0, cfg3.0);
    let se = (cfg0.1.powi(2) / N as f64 + target.1.powi(2) / N as f64).sqrt();
    assert!((cfg0.0 - target.0).abs() < K_SIGMA * se, "CFG w = 0: {} vs exact {}", cfg0.0, target.0);
    assert_greater("CFG w = 3 over w = 0", cfg3, cfg0, N);
}

/// Negative scales are accepted and mean what the docs say: classifier-free guidance
/// at `w = -1` is the unconditional score exactly (exponent `1 + w = 0`), and
/// classifier guidance at `w = -2` steers away from the class: less mass on it than
/// unguided sampling (`w = 0`, which puts `p(y)` there), by more than `K_SIGMA`
/// standard errors.
#[test]
fn negative_scales_ignore_or_avoid_the_class() {
    let sde = VpSde::default();
    let data = two_classes();
    let exact = ExactConditional::new(data.clone(), sde);
    for (i, &t) in TIMES.iter().enumerate() {
        let x = points(&data, &sde, t, 60 + i as u64);
        for y in 0..2 {
            let cfg = ClassifierFreeGuided::new(&exact, y, -1.0).unwrap();
            assert_eq!(cfg.exponent(), 0.0);
            assert_eq!(cfg.score(&x, t).unwrap(), exact.score_cond(&x, t, None).unwrap(), "t={t} y={y}");
        }
    }
    let (n, steps) = (4000, 200);
    let grid = TimeGrid::reverse(&sde, steps).unwrap();
    let mass = |w: f64| {
        let guided = ClassifierGuided::new(&exact, &exact, 0, w).unwrap();
        assert_eq!(guided.exponent(), w);
        let mut noise = GaussianNoise::new(70);
        let x_t = prior_sample(&sde, &Array2::<f64>::zeros((n, 2)), &mut noise);
        let run = Sampler::new(&sde, &guided).denoise(true).run(&mut Ancestral::new(), x_t, &grid, &mut noise);
        mean_sd(&posterior(&data, &run.unwrap().x, 0))
    };
    let (away, plain) = (mass(-2.0), mass(0.0));
    eprintln!("classifier guidance: mean p_0(y|x) w = -2: {:.4}, w = 0: {:.4}, n = {n}", away.0, plain.0);
    assert_greater("w = 0 over w = -2", plain, away, n);
}

#[test]
fn every_sampler_runs_guided() {
    let sde = VpSde::default();
    let exact = ExactConditional::new(two_classes(), sde);
    let cg = ClassifierGuided::new(&exact, &exact, 1, 2.0).unwrap();
    let cfg = ClassifierFreeGuided::new(&exact, 0, 2.0).unwrap();
    let grid = TimeGrid::reverse(&sde, 20).unwrap();
    for name in scoresde_solvers::SAMPLERS {
        for score in [&cg as &dyn Score<Array2<f64>>, &cfg] {
            let mut solver = by_name::<Array2<f64>>(name).unwrap();
            let mut noise = GaussianNoise::new(5);
            let x_t = prior_sample(&sde, &Array2::<f64>::zeros((64, 2)), &mut noise);
            let run = Sampler::new(&sde, score).run(solver.as_mut(), x_t, &grid, &mut noise).unwrap();
            assert_eq!(run.x.dim(), (64, 2), "{name}");
            assert!(run.x.iter().all(|v| v.is_finite()), "{name}");
        }
    }
}

#[test]
fn bad_classes_and_scales_are_errors() {
    let sde = VpSde::default();
    let exact = ExactConditional::new(two_classes(), sde);
    let x = Array2::<f64>::zeros((3, 2));
    let is_param = |r: Result<_, Error>, name: &str| match r {
        Err(Error::InvalidParameter { name: n, .. }) => assert_eq!(n, name),
        Err(e) => panic!("expected invalid `{name}`, got {e}"),
        Ok(_) => panic!("expected invalid `{name}`, got Ok"),
    };
    is_param(ClassifierGuided::<Array2<f64>>::new(&exact, &exact, 2, 1.0).map(|_| ()), "class");
    is_param(ClassifierFreeGuided::<Array2<f64>>::new(&exact, 7, 1.0).map(|_| ()), "class");
    is_param(Conditioned::<Array2<f64>>::new(&exact, Some(2)).map(|_| ()), "class");
    for w in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        is_param(ClassifierGuided::<Array2<f64>>::new(&exact, &exact, 0, w).map(|_| ()), "guidance scale");
        is_param(ClassifierFreeGuided::<Array2<f64>>::new(&exact, 0, w).map(|_| ()), "guidance scale");
    }
    is_param(exact.score_cond(&x, 0.5, Some(2)).map(|_| ()), "class");
    // Setters validate too, and leave the wrapper as it was on error.
    let mut cfg = ClassifierFreeGuided::<Array2<f64>>::new(&exact, 1, 2.0).unwrap();
    is_param(cfg.set_class(2), "class");
    is_param(cfg.set_scale(f64::NAN), "guidance scale");
    assert_eq!((cfg.class(), cfg.scale()), (1, 2.0));
    cfg.set_class(0).unwrap();
    cfg.set_scale(-0.5).unwrap();
    assert_eq!((cfg.class(), cfg.scale()), (0, -0.5));
    let mut cg = ClassifierGuided::<Array2<f64>>::new(&exact, &exact, 1, 2.0).unwrap();
    is_param(cg.set_class(5), "class");
    is_param(cg.set_scale(f64::INFINITY), "guidance scale");
    assert_eq!((cg.class(), cg.scale()), (1, 2.0));
    is_param(exact.grad_log_prob(&x, 0.5, 2).map(|_| ()), "class");
    let msg = ClassifierFreeGuided::<Array2<f64>>::new(&exact, 2, 1.0).unwrap_err().to_string();
    assert!(msg.contains("0..2"), "{msg}");
    assert!(matches!(exact.score_cond(&x, 1.5, Some(0)), Err(Error::TimeOutOfRange { .. })));
    assert!(matches!(exact.grad_log_prob(&Array2::<f64>::zeros((3, 5)), 0.5, 0), Err(Error::ShapeMismatch { .. })));
}

#[test]
fn labelled_samples_follow_the_class_prior() {
    let data = two_classes();
    let n = 40_000;
    let (x, labels) = data.sample_labelled(n, &mut rng(50));
    assert_eq!(x.dim(), (n, 2));
    // The same draws as the unlabelled sampler.
    assert_eq!(x, data.data().sample(n, &mut rng(50)));
    let p = data.class_weights()[0];
    let freq = labels.iter().filter(|&&l| l == 0).count() as f64 / n as f64;
    let se = (p * (1.0 - p) / n as f64).sqrt();
    assert!((freq - p).abs() < K_SIGMA * se, "class 0 frequency {freq} vs {p}");
    // Class-0 draws sit around component 0's mean (1.5, 0).
    let rows: Vec<usize> = (0..n).filter(|&i| labels[i] == 0).collect();
    let m0 = x.select(ndarray::Axis(0), &rows).mean_axis(ndarray::Axis(0)).unwrap();
    let se = 0.6 / (rows.len() as f64).sqrt();
    assert!((m0[0] - 1.5).abs() < K_SIGMA * se && m0[1].abs() < K_SIGMA * se, "{m0}");
}

/// The EDM noise level `σ(t)/a(t)` of the VP SDE at `t`.
fn edm_sigma(sde: &VpSde, t: f64) -> f64 {
    sde.sigma(t) / sde.alpha(t)
}

/// CFG rescale `φ = 0` and a guidance interval covering every noise level of `[eps, 1]`
/// give plain CFG bit for bit; outside the interval the score is the conditional one bit
/// for bit, inside it plain CFG; with `φ = 1` each sample of the guided score has the
/// standard deviation of the conditional score (relative 1e-12), and other `φ` blend.
#[test]
fn interval_and_rescale_reduce_to_plain_cfg_and_match_the_conditional_spread() {
    let sde = VpSde::default();
    let data = two_classes();
    let exact = ExactConditional::new(data.clone(), sde);
    let (lo_all, hi_all) = (edm_sigma(&sde, sde.t_eps()), edm_sigma(&sde, 1.0));
    for (i, &t) in TIMES.iter().enumerate() {
        let x = points(&data, &sde, t, 80 + i as u64);
        for w in [1.0, 3.0, 10.0] {
            let plain = ClassifierFreeGuided::new(&exact, 0, w).unwrap().score(&x, t).unwrap();
            let cond = exact.score_cond(&x, t, Some(0)).unwrap();
            let same = ClassifierFreeGuided::new(&exact, 0, w)
                .unwrap()
                .with_rescale(0.0)
                .unwrap()
                .with_interval(Box::new(sde), lo_all, hi_all)
                .unwrap();
            assert_eq!(same.score(&x, t).unwrap(), plain, "t = {t}, w = {w}");
            // An interval around this t's level guides; one above it does not.
            let level = edm_sigma(&sde, t);
            let inside =
                ClassifierFreeGuided::new(&exact, 0, w).unwrap().with_interval(Box::new(sde), 0.5 * level, 2.0 * level);
            assert_eq!(inside.unwrap().score(&x, t).unwrap(), plain, "t = {t}, w = {w}");
            let above =
                ClassifierFreeGuided::new(&exact, 0, w).unwrap().with_interval(Box::new(sde), 2.0 * level, 4.0 * level);
            assert_eq!(above.unwrap().score(&x, t).unwrap(), cond, "t = {t}, w = {w}");
            // phi = 1: the conditional per-sample std; phi = 0.5: halfway in the factor.
            let full =
                ClassifierFreeGuided::new(&exact, 0, w).unwrap().with_rescale(1.0).unwrap().score(&x, t).unwrap();
            let half =
                ClassifierFreeGuided::new(&exact, 0, w).unwrap().with_rescale(0.5).unwrap().score(&x, t).unwrap();
            let (sd_full, sd_cond, sd_plain) =
                (full.sample_stds().unwrap(), cond.sample_stds().unwrap(), plain.sample_stds().unwrap());
            for k in 0..x.nrows() {
                assert!((sd_full[k] - sd_cond[k]).abs() <= 1e-12 * sd_cond[k], "t {t} w {w} sample {k}");
                let r = sd_cond[k] / sd_plain[k];
                for j in 0..2 {
                    let want = plain[[k, j]] * (0.5 * r + 0.5);
                    assert!((half[[k, j]] - want).abs() <= 1e-12 * want.abs().max(1.0), "t {t} w {w} sample {k}");
                }
            }
        }
    }
}

#[test]
fn bad_intervals_and_rescales_are_errors() {
    let exact = ExactConditional::new(two_classes(), VpSde::default());
    let cfg = || ClassifierFreeGuided::<Array2<f64>>::new(&exact, 0, 2.0).unwrap();
    for (lo, hi) in [(1.0, 1.0), (2.0, 1.0), (-0.1, 1.0), (0.1, f64::INFINITY), (f64::NAN, 1.0)] {
        assert!(cfg().with_interval(Box::new(VpSde::default()), lo, hi).is_err(), "[{lo}, {hi}]");
    }
    for phi in [-0.1, 1.1, f64::NAN] {
        assert!(cfg().with_rescale(phi).is_err(), "{phi}");
    }
    assert!(cfg().with_interval(Box::new(VpSde::default()), 0.0, 5.0).is_ok());
    assert!(cfg().with_rescale(0.7).is_ok());
}

/// Class purity (mean exact posterior `p_0(y | x)`, and the fraction of samples whose most
/// probable class is `y`) and spread (`sqrt(trace Cov)` of the samples) of CFG samples.
fn purity_spread(score: &dyn Score<Array2<f64>>, data: &LabelledMixture, n: usize, seed: u64) -> (f64, f64, f64, f64) {
    let sde = VpSde::default();
    let grid = TimeGrid::reverse(&sde, 200).unwrap();
    let mut noise = GaussianNoise::new(seed);
    let x_t = prior_sample(&sde, &Array2::<f64>::zeros((n, 2)), &mut noise);
    let x = Sampler::new(&sde, score).denoise(true).run(&mut Ancestral::new(), x_t, &grid, &mut noise).unwrap().x;
    let p = mean_sd(&posterior(data, &x, 0));
    let (_, cov) = mean_cov(&x);
    (p.0, p.1, hard_frequency(data, &x, 0), (cov[[0, 0]] + cov[[1, 1]]).sqrt())
}

/// Class 0 of the two-class mixture (one component, std 0.6: spread `0.6 sqrt 2 = 0.85`),
/// 4000 ancestral chains of 200 steps, exact scores, for w = 0, 1, 3, 10 plain, with the
/// guidance interval `σ̃ in [1, 5]` (the data's std is about 1.2; `[0.3, 5]` changed little
/// here: spread 0.68 at w = 10), with rescale `φ = 0.7` (Lin et al.'s choice) and both.
/// Asserted: at w = 10 plain CFG shrinks the spread well below the data's and the interval
/// brings it closer (each by more than 5 standard errors of a sample std, `0.85 / sqrt(2n)`),
/// while its purity stays far above the conditional (w = 0) one. Rescale lowers the purity
/// (w = 3, 10: by more than 5 standard errors of the difference) and, on 2-D
/// samples, where a sample's std is that of two numbers and can be near 0, inflates the
/// spread many-fold: it is a statistic made for images.
#[test]
fn interval_and_rescale_on_the_labelled_mixture() {
    let sde = VpSde::default();
    let data = two_classes();
    let exact = ExactConditional::new(data.clone(), sde);
    let n = 4000;
    let spread_data = 0.6 * 2f64.sqrt();
    let mut rows = vec![];
    for w in [0.0, 1.0, 3.0, 10.0] {
        for what in ["plain", "interval", "rescale 0.7", "both"] {
            let mut cfg = ClassifierFreeGuided::new(&exact, 0, w).unwrap();
            if what == "interval" || what == "both" {
                cfg = cfg.with_interval(Box::new(sde), 1.0, 5.0).unwrap();
            }
            if what == "rescale 0.7" || what == "both" {
                cfg = cfg.with_rescale(0.7).unwrap();
            }
            let (p, sd, hard, spread) = purity_spread(&cfg, &data, n, 90);
            eprintln!("| {w} | {what} | {p:.4} | {hard:.4} | {spread:.4} |");
            rows.push((w, what, p, hard, spread, sd));
        }
    }
    eprintln!("data: spread {spread_data:.4}");
    let get = |w: f64, what: &str| *rows.iter().find(|r| r.0 == w && r.1 == what).unwrap();
    let se = K_SIGMA * spread_data / (2.0 * n as f64).sqrt();
    let (plain, interval) = (get(10.0, "plain"), get(10.0, "interval"));
    assert!(plain.4 < spread_data - se, "w = 10 plain spread {} vs data {spread_data}", plain.4);
    assert!(
        (interval.4 - spread_data).abs() + se < (plain.4 - spread_data).abs(),
        "w = 10: interval spread {} not closer to the data's {spread_data} than plain {}",
        interval.4,
        plain.4
    );
    assert!(interval.2 > get(0.0, "plain").2 + 0.05, "interval purity {} vs w = 0 {}", interval.2, get(0.0, "plain").2);
    for w in [3.0, 10.0] {
        let (plain, rescaled) = (get(w, "plain"), get(w, "rescale 0.7"));
        assert_greater(
            &format!("w = {w}: plain purity over rescaled"),
            (plain.2, plain.5),
            (rescaled.2, rescaled.5),
            n,
        );
        assert!(rescaled.4 > 2.0 * spread_data, "w = {w}: rescaled spread {}", rescaled.4);
    }
}
