//! Sample-quality metrics for low-dimensional data.
//!
//! * [`sliced_wasserstein2`]: the sliced 2-Wasserstein distance between two
//!   sample sets (Rabin et al. 2011; Bonneel et al. 2015), exact in 1-D and
//!   cheap in any dimension, so samplers can be compared against exact draws
//!   of a closed-form distribution.
//! * [`mmd2`]: the unbiased squared maximum mean discrepancy (Gretton et al.
//!   2012) with a sum of Gaussian RBF kernels, and [`median_bandwidth`] to
//!   pick a bandwidth from the data.

use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::{Rng as _, SeedableRng};
use rand_distr::StandardNormal;
use scoresde_solvers::Rng;

use crate::error::Result;
// The input checks reuse the solver core's precise variants (shape, finiteness,
// parameter), wrapped in the crate's `Error::Solver`.
use scoresde_solvers::Error as E;

/// `n` directions drawn uniformly on the unit sphere `S^{d-1}` (rows of the
/// result, shape `(n, d)`), from `seed`: normalised standard normal vectors.
///
/// These are the directions [`sliced_wasserstein2`] projects on for the same
/// `(d, n, seed)`.
///
/// # Errors
/// [`crate::Error::Solver`] wrapping `InvalidParameter` when `d` or `n` is zero.
pub fn random_directions(d: usize, n: usize, seed: u64) -> Result<Array2<f64>> {
    if d == 0 {
        return Err(E::param("dimension", d, "must be >= 1").into());
    }
    if n == 0 {
        return Err(E::param("n_projections", n, "must be >= 1").into());
    }
    let mut rng = Rng::seed_from_u64(seed);
    let mut dirs = Array2::zeros((n, d));
    for mut row in dirs.rows_mut() {
        // A draw of exactly zero norm has probability zero; redraw to be safe.
        loop {
            row.mapv_inplace(|_| rng.sample::<f64, _>(StandardNormal));
            let norm = row.dot(&row).sqrt();
            if norm > 1e-12 {
                row /= norm;
                break;
            }
        }
    }
    Ok(dirs)
}

/// Squared 2-Wasserstein distance between the empirical distributions of two
/// sorted, non-empty 1-D samples.
///
/// In 1-D, `W2^2 = int_0^1 (F_a^{-1}(q) - F_b^{-1}(q))^2 dq` with the quantile
/// functions of the empirical measures, which are step functions jumping at
/// `i / n` and `j / m`. Merging the two sets of jump points gives the integral
/// exactly, for any sample sizes; for `n = m` it is the mean of squared
/// differences of the sorted values.
fn w2_sq_sorted(a: &[f64], b: &[f64]) -> f64 {
    let (n, m) = (a.len(), b.len());
    if n == m {
        return a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>() / n as f64;
    }
    let (nf, mf) = (n as f64, m as f64);
    let (mut i, mut j) = (0usize, 0usize);
    let mut q = 0.0f64;
    let mut total = 0.0;
    while i < n && j < m {
        // Next jump of each quantile function: (i + 1) / n and (j + 1) / m.
        // Compare (i + 1) m with (j + 1) n in integers to advance both on ties.
        let (ea, eb) = ((i + 1) * m, (j + 1) * n);
        let next = if ea <= eb { (i + 1) as f64 / nf } else { (j + 1) as f64 / mf };
        let diff = a[i] - b[j];
        total += (next - q) * diff * diff;
        q = next;
        if ea <= eb {
            i += 1;
        }
        if eb <= ea {
            j += 1;
        }
    }
    total
}

fn check_samples(what: &'static str, x: &ArrayView2<f64>) -> Result<()> {
    if x.nrows() == 0 || x.ncols() == 0 {
        let shape = format!("{}x{}", x.nrows(), x.ncols());
        return Err(E::param(what, shape, "need at least one sample of dimension >= 1").into());
    }
    if !x.iter().all(|v| v.is_finite()) {
        return Err(E::NonFiniteInput { what: format!("{what} samples") }.into());
    }
    Ok(())
}

fn project_sorted(x: &ArrayView2<f64>, dir: ndarray::ArrayView1<f64>) -> Vec<f64> {
    let mut p = x.dot(&dir).to_vec();
    // Values are finite (checked), so total_cmp orders them numerically.
    p.sort_unstable_by(f64::total_cmp);
    p
}

/// Sliced 2-Wasserstein distance between the empirical distributions of the
/// rows of `a` (shape `(n, d)`) and `b` (shape `(m, d)`):
///
/// `SW2(a, b) = sqrt( mean_k W2^2(u_k . a, u_k . b) )`
///
/// over `n_projections` directions `u_k` drawn uniformly on the unit sphere
/// from `seed` (see [`random_directions`]). Each 1-D `W2` is computed exactly
/// from the sorted projections, merging the two quantile functions, so `n`
/// and `m` may differ. The Monte-Carlo estimate over directions converges to
/// `sqrt(E_u W2^2(u . a, u . b))`; in 1-D every direction is `±1` and the
/// result is the exact `W2` of the two empirical distributions.
///
/// Two independent samples of the same distribution give a positive value
/// (the noise floor, shrinking with the sample sizes); compare against it.
///
/// # Errors
/// [`crate::Error::Solver`] wrapping the solver core's
/// * `InvalidParameter` for an empty sample set or `n_projections == 0`;
/// * `ShapeMismatch` when `a` and `b` differ in dimension;
/// * `NonFiniteInput` when either contains NaN or infinity.
pub fn sliced_wasserstein2(a: ArrayView2<f64>, b: ArrayView2<f64>, n_projections: usize, seed: u64) -> Result<f64> {
    check_samples("a", &a)?;
    check_samples("b", &b)?;
    if a.ncols() != b.ncols() {
        return Err(E::ShapeMismatch {
            what: "sliced Wasserstein inputs (columns)",
            expected: vec![a.ncols()],
            got: vec![b.ncols()],
        }
        .into());
    }
    let dirs = random_directions(a.ncols(), n_projections, seed)?;
    let per_direction: Array1<f64> =
        dirs.axis_iter(Axis(0)).map(|u| w2_sq_sorted(&project_sorted(&a, u), &project_sorted(&b, u))).collect();
    Ok(per_direction.mean().unwrap_or(0.0).max(0.0).sqrt())
}

fn check_mmd_samples(what: &'static str, x: &ArrayView2<f64>) -> Result<()> {
    if x.nrows() < 2 || x.ncols() == 0 {
        let shape = format!("{}x{}", x.nrows(), x.ncols());
        return Err(E::param(what, shape, "the unbiased MMD needs at least 2 samples of dimension >= 1").into());
    }
    if !x.iter().all(|v| v.is_finite()) {
        return Err(E::NonFiniteInput { what: format!("{what} samples") }.into());
    }
    Ok(())
}

/// `sum_{i, j} sum_b exp(-g_b |x_i - y_j|^2)` over all pairs, or over the
/// pairs `i < j` when `same` (then `y` is `x`). Rows are split over threads.
fn kernel_sum(x: &ArrayView2<f64>, y: &ArrayView2<f64>, gammas: &[f64], same: bool) -> f64 {
    use rayon::prelude::*;
    let (xs, ys) = (x.as_standard_layout(), y.as_standard_layout());
    let d = x.ncols();
    let (xs, ys) = (xs.as_slice().unwrap_or(&[]), ys.as_slice().unwrap_or(&[]));
    let m = y.nrows();
    (0..x.nrows())
        .into_par_iter()
        .with_min_len(16)
        .map(|i| {
            let xi = &xs[i * d..(i + 1) * d];
            let start = if same { i + 1 } else { 0 };
            let mut acc = 0.0;
            for yj in ys[start * d..m * d].chunks_exact(d) {
                let r2: f64 = xi.iter().zip(yj).map(|(a, b)| (a - b) * (a - b)).sum();
                acc += gammas.iter().map(|g| (-g * r2).exp()).sum::<f64>();
            }
            acc
        })
        .sum()
}

/// Unbiased squared maximum mean discrepancy between the rows of `a` (shape
/// `(n, d)`) and `b` (shape `(m, d)`), with the kernel
/// `k(x, y) = sum_b exp(-|x - y|^2 / (2 h_b^2))` over `bandwidths` `h_b`
/// (Gretton et al. 2012, eq. 3):
///
/// `MMD^2_u = 1/(n(n-1)) sum_{i != j} k(a_i, a_j) + 1/(m(m-1)) sum_{i != j} k(b_i, b_j)
///          - 2/(n m) sum_{i, j} k(a_i, b_j)`.
///
/// Its expectation is the population MMD² (0 when both samples come from the
/// same law), so it can be slightly negative. Cost `O((n + m)^2 d B)`, spread
/// over threads: 2000 x 2000 points in 2-D with 3 bandwidths take well under a second.
///
/// # Errors
/// [`crate::Error::Solver`] wrapping the solver core's
/// * `InvalidParameter` when either sample has fewer than 2 rows or no
///   columns, or `bandwidths` is empty or holds a value that is not finite and > 0;
/// * `ShapeMismatch` when `a` and `b` differ in dimension;
/// * `NonFiniteInput` when either contains NaN or infinity.
pub fn mmd2(a: ArrayView2<f64>, b: ArrayView2<f64>, bandwidths: &[f64]) -> Result<f64> {
    check_mmd_samples("a", &a)?;
    check_mmd_samples("b", &b)?;
    if a.ncols() != b.ncols() {
        return Err(
            E::ShapeMismatch { what: "MMD inputs (columns)", expected: vec![a.ncols()], got: vec![b.ncols()] }.into()
        );
    }
    if bandwidths.is_empty() {
        return Err(E::param("bandwidths", "[]", "need at least one bandwidth").into());
    }
    if let Some(h) = bandwidths.iter().find(|h| !(h.is_finite() && **h > 0.0)) {
        return Err(E::param("bandwidths", h, "every bandwidth must be finite and > 0").into());
    }
    let gammas: Vec<f64> = bandwidths.iter().map(|h| 0.5 / (h * h)).collect();
    let (n, m) = (a.nrows() as f64, b.nrows() as f64);
    // Within-sample sums over i < j count each unordered pair once: double them.
    let kaa = 2.0 * kernel_sum(&a, &a, &gammas, true) / (n * (n - 1.0));
    let kbb = 2.0 * kernel_sum(&b, &b, &gammas, true) / (m * (m - 1.0));
    let kab = kernel_sum(&a, &b, &gammas, false) / (n * m);
    Ok(kaa + kbb - 2.0 * kab)
}

/// Most points [`median_bandwidth`] uses: larger pooled samples are thinned
/// to an evenly strided subset of this size.
pub const MEDIAN_MAX_POINTS: usize = 1000;

/// The median heuristic for an RBF bandwidth: the median Euclidean distance
/// between distinct points of the pooled sample `a ∪ b` (the mean of the two
/// middle values for an even count). Pooled samples of more than
/// [`MEDIAN_MAX_POINTS`] rows use an evenly strided subset of that many rows,
/// so the cost is bounded and the result is deterministic. Distances of
/// exactly 0 (duplicated points) are left out.
///
/// Typical use: `mmd2(a, b, &[h / 2.0, h, 2.0 * h])` with `h = median_bandwidth(a, b)?`.
///
/// # Errors
/// As [`mmd2`] for the samples (at least 2 rows each, equal dimension, finite);
/// `InvalidParameter` when all points coincide.
pub fn median_bandwidth(a: ArrayView2<f64>, b: ArrayView2<f64>) -> Result<f64> {
    check_mmd_samples("a", &a)?;
    check_mmd_samples("b", &b)?;
    if a.ncols() != b.ncols() {
        return Err(
            E::ShapeMismatch { what: "MMD inputs (columns)", expected: vec![a.ncols()], got: vec![b.ncols()] }.into()
        );
    }
    let total = a.nrows() + b.nrows();
    let k = total.min(MEDIAN_MAX_POINTS);
    let rows: Vec<ndarray::ArrayView1<f64>> =
        (0..k).map(|i| i * total / k).map(|r| if r < a.nrows() { a.row(r) } else { b.row(r - a.nrows()) }).collect();
    let mut dist: Vec<f64> = Vec::with_capacity(k * (k - 1) / 2);
    for (i, p) in rows.iter().enumerate() {
        for q in &rows[i + 1..] {
            let r2: f64 = p.iter().zip(q.iter()).map(|(x, y)| (x - y) * (x - y)).sum();
            if r2 > 0.0 {
                dist.push(r2.sqrt());
            }
        }
    }
    if dist.is_empty() {
        return Err(E::param("samples", "all points equal", "the median distance is 0; give bandwidths by hand").into());
    }
    let mid = dist.len() / 2;
    let (_, upper, _) = dist.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *upper;
    if dist.len() % 2 == 1 {
        return Ok(upper);
    }
    // The largest value below the upper middle is the lower middle.
    let lower = dist[..mid].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Ok(0.5 * (lower + upper))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use ndarray::{array, Array2};

    fn normals(n: usize, d: usize, seed: u64) -> Array2<f64> {
        let mut rng = Rng::seed_from_u64(seed);
        Array2::from_shape_fn((n, d), |_| rng.sample::<f64, _>(StandardNormal))
    }

    #[test]
    fn identical_samples_give_zero() {
        let x = normals(500, 3, 1);
        assert_eq!(sliced_wasserstein2(x.view(), x.view(), 64, 7).unwrap(), 0.0);
        // Same empirical distribution with another sample count: every point twice.
        let twice = ndarray::concatenate(Axis(0), &[x.view(), x.view()]).unwrap();
        assert!(sliced_wasserstein2(x.view(), twice.view(), 64, 7).unwrap() < 1e-12);
    }

    #[test]
    fn unequal_sizes_use_exact_quantile_functions() {
        // F_a^{-1} = 0 on (0, 1/2], 1 on (1/2, 1]; F_b^{-1} = 0, 0.5, 1 on thirds.
        // They differ by 0.5 on (1/3, 2/3): W2^2 = 0.25 * 1/3 = 1/12.
        let a = array![[0.0], [1.0]];
        let b = array![[0.5], [0.0], [1.0]];
        let sw = sliced_wasserstein2(a.view(), b.view(), 5, 0).unwrap();
        approx::assert_relative_eq!(sw, (1.0f64 / 12.0).sqrt(), max_relative = 1e-12);
        approx::assert_relative_eq!(sliced_wasserstein2(b.view(), a.view(), 5, 0).unwrap(), sw, max_relative = 1e-12);
    }

    #[test]
    fn gaussian_shift_in_1d() {
        // x ~ N(0, 1) (n samples), y ~ N(m, 1) (k samples). With centred
        // samples x', y': W2^2 = m^2 + 2 m (mean x' - mean y') + W2^2(x', y'),
        // so W2 = |m| + delta + O(W2^2(x', y') / m), delta ~ N(0, 1/n + 1/k).
        // W2^2(x', y') is O(log log n / n) for Gaussians: below 20 / n here.
        for (n, k) in [(20_000, 20_000), (20_000, 30_000)] {
            let x = normals(n, 1, 11);
            let m = 1.5;
            let y = normals(k, 1, 12).mapv(|v| v + m);
            let sd = (1.0 / n as f64 + 1.0 / k as f64).sqrt();
            let got = sliced_wasserstein2(x.view(), y.view(), 4, 3).unwrap();
            let tol = 5.0 * sd + 20.0 / (n as f64 * m);
            assert!((got - m).abs() < tol, "n={n} k={k}: SW2 = {got}, want {m} +- {tol}");
        }
    }

    #[test]
    fn translation_in_2d() {
        // Projecting x + c on u shifts every projected point by u . c, and the
        // W2 of a distribution and its translate by s is |s|. So exactly
        //   SW2(x, x + c)^2 = mean_k (u_k . c)^2.
        // For u uniform on the circle, u . c = |c| cos(theta), E cos^2 = 1/2:
        //   SW2 -> |c| / sqrt(2), and in d dimensions E (u . c)^2 = |c|^2 / d.
        // cos^2 has variance 3/8 - 1/4 = 1/8, so with K directions
        //   SW2^2 / |c|^2 = 1/2 +- sqrt(1/8) / sqrt(K).
        let x = normals(300, 2, 5);
        let c = array![3.0, -4.0];
        let y = &x + &c;
        let k = 4000;
        let sw = sliced_wasserstein2(x.view(), y.view(), k, 9).unwrap();
        let dirs = random_directions(2, k, 9).unwrap();
        let exact = dirs.dot(&c).mapv(|v| v * v).mean().unwrap().sqrt();
        approx::assert_relative_eq!(sw, exact, max_relative = 1e-9);
        let c2 = c.dot(&c);
        let tol = 5.0 * (0.125f64).sqrt() / (k as f64).sqrt();
        assert!((sw * sw / c2 - 0.5).abs() < tol, "SW2^2/|c|^2 = {}", sw * sw / c2);
        approx::assert_relative_eq!(c2.sqrt() / 2f64.sqrt(), 5.0 / 2f64.sqrt());
    }

    /// The kernel sums of `mmd2`, written out over all ordered pairs.
    fn mmd2_naive(a: &Array2<f64>, b: &Array2<f64>, h: &[f64]) -> f64 {
        let k = |x: ndarray::ArrayView1<f64>, y: ndarray::ArrayView1<f64>| {
            let r2 = (&x - &y).mapv(|v| v * v).sum();
            h.iter().map(|h| (-r2 / (2.0 * h * h)).exp()).sum::<f64>()
        };
        let within = |x: &Array2<f64>| {
            let n = x.nrows();
            let mut s = 0.0;
            for i in 0..n {
                for j in 0..n {
                    if i != j {
                        s += k(x.row(i), x.row(j));
                    }
                }
            }
            s / (n * (n - 1)) as f64
        };
        let mut cross = 0.0;
        for p in a.rows() {
            for q in b.rows() {
                cross += k(p, q);
            }
        }
        within(a) + within(b) - 2.0 * cross / (a.nrows() * b.nrows()) as f64
    }

    #[test]
    fn mmd2_on_tiny_examples() {
        // a = {0, 1}, b = {0, 2}, h = 1: k(0,1) = e^-1/2, k(0,2) = e^-2, so
        // MMD^2 = e^-1/2 + e^-2 - 2 (1 + e^-2 + 2 e^-1/2) / 4 = (e^-2 - 1) / 2.
        let (a, b) = (array![[0.0], [1.0]], array![[0.0], [2.0]]);
        let got = mmd2(a.view(), b.view(), &[1.0]).unwrap();
        approx::assert_relative_eq!(got, ((-2.0f64).exp() - 1.0) / 2.0, max_relative = 1e-14);
        // 2-D, unequal sizes, two bandwidths, against the sums written out.
        let a = array![[0.0, 0.0], [1.0, 0.5], [-0.5, 2.0]];
        let b = array![[0.3, -1.0], [2.0, 2.0], [0.0, 1.0], [1.5, -0.5]];
        let got = mmd2(a.view(), b.view(), &[0.7, 2.0]).unwrap();
        approx::assert_relative_eq!(got, mmd2_naive(&a, &b, &[0.7, 2.0]), max_relative = 1e-12);
        approx::assert_relative_eq!(got, mmd2(b.view(), a.view(), &[2.0, 0.7]).unwrap(), max_relative = 1e-12);
        // A large case through the parallel path, against the naive sums.
        let (a, b) = (normals(300, 2, 21), normals(250, 2, 22).mapv(|v| 1.3 * v));
        approx::assert_relative_eq!(
            mmd2(a.view(), b.view(), &[0.5, 1.0]).unwrap(),
            mmd2_naive(&a, &b, &[0.5, 1.0]),
            max_relative = 1e-10
        );
    }

    /// Population MMD^2 between N(0, s^2 I) and N(delta, s^2 I) in `d`
    /// dimensions: for z ~ N(m, 2 s^2 I), E exp(-|z|^2 / (2 h^2)) =
    /// (h^2 / (h^2 + 2 s^2))^{d/2} exp(-|m|^2 / (2 (h^2 + 2 s^2))), so
    /// MMD^2 = sum_h 2 c_h (1 - exp(-|delta|^2 / (2 (h^2 + 2 s^2)))).
    fn gaussian_shift_mmd2(d: usize, s: f64, delta2: f64, hs: &[f64]) -> f64 {
        hs.iter()
            .map(|h| {
                let v = h * h + 2.0 * s * s;
                2.0 * (h * h / v).powf(d as f64 / 2.0) * (1.0 - (-delta2 / (2.0 * v)).exp())
            })
            .sum()
    }

    #[test]
    fn mmd2_is_unbiased_under_the_null_and_the_alternative() {
        // R independent replicates: the estimator is unbiased, so their mean
        // is within 5 sd / sqrt(R) of the population value (sd: their spread).
        let (reps, n, hs) = (40usize, 200usize, [0.5, 1.0, 2.0]);
        let shift = array![0.6, -0.3];
        for (delta, want) in [(0.0, 0.0), (1.0, gaussian_shift_mmd2(2, 1.0, shift.dot(&shift), &hs))] {
            let vals: Vec<f64> = (0..reps as u64)
                .map(|r| {
                    let x = normals(n, 2, 1000 + 2 * r);
                    let y = normals(n, 2, 1001 + 2 * r) + &(&shift * delta);
                    mmd2(x.view(), y.view(), &hs).unwrap()
                })
                .collect();
            let mean = vals.iter().sum::<f64>() / reps as f64;
            let sd = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (reps - 1) as f64).sqrt();
            let tol = 5.0 * sd / (reps as f64).sqrt();
            assert!((mean - want).abs() < tol, "delta {delta}: mean {mean}, want {want} +- {tol}");
            if delta > 0.0 {
                // Clearly positive: the mean is more than 5 standard errors above 0.
                assert!(mean > tol, "mean {mean}, standard error {}", sd / (reps as f64).sqrt());
            }
        }
    }

    #[test]
    fn mmd2_same_law_is_near_zero_at_2k() {
        // One 2000 x 2000 comparison (the demo's size) of the same law. Under
        // the null with n = m, n MMD^2_u converges to sum_l lambda_l (a_l^2 - 2),
        // a_l ~ N(0, 2) (Gretton et al. 2012, Thm 12), of variance
        // 8 sum_l lambda_l^2 = 8 E[k~(x, x')^2] <= 8 E[k(x, x')^2] <= 8 B^2 for
        // a sum of B kernels with values in [0, 1] (k~: the centred kernel).
        // So sd(MMD^2_u) <= sqrt(8) B / n.
        let (n, hs) = (2000usize, [0.5, 1.0, 2.0]);
        let x = normals(n, 2, 31);
        let y = normals(n, 2, 32);
        let tol = 5.0 * 8f64.sqrt() * hs.len() as f64 / n as f64;
        let same = mmd2(x.view(), y.view(), &hs).unwrap();
        assert!(same.abs() < tol, "MMD^2 = {same}, tol {tol}");
        // A shift of 1 (population MMD^2 ~ 0.25) lands far outside that band.
        let z = &y + &array![1.0, 0.0];
        let shifted = mmd2(x.view(), z.view(), &hs).unwrap();
        assert!(gaussian_shift_mmd2(2, 1.0, 1.0, &hs) > 10.0 * tol);
        assert!(shifted > 5.0 * tol, "shifted MMD^2 = {shifted}, null band {tol}");
    }

    #[test]
    fn median_bandwidth_by_hand() {
        // Pooled {0, 1, 3, 3}: nonzero distances 1, 3, 3, 2, 2 -> median 2.
        let h = median_bandwidth(array![[0.0], [1.0]].view(), array![[3.0], [3.0]].view()).unwrap();
        assert_eq!(h, 2.0);
        // Even count: {0, 1} and {4, 4.5}: distances 1, 4, 4.5, 3, 3.5, 0.5 -> (3 + 3.5) / 2.
        let h = median_bandwidth(array![[0.0], [1.0]].view(), array![[4.0], [4.5]].view()).unwrap();
        assert_eq!(h, 3.25);
        // Large samples are thinned to k = 1000 points. The distance of two
        // N(0, I_2) points is Rayleigh(sqrt 2): median m = 2 sqrt(ln 2), density
        // there f = (m / 2) exp(-m^2 / 4) = m / 4. The fraction of pairs closer
        // than m is a U-statistic of variance <= 4 var(h1) / k <= 1 / k (h1 in
        // [-1/2, 1/2]), so by the delta method sd(median) <= 1 / (f sqrt k).
        let (a, b) = (normals(1500, 2, 3), normals(1500, 2, 4));
        let h = median_bandwidth(a.view(), b.view()).unwrap();
        let m = 2.0 * 2f64.ln().sqrt();
        let tol = 5.0 / (m / 4.0 * (MEDIAN_MAX_POINTS as f64).sqrt());
        assert!((h - m).abs() < tol, "h = {h}, want {m} +- {tol}");
        let same = array![[1.0, 1.0], [1.0, 1.0]];
        assert!(median_bandwidth(same.view(), same.view()).is_err());
    }

    #[test]
    fn mmd2_rejects_bad_input() {
        let x = normals(10, 2, 0);
        let one = normals(1, 2, 0);
        let y3 = normals(10, 3, 0);
        let is_param = |r: Result<f64>| matches!(r, Err(Error::Solver(E::InvalidParameter { .. })));
        assert!(matches!(mmd2(x.view(), y3.view(), &[1.0]), Err(Error::Solver(E::ShapeMismatch { .. }))));
        assert!(is_param(mmd2(one.view(), x.view(), &[1.0])));
        assert!(is_param(mmd2(x.view(), one.view(), &[1.0])));
        assert!(is_param(mmd2(x.view(), x.view(), &[])));
        assert!(is_param(mmd2(x.view(), x.view(), &[1.0, 0.0])));
        assert!(is_param(mmd2(x.view(), x.view(), &[f64::NAN])));
        let mut bad = x.clone();
        bad[[4, 0]] = f64::NEG_INFINITY;
        assert!(matches!(mmd2(x.view(), bad.view(), &[1.0]), Err(Error::Solver(E::NonFiniteInput { .. }))));
        assert!(matches!(median_bandwidth(bad.view(), x.view()), Err(Error::Solver(E::NonFiniteInput { .. }))));
        assert!(matches!(median_bandwidth(x.view(), y3.view()), Err(Error::Solver(E::ShapeMismatch { .. }))));
    }

    #[test]
    fn directions_are_unit_and_seeded() {
        let d = random_directions(3, 50, 4).unwrap();
        for row in d.rows() {
            approx::assert_relative_eq!(row.dot(&row), 1.0, max_relative = 1e-12);
        }
        assert_eq!(d, random_directions(3, 50, 4).unwrap());
        assert_ne!(d, random_directions(3, 50, 5).unwrap());
    }

    #[test]
    fn rejects_bad_input() {
        let x = normals(10, 2, 0);
        let y3 = normals(10, 3, 0);
        let empty = Array2::<f64>::zeros((0, 2));
        assert!(matches!(sliced_wasserstein2(x.view(), y3.view(), 8, 0), Err(Error::Solver(E::ShapeMismatch { .. }))));
        assert!(matches!(
            sliced_wasserstein2(empty.view(), x.view(), 8, 0),
            Err(Error::Solver(E::InvalidParameter { .. }))
        ));
        assert!(matches!(
            sliced_wasserstein2(x.view(), empty.view(), 8, 0),
            Err(Error::Solver(E::InvalidParameter { .. }))
        ));
        assert!(matches!(
            sliced_wasserstein2(x.view(), x.view(), 0, 0),
            Err(Error::Solver(E::InvalidParameter { .. }))
        ));
        let mut bad = x.clone();
        bad[[3, 1]] = f64::NAN;
        assert!(matches!(
            sliced_wasserstein2(x.view(), bad.view(), 8, 0),
            Err(Error::Solver(E::NonFiniteInput { .. }))
        ));
        bad[[3, 1]] = f64::INFINITY;
        assert!(matches!(
            sliced_wasserstein2(bad.view(), x.view(), 8, 0),
            Err(Error::Solver(E::NonFiniteInput { .. }))
        ));
        let no_cols = Array2::<f64>::zeros((4, 0));
        assert!(sliced_wasserstein2(no_cols.view(), no_cols.view(), 8, 0).is_err());
    }
}
