//! Sample-quality metrics for low-dimensional data.
//!
//! * [`sliced_wasserstein2`]: the sliced 2-Wasserstein distance between two
//!   sample sets (Rabin et al. 2011; Bonneel et al. 2015), exact in 1-D and
//!   cheap in any dimension, so samplers can be compared against exact draws
//!   of a closed-form distribution.

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
