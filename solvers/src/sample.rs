//! The driver: runs any integrator over a time grid, with observers.

use std::cell::{Cell, RefCell};

use crate::counting::CountingScore;
use crate::error::{Error, Result};
use crate::grid::TimeGrid;
use crate::integrators::tweedie_denoise;
use crate::noise::Noise;
use crate::observe::{EvalEvent, FiniteCheck, Observer, StepEvent};
use crate::score::Score;
use crate::sde::Sde;
use crate::solver::{Ctx, Direction, Solver};
use crate::state::State;

/// The result of a run.
#[derive(Debug, Clone)]
pub struct Run<S> {
    /// The final state.
    pub x: S,
    /// Score evaluations used (including the final denoising step, if any).
    pub score_evals: usize,
    /// Steps taken.
    pub steps: usize,
}

/// Runs integrators for one SDE and score, reporting to observers.
///
/// ```
/// use scoresde_solvers::prelude::*;
/// let sde = VpSde::default();
/// let score = ExactScore::new(GaussianMixture::ring(8, 2.0, 0.1)?, sde);
/// let grid = TimeGrid::reverse(&sde, 100)?;
/// let mut noise = GaussianNoise::new(0);
/// let x_t = prior_sample(&sde, &ndarray::Array2::<f64>::zeros((512, 2)), &mut noise);
/// let mut solver = Ancestral::new(); // or ReverseEulerMaruyama, Pc::new(ReverseDiffusion, Langevin::default()), ...
/// let run = Sampler::new(&sde, &score).denoise(true).run(&mut solver, x_t, &grid, &mut noise)?;
/// assert_eq!(run.score_evals, 101);
/// # Ok::<(), scoresde_solvers::Error>(())
/// ```
pub struct Sampler<'a, S: State> {
    sde: &'a dyn Sde,
    score: &'a dyn Score<S>,
    observers: Vec<&'a mut dyn Observer<S>>,
    denoise: bool,
    check_finite: bool,
}

impl<'a, S: State> Sampler<'a, S> {
    /// A sampler for `sde` and `score`, with the non-finite check on and no final denoising.
    pub fn new(sde: &'a dyn Sde, score: &'a dyn Score<S>) -> Self {
        Self { sde, score, observers: Vec::new(), denoise: false, check_finite: true }
    }

    /// Adds an observer.
    pub fn observe(mut self, observer: &'a mut dyn Observer<S>) -> Self {
        self.observers.push(observer);
        self
    }

    /// Finishes a reverse-time run with the noise-free Tweedie step at the last time
    /// (and the solver's [`crate::X0Guard`] on its result, if it has one).
    pub fn denoise(mut self, yes: bool) -> Self {
        self.denoise = yes;
        self
    }

    /// Turns the built-in [`FiniteCheck`] on or off (on by default).
    pub fn check_finite(mut self, yes: bool) -> Self {
        self.check_finite = yes;
        self
    }

    /// Integrates `x` over `grid` with `solver`. Observers see the initial
    /// state, each step's result ([`Observer::observe`]) and each score
    /// evaluation ([`Observer::observe_eval`]).
    ///
    /// # Errors
    /// * [`Error::TimeOutOfRange`] if the grid leaves the SDE's range;
    /// * [`Error::WrongDirection`] if the grid runs against the solver;
    /// * [`Error::NonFiniteInput`] / [`Error::NonFinite`] when the state is or
    ///   becomes NaN/inf (the grid step and the time it reached, also when the
    ///   solver itself reports a non-finite stage);
    /// * whatever the solver's [`Solver::init`], the score, noise source or an observer returns.
    pub fn run(
        &mut self,
        solver: &mut dyn Solver<S>,
        x: S,
        grid: &TimeGrid,
        noise: &mut dyn Noise<S>,
    ) -> Result<Run<S>> {
        grid.check_within(self.sde)?;
        let want_reverse = solver.direction() == Direction::Reverse;
        if grid.is_decreasing() != want_reverse {
            return Err(Error::WrongDirection {
                solver: solver.name().to_string(),
                expected: if want_reverse { "reverse" } else { "forward" },
            });
        }
        solver.init(grid)?;
        // The observers move into the score the integrator sees, which reports each
        // evaluation to them, and come back whatever happens.
        let watched = Watched {
            counting: CountingScore::new(self.score),
            observers: RefCell::new(std::mem::take(&mut self.observers)),
            check_finite: self.check_finite,
            step: Cell::new(0),
            n_steps: grid.steps(),
        };
        let result = self.integrate(&watched, solver, x, grid, noise);
        self.observers = watched.observers.into_inner();
        result
    }

    fn integrate(
        &self,
        score: &Watched<'_, 'a, S>,
        solver: &mut dyn Solver<S>,
        mut x: S,
        grid: &TimeGrid,
        noise: &mut dyn Noise<S>,
    ) -> Result<Run<S>> {
        let n_steps = grid.steps();
        score.notify(&StepEvent { step: 0, n_steps, t: grid.start(), x: &x, score_evals: 0 })?;
        // The integrators see the score through a counter: exact counts for any
        // solver, adaptive ones included, without them keeping books.
        let mut ctx = Ctx { sde: self.sde, score, noise };
        for (i, w) in grid.times().windows(2).enumerate() {
            score.step.set(i + 1);
            x = solver.step(x, w[0], w[1], &mut ctx).map_err(|e| match e {
                // An adaptive solver's internal step count means nothing here: name the grid step.
                Error::NonFinite { .. } => Error::NonFinite { step: i + 1, t: w[1] },
                e => e,
            })?;
            score.notify(&StepEvent { step: i + 1, n_steps, t: w[1], x: &x, score_evals: score.counting.count() })?;
        }
        if self.denoise && solver.direction() == Direction::Reverse {
            score.step.set(n_steps + 1);
            x = tweedie_denoise(x, grid.end(), self.sde, score)?;
            solver.x0_guard().apply(&mut x)?;
            if self.check_finite && !x.all_finite() {
                return Err(Error::NonFinite { step: n_steps + 1, t: grid.end() });
            }
        }
        let score_evals = score.counting.count();
        Ok(Run { x, score_evals, steps: n_steps })
    }
}

/// The score a run's integrator sees: counts evaluations and reports each to
/// the observers, which it holds for the run.
struct Watched<'s, 'a, S: State> {
    counting: CountingScore<'s, S>,
    observers: RefCell<Vec<&'a mut dyn Observer<S>>>,
    check_finite: bool,
    /// The grid step under way.
    step: Cell<usize>,
    n_steps: usize,
}

impl<S: State> Watched<'_, '_, S> {
    /// Reports a step's result: the finiteness check, then every observer.
    fn notify(&self, event: &StepEvent<'_, S>) -> Result<()> {
        if self.check_finite {
            FiniteCheck.observe(event)?;
        }
        // No score evaluation runs while a step is reported, so the cell is free.
        match self.observers.try_borrow_mut() {
            Ok(mut observers) => observers.iter_mut().try_for_each(|o| o.observe(event)),
            Err(_) => Ok(()),
        }
    }
}

impl<S: State> Score<S> for Watched<'_, '_, S> {
    fn score(&self, x: &S, t: f64) -> Result<S> {
        let s = self.counting.score(x, t)?;
        let event = EvalEvent { step: self.step.get(), n_steps: self.n_steps, t, score_evals: self.counting.count() };
        // Busy only if an observer's own work evaluated this score: skip the nested report.
        if let Ok(mut observers) = self.observers.try_borrow_mut() {
            observers.iter_mut().try_for_each(|o| o.observe_eval(&event))?;
        }
        Ok(s)
    }
}

/// A draw from the prior `N(0, prior_std^2 I)` with the shape of `like`.
pub fn prior_sample<S: State>(sde: &dyn Sde, like: &S, noise: &mut dyn Noise<S>) -> S {
    let mut z = noise.normal(like);
    z.scale(sde.prior_std());
    z
}
