//! A score wrapper that counts its evaluations, for drivers to report work.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::Result;
use crate::score::Score;
use crate::state::State;

/// Counts the evaluations of a borrowed score: every call of
/// [`Score::score`] adds one (failed calls included), then forwards.
///
/// Drivers hand this to integrators in place of the user's score, so the count
/// is exact for any integrator, adaptive ones included, without the integrator
/// keeping books: [`crate::Sampler::run`] reports it as `Run::score_evals`.
///
/// ```
/// use scoresde_solvers::prelude::*;
/// let sde = VpSde::default();
/// let score = ExactScore::new(GaussianMixture::ring(4, 2.0, 0.1)?, sde);
/// let counting = CountingScore::new(&score);
/// counting.score(&ndarray::Array2::<f64>::zeros((3, 2)), 0.5)?;
/// assert_eq!(counting.count(), 1);
/// # Ok::<(), scoresde_solvers::Error>(())
/// ```
pub struct CountingScore<'a, S> {
    inner: &'a dyn Score<S>,
    count: AtomicUsize,
}

impl<'a, S: State> CountingScore<'a, S> {
    /// Wraps `inner` with a count of zero.
    pub fn new(inner: &'a dyn Score<S>) -> Self {
        Self { inner, count: AtomicUsize::new(0) }
    }

    /// Evaluations so far.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

impl<S> std::fmt::Debug for CountingScore<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingScore").field("count", &self.count.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

impl<S: State> Score<S> for CountingScore<'_, S> {
    fn score(&self, x: &S, t: f64) -> Result<S> {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.inner.score(x, t)
    }
}
