//! [`GaussianMixture`]: data whose every marginal under a linear SDE is a
//! Gaussian mixture, so its density, score and score derivatives are exact
//! at every `t`.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rand::Rng as _;
use rand_distr::StandardNormal;

use super::mixture_simd::{cast, chunk_kernel, Prepared, Scratch, CHUNK};
use crate::error::{Error, Result};
use crate::sde::Sde;
use crate::state::{Element, Rng};

/// One Gaussian component `N(mean, U diag(lambda) U^T)`, stored by its eigendecomposition.
#[derive(Debug, Clone)]
struct Component {
    log_weight: f64,
    mean: Array1<f64>,
    /// Columns are eigenvectors; `None` when the covariance is diagonal.
    eigvecs: Option<Array2<f64>>,
    eigvals: Array1<f64>,
}

impl Component {
    /// `U diag(lambda) U^T`, symmetrised against rounding.
    fn covariance(&self) -> Array2<f64> {
        match &self.eigvecs {
            None => Array2::from_diag(&self.eigvals),
            Some(u) => {
                let c = u.dot(&Array2::from_diag(&self.eigvals)).dot(&u.t());
                (&c + &c.t()) * 0.5
            }
        }
    }
}

/// A Gaussian mixture `sum_k w_k N(mu_k, Sigma_k)` in `d` dimensions: data whose
/// every marginal `p_t = sum_k w_k N(a mu_k, a^2 Sigma_k + sigma^2 I)` is known
/// exactly, so its score is exact at every `t` (a single Gaussian is the case K = 1).
#[derive(Debug, Clone)]
pub struct GaussianMixture {
    components: Vec<Component>,
    dim: usize,
}

fn check_finite_slice(what: &str, v: impl IntoIterator<Item = f64>) -> Result<()> {
    if v.into_iter().all(f64::is_finite) {
        Ok(())
    } else {
        Err(Error::NonFiniteInput { what: what.to_string() })
    }
}

impl GaussianMixture {
    /// A single Gaussian `N(mean, cov)` with full covariance.
    ///
    /// # Errors
    /// As [`GaussianMixture::new`].
    pub fn gaussian(mean: ArrayView1<f64>, cov: ArrayView2<f64>) -> Result<Self> {
        let d = mean.len();
        let covs = cov.to_owned().into_shape_with_order((1, cov.nrows(), cov.ncols())).map_err(|_| {
            Error::ShapeMismatch { what: "covariance", expected: vec![d, d], got: cov.shape().to_vec() }
        })?;
        Self::new(&[1.0], mean.insert_axis(Axis(0)), covs.view())
    }

    /// A mixture of `K` components: `weights` (K, positive, normalised here),
    /// `means` (K, d) and covariances (K, d, d), each symmetric positive
    /// semi-definite.
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`], [`Error::NonFiniteInput`], or
    /// [`Error::InvalidParameter`] for non-positive weights, an asymmetric or
    /// indefinite covariance, or no components.
    pub fn new(weights: &[f64], means: ArrayView2<f64>, covs: ndarray::ArrayView3<f64>) -> Result<Self> {
        let (k, d) = means.dim();
        if k == 0 || d == 0 {
            return Err(Error::param("means", format!("{k}x{d}"), "need at least one component of dimension >= 1"));
        }
        if weights.len() != k {
            return Err(Error::ShapeMismatch { what: "mixture weights", expected: vec![k], got: vec![weights.len()] });
        }
        if covs.dim() != (k, d, d) {
            return Err(Error::ShapeMismatch {
                what: "mixture covariances",
                expected: vec![k, d, d],
                got: covs.shape().to_vec(),
            });
        }
        check_finite_slice("mixture weights", weights.iter().copied())?;
        check_finite_slice("mixture means", means.iter().copied())?;
        check_finite_slice("mixture covariances", covs.iter().copied())?;
        if let Some(w) = weights.iter().find(|w| **w <= 0.0) {
            return Err(Error::param("weights", w, "mixture weights must be > 0"));
        }
        let total: f64 = weights.iter().sum();
        let mut components = Vec::with_capacity(k);
        for (i, cov) in covs.outer_iter().enumerate() {
            let scale = cov.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-300);
            for r in 0..d {
                for c in 0..r {
                    if (cov[[r, c]] - cov[[c, r]]).abs() > 1e-10 * scale {
                        return Err(Error::param("covariance", format!("component {i}"), "must be symmetric"));
                    }
                }
            }
            let diagonal = (0..d).all(|r| (0..d).all(|c| r == c || cov[[r, c]] == 0.0));
            let (eigvals, eigvecs) = if diagonal {
                (cov.diag().to_owned(), None)
            } else {
                let m = nalgebra::DMatrix::from_fn(d, d, |r, c| 0.5 * (cov[[r, c]] + cov[[c, r]]));
                let eig = nalgebra::SymmetricEigen::new(m);
                let vals = Array1::from_iter(eig.eigenvalues.iter().copied());
                let vecs = Array2::from_shape_fn((d, d), |(r, c)| eig.eigenvectors[(r, c)]);
                (vals, Some(vecs))
            };
            if let Some(l) = eigvals.iter().find(|l| **l < -1e-12 * scale) {
                return Err(Error::param(
                    "covariance",
                    format!("component {i}"),
                    format!("must be positive semi-definite (eigenvalue {l})"),
                ));
            }
            components.push(Component {
                log_weight: (weights[i] / total).ln(),
                mean: means.row(i).to_owned(),
                eigvecs,
                eigvals: eigvals.mapv(|l| l.max(0.0)),
            });
        }
        Ok(Self { components, dim: d })
    }

    /// The mixture of `k` isotropic Gaussians with standard deviation `std`
    /// placed evenly on a circle of `radius` (the "8 Gaussians" toy set for `k = 8`).
    ///
    /// # Errors
    /// As [`GaussianMixture::new`] (e.g. `k = 0`, negative `std`).
    pub fn ring(k: usize, radius: f64, std: f64) -> Result<Self> {
        if !std.is_finite() || std < 0.0 {
            return Err(Error::param("std", std, "must be finite and >= 0"));
        }
        let means = Array2::from_shape_fn((k, 2), |(i, j)| {
            let a = 2.0 * std::f64::consts::PI * i as f64 / k as f64;
            radius * if j == 0 { a.cos() } else { a.sin() }
        });
        let mut covs = ndarray::Array3::zeros((k, 2, 2));
        for i in 0..k {
            covs[[i, 0, 0]] = std * std;
            covs[[i, 1, 1]] = std * std;
        }
        Self::new(&vec![1.0; k], means.view(), covs.view())
    }

    /// Data dimension `d`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of components `K`.
    pub fn n_components(&self) -> usize {
        self.components.len()
    }

    /// Normalised component weights `w_k` (length `K`, summing to 1).
    pub fn weights(&self) -> Array1<f64> {
        self.components.iter().map(|c| c.log_weight.exp()).collect()
    }

    /// Component means `mu_k`, shape `(K, d)`.
    pub fn means(&self) -> Array2<f64> {
        let mut m = Array2::zeros((self.components.len(), self.dim));
        for (mut row, c) in m.rows_mut().into_iter().zip(&self.components) {
            row.assign(&c.mean);
        }
        m
    }

    /// Component covariances `Sigma_k`, shape `(K, d, d)`, rebuilt from the
    /// stored eigendecomposition `U diag(lambda) U^T` (so equal to the
    /// covariances given to [`GaussianMixture::new`] up to rounding, with
    /// eigenvalues below zero by rounding clamped to 0) and symmetrised.
    pub fn covariances(&self) -> ndarray::Array3<f64> {
        let mut out = ndarray::Array3::zeros((self.components.len(), self.dim, self.dim));
        for (mut o, c) in out.outer_iter_mut().zip(&self.components) {
            o.assign(&c.covariance());
        }
        out
    }

    /// Mean of the data.
    pub fn mean(&self) -> Array1<f64> {
        let mut m = Array1::zeros(self.dim);
        for c in &self.components {
            m.scaled_add(c.log_weight.exp(), &c.mean);
        }
        m
    }

    /// Covariance of the data (law of total covariance).
    pub fn covariance(&self) -> Array2<f64> {
        let mu = self.mean();
        let mut cov = Array2::zeros((self.dim, self.dim));
        for c in &self.components {
            let w = c.log_weight.exp();
            let dm = &c.mean - &mu;
            let within = c.covariance();
            for r in 0..self.dim {
                for s in 0..self.dim {
                    cov[[r, s]] += w * (within[[r, s]] + dm[r] * dm[s]);
                }
            }
        }
        cov
    }

    /// The mixture of the perturbed data `a X_0 + sigma Z`: the marginal `p_t`
    /// when `a = a(t)`, `sigma = sigma(t)`.
    pub fn perturbed(&self, a: f64, sigma: f64) -> Self {
        let components = self
            .components
            .iter()
            .map(|c| Component {
                log_weight: c.log_weight,
                mean: &c.mean * a,
                eigvecs: c.eigvecs.clone(),
                eigvals: c.eigvals.mapv(|l| a * a * l + sigma * sigma),
            })
            .collect();
        Self { components, dim: self.dim }
    }

    /// The marginal `p_t` of this data under `sde`.
    pub fn marginal(&self, sde: &dyn Sde, t: f64) -> Self {
        self.perturbed(sde.alpha(t), sde.sigma(t))
    }

    /// `n` exact samples, shape (n, d).
    pub fn sample(&self, n: usize, rng: &mut Rng) -> Array2<f64> {
        self.sample_with_components(n, rng).0
    }

    /// `n` exact samples, shape (n, d), and the component each was drawn from
    /// (the same draws as [`GaussianMixture::sample`] with the same `rng`).
    pub fn sample_with_components(&self, n: usize, rng: &mut Rng) -> (Array2<f64>, Vec<usize>) {
        let weights: Vec<f64> = self.components.iter().map(|c| c.log_weight.exp()).collect();
        let mut out = Array2::zeros((n, self.dim));
        let mut which = Vec::with_capacity(n);
        let mut z = Array1::<f64>::zeros(self.dim);
        for mut row in out.rows_mut() {
            let mut u: f64 = rng.gen();
            let mut k = 0;
            while k + 1 < weights.len() && u >= weights[k] {
                u -= weights[k];
                k += 1;
            }
            which.push(k);
            let c = &self.components[k];
            z.mapv_inplace(|_| rng.sample::<f64, _>(StandardNormal));
            let scaled = &z * &c.eigvals.mapv(f64::sqrt);
            let x = match &c.eigvecs {
                None => scaled,
                Some(u) => u.dot(&scaled),
            };
            row.assign(&(&x + &c.mean));
        }
        (out, which)
    }

    /// Per-component constants of the marginal at `(a, sigma)`, computed once
    /// per call so the row kernel does no logarithms; errors for a singular marginal.
    fn prepare<C: Element>(&self, a: f64, sigma: f64) -> Result<Vec<Prepared<C>>>
    where
        StandardNormal: rand_distr::Distribution<C>,
    {
        let half_d_ln2pi = 0.5 * self.dim as f64 * (2.0 * std::f64::consts::PI).ln();
        self.components
            .iter()
            .map(|c| {
                let v = c.eigvals.mapv(|l| a * a * l + sigma * sigma);
                if !v.iter().all(|x| *x > 0.0 && x.is_finite()) {
                    return Err(Error::param(
                        "sigma",
                        sigma,
                        "the marginal is singular (zero noise on a degenerate covariance)",
                    ));
                }
                Ok(Prepared {
                    shift: c.mean.iter().map(|m| cast(a * m)).collect(),
                    inv_var: v.iter().map(|x| cast(1.0 / x)).collect(),
                    log_norm: cast(c.log_weight - 0.5 * v.iter().map(|x| x.ln()).sum::<f64>() - half_d_ln2pi),
                    rotation: c.eigvecs.as_ref().map(|u| u.iter().map(|v| cast(*v)).collect()),
                })
            })
            .collect()
    }

    /// Log-density of `p` at each row of `x` (shape (n, d)) for the marginal at `(a, sigma)`.
    ///
    /// # Errors
    /// Shape mismatch, or a singular marginal.
    pub fn log_density(&self, x: ArrayView2<f64>, a: f64, sigma: f64) -> Result<Array1<f64>> {
        self.check_cols(x.ncols())?;
        let prep = self.prepare::<f64>(a, sigma)?;
        let mut out = Array1::zeros(x.nrows());
        let mut scratch = Scratch::new(self.dim, self.components.len());
        for (xi, mut oi) in x.axis_chunks_iter(Axis(0), CHUNK).zip(out.axis_chunks_iter_mut(Axis(0), CHUNK)) {
            chunk_kernel::<f64>(self.dim, xi, &prep, &mut scratch, None);
            oi.iter_mut().zip(&scratch.m).for_each(|(o, m)| *o = *m);
        }
        Ok(out)
    }

    fn check_cols(&self, cols: usize) -> Result<()> {
        if cols == self.dim {
            Ok(())
        } else {
            Err(Error::ShapeMismatch { what: "mixture input", expected: vec![self.dim], got: vec![cols] })
        }
    }

    /// Score of the marginal at `(a, sigma)` for each row of `x`; rows are
    /// processed in chunks, in parallel for large batches.
    ///
    /// # Errors
    /// Shape mismatch, or a singular marginal.
    pub fn score_at<F: Element>(&self, x: &Array2<F>, a: f64, sigma: f64) -> Result<Array2<F>>
    where
        StandardNormal: rand_distr::Distribution<F>,
    {
        self.check_cols(x.ncols())?;
        let prep = self.prepare::<F>(a, sigma)?;
        let mut out = Array2::<F>::zeros(x.raw_dim());
        let work = |(mut o, xi): (ndarray::ArrayViewMut2<F>, ArrayView2<F>)| {
            let mut scratch = Scratch::new(self.dim, self.components.len());
            chunk_kernel(self.dim, xi, &prep, &mut scratch, Some(&mut o));
        };
        let pairs = out.axis_chunks_iter_mut(Axis(0), CHUNK).zip(x.axis_chunks_iter(Axis(0), CHUNK));
        if x.len() * self.components.len() >= 1 << 15 {
            use rayon::prelude::*;
            pairs.collect::<Vec<_>>().into_par_iter().for_each(work);
        } else {
            pairs.for_each(work);
        }
        Ok(out)
    }
}

/// `(score, divergence, optional Jacobian–vector product)` per row, from
/// [`GaussianMixture::score_derivatives_at`].
pub type ScoreDerivatives = (Array2<f64>, Array1<f64>, Option<Array2<f64>>);

impl GaussianMixture {
    /// Per row of `x` (shape (n, d)), for the marginal at `(a, sigma)`: the
    /// score, the divergence of the score (the Laplacian of `log p`, exactly)
    /// and, when `v` is given, the Jacobian–vector product `J_s(x) v` of each
    /// row with the same row of `v`. With responsibilities `r_k`, component
    /// scores `s_k = -P_k (x - a mu_k)`, `P_k = (a^2 Sigma_k + sigma^2 I)^{-1}`
    /// and `s = sum_k r_k s_k`:
    ///
    /// `J_s = sum_k r_k (s_k s_k^T - P_k) - s s^T`, so
    /// `div s = sum_k r_k (|s_k|^2 - tr P_k) - |s|^2`.
    ///
    /// Row by row in f64 (for likelihoods and tests, not the sampling hot path).
    ///
    /// # Errors
    /// Shape mismatch, or a singular marginal.
    pub fn score_derivatives_at(
        &self,
        x: ArrayView2<f64>,
        a: f64,
        sigma: f64,
        v: Option<ArrayView2<f64>>,
    ) -> Result<ScoreDerivatives> {
        self.check_cols(x.ncols())?;
        if let Some(v) = &v {
            if v.dim() != x.dim() {
                return Err(Error::ShapeMismatch {
                    what: "jacobian-vector product",
                    expected: x.shape().to_vec(),
                    got: v.shape().to_vec(),
                });
            }
        }
        let prep = self.prepare::<f64>(a, sigma)?;
        let (n, d, k) = (x.nrows(), self.dim, prep.len());
        let mut score = Array2::zeros((n, d));
        let mut div = Array1::zeros(n);
        let mut jvp = v.as_ref().map(|_| Array2::zeros((n, d)));
        let mut comp_scores = Array2::<f64>::zeros((k, d));
        let mut logp = vec![0.0; k];
        let mut tr_p = vec![0.0; k];
        let mut y = vec![0.0; d];
        for (c, p) in prep.iter().enumerate() {
            tr_p[c] = p.inv_var.iter().sum();
        }
        for i in 0..n {
            let xi = x.row(i);
            for (c, p) in prep.iter().enumerate() {
                // y = U^T (x - a mu); whitened w = y / v; s_k = -U w.
                for (j, yj) in y.iter_mut().enumerate() {
                    *yj = match &p.rotation {
                        None => xi[j] - p.shift[j],
                        Some(u) => (0..d).map(|r| u[r * d + j] * (xi[r] - p.shift[r])).sum(),
                    };
                }
                let mut quad = 0.0;
                let w: Vec<f64> = y.iter().zip(&p.inv_var).map(|(y, iv)| y * iv).collect();
                for (yj, wj) in y.iter().zip(&w) {
                    quad += yj * wj;
                }
                logp[c] = p.log_norm - 0.5 * quad;
                for j in 0..d {
                    comp_scores[[c, j]] = match &p.rotation {
                        None => -w[j],
                        Some(u) => -(0..d).map(|m| u[j * d + m] * w[m]).sum::<f64>(),
                    };
                }
            }
            let m = logp.iter().fold(f64::NEG_INFINITY, |m, l| m.max(*l));
            let mut r: Vec<f64> = logp.iter().map(|l| (l - m).exp()).collect();
            let z: f64 = r.iter().sum();
            r.iter_mut().for_each(|r| *r /= z);
            let mut s_row = score.row_mut(i);
            for (rc, sc) in r.iter().zip(comp_scores.rows()) {
                s_row.scaled_add(*rc, &sc);
            }
            let s_norm2: f64 = s_row.iter().map(|v| v * v).sum();
            div[i] =
                (0..k).map(|c| r[c] * (comp_scores.row(c).iter().map(|v| v * v).sum::<f64>() - tr_p[c])).sum::<f64>()
                    - s_norm2;
            if let (Some(v), Some(out)) = (&v, jvp.as_mut()) {
                let vi = v.row(i);
                let s_dot_v: f64 = s_row.iter().zip(vi.iter()).map(|(a, b)| a * b).sum();
                let mut o = out.row_mut(i);
                o.scaled_add(-s_dot_v, &s_row);
                for (c, p) in prep.iter().enumerate() {
                    let sk = comp_scores.row(c);
                    o.scaled_add(r[c] * sk.dot(&vi), &sk);
                    // - r_k P_k v with P_k = U diag(inv_var) U^T.
                    match &p.rotation {
                        None => {
                            for j in 0..d {
                                o[j] -= r[c] * p.inv_var[j] * vi[j];
                            }
                        }
                        Some(u) => {
                            for m in 0..d {
                                let um_v: f64 = (0..d).map(|q| u[q * d + m] * vi[q]).sum::<f64>() * p.inv_var[m];
                                for j in 0..d {
                                    o[j] -= r[c] * u[j * d + m] * um_v;
                                }
                            }
                        }
                    }
                }
            }
        }
        Ok((score, div, jvp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{array, Array3};

    #[test]
    fn rejects_bad_mixtures() {
        let means = array![[0.0, 0.0]];
        let asym = Array3::from_shape_vec((1, 2, 2), vec![1.0, 0.5, 0.0, 1.0]).unwrap();
        assert!(GaussianMixture::new(&[1.0], means.view(), asym.view()).is_err());
        let indef = Array3::from_shape_vec((1, 2, 2), vec![1.0, 2.0, 2.0, 1.0]).unwrap();
        assert!(GaussianMixture::new(&[1.0], means.view(), indef.view()).is_err());
        let ok = Array3::from_shape_vec((1, 2, 2), vec![1.0, 0.0, 0.0, 1.0]).unwrap();
        assert!(GaussianMixture::new(&[0.0], means.view(), ok.view()).is_err());
        assert!(GaussianMixture::new(&[1.0, 1.0], means.view(), ok.view()).is_err());
        let nan = array![[f64::NAN, 0.0]];
        assert!(matches!(GaussianMixture::new(&[1.0], nan.view(), ok.view()), Err(Error::NonFiniteInput { .. })));
        let g = GaussianMixture::new(&[1.0], means.view(), ok.view()).unwrap();
        assert!(g.score_at(&Array2::<f64>::zeros((3, 3)), 1.0, 0.1).is_err());
    }

    #[test]
    fn accessors_return_the_parameters() {
        let means = array![[1.0, -2.0], [0.5, 3.0]];
        let covs = Array3::from_shape_vec((2, 2, 2), vec![2.0, 0.5, 0.5, 1.0, 0.3, 0.0, 0.0, 0.7]).unwrap();
        let g = GaussianMixture::new(&[3.0, 1.0], means.view(), covs.view()).unwrap();
        let close = |a: &[f64], b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-14);
        assert!(close(g.weights().as_slice().unwrap(), &[0.75, 0.25]));
        assert_eq!(g.means(), means);
        assert!(close(g.covariances().as_slice().unwrap(), covs.as_slice().unwrap()), "{}", g.covariances());
        // The accessors rebuild an equal mixture.
        let again =
            GaussianMixture::new(g.weights().as_slice().unwrap(), g.means().view(), g.covariances().view()).unwrap();
        assert!(close(again.covariance().as_slice().unwrap(), g.covariance().as_slice().unwrap()));
    }

    #[test]
    fn gaussian_score_is_linear() {
        let g = GaussianMixture::gaussian(array![1.0, -2.0].view(), array![[2.0, 0.5], [0.5, 1.0]].view()).unwrap();
        let (a, s) = (0.8, 0.6);
        let x = array![[0.3, 0.1], [-1.0, 2.0]];
        let got = g.score_at(&x, a, s).unwrap();
        // -(a^2 Sigma + s^2 I)^{-1} (x - a mu), inverted by hand.
        let m = array![[a * a * 2.0 + s * s, a * a * 0.5], [a * a * 0.5, a * a * 1.0 + s * s]];
        let det = m[[0, 0]] * m[[1, 1]] - m[[0, 1]] * m[[1, 0]];
        let inv = array![[m[[1, 1]], -m[[0, 1]]], [-m[[1, 0]], m[[0, 0]]]] / det;
        for (i, row) in x.rows().into_iter().enumerate() {
            let r = &row - &(array![1.0, -2.0] * a);
            let want = -inv.dot(&r);
            for j in 0..2 {
                approx::assert_relative_eq!(got[[i, j]], want[j], max_relative = 1e-12);
            }
        }
    }
}
