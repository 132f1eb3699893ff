//! Sample-quality metrics for images, computed on plain arrays (rows = samples).
//!
//! * [`frechet_distance`] between two Gaussians, with [`GaussianFit`] of
//!   feature rows: on the penultimate features of a
//!   [`FeatureClassifier`](crate::features::FeatureClassifier) this is the
//!   "classifier FID" (Heusel et al. 2017, with a small in-domain classifier
//!   in place of Inception v3).
//! * [`sqrtm_psd`]: the symmetric square root of a symmetric positive
//!   semi-definite matrix, by eigendecomposition (`nalgebra`'s symmetric QR
//!   algorithm, pure Rust, already in the workspace for the solver oracles).
//! * Coverage and confidence of predicted classes: [`class_histogram`],
//!   [`kl_from_uniform`], [`mean_max_softmax`].
//! * Memorisation: [`nn_distances`] (L2 distance of each row to its nearest
//!   neighbour in a reference set) and [`median`].
//! * [`out_of_range_share`]: the share of rows outside a data range (a thin
//!   wrapper of [`RangeReport`]).
//!
//! Every metric has a noise floor: the same metric between two disjoint sets
//! of real images of the same size. Report it beside the generated value.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};

use crate::data::{DataRange, RangeReport};
use crate::error::Result;
use scoresde_solvers::Error as E;

/// Eigenvalues below this times the largest one (in absolute value) are
/// rounding noise of a PSD matrix and are clamped to zero.
const EIG_REL_TOL: f64 = 1e-12;

fn check_finite(what: &'static str, values: impl IntoIterator<Item = f64>) -> Result<()> {
    if values.into_iter().all(f64::is_finite) {
        Ok(())
    } else {
        Err(E::NonFiniteInput { what: what.to_string() }.into())
    }
}

fn check_square(what: &'static str, m: &ArrayView2<f64>) -> Result<()> {
    if m.nrows() != m.ncols() || m.nrows() == 0 {
        return Err(E::ShapeMismatch { what, expected: vec![m.nrows(), m.nrows()], got: m.shape().to_vec() }.into());
    }
    check_finite(what, m.iter().copied())
}

/// The eigenvalues and eigenvectors (columns) of the symmetric part
/// `(m + m^T) / 2` of a finite square matrix, negative eigenvalues within
/// rounding of zero clamped to zero.
///
/// # Errors
/// `InvalidParameter` (via [`crate::Error::Solver`]) when an eigenvalue is
/// clearly negative: the matrix is not positive semi-definite.
fn psd_eigen(what: &'static str, m: &ArrayView2<f64>) -> Result<(Vec<f64>, nalgebra::DMatrix<f64>)> {
    let d = m.nrows();
    let sym = nalgebra::DMatrix::from_fn(d, d, |r, c| 0.5 * (m[[r, c]] + m[[c, r]]));
    let eig = nalgebra::SymmetricEigen::new(sym);
    let largest = eig.eigenvalues.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    // Rounding in an eigensolver of a d x d matrix is a few d eps of the
    // largest eigenvalue; anything further below zero is a real negative one.
    let tol = (EIG_REL_TOL.max(8.0 * d as f64 * f64::EPSILON)) * largest;
    let mut values = Vec::with_capacity(d);
    for &v in eig.eigenvalues.iter() {
        if v < -tol {
            return Err(E::param(what, format!("eigenvalue {v:e}"), "must be positive semi-definite").into());
        }
        values.push(v.max(0.0));
    }
    Ok((values, eig.eigenvectors))
}

/// The symmetric positive semi-definite square root `S` of a symmetric PSD
/// matrix `m` (`S S = m`, `S = S^T`), from the eigendecomposition
/// `m = V diag(l) V^T`: `S = V diag(sqrt(l)) V^T`. The input is symmetrised
/// first, and eigenvalues that are negative only by rounding (above
/// `-max(1e-12, 8 d eps) * max |l|`) are taken as zero.
///
/// # Errors
/// [`crate::Error::Solver`] wrapping `ShapeMismatch` for a non-square or empty
/// matrix, `NonFiniteInput` for NaN or infinity, `InvalidParameter` for a
/// clearly negative eigenvalue.
pub fn sqrtm_psd(m: ArrayView2<f64>) -> Result<Array2<f64>> {
    check_square("matrix", &m)?;
    let (values, v) = psd_eigen("matrix", &m)?;
    let d = m.nrows();
    let roots: Vec<f64> = values.iter().map(|l| l.sqrt()).collect();
    Ok(Array2::from_shape_fn((d, d), |(r, c)| (0..d).map(|k| v[(r, k)] * roots[k] * v[(c, k)]).sum()))
}

/// The Fréchet (2-Wasserstein squared) distance between the Gaussians
/// `N(mu1, cov1)` and `N(mu2, cov2)`:
///
/// `FD = |mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1^{1/2} C2 C1^{1/2})^{1/2})`
///
/// (Dowson & Landau 1982; the FID of Heusel et al. 2017 on Inception
/// features). Computed in `f64` with [`sqrtm_psd`]: the trace term is
/// `sum_k sqrt(l_k)` over the eigenvalues of the symmetric PSD matrix
/// `C1^{1/2} C2 C1^{1/2}` (rounding negatives clamped). The result is
/// clamped at 0 (identical Gaussians give 0 up to rounding). It is symmetric
/// in its two arguments.
///
/// # Errors
/// [`crate::Error::Solver`] wrapping `ShapeMismatch` when the sizes disagree
/// (means of different lengths, a covariance that is not `d x d`),
/// `NonFiniteInput` for NaN or infinity, `InvalidParameter` for a covariance
/// that is not positive semi-definite.
pub fn frechet_distance(
    mu1: ArrayView1<f64>,
    cov1: ArrayView2<f64>,
    mu2: ArrayView1<f64>,
    cov2: ArrayView2<f64>,
) -> Result<f64> {
    let d = mu1.len();
    if d == 0 {
        return Err(E::param("mean", "[]", "need dimension >= 1").into());
    }
    if mu2.len() != d {
        return Err(E::ShapeMismatch { what: "Fréchet distance means", expected: vec![d], got: vec![mu2.len()] }.into());
    }
    for (what, c) in [("first covariance", cov1.view()), ("second covariance", cov2.view())] {
        if c.shape() != [d, d] {
            return Err(E::ShapeMismatch { what, expected: vec![d, d], got: c.shape().to_vec() }.into());
        }
        check_finite(what, c.iter().copied())?;
    }
    check_finite("first mean", mu1.iter().copied())?;
    check_finite("second mean", mu2.iter().copied())?;
    let s1 = sqrtm_psd(cov1)?;
    // Checks cov2 is PSD too (its square root is not needed).
    psd_eigen("second covariance", &cov2)?;
    let m = s1.dot(&cov2).dot(&s1);
    let (values, _) = psd_eigen("C1^1/2 C2 C1^1/2", &m.view())?;
    let trace_sqrt: f64 = values.iter().map(|l| l.sqrt()).sum();
    let dmu = &mu1 - &mu2;
    let fd = dmu.dot(&dmu) + cov1.diag().sum() + cov2.diag().sum() - 2.0 * trace_sqrt;
    Ok(fd.max(0.0))
}

/// Mean and covariance of feature rows: a Gaussian to compare with
/// [`GaussianFit::frechet_distance`].
#[derive(Debug, Clone, PartialEq)]
pub struct GaussianFit {
    /// Per-column mean, length `d`.
    pub mean: Array1<f64>,
    /// Unbiased covariance (divisor `n - 1`), `d x d`.
    pub cov: Array2<f64>,
    /// Rows fitted on.
    pub n: usize,
}

impl GaussianFit {
    /// Fits the rows of `x` (shape `(n, d)`, `n >= 2`): sample mean and the
    /// unbiased sample covariance, as `numpy.cov(x, rowvar=False)`.
    ///
    /// # Errors
    /// [`crate::Error::Solver`] wrapping `InvalidParameter` for fewer than 2
    /// rows or no columns, `NonFiniteInput` for NaN or infinity.
    pub fn fit(x: ArrayView2<f64>) -> Result<Self> {
        let (n, d) = x.dim();
        if n < 2 || d == 0 {
            return Err(E::param(
                "features",
                format!("{n}x{d}"),
                "a covariance needs at least 2 rows of dimension >= 1",
            )
            .into());
        }
        check_finite("features", x.iter().copied())?;
        let mean = x.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(d));
        let centred = &x - &mean;
        let cov = centred.t().dot(&centred) / (n as f64 - 1.0);
        Ok(Self { mean, cov, n })
    }

    /// [`frechet_distance`] between `self` and `other`.
    ///
    /// # Errors
    /// As [`frechet_distance`] (different dimensions).
    pub fn frechet_distance(&self, other: &GaussianFit) -> Result<f64> {
        frechet_distance(self.mean.view(), self.cov.view(), other.mean.view(), other.cov.view())
    }
}

/// The share of predictions in each of `k` classes (sums to 1).
///
/// # Errors
/// `InvalidParameter` (via [`crate::Error::Solver`]) for `k == 0`, no
/// predictions, or a prediction `>= k`.
pub fn class_histogram(predictions: &[usize], k: usize) -> Result<Vec<f64>> {
    if k == 0 {
        return Err(E::param("classes", k, "must be >= 1").into());
    }
    if predictions.is_empty() {
        return Err(E::param("predictions", "[]", "need at least one").into());
    }
    let mut counts = vec![0usize; k];
    for (i, &p) in predictions.iter().enumerate() {
        match counts.get_mut(p) {
            Some(c) => *c += 1,
            None => return Err(E::param("predictions", p, format!("prediction {i} is not in 0..{k}")).into()),
        }
    }
    let n = predictions.len() as f64;
    Ok(counts.into_iter().map(|c| c as f64 / n).collect())
}

/// `KL(p || uniform) = sum_k p_k ln(K p_k)` (nats, with `0 ln 0 = 0`) of a
/// class histogram `p` over `K` classes: 0 when every class is predicted
/// equally often, `ln K` when all predictions fall in one class. A
/// generator that drops modes scores high.
///
/// # Errors
/// `InvalidParameter` (via [`crate::Error::Solver`]) for an empty histogram,
/// a negative or non-finite share, or shares that do not sum to 1 (within 1e-9).
pub fn kl_from_uniform(p: &[f64]) -> Result<f64> {
    if p.is_empty() {
        return Err(E::param("histogram", "[]", "need at least one class").into());
    }
    if let Some(v) = p.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
        return Err(E::param("histogram", v, "shares must be finite and >= 0").into());
    }
    let total: f64 = p.iter().sum();
    if (total - 1.0).abs() > 1e-9 {
        return Err(E::param("histogram", total, "shares must sum to 1").into());
    }
    let k = p.len() as f64;
    Ok(p.iter().filter(|v| **v > 0.0).map(|v| v * (k * v).ln()).sum::<f64>().max(0.0))
}

/// The mean over rows of `max_k softmax(logits)_k`: how sure the classifier
/// is, on average, of its prediction. `1/K` for constant logits, near 1 for
/// clean images of a well-trained classifier; blurred or hybrid samples score low.
/// Computed stably: `max_k softmax = 1 / sum_j exp(l_j - max l)`.
///
/// # Errors
/// [`crate::Error::Solver`] wrapping `InvalidParameter` for no rows or
/// columns, `NonFiniteInput` for NaN or infinity.
pub fn mean_max_softmax(logits: ArrayView2<f64>) -> Result<f64> {
    if logits.nrows() == 0 || logits.ncols() == 0 {
        let shape = format!("{}x{}", logits.nrows(), logits.ncols());
        return Err(E::param("logits", shape, "need at least one row and one class").into());
    }
    check_finite("logits", logits.iter().copied())?;
    let total: f64 = logits
        .rows()
        .into_iter()
        .map(|row| {
            let top = row.fold(f64::NEG_INFINITY, |a, &v| a.max(v));
            1.0 / row.iter().map(|v| (v - top).exp()).sum::<f64>()
        })
        .sum();
    Ok(total / logits.nrows() as f64)
}

/// Reference rows per block of the squared-distance matrix in [`nn_distances`].
const NN_BLOCK: usize = 2048;

/// For each row of `query`, the Euclidean distance to its nearest row of
/// `reference` (brute force). Ranking uses `|q|^2 + |r|^2 - 2 q.r` (one matrix
/// product per block of reference rows); the winner's distance is then
/// recomputed directly, so an exact duplicate gives exactly 0.
///
/// Memorisation check: compare the median distance of generated samples to
/// the training set with that of held-out real images to the training set;
/// a generator that copies training images sits much closer.
///
/// # Errors
/// [`crate::Error::Solver`] wrapping `InvalidParameter` for an empty set,
/// `ShapeMismatch` for different dimensions, `NonFiniteInput` for NaN or infinity.
pub fn nn_distances(query: ArrayView2<f64>, reference: ArrayView2<f64>) -> Result<Vec<f64>> {
    for (what, x) in [("query", query.view()), ("reference", reference.view())] {
        if x.nrows() == 0 || x.ncols() == 0 {
            let shape = format!("{}x{}", x.nrows(), x.ncols());
            return Err(E::param(what, shape, "need at least one row of dimension >= 1").into());
        }
        check_finite(what, x.iter().copied())?;
    }
    if query.ncols() != reference.ncols() {
        return Err(E::ShapeMismatch {
            what: "nearest-neighbour sets (columns)",
            expected: vec![reference.ncols()],
            got: vec![query.ncols()],
        }
        .into());
    }
    let sq = |x: &ArrayView2<f64>| -> Array1<f64> { x.rows().into_iter().map(|r| r.dot(&r)).collect() };
    let (qn, rn) = (sq(&query), sq(&reference));
    let mut best: Vec<(f64, usize)> = vec![(f64::INFINITY, 0); query.nrows()];
    let mut start = 0;
    while start < reference.nrows() {
        let end = (start + NN_BLOCK).min(reference.nrows());
        let block = reference.slice(ndarray::s![start..end, ..]);
        let dots = query.dot(&block.t());
        for (i, row) in dots.rows().into_iter().enumerate() {
            for (j, &qr) in row.iter().enumerate() {
                let d2 = qn[i] + rn[start + j] - 2.0 * qr;
                if d2 < best[i].0 {
                    best[i] = (d2, start + j);
                }
            }
        }
        start = end;
    }
    Ok(best
        .iter()
        .enumerate()
        .map(|(i, &(_, j))| {
            let diff = &query.row(i) - &reference.row(j);
            diff.dot(&diff).sqrt()
        })
        .collect())
}

/// The median of finite values (the mean of the two middle ones for an even count).
///
/// # Errors
/// `InvalidParameter` (via [`crate::Error::Solver`]) for no values;
/// `NonFiniteInput` for NaN or infinity.
pub fn median(values: &[f64]) -> Result<f64> {
    if values.is_empty() {
        return Err(E::param("values", "[]", "the median needs at least one value").into());
    }
    check_finite("values", values.iter().copied())?;
    let mut v = values.to_vec();
    v.sort_unstable_by(f64::total_cmp);
    let n = v.len();
    Ok(if n % 2 == 1 { v[n / 2] } else { 0.5 * (v[n / 2 - 1] + v[n / 2]) })
}

/// The share of rows of `x` with some value outside `range` (see
/// [`RangeReport`]; NaN counts as outside).
///
/// # Errors
/// As [`RangeReport::add`] (another number of columns); `InvalidParameter`
/// (via [`crate::Error::Solver`]) for no rows.
pub fn out_of_range_share(range: &DataRange, x: ArrayView2<f64>) -> Result<f64> {
    if x.nrows() == 0 {
        return Err(E::param("samples", "0 rows", "need at least one row").into());
    }
    let mut report = RangeReport::new(range.clone());
    report.add(x)?;
    Ok(report.outside() as f64 / report.rows() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use ndarray::array;
    use rand::{Rng as _, SeedableRng};
    use rand_distr::StandardNormal;

    fn normals(n: usize, d: usize, seed: u64) -> Array2<f64> {
        let mut rng = scoresde_solvers::Rng::seed_from_u64(seed);
        Array2::from_shape_fn((n, d), |_| rng.sample(StandardNormal))
    }

    /// A random SPD matrix `A A^T / d + 0.1 I` of size `d`.
    fn spd(d: usize, seed: u64) -> Array2<f64> {
        let a = normals(d, d, seed);
        a.dot(&a.t()) / d as f64 + Array2::<f64>::eye(d) * 0.1
    }

    fn fro(m: &Array2<f64>) -> f64 {
        m.iter().map(|v| v * v).sum::<f64>().sqrt()
    }

    #[test]
    fn sqrtm_squared_is_the_matrix() {
        for (d, seed) in [(1, 0), (2, 1), (7, 2), (64, 3)] {
            let m = spd(d, seed);
            let s = sqrtm_psd(m.view()).unwrap();
            let err = fro(&(s.dot(&s) - &m)) / fro(&m);
            assert!(err < 1e-10, "d = {d}: relative error {err:e}");
            assert!(fro(&(&s - &s.t())) < 1e-12 * fro(&s), "symmetric");
        }
        // Singular PSD (rank 1) and an exact zero matrix.
        let v = array![[1.0], [2.0], [-1.0]];
        let m = v.dot(&v.t());
        let s = sqrtm_psd(m.view()).unwrap();
        assert!(fro(&(s.dot(&s) - &m)) < 1e-12 * fro(&m));
        assert_eq!(sqrtm_psd(Array2::<f64>::zeros((3, 3)).view()).unwrap(), Array2::<f64>::zeros((3, 3)));
    }

    #[test]
    fn sqrtm_rejects_bad_input() {
        assert!(matches!(sqrtm_psd(Array2::<f64>::zeros((2, 3)).view()), Err(Error::Solver(E::ShapeMismatch { .. }))));
        assert!(matches!(sqrtm_psd(Array2::<f64>::zeros((0, 0)).view()), Err(Error::Solver(E::ShapeMismatch { .. }))));
        let neg = array![[1.0, 0.0], [0.0, -1.0]];
        assert!(matches!(sqrtm_psd(neg.view()), Err(Error::Solver(E::InvalidParameter { .. }))));
        let nan = array![[1.0, f64::NAN], [0.0, 1.0]];
        assert!(matches!(sqrtm_psd(nan.view()), Err(Error::Solver(E::NonFiniteInput { .. }))));
    }

    #[test]
    fn frechet_of_commuting_covariances() {
        // Diagonal covariances commute: FD = |dmu|^2 + sum (sqrt a_i - sqrt b_i)^2.
        let (a, b) = ([1.0, 4.0, 0.25, 9.0], [4.0, 1.0, 0.25, 2.0]);
        let mu1 = array![0.0, 1.0, -2.0, 0.5];
        let mu2 = array![1.0, 1.0, 0.0, 0.5];
        let want = 1.0 + 4.0 + a.iter().zip(&b).map(|(x, y): (&f64, &f64)| (x.sqrt() - y.sqrt()).powi(2)).sum::<f64>();
        let (c1, c2) = (Array2::from_diag(&Array1::from(a.to_vec())), Array2::from_diag(&Array1::from(b.to_vec())));
        let got = frechet_distance(mu1.view(), c1.view(), mu2.view(), c2.view()).unwrap();
        approx::assert_relative_eq!(got, want, max_relative = 1e-12);
        // The same in a rotated basis (shared eigenvectors Q): C = Q diag Q^T.
        let q = {
            let m = spd(4, 9);
            let (_, v) = psd_eigen("m", &m.view()).unwrap();
            Array2::from_shape_fn((4, 4), |(r, c)| v[(r, c)])
        };
        let (r1, r2) = (q.dot(&c1).dot(&q.t()), q.dot(&c2).dot(&q.t()));
        let got = frechet_distance(q.dot(&mu1).view(), r1.view(), q.dot(&mu2).view(), r2.view()).unwrap();
        approx::assert_relative_eq!(got, want, max_relative = 1e-10);
    }

    #[test]
    fn frechet_of_a_non_commuting_pair_by_hand() {
        // For 2x2 PSD M: tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)). With
        // M = C1^1/2 C2 C1^1/2: tr M = tr(C1 C2), det M = det C1 det C2.
        // C1 = diag(1, 4), C2 = [[2, 1], [1, 2]] (they do not commute):
        // tr(C1 C2) = 2 + 8 = 10, det C1 det C2 = 4 * 3 = 12, so
        // FD = |dmu|^2 + 5 + 4 - 2 sqrt(10 + 2 sqrt 12).
        let c1 = array![[1.0, 0.0], [0.0, 4.0]];
        let c2 = array![[2.0, 1.0], [1.0, 2.0]];
        assert_ne!(c1.dot(&c2), c2.dot(&c1));
        let (mu1, mu2) = (array![1.0, 2.0], array![0.0, 0.0]);
        let want = 5.0 + 9.0 - 2.0 * (10.0 + 2.0 * 12f64.sqrt()).sqrt();
        let got = frechet_distance(mu1.view(), c1.view(), mu2.view(), c2.view()).unwrap();
        approx::assert_relative_eq!(got, want, max_relative = 1e-12);
        // The same number written out, and in the other order.
        approx::assert_relative_eq!(want, 5.771_220_447_654_342, max_relative = 1e-12);
        approx::assert_relative_eq!(
            frechet_distance(mu2.view(), c2.view(), mu1.view(), c1.view()).unwrap(),
            want,
            max_relative = 1e-12
        );
    }

    #[test]
    fn frechet_is_symmetric_and_zero_on_identical_gaussians() {
        for (d, seed) in [(3, 10), (32, 11), (128, 12)] {
            let (c1, c2) = (spd(d, seed), spd(d, seed + 100));
            let mu1 = normals(1, d, seed + 200).row(0).to_owned();
            let mu2 = normals(1, d, seed + 300).row(0).to_owned();
            let ab = frechet_distance(mu1.view(), c1.view(), mu2.view(), c2.view()).unwrap();
            let ba = frechet_distance(mu2.view(), c2.view(), mu1.view(), c1.view()).unwrap();
            assert!(ab > 0.1, "d = {d}: {ab}");
            approx::assert_relative_eq!(ab, ba, max_relative = 1e-10);
            // Identical: 0 up to rounding of traces of size ~d.
            let same = frechet_distance(mu1.view(), c1.view(), mu1.view(), c1.view()).unwrap();
            let scale = c1.diag().sum();
            assert!(same <= 1e-10 * scale, "d = {d}: FD(x, x) = {same:e}");
        }
        // Through GaussianFit: a set against itself.
        let x = normals(50, 4, 3);
        let g = GaussianFit::fit(x.view()).unwrap();
        assert!(g.frechet_distance(&g).unwrap() <= 1e-12);
    }

    #[test]
    fn frechet_rejects_bad_input() {
        let (m2, c2) = (array![0.0, 0.0], Array2::<f64>::eye(2));
        let (m3, c3) = (array![0.0, 0.0, 0.0], Array2::<f64>::eye(3));
        let shape = |r: Result<f64>| matches!(r, Err(Error::Solver(E::ShapeMismatch { .. })));
        assert!(shape(frechet_distance(m2.view(), c2.view(), m3.view(), c3.view())));
        assert!(shape(frechet_distance(m2.view(), c3.view(), m2.view(), c2.view())));
        assert!(shape(frechet_distance(m2.view(), c2.view(), m2.view(), c3.view())));
        let mut bad = c2.clone();
        bad[[0, 1]] = f64::INFINITY;
        let nonfinite = |r: Result<f64>| matches!(r, Err(Error::Solver(E::NonFiniteInput { .. })));
        assert!(nonfinite(frechet_distance(m2.view(), c2.view(), m2.view(), bad.view())));
        assert!(nonfinite(frechet_distance(array![f64::NAN, 0.0].view(), c2.view(), m2.view(), c2.view())));
        let neg = array![[1.0, 0.0], [0.0, -0.5]];
        let e = frechet_distance(m2.view(), c2.view(), m2.view(), neg.view()).unwrap_err();
        assert!(e.to_string().contains("positive semi-definite"), "{e}");
        let empty = Array1::<f64>::zeros(0);
        assert!(frechet_distance(empty.view(), c2.view(), empty.view(), c2.view()).is_err());
        assert!(GaussianFit::fit(normals(1, 3, 0).view()).is_err());
        assert!(GaussianFit::fit(array![[1.0, f64::NAN], [0.0, 0.0]].view()).is_err());
        let (g2, g3) =
            (GaussianFit::fit(normals(5, 2, 0).view()).unwrap(), GaussianFit::fit(normals(5, 3, 0).view()).unwrap());
        assert!(shape(g2.frechet_distance(&g3)));
    }

    #[test]
    fn gaussian_fit_matches_numpy_cov() {
        // Rows (0, 0), (2, 0), (1, 3): mean (1, 1); centred (-1, -1), (1, -1), (0, 2);
        // cov = [[2, 0], [0, 6]] / 2.
        let g = GaussianFit::fit(array![[0.0, 0.0], [2.0, 0.0], [1.0, 3.0]].view()).unwrap();
        assert_eq!(g.mean, array![1.0, 1.0]);
        assert_eq!(g.cov, array![[1.0, 0.0], [0.0, 3.0]]);
        assert_eq!(g.n, 3);
    }

    #[test]
    fn histogram_and_kl_from_uniform() {
        let h = class_histogram(&[0, 1, 2, 3, 3, 2, 1, 0], 4).unwrap();
        assert_eq!(h, vec![0.25; 4]);
        assert_eq!(kl_from_uniform(&h).unwrap(), 0.0);
        let one = class_histogram(&[2; 7], 5).unwrap();
        assert_eq!(one, vec![0.0, 0.0, 1.0, 0.0, 0.0]);
        approx::assert_relative_eq!(kl_from_uniform(&one).unwrap(), 5f64.ln(), max_relative = 1e-15);
        // Two of four classes equally: ln 2.
        approx::assert_relative_eq!(kl_from_uniform(&[0.5, 0.0, 0.5, 0.0]).unwrap(), 2f64.ln(), max_relative = 1e-15);
        assert!(class_histogram(&[0, 4], 4).is_err());
        assert!(class_histogram(&[], 4).is_err());
        assert!(class_histogram(&[0], 0).is_err());
        assert!(kl_from_uniform(&[]).is_err());
        assert!(kl_from_uniform(&[0.5, 0.6]).is_err());
        assert!(kl_from_uniform(&[1.5, -0.5]).is_err());
        assert!(kl_from_uniform(&[f64::NAN, 1.0]).is_err());
    }

    #[test]
    fn confidence_of_known_logits() {
        // One-hot logits c e_k over K classes: max softmax = e^c / (e^c + K - 1).
        let (c, k) = (3.0f64, 4usize);
        let logits = Array2::from_shape_fn((k, k), |(i, j)| if i == j { c } else { 0.0 });
        let want = c.exp() / (c.exp() + (k - 1) as f64);
        approx::assert_relative_eq!(mean_max_softmax(logits.view()).unwrap(), want, max_relative = 1e-14);
        // Constant logits: 1 / K, whatever their size (stable for huge values).
        approx::assert_relative_eq!(mean_max_softmax(Array2::from_elem((3, 5), 800.0).view()).unwrap(), 0.2);
        // A mix: mean of the two rows' values.
        let mix = array![[0.0, 0.0], [1000.0, 0.0]];
        approx::assert_relative_eq!(mean_max_softmax(mix.view()).unwrap(), 0.75, max_relative = 1e-15);
        assert!(mean_max_softmax(Array2::<f64>::zeros((0, 3)).view()).is_err());
        assert!(mean_max_softmax(array![[f64::NAN, 0.0]].view()).is_err());
    }

    #[test]
    fn nearest_neighbour_distances() {
        // A set against itself: every distance exactly 0 (large values, where
        // the expanded form |q|^2 + |r|^2 - 2 q.r alone would round).
        let x = normals(300, 16, 4).mapv(|v| 1e3 + v);
        let d = nn_distances(x.view(), x.view()).unwrap();
        assert!(d.iter().all(|&v| v == 0.0), "max {}", d.iter().fold(0.0f64, |a, &b| a.max(b)));
        // By hand: 1-D points {0, 10}, queries 1, 7, -3 -> 1, 3, 3.
        let d = nn_distances(array![[1.0], [7.0], [-3.0]].view(), array![[0.0], [10.0]].view()).unwrap();
        assert_eq!(d, vec![1.0, 3.0, 3.0]);
        // Against brute force, over several blocks of reference rows.
        let (q, r) = (normals(20, 5, 5), normals(2 * NN_BLOCK + 7, 5, 6));
        let got = nn_distances(q.view(), r.view()).unwrap();
        for (i, g) in got.iter().enumerate() {
            let want = r
                .rows()
                .into_iter()
                .map(|row| (&row - &q.row(i)).mapv(|v| v * v).sum().sqrt())
                .fold(f64::INFINITY, f64::min);
            approx::assert_relative_eq!(*g, want, max_relative = 1e-12);
        }
        assert!(nn_distances(q.view(), normals(4, 3, 0).view()).is_err());
        assert!(nn_distances(Array2::<f64>::zeros((0, 5)).view(), r.view()).is_err());
        assert!(nn_distances(array![[f64::NAN]].view(), array![[0.0]].view()).is_err());
    }

    #[test]
    fn median_and_range_share() {
        assert_eq!(median(&[3.0, 1.0, 2.0]).unwrap(), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]).unwrap(), 2.5);
        assert!(median(&[]).is_err());
        assert!(median(&[1.0, f64::NAN]).is_err());
        let range = DataRange { min: vec![0.0, 0.0], max: vec![1.0, 1.0] };
        let x = array![[0.5, 0.5], [1.5, 0.5], [0.0, 1.0], [0.2, -0.1]];
        assert_eq!(out_of_range_share(&range, x.view()).unwrap(), 0.5);
        assert!(out_of_range_share(&range, Array2::<f64>::zeros((0, 2)).view()).is_err());
        assert!(out_of_range_share(&range, Array2::<f64>::zeros((3, 3)).view()).is_err());
    }
}
