//! The error type of the solver core.

/// Everything that can go wrong in `scoresde-solvers`.
///
/// Every public function that takes user input returns this instead of
/// panicking. Variants carry enough context (step index, time, shapes) to say
/// where a run broke.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two arrays that must have the same shape do not.
    #[error("shape mismatch in {what}: expected {expected:?}, got {got:?}")]
    ShapeMismatch {
        /// What was being combined.
        what: &'static str,
        /// The shape that was required.
        expected: Vec<usize>,
        /// The shape that was given.
        got: Vec<usize>,
    },
    /// The state became NaN or infinite during integration (or, inside an
    /// adaptive integrator, one of its stages did).
    #[error("non-finite state after step {step} (t = {t}): the solver diverged or the score returned NaN/inf")]
    NonFinite {
        /// Steps taken when the state was found non-finite (1 = the first step
        /// produced it): grid steps as in [`crate::StepEvent::step`] from
        /// [`crate::Sampler::run`]; accepted internal steps + 1 from an adaptive
        /// integrator called directly ([`crate::OdeDopri5::integrate`],
        /// [`crate::log_likelihood`]).
        step: usize,
        /// Time reached by that step (the time it aimed at, if it failed).
        t: f64,
    },
    /// Input data contains NaN or infinite values.
    #[error("non-finite input: {what}")]
    NonFiniteInput {
        /// Which input.
        what: String,
    },
    /// A time grid is empty, too short, non-finite, or not strictly monotone.
    #[error("invalid time grid: {reason}")]
    InvalidGrid {
        /// Why it was rejected.
        reason: String,
    },
    /// A time lies outside the SDE's time range.
    #[error("time t = {t} is outside the SDE's range [{min}, {max}]")]
    TimeOutOfRange {
        /// The offending time.
        t: f64,
        /// Smallest allowed time.
        min: f64,
        /// Largest allowed time.
        max: f64,
    },
    /// A step count of zero (or another unusable count).
    #[error("invalid step count {steps}: {reason}")]
    InvalidSteps {
        /// The count given.
        steps: usize,
        /// Why it is unusable.
        reason: &'static str,
    },
    /// A parameter (SDE coefficient, step size, weight, covariance, ...) is invalid.
    #[error("invalid parameter `{name}` = {value}: {reason}")]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// The value given, printed.
        value: String,
        /// What is required of it.
        reason: String,
    },
    /// A solver was asked to run in the wrong time direction.
    #[error("solver `{solver}` integrates {expected} in time, but the grid runs the other way")]
    WrongDirection {
        /// The solver's name.
        solver: String,
        /// "forward" or "reverse".
        expected: &'static str,
    },
    /// No solver of that name exists.
    #[error("unknown solver `{name}`; known solvers: {known}")]
    UnknownSolver {
        /// The name asked for.
        name: String,
        /// The names that exist, comma-separated.
        known: String,
    },
    /// A score model failed (for example a neural network's forward pass).
    #[error("score evaluation failed at t = {t}: {reason}")]
    Score {
        /// Time at which the score was queried.
        t: f64,
        /// What went wrong.
        reason: String,
    },
    /// An array backend (libtorch) rejected an operation: tensors on
    /// different devices, an unsupported dtype, or a device error.
    #[error("backend error in {op}: {message}")]
    Backend {
        /// The state operation that failed.
        op: &'static str,
        /// The backend's message.
        message: String,
    },
    /// An adaptive integrator could not meet its tolerances without a step
    /// below the floating-point resolution of `t`.
    #[error("adaptive step size underflow at t = {t} (h = {h}); loosen rtol/atol or check the score")]
    StepSizeTooSmall {
        /// Time at which it happened.
        t: f64,
        /// The rejected step size.
        h: f64,
    },
    /// An adaptive integrator took its whole budget of internal steps (accepted
    /// and rejected) without reaching the end: of one integration, or of a
    /// whole sampling run ([`crate::OdeDopri5`] as a solver).
    #[error("adaptive integrator gave up after its cap of {max_steps} internal steps at t = {t} (h = {h:e}): the tolerance needs more; loosen rtol/atol (ode-dopri5: default 1e-5; adaptive-sde: 0.05, 0.0078), raise the cap or check the score")]
    TooManySteps {
        /// The cap on internal steps per integration (per run for a solver).
        max_steps: usize,
        /// Time reached when it gave up.
        t: f64,
        /// The step size it would have tried next.
        h: f64,
    },
    /// An observer asked to stop the run.
    #[error("stopped by observer at step {step}: {reason}")]
    Stopped {
        /// Step at which the run stopped.
        step: usize,
        /// Why.
        reason: String,
    },
}

/// Result alias of the solver core.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for [`Error::InvalidParameter`].
    pub fn param(name: &'static str, value: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Error::InvalidParameter { name, value: value.to_string(), reason: reason.into() }
    }
}

/// Checks that `value` is finite and strictly positive.
pub(crate) fn positive(name: &'static str, value: f64) -> Result<f64> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(Error::param(name, value, "must be finite and > 0"))
    }
}
