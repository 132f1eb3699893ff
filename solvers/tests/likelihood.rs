//! Log-likelihoods through the probability-flow ODE against closed-form densities:
//! with the exact score and the exact `p_T` as the end density, `log p_eps(x)` from the
//! ODE equals the analytic log-density of the marginal within the solver tolerance, for a
//! 2-D Gaussian with full covariance and a Gaussian mixture, on every SDE; Hutchinson's
//! estimator is unbiased; the closed-form divergence and JVP match finite differences.

mod common;

use common::*;
use ndarray::{array, Array1, Array2, Array3};
use scoresde_solvers::likelihood::TerminalLogDensity;
use scoresde_solvers::prelude::*;
use scoresde_solvers::{log_likelihood, sde_by_name, Divergence, DivergenceMethod, LikelihoodOptions, SDES};

fn gaussian_2d() -> GaussianMixture {
    GaussianMixture::gaussian(array![0.5, -1.0].view(), array![[0.6, 0.25], [0.25, 0.3]].view()).unwrap()
}

fn mixture_2d() -> GaussianMixture {
    let means = array![[-1.0, 0.0], [1.0, 0.5], [0.0, -1.2]];
    let mut covs = Array3::zeros((3, 2, 2));
    for (k, c) in [[0.2, 0.05, 0.1], [0.1, -0.03, 0.15], [0.3, 0.0, 0.05]].iter().enumerate() {
        covs[[k, 0, 0]] = c[0];
        covs[[k, 0, 1]] = c[1];
        covs[[k, 1, 0]] = c[1];
        covs[[k, 1, 1]] = c[2];
    }
    GaussianMixture::new(&[0.5, 0.3, 0.2], means.view(), covs.view()).unwrap()
}

/// The exact score of `data` under a boxed SDE.
struct Exact<'a> {
    data: &'a GaussianMixture,
    sde: &'a dyn Sde,
}

impl Score<Array2<f64>> for Exact<'_> {
    fn score(&self, x: &Array2<f64>, t: f64) -> scoresde_solvers::Result<Array2<f64>> {
        self.data.score_at(x, self.sde.alpha(t), self.sde.sigma(t))
    }
}

impl Divergence for Exact<'_> {
    fn divergence(&self, x: &Array2<f64>, t: f64) -> scoresde_solvers::Result<Array1<f64>> {
        Ok(self.data.score_derivatives_at(x.view(), self.sde.alpha(t), self.sde.sigma(t), None)?.1)
    }
}

/// `max |log p_ode - log p_exact|` over `x` with the exact `p_T` as end density.
fn max_log_p_error(sde: &dyn Sde, data: &GaussianMixture, x: &Array2<f64>, tol: f64) -> f64 {
    let score = Exact { data, sde };
    let p_t = data.marginal(sde, sde.t_max());
    let end = |y: ndarray::ArrayView2<f64>| p_t.log_density(y, 1.0, 0.0);
    let terminal: TerminalLogDensity<'_> = &end;
    let opts = LikelihoodOptions { rtol: tol, atol: tol, ..Default::default() };
    let got = log_likelihood(sde, &score, x, &opts, Some(terminal)).unwrap();
    let want = data.marginal(sde, sde.t_eps()).log_density(x.view(), 1.0, 0.0).unwrap();
    assert_eq!(got.log_p.len(), x.nrows());
    got.log_p.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0, f64::max)
}

/// Gaussian and mixture data on every SDE: the ODE log-likelihood at rtol = atol = 1e-7
/// equals the analytic log-density within 1e-4 nats, and the error shrinks with the tolerance.
#[test]
fn ode_log_likelihood_equals_analytic_log_density() {
    for (what, data) in [("gaussian", gaussian_2d()), ("mixture", mixture_2d())] {
        let x = data.marginal(&VpSde::default(), 1e-3).sample(24, &mut rng(3));
        for name in SDES {
            let sde = sde_by_name(name).unwrap();
            let coarse = max_log_p_error(sde.as_ref(), &data, &x, 1e-4);
            let fine = max_log_p_error(sde.as_ref(), &data, &x, 1e-7);
            eprintln!("{what} on {name}: max |log p error| {coarse:.2e} (tol 1e-4), {fine:.2e} (tol 1e-7)");
            assert!(fine <= 1e-4, "{what} on {name}: error {fine}");
            assert!(fine < coarse, "{what} on {name}: {fine} vs {coarse}");
        }
    }
}

/// With the SDE's own prior as end density (the default), the VP result differs from the
/// analytic value only by the prior mismatch, and bits/dim is `-log p / (d ln 2)`.
#[test]
fn default_prior_and_bits_per_dim() {
    let sde = VpSde::default();
    let data = gaussian_2d();
    let score = ExactScore::new(data.clone(), sde);
    let x = data.sample(16, &mut rng(9));
    let got = log_likelihood(&sde, &score, &x, &LikelihoodOptions::default(), None).unwrap();
    let want = data.marginal(&sde, sde.t_eps()).log_density(x.view(), 1.0, 0.0).unwrap();
    for i in 0..16 {
        assert!((got.log_p[i] - want[i]).abs() < 0.05, "{} vs {}", got.log_p[i], want[i]);
        let bpd = -got.log_p[i] / (2.0 * std::f64::consts::LN_2);
        assert!((got.bits_per_dim[i] - bpd).abs() < 1e-12);
    }
    assert!(got.evals > 0 && got.steps > 0);
}

/// Hutchinson's estimator with one probe per sample fixed over the solve is unbiased: 4 000
/// copies of one point (each with its own probe) average to the exact-divergence log-likelihood
/// within 5 standard errors of the estimates, for Gaussian and Rademacher probes.
#[test]
fn hutchinson_is_unbiased() {
    let sde = VpSde::default();
    let data = mixture_2d();
    let score = ExactScore::new(data.clone(), sde);
    let n = 4000;
    let x = Array2::from_shape_fn((n, 2), |(_, j)| if j == 0 { 0.7 } else { 0.1 });
    let exact =
        log_likelihood(&sde, &score, &x.slice(ndarray::s![..1, ..]).to_owned(), &LikelihoodOptions::default(), None)
            .unwrap()
            .log_p[0];
    for rademacher in [false, true] {
        let opts =
            LikelihoodOptions { method: DivergenceMethod::Hutchinson { seed: 11, rademacher }, ..Default::default() };
        let est = log_likelihood(&sde, &score, &x, &opts, None).unwrap().log_p;
        let (m, v) = mean_var(est.view());
        let tol = K_SIGMA * (v / n as f64).sqrt() + 1e-4;
        eprintln!("Hutchinson (rademacher = {rademacher}): mean {m:.5} sd {:.4} vs exact {exact:.5}", v.sqrt());
        assert!(v > 0.0 && (m - exact).abs() <= tol, "rademacher = {rademacher}: {m} vs {exact} (tol {tol})");
    }
}

/// In d = 40 (diagonal Gaussian data with variances from 0.05 to 2), Hutchinson's
/// estimate of each sample's log-likelihood, averaged over 2000 copies with independent
/// Gaussian probes, matches the exact-divergence value within 5 standard errors; the exact one
/// matches the analytic log-density to 1e-3 nats.
#[test]
fn hutchinson_in_forty_dimensions() {
    let sde = VpSde::default();
    let d = 40;
    let mean = Array1::from_shape_fn(d, |i| (i as f64 * 0.37).sin());
    let cov = Array2::from_diag(&Array1::from_shape_fn(d, |i| 0.05 + 1.95 * i as f64 / (d - 1) as f64));
    let data = GaussianMixture::gaussian(mean.view(), cov.view()).unwrap();
    let score = ExactScore::new(data.clone(), sde);
    let x1 = data.sample(1, &mut rng(21));
    let p_t = data.marginal(&sde, 1.0);
    let end = |y: ndarray::ArrayView2<f64>| p_t.log_density(y, 1.0, 0.0);
    let exact = log_likelihood(&sde, &score, &x1, &LikelihoodOptions::default(), Some(&end)).unwrap().log_p[0];
    let want = data.marginal(&sde, sde.t_eps()).log_density(x1.view(), 1.0, 0.0).unwrap()[0];
    assert!((exact - want).abs() < 1e-3, "{exact} vs {want}");
    let n = 2000;
    let x = Array2::from_shape_fn((n, d), |(_, j)| x1[[0, j]]);
    // Gaussian probes: with a diagonal Jacobian, Rademacher probes are exact (e_j^2 = 1).
    let opts =
        LikelihoodOptions { method: DivergenceMethod::Hutchinson { seed: 4, rademacher: false }, ..Default::default() };
    let est = log_likelihood(&sde, &score, &x, &opts, Some(&end)).unwrap().log_p;
    let (m, v) = mean_var(est.view());
    assert!(v.sqrt() > 0.1, "Gaussian probes must vary: sd {}", v.sqrt());
    let tol = K_SIGMA * (v / n as f64).sqrt() + 1e-3;
    eprintln!("d = 40 Hutchinson: mean {m:.4} (sd {:.3}) vs exact {exact:.4}", v.sqrt());
    assert!((m - exact).abs() <= tol, "{m} vs {exact} (tol {tol})");
}

/// A score that only implements `Score`: the finite-difference defaults of `Divergence`.
struct Plain(ExactScore<VpSde>);

impl Score<Array2<f64>> for Plain {
    fn score(&self, x: &Array2<f64>, t: f64) -> scoresde_solvers::Result<Array2<f64>> {
        self.0.score(x, t)
    }
}

impl Divergence for Plain {}

/// The closed-form divergence and JVP of the mixture score equal the finite-difference
/// defaults (relative 1e-5: central differences with delta = 1e-4 are O(delta^2)), and the likelihood with the defaults agrees with the exact one.
#[test]
fn closed_form_derivatives_match_finite_differences() {
    let sde = VpSde::default();
    let exact = ExactScore::new(mixture_2d(), sde);
    let plain = Plain(exact.clone());
    let x = mixture_2d().marginal(&sde, 0.05).sample(32, &mut rng(5));
    let v = Array2::from_shape_fn((32, 2), |(i, j)| ((i * 7 + j * 3) % 5) as f64 - 2.0);
    for t in [0.02, 0.1, 0.5] {
        let (d1, d2) = (exact.divergence(&x, t).unwrap(), plain.divergence(&x, t).unwrap());
        let (j1, j2) = (exact.jvp(&x, t, &v).unwrap(), plain.jvp(&x, t, &v).unwrap());
        for (a, b) in d1.iter().zip(&d2).chain(j1.iter().zip(&j2)) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "t = {t}: {a} vs {b}");
        }
    }
    let opts = LikelihoodOptions::default();
    let (a, b) = (
        log_likelihood(&sde, &exact, &x, &opts, None).unwrap().log_p,
        log_likelihood(&sde, &plain, &x, &opts, None).unwrap().log_p,
    );
    for (p, q) in a.iter().zip(&b) {
        assert!((p - q).abs() < 1e-5, "{p} vs {q}");
    }
}

/// Bad likelihood inputs are errors: tolerances, non-finite data, t0 out of range, shapes.
#[test]
fn bad_likelihood_inputs_are_errors() {
    let sde = VpSde::default();
    let score = ExactScore::new(gaussian_2d(), sde);
    let x = Array2::zeros((3, 2));
    let with = |o: LikelihoodOptions| log_likelihood(&sde, &score, &x, &o, None);
    assert!(with(LikelihoodOptions { rtol: 0.0, ..Default::default() }).is_err());
    assert!(with(LikelihoodOptions { atol: f64::NAN, ..Default::default() }).is_err());
    assert!(with(LikelihoodOptions { t0: Some(1.0), ..Default::default() }).is_err());
    assert!(with(LikelihoodOptions { t0: Some(-0.1), ..Default::default() }).is_err());
    let mut bad = x.clone();
    bad[[1, 1]] = f64::NAN;
    assert!(matches!(
        log_likelihood(&sde, &score, &bad, &LikelihoodOptions::default(), None),
        Err(Error::NonFiniteInput { .. })
    ));
    assert!(log_likelihood(&sde, &score, &Array2::zeros((3, 3)), &LikelihoodOptions::default(), None).is_err());
    assert!(score.jvp(&x, 0.5, &Array2::zeros((2, 2))).is_err());
}
