//! The VP-SDE against DDPM (Ho et al. 2020): the discrete betas, and ancestral
//! sampling as DDPM's update `x_{t-1} = (x + beta s)/sqrt(1 - beta) + sqrt(beta) z`.

mod common;

use common::*;
use ndarray::Array2;
use proptest::prelude::*;
use scoresde_solvers::prelude::*;

/// A smooth, nonlinear, time-dependent test score, so the identities below are
/// checked for any score and not only for linear (Gaussian) ones.
struct WavyScore;

impl Score<Array2<f64>> for WavyScore {
    fn score(&self, x: &Array2<f64>, t: f64) -> scoresde_solvers::Result<Array2<f64>> {
        Ok(x.mapv(|v| -(1.0 + t) * v + 0.3 * (2.0 * v).sin()))
    }
}

/// `|got - want| <= 1e-12 * scale` elementwise, `scale` the magnitude of the terms summed.
fn assert_close_rel(got: &Array2<f64>, want: &Array2<f64>, scale: &Array2<f64>, what: &str) {
    for ((g, w), s) in got.iter().zip(want.iter()).zip(scale.iter()) {
        assert!((g - w).abs() <= 1e-12 * s.max(1e-300), "{what}: {g} vs {w} (scale {s})");
    }
}

/// One ancestral step and DDPM's update with the same z; `small` selects beta-tilde.
fn check_ancestral_is_ddpm(t: f64, t_next: f64, x: &Array2<f64>, z: &Array2<f64>, small: bool) {
    let sde = VpSde::default();
    let score = WavyScore;
    let mut noise = FixedNoise::new(z.clone());
    let mut ctx = Ctx { sde: &sde, score: &score, noise: &mut noise };
    let mut solver = Ancestral::with_variance(if small { Variance::Small } else { Variance::Large });
    let got = solver.step(x.clone(), t, t_next, &mut ctx).unwrap();

    // DDPM: beta = 1 - (a(t)/a(t_next))^2; beta-tilde = (1 - abar_{t-1}) / (1 - abar_t) beta.
    let beta = VP.one_minus_ratio2(t, t_next);
    let var = if small { VP.sigma2(t_next) / VP.sigma2(t) * beta } else { beta };
    let s = WavyScore.score(x, t).unwrap();
    let k = 1.0 / (1.0 - beta).sqrt();
    let want = (x + &(&s * beta)) * k + z * var.sqrt();
    let scale = (x.mapv(f64::abs) + s.mapv(f64::abs) * beta) * k + z.mapv(f64::abs) * var.sqrt();
    assert_close_rel(&got, &want, &scale, &format!("t = {t} -> {t_next}, small = {small}"));
}

/// `VpSde::default().ddpm_betas(1000)` is Ho et al.'s `linspace(1e-4, 0.02, 1000)` to 1e-12.
#[test]
fn ddpm_betas_are_ho_linear_schedule() {
    let betas = VpSde::default().ddpm_betas(1000).unwrap();
    assert_eq!(betas.len(), 1000);
    for (i, b) in betas.iter().enumerate() {
        let want = 1e-4 + (0.02 - 1e-4) * i as f64 / 999.0;
        assert!((b - want).abs() <= 1e-12, "beta[{i}] = {b}, want {want}");
    }
}

/// On the uniform 1000-step grid from 1 to 1e-3, every `Ancestral` step with `Variance::Large`
/// is DDPM's update `(x + beta s)/sqrt(1 - beta) + sqrt(beta) z`, and with `Variance::Small` the
/// same mean plus `sqrt(beta-tilde) z` (same z on both sides; relative tolerance 1e-12).
#[test]
fn ancestral_is_ddpm_update_on_1000_step_grid() {
    let grid = TimeGrid::uniform(1.0, 1e-3, 1000).unwrap();
    let x = Array2::from_shape_fn((6, 2), |(i, j)| (i as f64 - 2.5) * 0.8 + j as f64 * 0.3);
    let z = Array2::from_shape_fn((6, 2), |(i, j)| ((i * 3 + j * 5) % 7) as f64 / 3.0 - 1.0);
    for w in grid.times().windows(2) {
        check_ancestral_is_ddpm(w[0], w[1], &x, &z, false);
        check_ancestral_is_ddpm(w[0], w[1], &x, &z, true);
    }
}

proptest! {
    #![proptest_config(config(64, "proptest-regressions/ddpm.txt"))]

    /// For arbitrary step pairs t > t_next in [1e-3, 1] (not only 1000-step grids), the ancestral
    /// step (large / small variance) is DDPM's update with beta = 1 - (a(t)/a(t_next))^2.
    #[test]
    fn ancestral_is_ddpm_update_for_any_step(
        t in 2e-3..1.0f64, frac in 0.001..1.0f64,
        x in prop::collection::vec(-4.0..4.0f64, 8), z in prop::collection::vec(-3.0..3.0f64, 8),
    ) {
        let t_next = t - frac * (t - 1e-3);
        let x = Array2::from_shape_vec((4, 2), x).unwrap();
        let z = Array2::from_shape_vec((4, 2), z).unwrap();
        check_ancestral_is_ddpm(t, t_next, &x, &z, false);
        check_ancestral_is_ddpm(t, t_next, &x, &z, true);
    }
}

/// Max over the uniform N-step grid (1 -> 0) of |beta_i - beta(t_i) h|, beta_i = 1 - (a(t_i)/a(t_i - h))^2,
/// after checking each against the Taylor bound `(beta_max - beta_min) h^2/2 + beta(t)^2 h^2/2`
/// (from `beta_i = 1 - exp(-I)`, `I = beta(t) h - (beta_max - beta_min) h^2/2`, `I - I^2/2 <= 1 - e^-I <= I`).
fn max_beta_gap(n: usize) -> f64 {
    let sde = VpSde::default();
    let grid = TimeGrid::uniform(1.0, 0.0, n).unwrap();
    let h = 1.0 / n as f64;
    let mut worst = 0.0f64;
    for w in grid.times().windows(2) {
        let (t, t_next) = (w[0], w[1]);
        let beta_i = 1.0 - (sde.alpha(t) / sde.alpha(t_next)).powi(2);
        let gap = (beta_i - sde.beta(t) * h).abs();
        let bound = (20.0 - 0.1) * h * h / 2.0 + (sde.beta(t) * h).powi(2) / 2.0;
        assert!(gap <= bound * (1.0 + 1e-6) + 1e-15, "N = {n}, t = {t}: gap {gap:e} > bound {bound:e}");
        worst = worst.max(gap);
    }
    worst
}

/// On a uniform 1000-step grid the VP betas `1 - (a(t)/a(t_next))^2` are within O(h^2) of
/// `beta(t)/1000` (explicit Taylor bound at every step), and the gap shrinks 4x when h halves.
#[test]
fn vp_grid_betas_are_beta_t_over_n_to_second_order() {
    let gaps: Vec<f64> = [1000usize, 2000, 4000].iter().map(|&n| max_beta_gap(n)).collect();
    for w in gaps.windows(2) {
        let ratio = w[0] / w[1];
        assert!(
            (2f64.powf(2.0 - ORDER_TOL)..=2f64.powf(2.0 + ORDER_TOL)).contains(&ratio),
            "gap ratio {ratio} (gaps {gaps:?})"
        );
    }
}
