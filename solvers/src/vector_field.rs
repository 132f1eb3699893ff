//! ODE right-hand sides `dx/dt = v(x, t)`, kept apart from the methods that
//! integrate them (as diffrax keeps terms apart from solvers).
//!
//! The ODE methods ([`crate::OdeEuler::advance`], [`crate::OdeHeun::advance`],
//! [`crate::OdeRk4::advance`], [`crate::OdeDopri5::integrate`]) take any
//! [`VectorField`]; the samplers [`crate::OdeEuler`], ... are those methods
//! applied to the [`ProbabilityFlow`], and the likelihood
//! ([`crate::log_likelihood`]) applies Dormand–Prince to the probability flow
//! augmented with its divergence.

use crate::error::Result;
use crate::score::Score;
use crate::sde::Sde;
use crate::state::State;

/// A vector field `v(x, t)`: the right-hand side of `dx/dt = v(x, t)`.
///
/// Object-safe. Closures `Fn(&S, f64) -> Result<S>` are vector fields:
///
/// ```
/// use ndarray::{array, Array1};
/// use scoresde_solvers::{OdeRk4, VectorField};
/// // dx/dt = -x, x(0) = 1: x(1) = 1/e.
/// let decay = |x: &Array1<f64>, _t: f64| Ok::<_, scoresde_solvers::Error>(-x);
/// let mut x = array![1.0];
/// for i in 0..10 {
///     x = OdeRk4::advance(&decay, x, 0.1 * i as f64, 0.1 * (i + 1) as f64)?;
/// }
/// assert!((x[0] - (-1.0f64).exp()).abs() < 1e-6);
/// # Ok::<(), scoresde_solvers::Error>(())
/// ```
pub trait VectorField<S> {
    /// `v(x, t)`, with the shape of `x`.
    ///
    /// # Errors
    /// Whatever computing it returns (a failing score, a shape mismatch).
    fn eval(&self, x: &S, t: f64) -> Result<S>;
}

impl<S, F: Fn(&S, f64) -> Result<S>> VectorField<S> for F {
    fn eval(&self, x: &S, t: f64) -> Result<S> {
        self(x, t)
    }
}

/// The probability-flow ODE of Song et al. (2021, eq. 13),
/// `v(x, t) = f(t) x - 1/2 g(t)^2 s(x, t)`: its solution has law `p_t` at
/// every `t` when started from `p_T`. One score evaluation per [`VectorField::eval`].
pub struct ProbabilityFlow<'a, S> {
    sde: &'a dyn Sde,
    score: &'a dyn Score<S>,
}

impl<'a, S: State> ProbabilityFlow<'a, S> {
    /// The probability flow of `sde` with `score`.
    pub fn new(sde: &'a dyn Sde, score: &'a dyn Score<S>) -> Self {
        Self { sde, score }
    }
}

impl<S> std::fmt::Debug for ProbabilityFlow<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbabilityFlow").field("sde", &self.sde).finish_non_exhaustive()
    }
}

impl<S: State> VectorField<S> for ProbabilityFlow<'_, S> {
    fn eval(&self, x: &S, t: f64) -> Result<S> {
        let mut v = self.score.score(x, t)?;
        let g = self.sde.diffusion(t);
        v.axpby(-0.5 * g * g, self.sde.drift_coef(t), x)?;
        Ok(v)
    }
}

/// `y = x + c k` as a fresh state.
pub(crate) fn offset<S: State>(x: &S, c: f64, k: &S) -> Result<S> {
    let mut y = x.duplicate();
    y.axpby(1.0, c, k)?;
    Ok(y)
}
