//! The closed-form scores against independent checks: finite differences of the
//! log-density, the hand-inverted Gaussian formula, Monte-Carlo moments of the
//! mixture marginals, Stein's identity, and f32 vs f64 agreement.

mod common;

use common::*;
use ndarray::{Array1, Array2, Array3};
use proptest::prelude::*;
use scoresde_solvers::prelude::*;

/// A random symmetric positive-definite d x d covariance `L L^T` (diagonal of L in [0.3, 1.5]).
fn spd(d: usize) -> impl Strategy<Value = Array2<f64>> {
    (prop::collection::vec(0.3..1.5f64, d), prop::collection::vec(-1.0..1.0f64, d * d)).prop_map(move |(diag, off)| {
        let l = Array2::from_shape_fn((d, d), |(i, j)| match i.cmp(&j) {
            std::cmp::Ordering::Equal => diag[i],
            std::cmp::Ordering::Greater => off[i * d + j],
            std::cmp::Ordering::Less => 0.0,
        });
        l.dot(&l.t())
    })
}

/// A random 3-component, 2-D mixture with full covariances and unequal weights.
fn mixture3() -> impl Strategy<Value = GaussianMixture> {
    (prop::collection::vec(0.2..1.0f64, 3), prop::collection::vec(-3.0..3.0f64, 6), prop::collection::vec(spd(2), 3))
        .prop_map(|(w, m, covs)| {
            let means = Array2::from_shape_vec((3, 2), m).unwrap();
            let mut c = Array3::zeros((3, 2, 2));
            for (k, cov) in covs.iter().enumerate() {
                c.index_axis_mut(ndarray::Axis(0), k).assign(cov);
            }
            GaussianMixture::new(&w, means.view(), c.view()).unwrap()
        })
}

/// Points to evaluate at: (n, d) uniform in [-4, 4].
fn points(n: usize, d: usize) -> impl Strategy<Value = Array2<f64>> {
    prop::collection::vec(-4.0..4.0f64, n * d).prop_map(move |v| Array2::from_shape_vec((n, d), v).unwrap())
}

/// Compares the score with a central difference of `log_density` at `(a(t), sigma(t))`.
///
/// Error model of the central difference with step h: truncation `h^2/6 |d^3 log p|` (zero for one
/// Gaussian, O(1e-9) here for mixtures) plus rounding `~ eps |log p| / h` (~1e-9 for |log p| <= 1e3).
/// Both are far below the tolerance `1e-6 (1 + |s|)`, while any wrong term of the score is O(1).
fn check_against_finite_differences(data: &GaussianMixture, x: &Array2<f64>, t: f64) {
    let sde = VpSde::default();
    let score = ExactScore::new(data.clone(), sde);
    let got = Score::score(&score, x, t).unwrap();
    let (a, sigma) = (sde.alpha(t), sde.sigma(t));
    let h = 1e-5;
    for j in 0..x.ncols() {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp.column_mut(j).mapv_inplace(|v| v + h);
        xm.column_mut(j).mapv_inplace(|v| v - h);
        let lp = data.log_density(xp.view(), a, sigma).unwrap();
        let lm = data.log_density(xm.view(), a, sigma).unwrap();
        for i in 0..x.nrows() {
            let fd = (lp[i] - lm[i]) / (2.0 * h);
            let s = got[[i, j]];
            assert!(
                (s - fd).abs() <= 1e-6 * (1.0 + s.abs()),
                "t = {t}, x = {}, dim {j}: score {s} vs FD {fd}",
                x.row(i)
            );
        }
    }
}

proptest! {
    #![proptest_config(config(12, "proptest-regressions/scores.txt"))]

    /// The exact score of a single 3-D Gaussian with full covariance equals the central
    /// finite-difference gradient of its log-density, at random points and times.
    #[test]
    fn gaussian_score_is_gradient_of_log_density(
        mean in prop::collection::vec(-3.0..3.0f64, 3), cov in spd(3), x in points(16, 3), t in 1e-3..1.0f64,
    ) {
        let g = GaussianMixture::gaussian(Array1::from(mean).view(), cov.view()).unwrap();
        check_against_finite_differences(&g, &x, t);
    }

    /// The exact score of a 3-component 2-D mixture with full covariances equals the central
    /// finite-difference gradient of its log-density, at random points and times.
    #[test]
    fn mixture_score_is_gradient_of_log_density(data in mixture3(), x in points(32, 2), t in 1e-3..1.0f64) {
        check_against_finite_differences(&data, &x, t);
    }

    /// The single-Gaussian score equals `-(a^2 Sigma + sigma^2 I)^{-1} (x - a mu)` with a, sigma from
    /// the DESIGN table and the 2x2 inverse written by hand (DESIGN §4).
    #[test]
    fn gaussian_score_matches_closed_form(
        mean in prop::collection::vec(-3.0..3.0f64, 2), cov in spd(2), x in points(8, 2), t in 1e-3..1.0f64,
    ) {
        let g = GaussianMixture::gaussian(Array1::from(mean.clone()).view(), cov.view()).unwrap();
        let got = Score::score(&ExactScore::new(g, VpSde::default()), &x, t).unwrap();
        let a = VP.a(t);
        let sig0 = [[cov[[0, 0]], cov[[0, 1]]], [cov[[1, 0]], cov[[1, 1]]]];
        let p = inv(&lin(a * a, &sig0, VP.sigma2(t), &I2));
        for i in 0..x.nrows() {
            let want = mv(&p, &[a * mean[0] - x[[i, 0]], a * mean[1] - x[[i, 1]]]);
            for j in 0..2 {
                let (g, w) = (got[[i, j]], want[j]);
                prop_assert!((g - w).abs() <= 1e-10 * (1.0 + w.abs()), "{g} vs {w}");
            }
        }
    }

    /// The f32 score (computed in f32) equals the f64 score of the same inputs to within
    /// F32_TOL of the batch's score scale.
    #[test]
    fn f32_and_f64_scores_agree(data in mixture3(), x in points(64, 2), t in 1e-3..1.0f64) {
        let score = ExactScore::new(data, VpSde::default());
        let x32 = x.mapv(|v| v as f32);
        let s32 = Score::score(&score, &x32, t).unwrap();
        let s64 = Score::score(&score, &x32.mapv(f64::from), t).unwrap();
        let worst = f32_error_vs_scale(&s32, &s64);
        prop_assert!(worst <= F32_TOL, "f32/f64 difference {worst:e} of the batch's score scale");
    }
}

/// `log_density` of a 2-D mixture with full covariances equals `ln sum_k w_k N(x; a mu_k, a^2 Sigma_k + sigma^2 I)`
/// with the Gaussian density, determinant and inverse written out by hand (so the finite-difference
/// test above, which shares that kernel, is anchored to the true density).
#[test]
fn mixture_log_density_matches_closed_form() {
    let means = [[-2.0, 0.5], [1.0, 2.0], [2.5, -1.5]];
    let covs: [M2; 3] = [[[0.5, 0.2], [0.2, 0.3]], [[1.0, -0.4], [-0.4, 0.6]], [[0.2, 0.0], [0.0, 0.8]]];
    let weights = [0.2, 0.5, 0.3];
    let mut c3 = Array3::zeros((3, 2, 2));
    for (k, c) in covs.iter().enumerate() {
        for i in 0..2 {
            for j in 0..2 {
                c3[[k, i, j]] = c[i][j];
            }
        }
    }
    let data =
        GaussianMixture::new(&weights, Array2::from_shape_fn((3, 2), |(k, j)| means[k][j]).view(), c3.view()).unwrap();
    let x = Array2::from_shape_fn((25, 2), |(i, j)| if j == 0 { (i % 5) as f64 - 2.0 } else { (i / 5) as f64 - 2.0 });
    for t in [0.0, 1e-3, 0.1, 0.5, 1.0] {
        let (a, s2) = (VP.a(t), VP.sigma2(t));
        let got = data.log_density(x.view(), a, s2.sqrt()).unwrap();
        for i in 0..x.nrows() {
            let p: f64 = (0..3)
                .map(|k| {
                    let v = lin(a * a, &covs[k], s2, &I2);
                    let det = v[0][0] * v[1][1] - v[0][1] * v[1][0];
                    let r = [x[[i, 0]] - a * means[k][0], x[[i, 1]] - a * means[k][1]];
                    let q = mv(&inv(&v), &r);
                    let quad = r[0] * q[0] + r[1] * q[1];
                    weights[k] * (-0.5 * quad).exp() / (2.0 * std::f64::consts::PI * det.sqrt())
                })
                .sum();
            assert!((got[i] - p.ln()).abs() <= 1e-10 * (1.0 + p.ln().abs()), "t = {t}: {} vs {}", got[i], p.ln());
        }
    }
}

/// Standard error of the sample mean of `v` (from its own sample variance).
fn std_err(v: &Array1<f64>) -> f64 {
    let n = v.len() as f64;
    let m = v.mean().unwrap();
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt()
}

/// Mixture marginals: `mean()` / `covariance()` of `p_t` agree with Monte-Carlo samples of `p_t`
/// (at t = 0 and t = 0.3), and equal `a mu`, `a^2 Sigma + sigma^2 I` of the data moments.
#[test]
fn mixture_moments_match_samples_and_closed_form() {
    let sde = VpSde::default();
    let means = ndarray::array![[-2.0, 0.5], [1.0, 2.0], [2.5, -1.5]];
    let covs =
        Array3::from_shape_vec((3, 2, 2), vec![0.5, 0.2, 0.2, 0.3, 1.0, -0.4, -0.4, 0.6, 0.2, 0.0, 0.0, 0.8]).unwrap();
    let data = GaussianMixture::new(&[0.2, 0.5, 0.3], means.view(), covs.view()).unwrap();
    let (mu0, cov0) = (data.mean(), data.covariance());
    for (i, t) in [0.0, 0.3].into_iter().enumerate() {
        let p = data.marginal(&sde, t);
        let (a, s2) = (VP.a(t), VP.sigma2(t));
        // Closed form of the marginal's moments.
        for r in 0..2 {
            assert!((p.mean()[r] - a * mu0[r]).abs() < 1e-12);
            for c in 0..2 {
                let want = a * a * cov0[[r, c]] + if r == c { s2 } else { 0.0 };
                assert!((p.covariance()[[r, c]] - want).abs() < 1e-12);
            }
        }
        // Monte Carlo: each sample moment within K standard errors, the standard error of a
        // covariance entry estimated from the products (x_r - m_r)(x_c - m_c) themselves
        // (a mixture is not Gaussian, so the Gaussian formula does not apply).
        let n = 50_000;
        let x = p.sample(n, &mut rng(100 + i as u64));
        let (m_hat, c_hat) = mean_cov(&x);
        let (m, c) = (p.mean(), p.covariance());
        for r in 0..2 {
            let se = std_err(&x.column(r).to_owned());
            assert!((m_hat[r] - m[r]).abs() <= K_SIGMA * se, "t = {t}: mean[{r}] {} vs {}", m_hat[r], m[r]);
            for col in 0..2 {
                let prod = (&x.column(r) - m_hat[r]) * (&x.column(col) - m_hat[col]);
                let se = std_err(&prod);
                assert!(
                    (c_hat[[r, col]] - c[[r, col]]).abs() <= K_SIGMA * se,
                    "t = {t}: cov[{r},{col}] {} vs {} (se {se})",
                    c_hat[[r, col]],
                    c[[r, col]]
                );
            }
        }
    }
}

/// Stein's identity for the mixture score under its own marginal: `E[s(X)] = 0` and
/// `E[X s(X)^T] = -I` (integration by parts), checked by Monte Carlo at several t.
#[test]
fn mixture_score_satisfies_stein_identity() {
    let sde = VpSde::default();
    let data = GaussianMixture::ring(5, 2.0, 0.4).unwrap();
    let score = ExactScore::new(data.clone(), sde);
    let n = 40_000;
    for (i, t) in [0.01, 0.2, 0.7].into_iter().enumerate() {
        let x = data.marginal(&sde, t).sample(n, &mut rng(200 + i as u64));
        let s = Score::score(&score, &x, t).unwrap();
        for r in 0..2 {
            let col = s.column(r).to_owned();
            assert!(
                col.mean().unwrap().abs() <= K_SIGMA * std_err(&col),
                "t = {t}: E[s_{r}] = {}",
                col.mean().unwrap()
            );
            for c in 0..2 {
                let prod = &x.column(r) * &s.column(c);
                let want = if r == c { -1.0 } else { 0.0 };
                let got = prod.mean().unwrap();
                assert!((got - want).abs() <= K_SIGMA * std_err(&prod), "t = {t}: E[x_{r} s_{c}] = {got}");
            }
        }
    }
}

/// On a batch large enough for the parallel (rayon) kernel path (4096 x 2 with 8 components),
/// f32 and f64 scores of the same inputs agree to within F32_TOL of the score scale at every t (parallel path).
#[test]
fn f32_and_f64_scores_agree_on_the_parallel_path() {
    let sde = VpSde::default();
    let score = ExactScore::new(GaussianMixture::ring(8, 2.0, 0.1).unwrap(), sde);
    let x = GaussianMixture::ring(8, 2.0, 0.1).unwrap().marginal(&sde, 0.5).sample(4096, &mut rng(3));
    let x32 = x.mapv(|v| v as f32);
    for t in [1e-3, 0.05, 0.5, 1.0] {
        let s32: Array2<f32> = Score::score(&score, &x32, t).unwrap();
        let s64 = Score::score(&score, &x32.mapv(f64::from), t).unwrap();
        let worst = f32_error_vs_scale(&s32, &s64);
        assert!(worst <= F32_TOL, "t = {t}: f32/f64 difference {worst:e} of the batch's score scale");
    }
}

/// The f32 kernel computes in f32: residuals, quadratic forms and the softmax each
/// lose a few ulp of their largest term, and where component scores cancel the
/// per-element relative error is unbounded. So the error is measured against the
/// batch's score scale (max |s|), allowing 64 ulp of f32 for that chain of operations.
const F32_TOL: f64 = 64.0 * f32::EPSILON as f64;

fn f32_error_vs_scale(s32: &Array2<f32>, s64: &Array2<f64>) -> f64 {
    let scale = s64.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(f64::from(f32::MIN_POSITIVE));
    s32.iter().zip(s64.iter()).map(|(a, b)| (f64::from(*a) - b).abs()).fold(0.0, f64::max) / scale
}
