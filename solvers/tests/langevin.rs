//! Langevin moves at fixed t against closed forms: unadjusted Langevin (`Sgld`
//! with a constant step) has stationary variance `v / (1 - e/(2v))` on `N(m, v)`;
//! the SNR-rule `Langevin` corrector and `AnnealedLangevin` take exactly the
//! step sizes their rules define.

mod common;

use common::*;
use ndarray::{Array2, Axis};
use proptest::prelude::*;
use scoresde_solvers::prelude::*;

/// Number of parallel chains.
const CHAINS: usize = 20_000;

/// Relative tolerance (`K` standard errors) of a Gaussian sample variance of size `n`.
fn var_rel_tol(n: usize) -> f64 {
    K_SIGMA * (2.0 / (n as f64 - 1.0)).sqrt()
}

/// The exact score of `N(m, v)` written by hand: `-(x - m) / v`.
fn gauss_score(x: &Array2<f64>, m: f64, v: f64) -> Array2<f64> {
    x.mapv(|x| -(x - m) / v)
}

/// Batch mean of per-sample Euclidean norms (the `|.|` of the SNR rule).
fn mean_norm(x: &Array2<f64>) -> f64 {
    x.map_axis(Axis(1), |r| r.dot(&r).sqrt()).mean().unwrap()
}

/// `max |a - b| / (1 + max |b|)`.
fn rel_diff(a: &Array2<f64>, b: &Array2<f64>) -> f64 {
    let scale = 1.0 + b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    (a - b).iter().fold(0.0f64, |m, v| m.max(v.abs())) / scale
}

proptest! {
    #![proptest_config(config(8, "proptest-regressions/langevin.txt"))]

    /// Unadjusted Langevin (`Sgld`, constant step e) run from exact samples of `p_t = N(m, v)`
    /// reaches the stationary law `N(m, v / (1 - e/(2v)))` (20 000 parallel chains).
    #[test]
    fn ula_has_stationary_variance_v_over_one_minus_e_over_2v(
        data in gauss1(), t in 0.01..1.0f64, ratio in 0.5..1.5f64, seed in 0u64..1_000_000,
    ) {
        let sde = VpSde::default();
        let score = data.score();
        let (m, v) = data.marginal(&VP, t);
        let e = ratio * v;
        let v_inf = v / (1.0 - e / (2.0 * v));
        // x' = (1 - e/v) x + e m/v + sqrt(2e) z, so the variance approaches v_inf geometrically with
        // factor q = (1 - e/v)^2 <= 1/4 here; run until the transient is below 1% of the tolerance.
        let tol = var_rel_tol(CHAINS) * v_inf;
        let q = (1.0 - e / v).powi(2);
        let iters = ((0.01 * tol / (v - v_inf).abs()).ln() / q.ln()).ceil().max(1.0) as usize;
        prop_assert!((v - v_inf).abs() * q.powi(iters as i32) <= 0.01 * tol);

        let x0 = sample_marginal_1d(&data, t, CHAINS, seed);
        let mut noise = GaussianNoise::new(seed ^ 0xabc);
        let mut ctx = Ctx { sde: &sde, score: &score, noise: &mut noise };
        let sgld = Sgld::new(StepSchedule::Constant(e), 1).unwrap();
        let x = sgld.run(x0, t, 0, iters, &mut ctx).unwrap();
        assert_gaussian_moments(&format!("ULA e = {e}, {iters} iters"), CHAINS, mean_var(col0(&x)), (m, v_inf));
    }
}

/// The SNR-rule `Langevin` corrector at fixed t on `p_t = N(m, v)` moves exactly by
/// `x + e s + sqrt(2e) z` with `e = 2 alpha (r |z| / |s|)^2`, `alpha = (a(t_prev)/a(t))^2`,
/// and holds the chains at the stationary variance `v / (1 - e/(2v))` of those e.
#[test]
fn snr_langevin_keeps_variance_at_v_over_one_minus_e_over_2v() {
    let sde = VpSde::default();
    for (i, (data, t, snr)) in
        [(Gauss1 { mu: 1.0, s0: 0.5 }, 0.3, 0.5), (Gauss1 { mu: -2.0, s0: 0.2 }, 0.05, 0.8)].into_iter().enumerate()
    {
        let (t_prev, iters, window) = (t + 0.01, 20, 10);
        let score = data.score();
        let (m, v) = data.marginal(&VP, t);
        let alpha = VP.a_ratio(t_prev, t).powi(2);
        let mut corrector = Langevin::snr(snr).unwrap();
        let mut noise = RecordingNoise::new(40 + i as u64);
        let mut x = sample_marginal_1d(&data, t, CHAINS, 30 + i as u64);
        // Exact variance of the chains given the realised step sizes: v' = (1 - e/v)^2 v + 2 e.
        let mut v_rec = v;
        let mut steps = vec![];
        let mut v_hist = vec![];
        for _ in 0..iters {
            let s = gauss_score(&x, m, v);
            let mut ctx = Ctx { sde: &sde, score: &score, noise: &mut noise };
            let x_new = corrector.correct(x.clone(), t, t_prev, &mut ctx).unwrap();
            let z = noise.last.clone().expect("the corrector draws noise");
            let e = 2.0 * alpha * (snr * mean_norm(&z) / mean_norm(&s)).powi(2);
            let want = &x + &(&s * e) + &(&z * (2.0 * e).sqrt());
            let d = rel_diff(&x_new, &want);
            assert!(d < 1e-12, "Langevin move differs from x + e s + sqrt(2e) z by {d:e}");
            v_hist.push(v_rec);
            v_rec = (1.0 - e / v).powi(2) * v_rec + 2.0 * e;
            steps.push(e);
            x = x_new;
        }
        let tol = K_SIGMA * v_rec * (2.0 / (CHAINS as f64 - 1.0)).sqrt();
        assert_gaussian_moments(&format!("SNR Langevin r = {snr}"), CHAINS, mean_var(col0(&x)), (m, v_rec));

        // e is a batch statistic, so it fluctuates slightly from move to move. Each move maps
        // V to (1 - c) V_inf(e) + c V with c = (1 - e/v)^2 < 1, so over the last `window` moves the
        // variance is pulled into [V_inf(e_lo), V_inf(e_hi)], any distance outside shrinking by c.
        let v_inf = |e: f64| v / (1.0 - e / (2.0 * v));
        let last = &steps[iters - window..];
        let (e_lo, e_hi) = last.iter().fold((f64::INFINITY, 0.0f64), |(l, h), e| (l.min(*e), h.max(*e)));
        let (band_lo, band_hi) = (v_inf(e_lo), v_inf(e_hi));
        let c_max = last.iter().map(|e| (1.0 - e / v).powi(2)).fold(0.0f64, f64::max);
        let v0 = v_hist[iters - window];
        let slack = (band_lo - v0).max(v0 - band_hi).max(0.0) * c_max.powi(window as i32);
        let var = mean_var(col0(&x)).1;
        assert!(
            var >= band_lo - slack - tol && var <= band_hi + slack + tol,
            "variance {var} outside v/(1 - e/(2v)) = [{band_lo}, {band_hi}] ± {slack:e} + {tol:e}"
        );
        // The inflation is large enough that a chain keeping v (no O(e) bias) would fail.
        assert!(band_lo - slack - tol > v, "test has no power: v = {v}, band from {band_lo}");
    }
}

/// `Langevin::with_steps(3)` makes three moves per call, each with its own SNR step size
/// recomputed from the current score (deterministic noise, 2-D mixture score).
#[test]
fn snr_langevin_recomputes_step_for_each_move() {
    let sde = VpSde::default();
    let score = ExactScore::new(GaussianMixture::ring(4, 2.0, 0.3).unwrap(), sde);
    let (t, t_prev, snr) = (0.2, 0.25, 0.3);
    let x0 = GaussianMixture::ring(4, 2.0, 0.3).unwrap().marginal(&sde, t).sample(64, &mut rng(5));
    let z = Array2::from_shape_fn((64, 2), |(i, j)| ((i * 7 + j * 3) % 11) as f64 / 5.0 - 1.0);
    let mut noise = FixedNoise::new(z.clone());
    let mut corrector = Langevin::snr(snr).unwrap().with_steps(3).unwrap();
    let mut ctx = Ctx { sde: &sde, score: &score, noise: &mut noise };
    let got = corrector.correct(x0.clone(), t, t_prev, &mut ctx).unwrap();
    let alpha = VP.a_ratio(t_prev, t).powi(2);
    let mut want = x0;
    for _ in 0..3 {
        let s = Score::score(&score, &want, t).unwrap();
        let e = 2.0 * alpha * (snr * mean_norm(&z) / mean_norm(&s)).powi(2);
        want = &want + &(&s * e) + &(&z * (2.0 * e).sqrt());
    }
    assert_eq!(noise.draws, 3);
    assert!(rel_diff(&got, &want) < 1e-12, "{}", rel_diff(&got, &want));
}

/// A zero score (every sample at the mode) makes the SNR rule's step zero: the state does not move.
#[test]
fn snr_langevin_does_not_move_at_the_mode() {
    let sde = VpSde::default();
    let data = Gauss1 { mu: 1.5, s0: 0.4 };
    let score = data.score();
    let t = 0.4;
    let x = Array2::from_elem((8, 1), data.marginal(&VP, t).0);
    let mut noise = FixedNoise::new(Array2::from_elem((8, 1), 1.0));
    let mut ctx = Ctx { sde: &sde, score: &score, noise: &mut noise };
    let got = Langevin::default().correct(x.clone(), t, t + 0.01, &mut ctx).unwrap();
    assert!(rel_diff(&got, &x) < 1e-12);
}

/// `AnnealedLangevin` takes the step `e = 2 alpha (snr sigma(t))^2`, `alpha = (a(t_prev)/a(t))^2`,
/// for each of its moves; checked against the formula with a deterministic noise source,
/// directly and inside a corrector-only sampler run.
#[test]
fn annealed_langevin_step_is_two_alpha_snr_sigma_squared() {
    let sde = VpSde::default();
    let data = GaussianMixture::ring(3, 1.5, 0.2).unwrap();
    let score = ExactScore::new(data.clone(), sde);
    let z = Array2::from_shape_fn((32, 2), |(i, j)| ((i * 5 + j * 13) % 9) as f64 / 4.0 - 1.0);
    let manual = |x: &Array2<f64>, t: f64, t_prev: f64, snr: f64, moves: usize| {
        let alpha = VP.a_ratio(t_prev, t).powi(2);
        let e = 2.0 * alpha * (snr * VP.sigma2(t).sqrt()).powi(2);
        let mut x = x.clone();
        for _ in 0..moves {
            let s = Score::score(&score, &x, t).unwrap();
            x = &x + &(&s * e) + &(&z * (2.0 * e).sqrt());
        }
        x
    };

    // One call with two moves.
    let (t, t_prev, snr) = (0.3, 0.35, 0.2);
    let x0 = data.marginal(&sde, t).sample(32, &mut rng(1));
    let mut noise = FixedNoise::new(z.clone());
    let mut ctx = Ctx { sde: &sde, score: &score, noise: &mut noise };
    let got = AnnealedLangevin::new(snr, 2).unwrap().correct(x0.clone(), t, t_prev, &mut ctx).unwrap();
    let want = manual(&x0, t, t_prev, snr, 2);
    assert!(rel_diff(&got, &want) < 1e-12, "{}", rel_diff(&got, &want));
    assert_eq!(noise.draws, 2);

    // As an NCSN sampler: at each grid time t_{i+1} one move with t_prev = t_i.
    let grid = TimeGrid::new(vec![1.0, 0.6, 0.2]).unwrap();
    let x_t = data.marginal(&sde, 1.0).sample(32, &mut rng(2));
    let mut noise = FixedNoise::new(z.clone());
    let mut solver = Pc::corrector_only(AnnealedLangevin::new(0.16, 1).unwrap());
    let run = Sampler::new(&sde, &score).run(&mut solver, x_t.clone(), &grid, &mut noise).unwrap();
    let want = manual(&manual(&x_t, 0.6, 1.0, 0.16, 1), 0.2, 0.6, 0.16, 1);
    assert!(rel_diff(&run.x, &want) < 1e-12, "{}", rel_diff(&run.x, &want));
}
