//! The exact output law of a sampler on one-dimensional Gaussian data.
//!
//! With Gaussian data `N(mu, s0^2)` the exact score `s(x, t) = -(x - a mu) / (a^2 s0^2 + sigma^2)`
//! is affine in `x`, so every integrator here (except the SNR-rule Langevin
//! corrector, whose step size is a batch statistic) maps the start `x_T` and
//! its noise draws `z_1 .. z_K` affinely: `x_out = c x_T + d + sum_k e_k z_k`
//! (DESIGN §4). Started from the exact `p_T = N(m_T, v_T)`, the output law is
//! therefore exactly `N(c m_T + d, c^2 v_T + sum_k e_k^2)`, with no Monte Carlo.
//!
//! [`scheme_law_1d`] reads `c`, `d` and every `e_k` off the integrator itself by
//! running it once on a batch of probe rows: `x_T = m_T -/+ sqrt(v_T)` and `m_T`
//! with all noise zero, and one row per noise draw `k`, at `m_T`, whose noise is 1
//! on that draw only. An adaptive solver chooses its steps from the probe batch
//! (rows at `m_T`, `m_T -/+ sqrt(v_T)`): the law is exact for those steps.

use ndarray::Array2;

use crate::error::Result;
use crate::grid::TimeGrid;
use crate::noise::Noise;
use crate::sample::Sampler;
use crate::score::Score;
use crate::sde::Sde;
use crate::solver::Solver;

/// A one-dimensional Gaussian law `N(mean, var)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gauss1d {
    /// Mean.
    pub mean: f64,
    /// Variance.
    pub var: f64,
}

impl Gauss1d {
    /// The 2-Wasserstein distance between two 1-D Gaussians,
    /// `sqrt((m1 - m2)^2 + (sd1 - sd2)^2)`.
    pub fn w2(&self, other: &Gauss1d) -> f64 {
        ((self.mean - other.mean).powi(2) + (self.var.max(0.0).sqrt() - other.var.max(0.0).sqrt()).powi(2)).sqrt()
    }

    /// The marginal `p_t = N(a mu, a^2 s0^2 + sigma^2)` of data `N(mu, s0^2)` under `sde`.
    pub fn marginal(sde: &dyn Sde, mu: f64, s0: f64, t: f64) -> Gauss1d {
        let (a, s) = (sde.alpha(t), sde.sigma(t));
        Gauss1d { mean: a * mu, var: a * a * s0 * s0 + s * s }
    }
}

/// The exact score of 1-D Gaussian data `N(mu, s0^2)` under any `sde`, on (n, 1) arrays.
#[derive(Debug)]
pub struct Gauss1dScore<'a> {
    sde: &'a dyn Sde,
    mu: f64,
    s0: f64,
}

impl<'a> Gauss1dScore<'a> {
    /// The score of `N(mu, s0^2)` data under `sde`.
    pub fn new(sde: &'a dyn Sde, mu: f64, s0: f64) -> Self {
        Self { sde, mu, s0 }
    }
}

impl Score<Array2<f64>> for Gauss1dScore<'_> {
    fn score(&self, x: &Array2<f64>, t: f64) -> Result<Array2<f64>> {
        self.sde.check_time(t)?;
        let m = Gauss1d::marginal(self.sde, self.mu, self.s0, t);
        Ok(x.mapv(|v| -(v - m.mean) / m.var))
    }
}

/// Noise that is 1 in row `first + k` on draw `k` and 0 elsewhere (all zero when `first` is `None`).
struct ProbeNoise {
    first: Option<usize>,
    draws: usize,
}

impl ProbeNoise {
    fn draw(&mut self, like: &Array2<f64>) -> Array2<f64> {
        let mut z = Array2::zeros(like.raw_dim());
        if let Some(f) = self.first {
            if f + self.draws < z.nrows() {
                z[[f + self.draws, 0]] = 1.0;
            }
        }
        self.draws += 1;
        z
    }
}

impl Noise<Array2<f64>> for ProbeNoise {
    fn step_normal(&mut self, _t: f64, _t_next: f64, like: &Array2<f64>) -> Result<Array2<f64>> {
        Ok(self.draw(like))
    }

    fn normal(&mut self, like: &Array2<f64>) -> Array2<f64> {
        self.draw(like)
    }
}

/// The exact law of `solver` run over `grid` (from `grid.start()`, with
/// `denoise` for a final Tweedie step) on data `N(mu, s0^2)` with its exact
/// score, started from the exact marginal at `grid.start()`; also returns the
/// score evaluations of one run. See the module docs for how and when it is exact.
///
/// # Errors
/// Whatever the run returns.
pub fn scheme_law_1d(
    solver: &mut dyn Solver<Array2<f64>>,
    sde: &dyn Sde,
    mu: f64,
    s0: f64,
    grid: &TimeGrid,
    denoise: bool,
) -> Result<(Gauss1d, usize)> {
    let score = Gauss1dScore::new(sde, mu, s0);
    let start = Gauss1d::marginal(sde, mu, s0, grid.start());
    let sd = start.var.sqrt();
    let rows = |k: usize| {
        let mut x = Array2::from_elem((3 + k, 1), start.mean);
        x[[0, 0]] -= sd;
        x[[1, 0]] += sd;
        x
    };
    // Pass 1: count the noise draws.
    let mut count = ProbeNoise { first: None, draws: 0 };
    Sampler::new(sde, &score).denoise(denoise).run(solver, rows(0), grid, &mut count)?;
    let k = count.draws;
    // Pass 2: one row per draw.
    let mut probe = ProbeNoise { first: Some(3), draws: 0 };
    let run = Sampler::new(sde, &score).denoise(denoise).run(solver, rows(k), grid, &mut probe)?;
    let out = run.x.column(0);
    let c = (out[1] - out[0]) / (2.0 * sd);
    let mean = out[2];
    let noise_var: f64 = (0..k).map(|j| (out[3 + j] - mean).powi(2)).sum();
    Ok((Gauss1d { mean, var: c * c * start.var + noise_var }, run.score_evals))
}
