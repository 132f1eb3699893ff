//! Evaluating a learned score against the exact one (Gaussian-mixture data).

use ndarray::Array2;
use rand::SeedableRng;

use crate::error::{Error, Result};
use crate::solvers::{GaussianMixture, Rng, Score, Sde};

/// The learned score's error at each time in `times`:
///
/// `err(t) = E_{x ~ p_t} sigma(t)^2 |s_theta(x, t) - grad log p_t(x)|^2 / d`,
///
/// with `n` exact samples of `p_t` (the law of `a(t) x_0 + sigma(t) z` for
/// `x_0 ~ law`) per time. The `sigma^2` weight is DSM's eps weighting, so
/// `err` is the part of the eps loss the network could still remove, per
/// dimension; 1.0 means an eps prediction as wrong as a guess of zero noise
/// would be at large t. `law` must be in the model's (scaled) coordinates.
///
/// # Errors
/// [`Error::InvalidArgument`] for `n == 0`, no times, or a time outside the
/// SDE's range; score errors.
pub fn score_mse_by_time(
    score: &dyn Score<Array2<f64>>,
    law: &GaussianMixture,
    sde: &dyn Sde,
    times: &[f64],
    n: usize,
    seed: u64,
) -> Result<Vec<(f64, f64)>> {
    if n == 0 || times.is_empty() {
        return Err(Error::invalid(
            "score_mse_by_time",
            format!("n = {n}, {} times", times.len()),
            "need n > 0 and a time",
        ));
    }
    let mut rng = Rng::seed_from_u64(seed);
    let d = law.dim() as f64;
    times
        .iter()
        .map(|&t| {
            sde.check_time(t)?;
            let (a, sigma) = (sde.alpha(t), sde.sigma(t));
            let x = law.marginal(sde, t).sample(n, &mut rng);
            let exact = law.score_at(&x, a, sigma)?;
            let learned = score.score(&x, t)?;
            let sq = (learned - exact).mapv(|v| v * v).sum() / (n as f64 * d);
            Ok((t, sigma * sigma * sq))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solvers::{ExactScore, VpSde};

    #[test]
    fn exact_score_has_zero_error_and_a_wrong_one_does_not() {
        let law = GaussianMixture::ring(4, 2.0, 0.3).unwrap();
        let sde = VpSde::default();
        let exact = ExactScore::new(law.clone(), sde);
        let times = [0.01, 0.5, 1.0];
        let err = score_mse_by_time(&exact, &law, &sde, &times, 500, 0).unwrap();
        assert!(err.iter().all(|&(_, e)| e < 1e-20), "{err:?}");
        // The score of another law: clearly non-zero error.
        let other = ExactScore::new(GaussianMixture::ring(4, 1.0, 0.3).unwrap(), sde);
        let err = score_mse_by_time(&other, &law, &sde, &times, 500, 0).unwrap();
        assert!(err[0].1 > 0.1, "{err:?}");
        assert!(score_mse_by_time(&exact, &law, &sde, &[1.5], 10, 0).is_err());
        assert!(score_mse_by_time(&exact, &law, &sde, &times, 0, 0).is_err());
    }
}
