//! Predictor–corrector sampling.

use crate::error::Result;
use crate::grid::TimeGrid;
use crate::solver::{Corrector, Ctx, Direction, Solver};
use crate::state::State;

/// Predictor–corrector sampler (Song et al. 2021, Algorithm 1): each step runs
/// the predictor from `t` to `t_next`, then the corrector at `t_next`, so the
/// last sample returned has been corrected. Its order is the predictor's.
#[derive(Debug, Clone)]
pub struct Pc<P, C> {
    predictor: P,
    corrector: C,
    name: &'static str,
}

impl<P, C> Pc<P, C> {
    /// The predictor `p` followed by the corrector `c` at every step.
    pub fn new(predictor: P, corrector: C) -> Self {
        Self { predictor, corrector, name: "pc" }
    }

    /// Sets the name it reports (the by-name table uses this).
    pub fn named(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }
}

impl<C> Pc<Identity, C> {
    /// A sampler that only runs the corrector at each grid time (Song et al.'s
    /// "corrector only"; with [`crate::AnnealedLangevin`] this is NCSN sampling).
    pub fn corrector_only(corrector: C) -> Self {
        Self::new(Identity, corrector)
    }
}

/// The predictor that does not move (`x <- x`); for corrector-only sampling.
#[derive(Debug, Clone, Copy, Default)]
pub struct Identity;

impl<S: State> Solver<S> for Identity {
    fn name(&self) -> &'static str {
        "identity"
    }

    fn step(&mut self, x: S, _t: f64, _t_next: f64, _ctx: &mut Ctx<'_, S>) -> Result<S> {
        Ok(x)
    }
}

impl<S: State, P: Solver<S>, C: Corrector<S>> Solver<S> for Pc<P, C> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn direction(&self) -> Direction {
        self.predictor.direction()
    }

    fn step(&mut self, x: S, t: f64, t_next: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        let x = self.predictor.step(x, t, t_next, ctx)?;
        self.corrector.correct(x, t_next, t, ctx)
    }

    fn init(&mut self, grid: &TimeGrid) -> Result<()> {
        self.predictor.init(grid)
    }
}
