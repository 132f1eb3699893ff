//! The sub-VP, VE, cosine-VP and rectified-flow SDEs (and VP) against the kernel table of DESIGN.md §3:
//! closed-form check values, the kernel solving the SDE (finite differences of
//! `a(t)` and `sigma(t)^2` against `f` and `g`), exact transitions, forward
//! Euler–Maruyama (exact recursion and Monte Carlo) converging to the closed-form
//! marginals, and the reverse-time samplers converging to `p_eps` on each SDE.

mod common;

use common::*;
use ndarray::Array2;
use scoresde_solvers::law::{scheme_law_1d, Gauss1d};
use scoresde_solvers::prelude::*;
use scoresde_solvers::{sde_by_name, solver_info, OrderCheck, SDES, SOLVERS};

const PI: f64 = std::f64::consts::PI;

fn all_sdes() -> Vec<Box<dyn Sde>> {
    SDES.iter().map(|n| sde_by_name(n).unwrap()).collect()
}

/// Check values typed from the DESIGN table and the papers' formulas.
#[test]
fn closed_form_check_values() {
    // sub-VP: a = exp(-B/2), sigma = 1 - exp(-B), g^2 = beta (1 - exp(-2B)), B of the linear VP.
    let sub = SubVpSde::default();
    for t in [1e-3, 0.1, 0.5, 1.0] {
        let b = VP.big_b(t);
        assert!((sub.alpha(t) - (-0.5 * b).exp()).abs() < 1e-14);
        assert!((sub.sigma(t) - (1.0 - (-b).exp())).abs() < 1e-14);
        assert!((sub.diffusion(t).powi(2) - VP.beta(t) * (1.0 - (-2.0 * b).exp())).abs() < 1e-12);
        assert!(sub.sigma(t).powi(2) <= VP.sigma2(t), "sub-VP variance is below VP's");
        assert!((sub.log_snr(t) - (sub.alpha(t) / sub.sigma(t)).ln()).abs() < 1e-12);
    }
    // VE: sigma_g(t) = 0.01 * 5000^t, sigma^2 = sigma_g^2 - 0.01^2, g = sigma_g sqrt(2 ln 5000).
    let ve = VeSde::default();
    assert_eq!(ve.t_eps(), 1e-5);
    for t in [1e-5, 0.3, 1.0] {
        let sg = 0.01 * 5000f64.powf(t);
        assert!((ve.sigma(t).powi(2) - (sg * sg - 1e-4)).abs() <= 1e-12 * sg * sg);
        assert!((ve.diffusion(t) - sg * (2.0 * 5000f64.ln()).sqrt()).abs() <= 1e-12 * sg);
        assert_eq!(ve.alpha(t), 1.0);
    }
    assert!((ve.sigma(1.0) - 50.0).abs() < 1e-5);
    // Cosine: abar = cos^2(phi) / cos^2(phi(0)), phi = (t + 0.008)/1.008 pi/2, before the clip.
    let cos = CosineVpSde::default();
    let phi = |t: f64| (t + 0.008) / 1.008 * PI / 2.0;
    for t in [1e-3, 0.25, 0.5, 0.9] {
        let abar = (phi(t).cos() / phi(0.0).cos()).powi(2);
        assert!((cos.alpha(t).powi(2) - abar).abs() < 1e-13, "t = {t}");
        assert!((cos.sigma(t).powi(2) - (1.0 - abar)).abs() < 1e-13);
        assert!((cos.beta(t) - PI / 1.008 * phi(t).tan()).abs() < 1e-10);
    }
    // The clip: beta reaches 100 at t_c = 0.98 and stays there, so a(1) = 0.0114, lambda(1) = -4.47.
    assert!((cos.t_clip() - 0.98).abs() < 1e-3, "t_clip = {}", cos.t_clip());
    assert_eq!(cos.beta(0.99), 100.0);
    assert!((cos.alpha(1.0) - 0.0114).abs() < 1e-4, "a(1) = {}", cos.alpha(1.0));
    assert!((cos.log_snr(1.0) + 4.47).abs() < 0.01, "lambda(1) = {}", cos.log_snr(1.0));
    // B(t) is the integral of the clipped beta (composite Simpson, 20 000 panels).
    for t in [0.5, 0.98, 1.0] {
        let n = 20_000;
        let h = t / n as f64;
        let simpson: f64 = (0..=n)
            .map(|i| {
                let w = if i == 0 || i == n {
                    1.0
                } else if i % 2 == 1 {
                    4.0
                } else {
                    2.0
                };
                w * cos.beta(i as f64 * h)
            })
            .sum::<f64>()
            * h
            / 3.0;
        assert!(
            (cos.beta_integral(t) - simpson).abs() < 1e-6 * simpson,
            "t = {t}: {} vs {simpson}",
            cos.beta_integral(t)
        );
    }
}

/// The kernel solves the SDE: `d ln a / dt = f(t)` and `d sigma^2 / dt = 2 f sigma^2 + g^2`
/// (central differences, relative 1e-6), away from the cosine clip's kink.
#[test]
fn kernel_solves_the_sde() {
    for sde in all_sdes() {
        for t in [0.01, 0.1, 0.37, 0.5, 0.8, 0.95] {
            let dt = 1e-6 * t;
            let dln_a = (sde.alpha(t + dt).ln() - sde.alpha(t - dt).ln()) / (2.0 * dt);
            let f = sde.drift_coef(t);
            assert!((dln_a - f).abs() <= 1e-6 * f.abs().max(1e-3), "{}: t = {t}: {dln_a} vs f = {f}", sde.name());
            let v = |t: f64| sde.sigma(t).powi(2);
            let dv = (v(t + dt) - v(t - dt)) / (2.0 * dt);
            let want = 2.0 * f * v(t) + sde.diffusion(t).powi(2);
            assert!((dv - want).abs() <= 1e-6 * want.abs(), "{}: t = {t}: {dv} vs {want}", sde.name());
        }
        assert!((sde.alpha(0.0) - 1.0).abs() < 1e-15 && sde.sigma(0.0) == 0.0, "{}", sde.name());
    }
}

/// Transitions compose: `a_t = a_ts a_s` and `sigma_t^2 = a_ts^2 sigma_s^2 + sigma_ts^2`.
#[test]
fn transitions_are_exact() {
    for sde in all_sdes() {
        for (s, t) in [(0.0, 0.3), (1e-3, 1.0), (0.5, 0.5001), (0.2, 0.99), (0.979, 0.981)] {
            let (a_ts, v_ts) = sde.transition(s, t);
            let (a_s, a_t) = (sde.alpha(s), sde.alpha(t));
            let (v_s, v_t) = (sde.sigma(s).powi(2), sde.sigma(t).powi(2));
            assert!((a_ts * a_s - a_t).abs() <= 1e-12 * a_t, "{}: ({s}, {t})", sde.name());
            assert!((a_ts * a_ts * v_s + v_ts - v_t).abs() <= 1e-10 * v_t, "{}: ({s}, {t})", sde.name());
            assert!(v_ts >= 0.0);
        }
    }
    // VE and the Langevin corrector: alpha = a_ts^2 = 1.
    assert_eq!(VeSde::default().transition(0.2, 0.3).0, 1.0);
}

/// Forward Euler–Maruyama from data `N(0.8, 0.3^2)` at t = 0: the exact law of the
/// scheme converges to the closed-form marginal at t = 0.5 and t = 1 with its declared
/// weak order ± 0.15.
#[test]
fn forward_em_law_converges_to_closed_form_marginals() {
    let (mu, s0) = (0.8, 0.3);
    let order = solver_info("forward-em").unwrap().order.value().unwrap() as f64;
    for sde in all_sdes() {
        // Rectified flow's drift -1/(1 - t) is stiff within ~1e-3 of its t_max = 0.999:
        // uniform steps of 1/256 to 1/2048 are pre-asymptotic there (measured order 0.68),
        // so its order is checked up to t = 0.9 (the samplers start at t_max on log-SNR grids).
        let t_far = if sde.name() == "flow" { 0.9 } else { sde.t_max() };
        for t_end in [0.5, t_far] {
            let exact = Gauss1d::marginal(sde.as_ref(), mu, s0, t_end);
            let (mut hs, mut errs) = (vec![], vec![]);
            for n in [256usize, 512, 1024, 2048] {
                let grid = TimeGrid::uniform(0.0, t_end, n).unwrap();
                let (law, _) = scheme_law_1d(&mut ForwardEulerMaruyama, sde.as_ref(), mu, s0, &grid, false).unwrap();
                hs.push(t_end / n as f64);
                errs.push((law.mean - exact.mean).abs() + (law.var - exact.var).abs());
            }
            let slope = loglog_slope(&hs, &errs);
            eprintln!("{} forward EM to t = {t_end}: order {slope:.3}, errors {errs:?}", sde.name());
            assert!((slope - order).abs() <= ORDER_TOL, "{}: order {slope}, errors {errs:?}", sde.name());
        }
    }
}

/// Monte Carlo: 20 000 forward-EM paths (512 steps) from exact data samples have the
/// closed-form marginal's mean and variance at t = 1, within 5 standard errors plus the
/// scheme's exact (deterministic) bias.
#[test]
fn forward_em_samples_match_closed_form_marginals() {
    let (mu, s0, n) = (0.8, 0.3, 20_000);
    let data = Gauss1 { mu, s0 };
    for (i, sde) in all_sdes().into_iter().enumerate() {
        let grid = TimeGrid::uniform(0.0, sde.t_max(), 512).unwrap();
        let x0 = data.mixture().sample(n, &mut rng(40 + i as u64));
        let mut noise = GaussianNoise::new(50 + i as u64);
        let score = data.score(); // unused by forward EM
        let run = Sampler::new(sde.as_ref(), &score).run(&mut ForwardEulerMaruyama, x0, &grid, &mut noise).unwrap();
        let (m, v) = mean_var(col0(&run.x));
        let exact = Gauss1d::marginal(sde.as_ref(), mu, s0, sde.t_max());
        let (law, _) = scheme_law_1d(&mut ForwardEulerMaruyama, sde.as_ref(), mu, s0, &grid, false).unwrap();
        let m_tol = K_SIGMA * (exact.var / n as f64).sqrt() + (law.mean - exact.mean).abs();
        let v_tol = K_SIGMA * exact.var * (2.0 / (n as f64 - 1.0)).sqrt() + (law.var - exact.var).abs();
        assert!((m - exact.mean).abs() <= m_tol, "{}: mean {m} vs {} (tol {m_tol})", sde.name(), exact.mean);
        assert!((v - exact.var).abs() <= v_tol, "{}: var {v} vs {} (tol {v_tol})", sde.name(), exact.var);
    }
}

/// Every sampler of the registry whose order is measured, on every SDE: the exact law's
/// error against `p_eps` decreases strictly as the log-SNR grid doubles (over the row's
/// step counts), with a fitted order of at least its declared order - 0.15 (orders above 2:
/// at least 2, or 1 on the cosine SDE).
#[test]
fn samplers_converge_on_every_sde() {
    let (mu, s0) = (-0.7, 0.6);
    let rows: Vec<_> = SOLVERS
        .iter()
        .filter(|s| s.is_sampler())
        .filter_map(|s| match (s.check, s.order.value()) {
            (OrderCheck::Measured { steps, .. }, Some(p)) => Some((s, p as f64, steps)),
            _ => None,
        })
        .collect();
    assert!(rows.len() >= 10, "{} rows", rows.len());
    for sde in all_sdes() {
        let eps = sde.t_eps();
        let exact = Gauss1d::marginal(sde.as_ref(), mu, s0, eps);
        for &(info, order, steps) in &rows {
            let (mut hs, mut errs) = (vec![], vec![]);
            for &n in steps {
                let grid = TimeGrid::log_snr(sde.as_ref(), sde.t_max(), eps, n).unwrap();
                let mut solver = info.build::<Array2<f64>>().unwrap();
                let (law, _) = scheme_law_1d(solver.as_mut(), sde.as_ref(), mu, s0, &grid, false).unwrap();
                hs.push(1.0 / n as f64);
                errs.push((law.mean - exact.mean).abs() + (law.var - exact.var).abs());
            }
            for w in errs.windows(2) {
                assert!(w[1] < w[0], "{} on {}: {errs:?}", info.name, sde.name());
            }
            let slope = loglog_slope(&hs, &errs);
            eprintln!("{} on {}: order {slope:.3}", info.name, sde.name());
            // Orders above 2 are pre-asymptotic on some SDEs at these step counts (RK4 on
            // sub-VP: 3.6), so they are held to 2; on the cosine SDE the kink of the clipped
            // beta at t = 0.98 leaves them first order (RK4: 1.2).
            let floor = match (order > 2.0, sde.name()) {
                (true, "vp-cosine") => 1.0,
                (true, _) => 2.0,
                (false, _) => order,
            } - ORDER_TOL;
            assert!(slope >= floor, "{} on {}: order {slope}, declared {}", info.name, sde.name(), info.order);
        }
    }
}

/// SDEs by name, and invalid parameters are errors.
#[test]
fn sde_names_and_bad_parameters() {
    for name in SDES {
        assert_eq!(sde_by_name(name).unwrap().name(), *name);
    }
    assert!(sde_by_name("vp-linear-but-wrong").is_err());
    assert!(SubVpSde::new(0.0, 20.0).is_err());
    assert!(SubVpSde::default().with_eps(1.0).is_err());
    assert!(VeSde::new(1.0, 0.5).is_err());
    assert!(VeSde::new(0.0, 50.0).is_err());
    assert!(VeSde::new(0.01, f64::INFINITY).is_err());
    assert!(VeSde::default().with_eps(0.0).is_err());
    assert!(CosineVpSde::new(0.0, 100.0).is_err());
    assert!(CosineVpSde::new(0.008, 0.5).is_err());
    assert!(CosineVpSde::new(0.008, f64::NAN).is_err());
    assert!(CosineVpSde::default().with_eps(f64::NAN).is_err());
    assert!(CosineVpSde::new(0.008, 20.0).unwrap().t_clip() < 0.95);
}
