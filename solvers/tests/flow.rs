//! Flow matching / rectified flow as a forward process (`FlowSde`, `InterpolantSde`,
//! `VelocityCoefs`) and the chosen-diffusion sampler `flow-em`, against closed forms:
//! the SDE coefficients of the linear interpolant, the VP-SDE rebuilt as an interpolant,
//! the exact velocity of a Gaussian mixture (posterior means by hand) against the exact
//! score, and `flow-em`'s output law against the exact Gaussian law.
//! (The registry samplers' orders on `flow` are in tests/sdes.rs, which loops over `SDES`;
//! their f32 finiteness in tests/ode.rs.)

mod common;

use std::sync::Arc;

use common::*;
use ndarray::Array2;
use scoresde_solvers::interpolant::{FnSchedule, Linear, Schedule};
use scoresde_solvers::law::{scheme_law_1d, Gauss1d};
use scoresde_solvers::prelude::*;
use scoresde_solvers::{by_name, FlowEulerMaruyama, FlowSde, InterpolantSde, VelocityCoefs};

/// The linear interpolant's SDE: `f = -1/(1-t)`, `g^2 = 2t/(1-t)`, `lambda = ln((1-t)/t)`
/// with inverse `1/(1 + e^lambda)`, the transition `((1-t)/(1-s), t^2 - ((1-t)/(1-s))^2 s^2)`,
/// `t_max = 1 - 1e-3`, and bad `t_max` values are errors.
#[test]
fn rectified_flow_coefficients() {
    let sde = FlowSde::default();
    assert_eq!(sde.name(), "flow");
    assert_eq!(sde.t_max(), 1.0 - 1e-3);
    assert_eq!(sde.t_eps(), 1e-3);
    for t in [1e-3, 0.1, 0.5, 0.9, 0.999] {
        assert_eq!((sde.alpha(t), sde.sigma(t)), (1.0 - t, t));
        assert_eq!((sde.alpha_dot(t), sde.sigma_dot(t)), (-1.0, 1.0));
        assert!((sde.drift_coef(t) + 1.0 / (1.0 - t)).abs() <= 1e-12 / (1.0 - t));
        let g2 = 2.0 * t / (1.0 - t);
        assert!((sde.diffusion(t).powi(2) - g2).abs() <= 1e-12 * g2, "t = {t}");
        let lambda = ((1.0 - t) / t).ln();
        assert!((sde.log_snr(t) - lambda).abs() <= 1e-12);
        assert!((sde.t_of_log_snr(lambda).unwrap() - t).abs() <= 1e-14);
        for s in [0.0, 0.3 * t, 0.99 * t] {
            let r = (1.0 - t) / (1.0 - s);
            let (a_ts, v_ts) = sde.transition(s, t);
            assert!((a_ts - r).abs() <= 1e-14 && (v_ts - (t * t - r * r * s * s)).abs() <= 1e-14);
        }
    }
    // The closed-form inverse agrees with the bisection of the generic trait, even far out.
    let bisect = InterpolantSde::new(
        FnSchedule::new("linear-by-fn", Arc::new(|t| 1.0 - t), Arc::new(|t| t), Arc::new(|_| -1.0), Arc::new(|_| 1.0)),
        0.999,
    )
    .unwrap();
    for lambda in [-6.9, -2.0, 0.0, 3.0, 20.0] {
        let (closed, bis) = (sde.t_of_log_snr(lambda).unwrap(), bisect.t_of_log_snr(lambda).unwrap());
        assert!((closed - bis).abs() <= 1e-12 * closed.max(1e-12) + 1e-15, "lambda {lambda}: {closed} vs {bis}");
    }
    assert!(sde.t_of_log_snr(-7.0).is_err(), "beyond t_max");
    assert!(sde.t_of_log_snr(f64::NAN).is_err());
    // Prior: N(0, a^2 + sigma^2) at t_max, 0.999^2 + 0.001^2.
    assert!((sde.prior_std() - (0.999f64.powi(2) + 1e-6).sqrt()).abs() < 1e-15);
    for bad in [1.0, 1.5, 0.0, 1e-3, f64::NAN, f64::INFINITY] {
        let e = FlowSde::with_t_max(bad).unwrap_err();
        assert!(e.to_string().contains("t_max"), "{e}");
    }
    assert!(FlowSde::with_t_max(0.99).unwrap().t_max() == 0.99);
    assert!(FlowSde::default().with_eps(0.999).is_err());
    assert!(sde.check_time(0.9995).is_err(), "t_max < 1 is the end of the range");
}

/// The VP-SDE written as an interpolant from its closed forms (`a = e^{-B/2}`,
/// `sigma = sqrt(1 - e^{-B})`, `a' = -beta a / 2`, `sigma' = beta e^{-B} / (2 sigma)`):
/// `f = a'/a` and `g^2 = 2 sigma sigma' - 2 f sigma^2` give back `-beta/2` and `beta`, and
/// log-SNR, its inverse and transitions agree with `VpSde`.
#[test]
fn vp_as_an_interpolant_is_the_vp_sde() {
    let big_b = |t: f64| VP.big_b(t);
    let vp_fn = FnSchedule::new(
        "vp-by-fn",
        Arc::new(move |t| (-0.5 * big_b(t)).exp()),
        Arc::new(move |t| (1.0 - (-big_b(t)).exp()).sqrt()),
        Arc::new(move |t| -0.5 * VP.beta(t) * (-0.5 * big_b(t)).exp()),
        Arc::new(move |t| VP.beta(t) * (-big_b(t)).exp() / (2.0 * (1.0 - (-big_b(t)).exp()).sqrt())),
    );
    let interp = InterpolantSde::new(vp_fn, 1.0).unwrap();
    let vp = VpSde::default();
    for t in [1e-3, 0.05, 0.3, 0.7, 1.0] {
        let rel = |x: f64, y: f64| (x - y).abs() <= 1e-10 * y.abs().max(1e-12);
        assert!(rel(interp.drift_coef(t), vp.drift_coef(t)), "f at {t}");
        assert!(rel(interp.diffusion(t), vp.diffusion(t)), "g at {t}: {} vs {}", interp.diffusion(t), vp.diffusion(t));
        assert!(rel(interp.log_snr(t), vp.log_snr(t)), "lambda at {t}");
        // The trait's default derivatives (from f and g) agree with the closed forms.
        assert!(rel(vp.alpha_dot(t), interp.alpha_dot(t)) && rel(vp.sigma_dot(t), interp.sigma_dot(t)), "t = {t}");
        let back = interp.t_of_log_snr(vp.log_snr(t)).unwrap();
        assert!((back - t).abs() <= 1e-9 * t, "t(lambda) at {t}");
        let (a1, v1) = interp.transition(0.5 * t, t);
        let (a2, v2) = vp.transition(0.5 * t, t);
        assert!(rel(a1, a2) && (v1 - v2).abs() <= 1e-10, "transition at {t}");
    }
    assert!(interp.prior_std() > 0.99 && interp.prior_std() <= 1.0 + 1e-12);
}

/// The exact posterior means `E[x_0 | x_t]` and `E[z | x_t]` of an isotropic Gaussian
/// mixture (responsibilities and per-component posterior means, by hand).
fn posterior_means(data: &GaussianMixture, x: &Array2<f64>, a: f64, s: f64) -> (Array2<f64>, Array2<f64>) {
    let (w, m, c) = (data.weights(), data.means(), data.covariances());
    let k = w.len();
    let mut x0 = Array2::zeros(x.raw_dim());
    for (i, row) in x.outer_iter().enumerate() {
        let mut logr = vec![0.0; k];
        for j in 0..k {
            let cj = c[[j, 0, 0]];
            let v = a * a * cj + s * s;
            let d2: f64 = row.iter().zip(m.row(j)).map(|(xi, mi)| (xi - a * mi).powi(2)).sum();
            logr[j] = w[j].ln() - 0.5 * d2 / v - 0.5 * row.len() as f64 * v.ln();
        }
        let top = logr.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let r: Vec<f64> = logr.iter().map(|l| (l - top).exp()).collect();
        let total: f64 = r.iter().sum();
        for j in 0..k {
            let cj = c[[j, 0, 0]];
            let gain = a * cj / (a * a * cj + s * s);
            for d in 0..row.len() {
                x0[[i, d]] += r[j] / total * (m[[j, d]] + gain * (row[d] - a * m[[j, d]]));
            }
        }
    }
    let eps = (x - &(&x0 * a)) / s;
    (x0, eps)
}

/// On the exact Gaussian-mixture model, the exact velocity `E[a' x_0 + sigma' z | x_t]`
/// (posterior means by hand) is the probability-flow velocity `f x - g^2/2 s`, and
/// converting it through `VelocityCoefs` gives the exact score (`ExactScore`), on
/// rectified flow and on VP.
#[test]
fn exact_velocity_converts_to_the_exact_score() {
    let data = GaussianMixture::ring(5, 2.0, 0.3).unwrap();
    let x = data.marginal(&VpSde::default(), 0.3).sample(40, &mut rng(11));
    let sdes: [Box<dyn Sde>; 2] = [Box::new(FlowSde::default()), Box::new(VpSde::default())];
    for sde in &sdes {
        for t in [1e-3, 0.1, 0.5, 0.9, sde.t_max()] {
            let (a, s) = (sde.alpha(t), sde.sigma(t));
            let x = &x * (a * a * 4.0 + s * s).sqrt() / 2.0;
            let (x0, eps) = posterior_means(&data, &x, a, s);
            let v = &x0 * sde.alpha_dot(t) + &eps * sde.sigma_dot(t);
            let exact = data.score_at(&x, a, s).unwrap();
            let pf_v = &x * sde.drift_coef(t) - &exact * (0.5 * sde.diffusion(t).powi(2));
            let c = VelocityCoefs::of(sde.as_ref(), t).unwrap();
            let (sx, sv) = c.score(s);
            let from_v = &x * sx + &v * sv;
            let scale = exact.iter().map(|e| e.abs()).fold(1.0, f64::max);
            let vscale = v.iter().map(|e| e.abs()).fold(1.0, f64::max);
            for ((p, q), (e, f)) in from_v.iter().zip(exact.iter()).zip(pf_v.iter().zip(v.iter())) {
                assert!((p - q).abs() <= 1e-8 * scale, "{} t = {t}: score from v {p} vs exact {q}", sde.name());
                assert!(
                    (e - f).abs() <= 1e-8 * vscale * (1.0 + sde.drift_coef(t).abs()),
                    "{} t = {t}: pf {e} vs v {f}",
                    sde.name()
                );
            }
            // x0 and eps back from (x, v) are the posterior means themselves.
            let x0_back = &x * c.x0_x + &v * c.x0_v;
            let eps_back = &x * c.eps_x + &v * c.eps_v;
            assert!(x0_back.iter().zip(x0.iter()).all(|(p, q)| (p - q).abs() <= 1e-8 * (1.0 + q.abs())));
            assert!(eps_back.iter().zip(eps.iter()).all(|(p, q)| (p - q).abs() <= 1e-8 * (1.0 + q.abs())));
        }
    }
    // Rectified flow: x0 = x - t v, eps = x + (1 - t) v.
    let c = VelocityCoefs::of(&FlowSde::default(), 0.25).unwrap();
    assert_eq!((c.x0_x, c.x0_v, c.eps_x, c.eps_v), (1.0, -0.25, 1.0, 0.75));
    assert!(VelocityCoefs::of(&FlowSde::default(), 1.0).is_err(), "outside [0, t_max]");
}

/// `flow-em` with `c = 0` is the probability-flow Euler step (`ode-euler`) to rounding, and
/// draws no noise.
#[test]
fn flow_em_c0_is_the_probability_flow_euler_step() {
    let data = GaussianMixture::ring(4, 1.5, 0.2).unwrap();
    let sde = FlowSde::default();
    let score = ExactScore::new(data, sde.clone());
    let x = Array2::from_shape_fn((6, 2), |(i, j)| i as f64 * 0.4 - 1.0 + j as f64 * 0.3);
    for (t, t_next) in [(0.999, 0.9), (0.5, 0.45), (0.01, 0.001)] {
        let mut zero = by_name::<Array2<f64>>("flow-em:0").unwrap();
        let mut euler = by_name::<Array2<f64>>("ode-euler").unwrap();
        let step = |solver: &mut dyn Solver<Array2<f64>>, noise: &mut GaussianNoise| {
            let mut ctx = Ctx { sde: &sde, score: &score, noise };
            solver.step(x.clone(), t, t_next, &mut ctx).unwrap()
        };
        let (mut n1, mut n2) = (GaussianNoise::new(1), GaussianNoise::new(1));
        let (y, z) = (step(zero.as_mut(), &mut n1), step(euler.as_mut(), &mut n2));
        for (p, q) in y.iter().zip(z.iter()) {
            assert!((p - q).abs() <= 1e-12 * (1.0 + q.abs()), "({t}, {t_next}): {p} vs {q}");
        }
        // Same noise stream position afterwards: c = 0 drew nothing.
        let (a, b): (Array2<f64>, Array2<f64>) = (n1.normal(&x), n2.normal(&x));
        assert_eq!(a, b);
    }
    // c > 0 differs.
    let mut one = FlowEulerMaruyama::new(0.5).unwrap();
    let mut noise = GaussianNoise::new(1);
    let mut ctx = Ctx { sde: &sde, score: &score, noise: &mut noise };
    let y = one.step(x.clone(), 0.5, 0.45, &mut ctx).unwrap();
    assert!(y != x);
}

/// `flow-em` (c = 1) from the exact prior on rectified flow, data `N(1, 0.5^2)`, 200
/// uniform steps: 20 000 samples have the exact law's mean and variance at `eps` within
/// `K_SIGMA` standard errors (mean `sqrt(v/n)`, variance `v sqrt(2/(n-1))`, n = 20 000:
/// about 0.018 and 0.035 for v = 0.25) plus the scheme's exact bias (`scheme_law_1d`).
#[test]
fn flow_em_samples_match_the_exact_law() {
    let (mu, s0, n) = (1.0, 0.5, 20_000);
    let sde = FlowSde::default();
    let data = GaussianMixture::gaussian(ndarray::arr1(&[mu]).view(), ndarray::arr2(&[[s0 * s0]]).view()).unwrap();
    let score = ExactScore::new(data.clone(), sde.clone());
    let grid = TimeGrid::uniform(sde.t_max(), sde.t_eps(), 200).unwrap();
    let x = data.marginal(&sde, sde.t_max()).sample(n, &mut rng(5));
    let mut solver = FlowEulerMaruyama::default();
    let run = Sampler::new(&sde, &score).run(&mut solver, x, &grid, &mut GaussianNoise::new(6)).unwrap();
    let (m, v) = mean_var(col0(&run.x));
    let exact = Gauss1d::marginal(&sde, mu, s0, sde.t_eps());
    let (law, _) = scheme_law_1d(&mut solver, &sde, mu, s0, &grid, false).unwrap();
    let nf = n as f64;
    let m_tol = K_SIGMA * (exact.var / nf).sqrt() + (law.mean - exact.mean).abs();
    let v_tol = K_SIGMA * exact.var * (2.0 / (nf - 1.0)).sqrt() + (law.var - exact.var).abs();
    eprintln!("flow-em: mean {m} var {v}; exact {exact:?}; scheme law {law:?}");
    assert!((m - exact.mean).abs() <= m_tol, "mean {m} vs {} (tol {m_tol})", exact.mean);
    assert!((v - exact.var).abs() <= v_tol, "var {v} vs {} (tol {v_tol})", exact.var);
    // The scheme's own bias at 200 steps is small against the Monte Carlo tolerance.
    assert!((law.mean - exact.mean).abs() + (law.var - exact.var).abs() < 0.02, "{law:?} vs {exact:?}");
}

/// Bad `flow-em` parameters are errors naming `c`.
#[test]
fn flow_em_bad_parameters() {
    for bad in ["flow-em:-1", "flow-em:nan", "flow-em:inf"] {
        let e = by_name::<Array2<f64>>(bad).err().expect("an error").to_string();
        assert!(e.contains('c') && e.contains(">= 0"), "{bad}: {e}");
    }
    assert!(by_name::<Array2<f64>>("flow-em:abc").is_err());
    assert_eq!(by_name::<Array2<f64>>("flow-em:0.5").unwrap().name(), "flow-em");
    assert_eq!(Linear.name(), "flow");
}

/// Rectified flow against VP on 1-D Gaussian data `N(1, 0.5^2)` with the exact score, on the
/// same uniform grid (from each process's `t_max` to `eps = 1e-3`) at the same NFE: the exact
/// output law's error `|Δmean| + |Δvar|` against `p_eps`, measured (5, 10, 20, 50 steps):
/// `ode-heun` is 10-18x more accurate on flow (4.4e-3 vs 7.9e-2 at 10 NFE; its nearly straight
/// paths suit a second-order step), while `ode-euler` is 1.4-2x *less* accurate on flow (1.1e-1
/// vs 5.6e-2 at 5 NFE). Asserted: Heun at least 5x better on flow, Euler within 2.5x.
#[test]
fn flow_vs_vp_per_nfe_on_gaussian_data() {
    let (mu, s0) = (1.0, 0.5);
    let sdes: [Box<dyn Sde>; 2] = [Box::new(FlowSde::default()), Box::new(VpSde::default())];
    for name in ["ode-euler", "ode-heun"] {
        for n in [5usize, 10, 20, 50] {
            let errs: Vec<f64> = sdes
                .iter()
                .map(|sde| {
                    let grid = TimeGrid::uniform(sde.t_max(), sde.t_eps(), n).unwrap();
                    let mut solver = by_name::<Array2<f64>>(name).unwrap();
                    let (law, evals) = scheme_law_1d(solver.as_mut(), sde.as_ref(), mu, s0, &grid, false).unwrap();
                    let exact = Gauss1d::marginal(sde.as_ref(), mu, s0, sde.t_eps());
                    let err = (law.mean - exact.mean).abs() + (law.var - exact.var).abs();
                    eprintln!("{name} on {}: {n} steps, {evals} NFE: error {err:.3e}", sde.name());
                    err
                })
                .collect();
            let (flow, vp) = (errs[0], errs[1]);
            if name == "ode-heun" {
                assert!(flow < vp / 5.0, "{name}, {n} steps: flow {flow} vs vp {vp}");
            } else {
                assert!(flow < 2.5 * vp && vp < 2.5 * flow, "{name}, {n} steps: flow {flow} vs vp {vp}");
            }
        }
    }
}
