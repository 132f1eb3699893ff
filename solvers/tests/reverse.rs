//! Every reverse-time integrator with the exact score of Gaussian data: sampled
//! moments vs the hand-derived recursion of its published rule, and the
//! recursion's end law vs the exact law `p_eps` as h -> 0 (with measured orders).

mod common;

use common::*;
use ndarray::{array, Array2};
use proptest::prelude::*;
use scoresde_solvers::prelude::*;

/// Monte-Carlo sample size of the moment tests.
const N_MC: usize = 20_000;

/// A constant Sgld step for the PC sampler that visibly moves the law but stays
/// stable everywhere: a quarter of the smallest marginal variance on [eps, 1]
/// (the corrector multiplies x by 1 - e/V, so e < 2 V is needed).
fn pc_step(data: &Gauss1, eps: f64) -> f64 {
    0.25 * data.marginal(&VP, eps).1.min(data.marginal(&VP, 1.0).1)
}

/// Runs `method` from exact samples of `p_1` over a `kind` grid of `steps` steps to eps
/// and checks the sample moments against the exact recursion of its update rule.
///
/// Coarse grids (2..16 steps) are where a wrong coefficient moves the law the most,
/// so they are the most sensitive setting for this Monte-Carlo comparison.
fn check_moments(method: Method, data: &Gauss1, kind: GridKind, steps: usize, seed: u64) {
    let sde = VpSde::default();
    let grid = &kind.build(&sde, 1.0, sde.t_eps(), steps);
    let score = data.score();
    // Exact samples of p_T, T = 1.
    let x_t = data.mixture().marginal(&sde, 1.0).sample(N_MC, &mut rng(seed));
    let mut noise = GaussianNoise::new(seed.wrapping_add(1));
    let run = Sampler::new(&sde, &score).run(&mut method.solver(), x_t, grid, &mut noise).unwrap();
    let want = propagate_1d(method, &VP, data, grid.times(), data.marginal(&VP, 1.0));
    let what = format!("{method:?} on {data:?}, {} steps {:?}..", grid.steps(), &grid.times()[..2]);
    assert_gaussian_moments(&what, N_MC, mean_var(col0(&run.x)), want);
}

// Eight cases per integrator (each is a full Monte-Carlo run of 20 000 chains with a
// score evaluation per step) keep the debug-build suite fast.
proptest! {
    #![proptest_config(config(8, "proptest-regressions/reverse.txt"))]

    /// Reverse EM on every grid kind: sampled mean/variance match the hand-derived
    /// recursion `m' = c m + d`, `v' = c^2 v + e^2` (Monte-Carlo error only).
    #[test]
    fn reverse_em_moments_match_exact_recursion(
        data in gauss1(), kind in grid_kind(), steps in 2usize..=16, seed in 0u64..1_000_000,
    ) {
        check_moments(Method::ReverseEm, &data, kind, steps, seed);
    }

    /// Reverse diffusion on every grid kind: sampled moments match its exact recursion.
    #[test]
    fn reverse_diffusion_moments_match_exact_recursion(
        data in gauss1(), kind in grid_kind(), steps in 2usize..=16, seed in 0u64..1_000_000,
    ) {
        check_moments(Method::ReverseDiffusion, &data, kind, steps, seed);
    }

    /// Ancestral sampling with the small (posterior) variance: sampled moments match its exact recursion.
    #[test]
    fn ancestral_small_moments_match_exact_recursion(
        data in gauss1(), kind in grid_kind(), steps in 2usize..=16, seed in 0u64..1_000_000,
    ) {
        check_moments(Method::AncestralSmall, &data, kind, steps, seed);
    }

    /// Ancestral sampling with the large (forward) variance: sampled moments match its exact recursion.
    #[test]
    fn ancestral_large_moments_match_exact_recursion(
        data in gauss1(), kind in grid_kind(), steps in 2usize..=16, seed in 0u64..1_000_000,
    ) {
        check_moments(Method::AncestralLarge, &data, kind, steps, seed);
    }

    /// PC of reverse diffusion and a constant-step Sgld corrector (linear, so its composite
    /// recursion is exact): sampled moments match that recursion.
    #[test]
    fn pc_sgld_moments_match_exact_recursion(
        data in gauss1(), kind in grid_kind(), steps in 2usize..=16, seed in 0u64..1_000_000,
    ) {
        let step = pc_step(&data, VpSde::default().t_eps());
        check_moments(Method::PcSgld { step }, &data, kind, steps, seed);
    }

}

proptest! {
    #![proptest_config(config(12, "proptest-regressions/reverse.txt"))]

    /// The recursion's end law of each reverse integrator approaches the exact law
    /// `p_eps = N(a(eps) mu, a^2 s0^2 + sigma(eps)^2)`: on uniform grids the error strictly
    /// decreases as h halves (N = 256..4096) with a fitted order of 1 ± 0.15.
    #[test]
    fn reverse_recursion_converges_with_order_one(data in gauss1()) {
        let eps = VpSde::default().t_eps();
        let ns = [256usize, 512, 1024, 2048, 4096];
        let exact = data.marginal(&VP, eps);
        for method in REVERSE {
            let (mut hs, mut errs) = (vec![], vec![]);
            for n in ns {
                let grid = TimeGrid::uniform(1.0, eps, n).unwrap();
                let h = (1.0 - eps) / n as f64;
                // PC: a corrector step proportional to h, so its O(e) bias vanishes with h.
                let m = method.with_step(0.1 * h);
                hs.push(h);
                errs.push(law_error(propagate_1d(m, &VP, &data, grid.times(), data.marginal(&VP, 1.0)), exact));
            }
            for w in errs.windows(2) {
                prop_assert!(w[1] < w[0], "{method:?}: error does not decrease: {errs:?}");
            }
            let slope = loglog_slope(&hs, &errs);
            eprintln!("{method:?} order {slope:.4} (N = 256..4096) for {data:?}");
            prop_assert!((slope - 1.0).abs() <= ORDER_TOL, "{method:?}: order {slope}, errors {errs:?}");
        }
    }

    /// Measured weak order of reverse EM (N = 128..2048 uniform steps, error of the end law
    /// against `p_eps`) is 1 ± 0.15 for random Gaussian data.
    #[test]
    fn reverse_em_weak_order_is_one(data in gauss1()) {
        let slope = reverse_em_weak_order(&data);
        eprintln!("reverse EM weak order {slope:.4} for {data:?}");
        prop_assert!((slope - 1.0).abs() <= ORDER_TOL, "weak order {slope}");
    }

    /// On the non-uniform grids (quadratic, log-SNR, Karras) the recursion's end law also
    /// approaches `p_eps` as the step count doubles (N = 128..2048), for every reverse integrator.
    #[test]
    fn reverse_recursion_converges_on_every_grid(data in gauss1(), kind in grid_kind()) {
        let sde = VpSde::default();
        let eps = sde.t_eps();
        let exact = data.marginal(&VP, eps);
        for method in REVERSE {
            let errs: Vec<f64> = [128usize, 256, 512, 1024, 2048]
                .iter()
                .map(|&n| {
                    let grid = kind.build(&sde, 1.0, eps, n);
                    let m = method.with_step(0.1 / n as f64);
                    law_error(propagate_1d(m, &VP, &data, grid.times(), data.marginal(&VP, 1.0)), exact)
                })
                .collect();
            for w in errs.windows(2) {
                prop_assert!(w[1] < w[0], "{method:?} on {kind:?}: error does not decrease: {errs:?}");
            }
        }
    }
}

/// Weak order of reverse EM over N = 128..2048 uniform steps.
fn reverse_em_weak_order(data: &Gauss1) -> f64 {
    let eps = VpSde::default().t_eps();
    let (mut hs, mut errs) = (vec![], vec![]);
    for n in [128usize, 256, 512, 1024, 2048] {
        let grid = TimeGrid::uniform(1.0, eps, n).unwrap();
        let got = propagate_1d(Method::ReverseEm, &VP, data, grid.times(), data.marginal(&VP, 1.0));
        hs.push((1.0 - eps) / n as f64);
        errs.push(law_error(got, data.marginal(&VP, eps)));
    }
    loglog_slope(&hs, &errs)
}

/// The reported weak order of reverse EM for data N(1, 0.5^2) is 1 ± 0.15.
#[test]
fn reverse_em_weak_order_reported() {
    let slope = reverse_em_weak_order(&Gauss1 { mu: 1.0, s0: 0.5 });
    eprintln!("measured weak order, reverse EM (N = 128..2048): {slope:.4}");
    assert!((slope - 1.0).abs() <= ORDER_TOL, "weak order {slope}");
}

/// In 2-D with a full data covariance, reverse EM and ancestral sampling reproduce the
/// matrix recursion `m' = C m + d`, `S' = C S C^T + e^2 I` (mean vector and covariance matrix).
#[test]
fn two_dimensional_full_covariance_matches_matrix_recursion() {
    let sde = VpSde::default();
    let mu = [1.5, -0.5];
    let sigma0 = [[0.5, 0.3], [0.3, 0.25]];
    let data = GaussianMixture::gaussian(
        array![mu[0], mu[1]].view(),
        array![[sigma0[0][0], sigma0[0][1]], [sigma0[1][0], sigma0[1][1]]].view(),
    )
    .unwrap();
    let score = ExactScore::new(data.clone(), sde);
    let grid = TimeGrid::uniform(1.0, sde.t_eps(), 12).unwrap();
    // Exact p_1 = N(a mu, a^2 Sigma0 + sigma^2 I).
    let (a1, s1) = (VP.a(1.0), VP.sigma2(1.0));
    let start = ([a1 * mu[0], a1 * mu[1]], lin(a1 * a1, &sigma0, s1, &I2));
    for (i, method) in [Method::ReverseEm, Method::AncestralSmall].into_iter().enumerate() {
        let x_t: Array2<f64> = data.marginal(&sde, 1.0).sample(N_MC, &mut rng(77 + i as u64));
        let mut noise = GaussianNoise::new(99 + i as u64);
        let run = Sampler::new(&sde, &score).run(&mut method.solver(), x_t, &grid, &mut noise).unwrap();
        let want = propagate_2d(method, &VP, mu, sigma0, grid.times(), start);
        // The recursion's covariance is genuinely full (not a diagonal special case).
        assert!(want.1[0][1].abs() > 0.05, "{want:?}");
        assert_gaussian_moments_2d(&format!("{method:?} 2-D"), &run.x, want);
    }
}
