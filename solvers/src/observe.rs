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

/// Watches a run. Returning an error stops it (use [`Error::Stopped`] to stop on purpose).
pub trait Observer<S: State> {
    /// Called with each event.
    ///
    /// # Errors
    /// Any error stops the run and is returned from it.
    fn observe(&mut self, event: &StepEvent<'_, S>) -> Result<()>;
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
