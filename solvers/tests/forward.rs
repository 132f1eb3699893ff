//! `ForwardEulerMaruyama` on the VP-SDE against closed forms: Monte-Carlo moments
//! vs the exact discrete recursion, the recursion vs the analytic marginal, and
//! the measured weak and strong orders.

mod common;

use common::*;
use proptest::prelude::*;
use scoresde_solvers::prelude::*;

/// Monte-Carlo sample size of the moment tests.
const N_MC: usize = 20_000;

/// `VpSde` agrees with the DESIGN table (f, g, a, sigma, transition) typed out independently in `common::Vp`.
#[test]
fn vp_sde_matches_design_table() {
    let sde = VpSde::default();
    let close = |got: f64, want: f64| (got - want).abs() <= 1e-13 * want.abs().max(1e-300);
    for i in 0..=200 {
        let t = i as f64 / 200.0;
        assert!(close(sde.beta(t), VP.beta(t)), "beta({t})");
        assert!(close(sde.beta_integral(t), VP.big_b(t)), "B({t})");
        assert!(close(sde.drift_coef(t), VP.f(t)), "f({t})");
        assert!(close(sde.diffusion(t).powi(2), VP.g2(t)), "g({t})");
        assert!(close(sde.alpha(t), VP.a(t)), "a({t})");
        assert!(close(sde.sigma(t).powi(2), VP.sigma2(t)), "sigma({t})");
        if i > 0 {
            let s = t - 0.004;
            let (a_ts, v_ts) = sde.transition(s, t);
            assert!(close(a_ts, VP.a_ratio(t, s)), "a_ts({s},{t})");
            assert!(close(v_ts, VP.one_minus_ratio2(t, s)), "sigma_ts({s},{t})");
        }
    }
    // The DESIGN check values.
    assert!((VP.a(1.0) - 6.57e-3).abs() < 1e-5);
    assert!((VP.sigma2(1e-3).sqrt() - 0.01049).abs() < 1e-5);
}

proptest! {
    #![proptest_config(config(12, "proptest-regressions/forward.txt"))]

    /// Sampled mean/variance of forward EM on every grid kind equal the exact recursion
    /// `m' = (1 + f h) m`, `v' = (1 + f h)^2 v + g^2 h` on the same grid (Monte-Carlo error only).
    #[test]
    fn forward_em_moments_match_exact_recursion(
        data in gauss1(), kind in grid_kind(), steps in 4usize..=64, seed in 0u64..1_000_000,
    ) {
        let sde = VpSde::default();
        let t0 = sde.t_eps();
        let grid = kind.build(&sde, t0, 1.0, steps);
        let x0 = sample_marginal_1d(&data, t0, N_MC, seed);
        let score = data.score();
        let mut noise = GaussianNoise::new(seed ^ 0xf0f0);
        let run = Sampler::new(&sde, &score)
            .run(&mut ForwardEulerMaruyama, x0, &grid, &mut noise)
            .unwrap();
        let want = propagate_1d(Method::ForwardEm, &VP, &data, grid.times(), data.marginal(&VP, t0));
        assert_gaussian_moments(&format!("forward EM {kind:?} N={steps}"), N_MC, mean_var(col0(&run.x)), want);
    }

    /// The forward-EM recursion from the data law approaches the analytic marginal
    /// `(a(1) mu, a^2 s0^2 + sigma^2)` with error O(h): halving h divides the error by 2^(1 ± 0.15).
    #[test]
    fn forward_em_recursion_error_halves_with_h(data in gauss1()) {
        let errs: Vec<f64> = [64usize, 128, 256, 512, 1024]
            .iter()
            .map(|&n| {
                let grid = TimeGrid::uniform(0.0, 1.0, n).unwrap();
                let got = propagate_1d(Method::ForwardEm, &VP, &data, grid.times(), (data.mu, data.s0 * data.s0));
                law_error(got, data.marginal(&VP, 1.0))
            })
            .collect();
        for w in errs.windows(2) {
            let ratio = w[0] / w[1];
            prop_assert!(
                (2f64.powf(1.0 - ORDER_TOL)..=2f64.powf(1.0 + ORDER_TOL)).contains(&ratio),
                "error ratio {ratio} for halved h (errors {errs:?})"
            );
        }
    }

    /// Measured weak order of forward EM (slope of log moment error vs log h at t = 1) is 1 ± 0.15.
    #[test]
    fn forward_em_weak_order_is_one(data in gauss1()) {
        let slope = weak_order(&data);
        eprintln!("forward EM weak order {slope:.4} for {data:?}");
        prop_assert!((slope - 1.0).abs() <= ORDER_TOL, "weak order {slope}");
    }
}

/// Weak order of forward EM at t = 1 over N = 32 .. 512 uniform steps from the data law.
fn weak_order(data: &Gauss1) -> f64 {
    let ns = [32usize, 64, 128, 256, 512];
    let (mut hs, mut errs) = (vec![], vec![]);
    for n in ns {
        let grid = TimeGrid::uniform(0.0, 1.0, n).unwrap();
        let got = propagate_1d(Method::ForwardEm, &VP, data, grid.times(), (data.mu, data.s0 * data.s0));
        hs.push(1.0 / n as f64);
        errs.push(law_error(got, data.marginal(&VP, 1.0)));
    }
    loglog_slope(&hs, &errs)
}

/// The reported weak order of forward EM for data N(1, 0.5^2) is 1 ± 0.15.
#[test]
fn forward_em_weak_order_reported() {
    let slope = weak_order(&Gauss1 { mu: 1.0, s0: 0.5 });
    eprintln!("measured weak order, forward EM (N = 32..512): {slope:.4}");
    assert!((slope - 1.0).abs() <= ORDER_TOL, "weak order {slope}");
}

/// Measured strong order of forward EM on the VP-SDE (additive noise) is 1 ± 0.15: one
/// `BrownianPath` per sample solved at N = 2^4..2^8 steps against N = 2^12, error E|X_N - X_ref|.
#[test]
fn forward_em_strong_order_is_one() {
    let sde = VpSde::default();
    let data = Gauss1 { mu: 1.0, s0: 0.5 };
    let score = data.score();
    let paths = 400;
    let x0 = sample_marginal_1d(&data, 0.0, paths, 11);
    let solve = |n: usize| {
        // The same seed gives the same Brownian path at every resolution.
        let mut path = BrownianPath::new(2024, 0.0, 1.0, 1e-9).unwrap();
        let grid = TimeGrid::uniform(0.0, 1.0, n).unwrap();
        Sampler::new(&sde, &score).run(&mut ForwardEulerMaruyama, x0.clone(), &grid, &mut path).unwrap().x
    };
    let reference = solve(1 << 12);
    let ns: Vec<usize> = (4..=8).map(|k| 1usize << k).collect();
    let errs: Vec<f64> = ns.iter().map(|&n| (&solve(n) - &reference).mapv(f64::abs).mean().unwrap()).collect();
    let hs: Vec<f64> = ns.iter().map(|&n| 1.0 / n as f64).collect();
    let slope = loglog_slope(&hs, &errs);
    eprintln!("measured strong order, forward EM (N = 16..256, ref 4096, {paths} paths): {slope:.4}; errors {errs:?}");
    assert!((slope - 1.0).abs() <= ORDER_TOL, "strong order {slope}, errors {errs:?}");
}

/// Forward EM driven by a `BrownianPath` (one path per sample) has the law of the exact
/// recursion, on a dyadic grid (exact dyadic nodes) and a non-dyadic one (bridge draws).
#[test]
fn forward_em_on_brownian_path_matches_exact_recursion() {
    let sde = VpSde::default();
    let data = Gauss1 { mu: -1.0, s0: 0.7 };
    let score = data.score();
    for (i, steps) in [16usize, 10].into_iter().enumerate() {
        let grid = TimeGrid::uniform(0.0, 1.0, steps).unwrap();
        let x0 = sample_marginal_1d(&data, 0.0, N_MC, 300 + i as u64);
        let mut path = BrownianPath::new(400 + i as u64, 0.0, 1.0, 1e-6).unwrap();
        let run = Sampler::new(&sde, &score).run(&mut ForwardEulerMaruyama, x0, &grid, &mut path).unwrap();
        let want = propagate_1d(Method::ForwardEm, &VP, &data, grid.times(), (data.mu, data.s0 * data.s0));
        assert_gaussian_moments(
            &format!("forward EM on a Brownian path, N = {steps}"),
            N_MC,
            mean_var(col0(&run.x)),
            want,
        );
    }
}
