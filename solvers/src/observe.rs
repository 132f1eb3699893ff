//! Observers: what a run reports, step by step. Solvers never print.

use crate::error::{Error, Result};
use crate::state::State;

/// What an observer sees after each step (and once before the first, with `step = 0`).
#[derive(Debug)]
pub struct StepEvent<'a, S> {
    /// Steps taken so far (0 = the initial state).
    pub step: usize,
    /// Total steps of the run.
    pub n_steps: usize,
    /// Time of `x`.
    pub t: f64,
    /// The current state.
    pub x: &'a S,
    /// Score evaluations so far.
    pub score_evals: usize,
}

/// What an observer sees after each score evaluation, inside the step under way:
/// work in progress, for displays and for stopping a long step (an adaptive
/// solver may evaluate thousands of times within one grid step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalEvent {
    /// The grid step under way (1 = the first; `n_steps + 1` for the final
    /// denoising step).
    pub step: usize,
    /// Total steps of the run.
    pub n_steps: usize,
    /// The time the score was evaluated at (an adaptive solver's stage time,
    /// which moves from the step's start to its end).
    pub t: f64,
    /// Score evaluations so far, this one included.
    pub score_evals: usize,
}

/// Watches a run. Returning an error stops it (use [`Error::Stopped`] to stop on purpose).
pub trait Observer<S: State> {
    /// Called with each event.
    ///
    /// # Errors
    /// Any error stops the run and is returned from it.
    fn observe(&mut self, event: &StepEvent<'_, S>) -> Result<()>;

    /// Called after each score evaluation of the run (the driver counts them;
    /// solvers keep no books). Does nothing by default; [`OnEval`] turns a
    /// closure into an observer of these events only.
    ///
    /// # Errors
    /// Any error stops the run, within the step under way, and is returned from it.
    fn observe_eval(&mut self, _event: &EvalEvent) -> Result<()> {
        Ok(())
    }
}

/// An observer of score evaluations only ([`Observer::observe_eval`]), from a
/// closure: a progress display that moves while an adaptive solver works
/// inside a long grid step.
///
/// ```
/// use scoresde_solvers::prelude::*;
/// use scoresde_solvers::{EvalEvent, OnEval};
/// let sde = VpSde::default();
/// let score = ExactScore::new(GaussianMixture::ring(4, 2.0, 0.1)?, sde);
/// let grid = TimeGrid::uniform(1.0, 1e-3, 1)?; // one grid step: the controller places the rest
/// let mut noise = GaussianNoise::new(0);
/// let x = prior_sample(&sde, &ndarray::Array2::<f64>::zeros((8, 2)), &mut noise);
/// let mut seen = 0;
/// let mut live = OnEval(|e: &EvalEvent| {
///     seen = e.score_evals; // e.g. a progress bar's message: e.t, e.score_evals
///     Ok(())
/// });
/// let run = Sampler::new(&sde, &score).observe(&mut live).run(&mut OdeDopri5::default(), x, &grid, &mut noise)?;
/// assert_eq!(seen, run.score_evals);
/// # Ok::<(), scoresde_solvers::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct OnEval<F>(pub F);

impl<S: State, F: FnMut(&EvalEvent) -> Result<()>> Observer<S> for OnEval<F> {
    fn observe(&mut self, _event: &StepEvent<'_, S>) -> Result<()> {
        Ok(())
    }

    fn observe_eval(&mut self, event: &EvalEvent) -> Result<()> {
        (self.0)(event)
    }
}

impl<S: State, F: FnMut(&StepEvent<'_, S>) -> Result<()>> Observer<S> for F {
    fn observe(&mut self, event: &StepEvent<'_, S>) -> Result<()> {
        self(event)
    }
}

/// Stops a run with [`Error::NonFinite`] (naming the step and t) as soon as
/// the state holds a NaN or infinity. Samplers install it by default.
#[derive(Debug, Clone, Copy, Default)]
pub struct FiniteCheck;

impl<S: State> Observer<S> for FiniteCheck {
    fn observe(&mut self, e: &StepEvent<'_, S>) -> Result<()> {
        if e.x.all_finite() {
            Ok(())
        } else if e.step == 0 {
            Err(Error::NonFiniteInput { what: "initial state".into() })
        } else {
            Err(Error::NonFinite { step: e.step, t: e.t })
        }
    }
}

/// Records the state every `every` steps (and always the first and last),
/// for trajectory plots.
#[derive(Debug, Clone)]
pub struct Trajectory<S> {
    every: usize,
    /// Recorded times.
    pub times: Vec<f64>,
    /// Recorded states, one per time.
    pub states: Vec<S>,
}

impl<S> Trajectory<S> {
    /// Records every `every` steps (`0` is treated as 1).
    pub fn every(every: usize) -> Self {
        Self { every: every.max(1), times: Vec::new(), states: Vec::new() }
    }
}

impl<S: State> Observer<S> for Trajectory<S> {
    fn observe(&mut self, e: &StepEvent<'_, S>) -> Result<()> {
        if e.step % self.every == 0 || e.step == e.n_steps {
            self.times.push(e.t);
            self.states.push(e.x.duplicate());
        }
        Ok(())
    }
}
