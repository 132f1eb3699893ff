//! Shared oracles of the integration tests, written from DESIGN.md §3–4 and the
//! published doc comments of each integrator, never from the solver code:
//!
//! * [`Vp`]: the VP-SDE coefficients of the DESIGN table, typed out again here;
//! * [`moves`]: each integrator's published update rule as affine moves
//!   `x <- alpha x + gamma s(x, t_score) + sd z`;
//! * [`Affine`] / [`propagate_1d`] / [`propagate_2d`]: the exact law of those
//!   rules on Gaussian data (the score is linear, so every step is
//!   `x' = c x + d + e z` and the moments follow `m' = c m + d`, `v' = c^2 v + e^2`);
//! * moment estimators and their `k`-sigma tolerances, log–log slope fitting,
//!   deterministic noise sources, and proptest helpers.
#![allow(dead_code)]

pub mod multistep_oracle;

use ndarray::{Array1, Array2, ArrayView1, Axis};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed};
use rand::SeedableRng;
use scoresde_solvers::prelude::*;
use scoresde_solvers::Rng;

/// Width of every statistical acceptance band, in standard errors.
///
/// k = 5: a correct solver fails one assertion with probability P(|Z| > 5) = 5.7e-7,
/// so even the few thousand assertions of the suite pass by chance with
/// probability > 0.999 — while a wrong formula that moves a moment by more than
/// 5 standard errors is caught. All seeds are fixed, so a run never flakes.
pub const K_SIGMA: f64 = 5.0;

/// A proptest configuration with `cases` cases and a fixed RNG seed, so the
/// generated cases (and hence every statistical test) are reproducible; failures
/// persist to `file` (relative to the package root, where `cargo test` runs).
pub fn config(cases: u32, file: &'static str) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x5c0e_5de0),
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(file))),
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------
// The VP-SDE, from the DESIGN table (independent of src/sde.rs).
// ---------------------------------------------------------------------------

/// VP-SDE with linear `beta(t) = beta_min + t (beta_max - beta_min)`.
#[derive(Debug, Clone, Copy)]
pub struct Vp {
    /// `beta(0)`.
    pub beta_min: f64,
    /// `beta(1)`.
    pub beta_max: f64,
}

/// The default VP-SDE of the DESIGN (0.1, 20).
pub const VP: Vp = Vp { beta_min: 0.1, beta_max: 20.0 };

impl Vp {
    /// `beta(t)`.
    pub fn beta(&self, t: f64) -> f64 {
        self.beta_min + t * (self.beta_max - self.beta_min)
    }
    /// `B(t) = beta_min t + 1/2 (beta_max - beta_min) t^2`.
    pub fn big_b(&self, t: f64) -> f64 {
        self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t * t
    }
    /// Drift coefficient `f(t) = -beta(t) / 2`.
    pub fn f(&self, t: f64) -> f64 {
        -0.5 * self.beta(t)
    }
    /// `g(t)^2 = beta(t)`.
    pub fn g2(&self, t: f64) -> f64 {
        self.beta(t)
    }
    /// `a(t) = exp(-B/2)`.
    pub fn a(&self, t: f64) -> f64 {
        (-0.5 * self.big_b(t)).exp()
    }
    /// `sigma(t)^2 = 1 - exp(-B)`.
    pub fn sigma2(&self, t: f64) -> f64 {
        -(-self.big_b(t)).exp_m1()
    }
    /// `a(t) / a(s) = exp(-(B(t) - B(s)) / 2)`.
    pub fn a_ratio(&self, t: f64, s: f64) -> f64 {
        (-0.5 * (self.big_b(t) - self.big_b(s))).exp()
    }
    /// `1 - (a(t) / a(s))^2 = sigma_t^2 - (a_t/a_s)^2 sigma_s^2` for the VP-SDE, without cancellation.
    pub fn one_minus_ratio2(&self, t: f64, s: f64) -> f64 {
        -(-(self.big_b(t) - self.big_b(s))).exp_m1()
    }
}

/// One-dimensional Gaussian data `N(mu, s0^2)`.
#[derive(Debug, Clone, Copy)]
pub struct Gauss1 {
    /// Mean.
    pub mu: f64,
    /// Standard deviation.
    pub s0: f64,
}

impl Gauss1 {
    /// Mean and variance of `p_t`: `(a mu, a^2 s0^2 + sigma^2)` (DESIGN §4).
    pub fn marginal(&self, vp: &Vp, t: f64) -> (f64, f64) {
        let a = vp.a(t);
        (a * self.mu, a * a * self.s0 * self.s0 + vp.sigma2(t))
    }

    /// The crate's exact score of this data on (n, 1) arrays.
    pub fn score(&self) -> ExactScore<VpSde> {
        let mean = Array1::from_elem(1, self.mu);
        let cov = Array2::from_elem((1, 1), self.s0 * self.s0);
        ExactScore::new(GaussianMixture::gaussian(mean.view(), cov.view()).unwrap(), VpSde::default())
    }

    /// The data as a crate mixture.
    pub fn mixture(&self) -> GaussianMixture {
        self.score().data().clone()
    }
}

// ---------------------------------------------------------------------------
// The integrators' published update rules.
// ---------------------------------------------------------------------------

/// An integrator under test.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// `ForwardEulerMaruyama`.
    ForwardEm,
    /// `ReverseEulerMaruyama`.
    ReverseEm,
    /// `ReverseDiffusion`.
    ReverseDiffusion,
    /// `Ancestral` with `Variance::Small`.
    AncestralSmall,
    /// `Ancestral` with `Variance::Large`.
    AncestralLarge,
    /// `Pc(ReverseDiffusion, Sgld(StepSchedule::Constant(step), 1))`.
    PcSgld {
        /// The constant corrector step size.
        step: f64,
    },
}

/// The reverse-time methods (the PC corrector step is a placeholder: tests set it with [`Method::with_step`]).
pub const REVERSE: [Method; 5] = [
    Method::ReverseEm,
    Method::ReverseDiffusion,
    Method::AncestralSmall,
    Method::AncestralLarge,
    Method::PcSgld { step: f64::NAN },
];

impl Method {
    /// The crate's solver for this method.
    pub fn solver(&self) -> Box<dyn Solver<Array2<f64>>> {
        match *self {
            Method::ForwardEm => Box::new(ForwardEulerMaruyama),
            Method::ReverseEm => Box::new(ReverseEulerMaruyama),
            Method::ReverseDiffusion => Box::new(ReverseDiffusion),
            Method::AncestralSmall => Box::new(Ancestral::with_variance(Variance::Small)),
            Method::AncestralLarge => Box::new(Ancestral::with_variance(Variance::Large)),
            Method::PcSgld { step } => {
                Box::new(Pc::new(ReverseDiffusion, Sgld::new(StepSchedule::Constant(step), 1).unwrap()))
            }
        }
    }

    /// The same method with the corrector step set (other methods unchanged).
    pub fn with_step(self, e: f64) -> Self {
        match self {
            Method::PcSgld { .. } => Method::PcSgld { step: e },
            m => m,
        }
    }
}

/// One affine move `x <- alpha x + gamma s(x, t_score) + sd z`.
#[derive(Debug, Clone, Copy)]
pub struct Move {
    /// Time at which the score is evaluated.
    pub t_score: f64,
    /// Coefficient of `x`.
    pub alpha: f64,
    /// Coefficient of the score.
    pub gamma: f64,
    /// Standard deviation of the injected noise.
    pub sd: f64,
}

/// The published update rule of `method` for one step from `t` to `t_next`,
/// written from DESIGN.md §3 and the integrators' doc comments.
pub fn moves(method: Method, vp: &Vp, t: f64, t_next: f64) -> Vec<Move> {
    match method {
        // x <- (1 + f(t) h) x + g(t) sqrt(h) z, h = t_next - t > 0.
        Method::ForwardEm => {
            let h = t_next - t;
            vec![Move { t_score: t, alpha: 1.0 + vp.f(t) * h, gamma: 0.0, sd: (vp.g2(t) * h).sqrt() }]
        }
        // x <- x + [g^2 s - f x] h + g sqrt(h) z, h = t - t_next > 0.
        Method::ReverseEm => {
            let h = t - t_next;
            vec![Move { t_score: t, alpha: 1.0 - vp.f(t) * h, gamma: vp.g2(t) * h, sd: (vp.g2(t) * h).sqrt() }]
        }
        // x <- (2 - a_ts) x + G^2 s + G z, a_ts = a(t)/a(t_next), G^2 = sigma_t^2 - a_ts^2 sigma_s^2.
        Method::ReverseDiffusion => {
            let (a_ts, g2) = (vp.a_ratio(t, t_next), vp.one_minus_ratio2(t, t_next));
            vec![Move { t_score: t, alpha: 2.0 - a_ts, gamma: g2, sd: g2.sqrt() }]
        }
        // mean = (a_ts sigma_s^2 / sigma_t^2) x + (a_s sigma_ts^2 / sigma_t^2) x0_hat,
        // x0_hat = (x + sigma_t^2 s) / a_t; var = sigma_ts^2 sigma_s^2 / sigma_t^2 (small) or sigma_ts^2 (large).
        Method::AncestralSmall | Method::AncestralLarge => {
            let (a_t, a_s) = (vp.a(t), vp.a(t_next));
            let (v_t, v_s) = (vp.sigma2(t), vp.sigma2(t_next));
            let (a_ts, v_ts) = (vp.a_ratio(t, t_next), vp.one_minus_ratio2(t, t_next));
            let c_x = a_ts * v_s / v_t;
            let c_0 = a_s * v_ts / v_t;
            let var = if method == Method::AncestralSmall { v_ts * v_s / v_t } else { v_ts };
            vec![Move { t_score: t, alpha: c_x + c_0 / a_t, gamma: c_0 * v_t / a_t, sd: var.sqrt() }]
        }
        // The predictor, then the corrector x <- x + e s(x, t_next) + sqrt(2 e) z at t_next.
        Method::PcSgld { step } => {
            let mut m = moves(Method::ReverseDiffusion, vp, t, t_next);
            m.push(Move { t_score: t_next, alpha: 1.0, gamma: step, sd: (2.0 * step).sqrt() });
            m
        }
    }
}

/// The law of `x' = c x + d + e z` (stored as `e^2`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine {
    /// Coefficient of `x`.
    pub c: f64,
    /// Offset.
    pub d: f64,
    /// Noise variance `e^2`.
    pub e2: f64,
}

impl Affine {
    /// The identity map.
    pub const ID: Affine = Affine { c: 1.0, d: 0.0, e2: 0.0 };

    /// `other` after `self`.
    pub fn then(self, other: Affine) -> Affine {
        Affine { c: other.c * self.c, d: other.c * self.d + other.d, e2: other.c * other.c * self.e2 + other.e2 }
    }

    /// Pushes a Gaussian `(m, v)` through the map.
    pub fn apply(&self, (m, v): (f64, f64)) -> (f64, f64) {
        (self.c * m + self.d, self.c * self.c * v + self.e2)
    }
}

/// `(c, d, e)` of one step of `method` from `t` to `t_next` on 1-D Gaussian data,
/// with the exact score `s(x, t) = -(x - a mu) / (a^2 s0^2 + sigma^2)`.
pub fn affine_1d(method: Method, vp: &Vp, data: &Gauss1, t: f64, t_next: f64) -> Affine {
    moves(method, vp, t, t_next).iter().fold(Affine::ID, |acc, mv| {
        let (am, v) = data.marginal(vp, mv.t_score);
        // alpha x + gamma * (-(x - am) / v) + sd z
        acc.then(Affine { c: mv.alpha - mv.gamma / v, d: mv.gamma * am / v, e2: mv.sd * mv.sd })
    })
}

/// The exact law after running `method` over the grid `times` from `N(m0, v0)`.
pub fn propagate_1d(method: Method, vp: &Vp, data: &Gauss1, times: &[f64], start: (f64, f64)) -> (f64, f64) {
    times.windows(2).fold(start, |mv, w| affine_1d(method, vp, data, w[0], w[1]).apply(mv))
}

/// `|m - m*| + |v - v*|`: the weak error of a 1-D Gaussian law in its first two moments.
pub fn law_error(got: (f64, f64), want: (f64, f64)) -> f64 {
    (got.0 - want.0).abs() + (got.1 - want.1).abs()
}

// ---------------------------------------------------------------------------
// Two dimensions: the same recursion with 2x2 matrices.
// ---------------------------------------------------------------------------

/// A 2x2 matrix.
pub type M2 = [[f64; 2]; 2];
/// A 2-vector.
pub type V2 = [f64; 2];

/// Identity.
pub const I2: M2 = [[1.0, 0.0], [0.0, 1.0]];

/// `A B`.
pub fn mm(a: &M2, b: &M2) -> M2 {
    let mut c = [[0.0; 2]; 2];
    for i in 0..2 {
        for j in 0..2 {
            c[i][j] = a[i][0] * b[0][j] + a[i][1] * b[1][j];
        }
    }
    c
}
/// `A^T`.
pub fn tr(a: &M2) -> M2 {
    [[a[0][0], a[1][0]], [a[0][1], a[1][1]]]
}
/// `p A + q B`.
pub fn lin(p: f64, a: &M2, q: f64, b: &M2) -> M2 {
    [[p * a[0][0] + q * b[0][0], p * a[0][1] + q * b[0][1]], [p * a[1][0] + q * b[1][0], p * a[1][1] + q * b[1][1]]]
}
/// `A^{-1}`.
pub fn inv(a: &M2) -> M2 {
    let det = a[0][0] * a[1][1] - a[0][1] * a[1][0];
    [[a[1][1] / det, -a[0][1] / det], [-a[1][0] / det, a[0][0] / det]]
}
/// `A v`.
pub fn mv(a: &M2, v: &V2) -> V2 {
    [a[0][0] * v[0] + a[0][1] * v[1], a[1][0] * v[0] + a[1][1] * v[1]]
}

/// The exact law (mean, covariance) after running `method` over `times` on 2-D
/// data `N(mu, sigma0)`, from `N(m0, c0)`: each move is `x <- C x + d + sd z` with
/// `P = (a^2 Sigma0 + sigma^2 I)^{-1}`, `C = alpha I - gamma P`, `d = gamma P a mu`,
/// so `m' = C m + d`, `S' = C S C^T + sd^2 I`.
pub fn propagate_2d(method: Method, vp: &Vp, mu: V2, sigma0: M2, times: &[f64], start: (V2, M2)) -> (V2, M2) {
    let (mut m, mut s) = start;
    for w in times.windows(2) {
        for step in moves(method, vp, w[0], w[1]) {
            let a = vp.a(step.t_score);
            let p = inv(&lin(a * a, &sigma0, vp.sigma2(step.t_score), &I2));
            let c = lin(step.alpha, &I2, -step.gamma, &p);
            let pm = mv(&p, &mu);
            let cm = mv(&c, &m);
            m = [cm[0] + step.gamma * a * pm[0], cm[1] + step.gamma * a * pm[1]];
            s = lin(1.0, &mm(&mm(&c, &s), &tr(&c)), step.sd * step.sd, &I2);
        }
    }
    (m, s)
}

// ---------------------------------------------------------------------------
// Moment estimators and acceptance bands.
// ---------------------------------------------------------------------------

/// Sample mean and unbiased sample variance.
pub fn mean_var(x: ArrayView1<f64>) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.sum() / n;
    let v = x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, v)
}

/// Sample mean vector and unbiased sample covariance of the rows of `x`.
pub fn mean_cov(x: &Array2<f64>) -> (Array1<f64>, Array2<f64>) {
    let n = x.nrows() as f64;
    let m = x.mean_axis(Axis(0)).unwrap();
    let c = x - &m;
    (m, c.t().dot(&c) / (n - 1.0))
}

/// Asserts that a Gaussian sample of size `n` with sample moments `got` comes from
/// `N(want.0, want.1)`: mean within `K sqrt(v / n)`, variance within `K v sqrt(2 / (n - 1))`
/// (the standard errors of the sample mean and of the unbiased sample variance of a Gaussian).
pub fn assert_gaussian_moments(what: &str, n: usize, got: (f64, f64), want: (f64, f64)) {
    let nf = n as f64;
    let (m_tol, v_tol) = (K_SIGMA * (want.1 / nf).sqrt(), K_SIGMA * want.1 * (2.0 / (nf - 1.0)).sqrt());
    assert!(
        (got.0 - want.0).abs() <= m_tol,
        "{what}: sample mean {} vs exact {} (|diff| {:.3e} > {m_tol:.3e})",
        got.0,
        want.0,
        (got.0 - want.0).abs()
    );
    assert!(
        (got.1 - want.1).abs() <= v_tol,
        "{what}: sample variance {} vs exact {} (|diff| {:.3e} > {v_tol:.3e})",
        got.1,
        want.1,
        (got.1 - want.1).abs()
    );
}

/// The 2-D analogue: each mean coordinate within `K sqrt(S_ii / n)` and each
/// covariance entry within `K sqrt((S_ii S_jj + S_ij^2) / (n - 1))`, the standard
/// error of a Gaussian sample covariance (which reduces to `v sqrt(2/(n-1))` on the diagonal).
pub fn assert_gaussian_moments_2d(what: &str, x: &Array2<f64>, want: (V2, M2)) {
    let n = x.nrows() as f64;
    let (m, c) = mean_cov(x);
    let (wm, ws) = want;
    for i in 0..2 {
        let tol = K_SIGMA * (ws[i][i] / n).sqrt();
        assert!((m[i] - wm[i]).abs() <= tol, "{what}: mean[{i}] {} vs exact {} (tol {tol:.3e})", m[i], wm[i]);
        for j in 0..2 {
            let tol = K_SIGMA * ((ws[i][i] * ws[j][j] + ws[i][j] * ws[i][j]) / (n - 1.0)).sqrt();
            assert!(
                (c[[i, j]] - ws[i][j]).abs() <= tol,
                "{what}: cov[{i},{j}] {} vs exact {} (tol {tol:.3e})",
                c[[i, j]],
                ws[i][j]
            );
        }
    }
}

/// Least-squares slope of `ln err` against `ln h`: the measured order.
pub fn loglog_slope(h: &[f64], err: &[f64]) -> f64 {
    assert_eq!(h.len(), err.len());
    assert!(err.iter().all(|e| *e > 0.0 && e.is_finite()), "errors must be positive: {err:?}");
    let x: Vec<f64> = h.iter().map(|v| v.ln()).collect();
    let y: Vec<f64> = err.iter().map(|v| v.ln()).collect();
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let sxy: f64 = x.iter().zip(&y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    sxy / sxx
}

/// Order tolerance of the brief: a measured order within ±0.15 of the theoretical one.
pub const ORDER_TOL: f64 = 0.15;

// ---------------------------------------------------------------------------
// Noise sources and scores written for the tests.
// ---------------------------------------------------------------------------

/// A deterministic "noise" source: every draw is the same fixed array `z`, so
/// a test can apply an update rule by hand with exactly the solver's `z`.
#[derive(Debug, Clone)]
pub struct FixedNoise<S> {
    /// The array returned by every draw.
    pub z: S,
    /// Number of draws so far.
    pub draws: usize,
}

impl<S> FixedNoise<S> {
    /// Noise that always returns `z`.
    pub fn new(z: S) -> Self {
        Self { z, draws: 0 }
    }
}

impl<S: State> Noise<S> for FixedNoise<S> {
    fn step_normal(&mut self, _t: f64, _t_next: f64, like: &S) -> scoresde_solvers::Result<S> {
        assert_eq!(like.shape(), self.z.shape(), "FixedNoise used with another shape");
        self.draws += 1;
        Ok(self.z.duplicate())
    }

    fn normal(&mut self, like: &S) -> S {
        assert_eq!(like.shape(), self.z.shape(), "FixedNoise used with another shape");
        self.draws += 1;
        self.z.duplicate()
    }
}

/// Seeded i.i.d. noise that remembers the last array it handed out, so a test
/// can recompute a data-dependent step size (the SNR rule) from the very `z` used.
#[derive(Debug, Clone)]
pub struct RecordingNoise {
    inner: GaussianNoise,
    /// The last draw.
    pub last: Option<Array2<f64>>,
}

impl RecordingNoise {
    /// Recording noise from a seed.
    pub fn new(seed: u64) -> Self {
        Self { inner: GaussianNoise::new(seed), last: None }
    }
}

impl Noise<Array2<f64>> for RecordingNoise {
    fn step_normal(&mut self, t: f64, t_next: f64, like: &Array2<f64>) -> scoresde_solvers::Result<Array2<f64>> {
        let z = self.inner.step_normal(t, t_next, like)?;
        self.last = Some(z.clone());
        Ok(z)
    }

    fn normal(&mut self, like: &Array2<f64>) -> Array2<f64> {
        let z = Noise::<Array2<f64>>::normal(&mut self.inner, like);
        self.last = Some(z.clone());
        z
    }
}

/// A seeded RNG for drawing test data.
pub fn rng(seed: u64) -> Rng {
    Rng::seed_from_u64(seed)
}

/// `n` exact samples of `p_t` of 1-D Gaussian data, shape (n, 1).
pub fn sample_marginal_1d(data: &Gauss1, t: f64, n: usize, seed: u64) -> Array2<f64> {
    data.mixture().marginal(&VpSde::default(), t).sample(n, &mut rng(seed))
}

/// Column 0 of an (n, 1) array.
pub fn col0(x: &Array2<f64>) -> ArrayView1<'_, f64> {
    x.column(0)
}

// ---------------------------------------------------------------------------
// Time grids and proptest strategies.
// ---------------------------------------------------------------------------

/// The time-grid constructors of the crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridKind {
    /// `TimeGrid::uniform`.
    Uniform,
    /// `TimeGrid::quadratic`.
    Quadratic,
    /// `TimeGrid::log_snr`.
    LogSnr,
    /// `TimeGrid::karras` with rho = 7.
    Karras,
}

impl GridKind {
    /// The grid of this kind from `t_start` to `t_end` with `steps` steps.
    pub fn build(self, sde: &VpSde, t_start: f64, t_end: f64, steps: usize) -> TimeGrid {
        match self {
            GridKind::Uniform => TimeGrid::uniform(t_start, t_end, steps),
            GridKind::Quadratic => TimeGrid::quadratic(t_start, t_end, steps),
            GridKind::LogSnr => TimeGrid::log_snr(sde, t_start, t_end, steps),
            GridKind::Karras => TimeGrid::karras(sde, t_start, t_end, steps, 7.0),
        }
        .unwrap()
    }
}

/// Any grid kind.
pub fn grid_kind() -> impl Strategy<Value = GridKind> {
    prop_oneof![Just(GridKind::Uniform), Just(GridKind::Quadratic), Just(GridKind::LogSnr), Just(GridKind::Karras)]
}

/// Random 1-D Gaussian data: `mu` in [-3, 3], `s0` in [0.1, 2].
pub fn gauss1() -> impl Strategy<Value = Gauss1> {
    (-3.0..3.0f64, 0.1..2.0f64).prop_map(|(mu, s0)| Gauss1 { mu, s0 })
}

// ---------------------------------------------------------------------------
// SA-Solver (Xue et al. 2023), written from the paper on scalars.
// ---------------------------------------------------------------------------

/// `int_{-h}^0 e^{c u} P(u) du` for a polynomial `P` (coefficients, lowest first), by the
/// antiderivative `e^{cu} sum_k (-1)^k P^(k)(u) / c^{k+1}`.
fn exp_poly_integral(poly: &[f64], h: f64, c: f64) -> f64 {
    let anti = |u: f64| {
        let mut d = poly.to_vec();
        let (mut sum, mut sign, mut ck) = (0.0, 1.0, c);
        while !d.is_empty() {
            let val = d.iter().rev().fold(0.0, |acc, a| acc * u + a);
            sum += sign * val / ck;
            d = d.iter().enumerate().skip(1).map(|(k, a)| k as f64 * a).collect();
            sign = -sign;
            ck *= c;
        }
        (c * u).exp() * sum
    };
    anti(0.0) - anti(-h)
}

/// The Lagrange basis polynomial `L_j` through `nodes` (coefficients in u, lowest first).
fn lagrange(nodes: &[f64], j: usize) -> Vec<f64> {
    let mut p = vec![1.0];
    for (i, &ui) in nodes.iter().enumerate() {
        if i != j {
            let mut q = vec![0.0; p.len() + 1];
            for (k, a) in p.iter().enumerate() {
                q[k + 1] += a / (nodes[j] - ui);
                q[k] -= a * ui / (nodes[j] - ui);
            }
            p = q;
        }
    }
    p
}

/// Settings of the SA-Solver hand recursion [`sa_solver_hand`].
#[derive(Debug, Clone, Copy)]
pub struct SaCfg {
    /// Stochasticity.
    pub tau: f64,
    /// The `sigma/a` interval where `tau` applies (everywhere if `None`).
    pub interval: Option<(f64, f64)>,
    /// Predictor order.
    pub p: usize,
    /// Corrector order (0: none).
    pub q: usize,
    /// diffusers' `lower_order_final`.
    pub lof: bool,
}

/// The SA-Solver recursion written from the paper (data prediction, eqs. 15 and 18) on
/// scalars: returns `x` at the end of `times` from `x_start`, using `zs` in order.
pub fn sa_solver_hand(data: &Gauss1, cfg: SaCfg, times: &[f64], x_start: f64, zs: &[f64]) -> f64 {
    let n = times.len() - 1;
    let lam = lambda_vp;
    let x0_of = |x: f64, t: f64| {
        let (am, v) = data.marginal(&VP, t);
        let s = -(x - am) / v;
        (x + VP.sigma2(t) * s) / VP.a(t)
    };
    let tau_of = |t: f64| match cfg.interval {
        Some((lo, hi)) => {
            let sig = VP.sigma2(t).sqrt() / VP.a(t);
            if sig >= lo && sig <= hi {
                cfg.tau
            } else {
                0.0
            }
        }
        None => cfg.tau,
    };
    // One Adams step from (x, t) to s over the data predictions `d` at log-SNRs `ls`.
    let adams = |x: f64, t: f64, s: f64, tau: f64, z: f64, d: &[f64], ls: &[f64]| {
        let c = 1.0 + tau * tau;
        let h = lam(s) - lam(t);
        let nodes: Vec<f64> = ls.iter().map(|l| l - lam(s)).collect();
        let mut b: Vec<f64> = (0..d.len()).map(|j| exp_poly_integral(&lagrange(&nodes, j), h, c)).collect();
        if d.len() == 2 {
            // The modification of order 2: D = h^2/2 - (c h - 1 + e^{-c h}) / c^2.
            let dd = h * h / 2.0 - (c * h - 1.0 + (-c * h).exp()) / (c * c);
            b[0] += dd / (nodes[0] - nodes[1]);
            b[1] -= dd / (nodes[0] - nodes[1]);
        }
        let (a_s, sig_s, sig_t) = (VP.a(s), VP.sigma2(s).sqrt(), VP.sigma2(t).sqrt());
        let mut out = (-tau * tau * h).exp() * sig_s / sig_t * x;
        for (dj, bj) in d.iter().zip(&b) {
            out += a_s * c * bj * dj;
        }
        out + sig_s * (1.0 - (-2.0 * tau * tau * h).exp()).sqrt() * z
    };
    let mut zi = zs.iter();
    let mut x = x_start;
    let (mut ds, mut ls) = (Vec::<f64>::new(), Vec::<f64>::new()); // all x0 so far, oldest first
    let mut prev: Option<(f64, f64, f64, f64)> = None; // (x_{i-1}, t_{i-1}, tau, z)
    for i in 0..n {
        let (t, s) = (times[i], times[i + 1]);
        let d_new = x0_of(x, t);
        if let Some((xp, tp, taup, zp)) = prev {
            if cfg.q > 0 {
                let mut q = cfg.q.min(i + 1);
                if cfg.lof {
                    q = q.min(n - i + 2);
                }
                // Nodes t_i, t_{i-1}, ..: the new x0 first, then the newest history.
                let mut d = vec![d_new];
                let mut l = vec![lam(t)];
                for k in 1..q {
                    d.push(ds[i - k]);
                    l.push(ls[i - k]);
                }
                x = adams(xp, tp, t, taup, zp, &d, &l);
            }
        }
        ds.push(d_new);
        ls.push(lam(t));
        let mut p = cfg.p.min(i + 1);
        if cfg.lof {
            p = p.min(n - i);
        }
        let tau = tau_of(t);
        let z = if tau > 0.0 { *zi.next().expect("enough noise") } else { 0.0 };
        let d: Vec<f64> = (0..p).map(|k| ds[i - k]).collect();
        let l: Vec<f64> = (0..p).map(|k| ls[i - k]).collect();
        let x_next = adams(x, t, s, tau, z, &d, &l);
        prev = Some((x, t, tau, z));
        x = x_next;
    }
    assert!(zi.next().is_none(), "the hand recursion used fewer draws than given");
    x
}

pub fn lambda_vp(t: f64) -> f64 {
    VP.a(t).ln() - 0.5 * VP.sigma2(t).ln()
}
