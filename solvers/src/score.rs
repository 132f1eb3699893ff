//! Scores `s(x, t) ~ grad_x log p_t(x)`: the [`Score`] trait, and
//! [`ExactScore`], the exact score of [`GaussianMixture`] data under an SDE
//! (the mixture itself lives in [`crate::oracle`]).

use ndarray::Array2;
use rand_distr::StandardNormal;

use crate::error::Result;
use crate::sde::Sde;
use crate::state::{Element, State};

#[doc(no_inline)]
pub use crate::oracle::{GaussianMixture, ScoreDerivatives};

/// A score model: `s(x, t)` for a batch `x` at one time `t`.
///
/// Object-safe: integrators take `&dyn Score<S>`. Not bound by `Send`, so
/// wrappers that borrow a score (such as [`crate::CountingScore`]) are scores
/// too; write `dyn Score<S> + Send` where a boxed score must cross threads.
pub trait Score<S: State> {
    /// The score of the batch `x` at time `t`, with the shape of `x`.
    ///
    /// # Errors
    /// Shape mismatches, a time the model cannot handle, or a failing model.
    fn score(&self, x: &S, t: f64) -> Result<S>;
}

impl<S: State, T: Score<S> + ?Sized> Score<S> for &T {
    fn score(&self, x: &S, t: f64) -> Result<S> {
        (**self).score(x, t)
    }
}

impl<S: State, T: Score<S> + ?Sized> Score<S> for Box<T> {
    fn score(&self, x: &S, t: f64) -> Result<S> {
        (**self).score(x, t)
    }
}

/// The exact score of Gaussian-mixture data under an SDE:
/// `s(x, t) = grad_x log p_t(x)` with `p_t` the mixture of the perturbed components.
#[derive(Debug, Clone)]
pub struct ExactScore<Q: Sde> {
    data: GaussianMixture,
    sde: Q,
}

impl<Q: Sde> ExactScore<Q> {
    /// The exact score of `data` under `sde`.
    pub fn new(data: GaussianMixture, sde: Q) -> Self {
        Self { data, sde }
    }

    /// The data distribution.
    pub fn data(&self) -> &GaussianMixture {
        &self.data
    }

    /// The SDE.
    pub fn sde(&self) -> &Q {
        &self.sde
    }
}

impl<Q: Sde, F: Element> Score<Array2<F>> for ExactScore<Q>
where
    StandardNormal: rand_distr::Distribution<F>,
{
    fn score(&self, x: &Array2<F>, t: f64) -> Result<Array2<F>> {
        self.sde.check_time(t)?;
        self.data.score_at(x, self.sde.alpha(t), self.sde.sigma(t))
    }
}
