//! The integrator traits: [`Solver`] (one step from `t` to `t_next`) and
//! [`Corrector`] (moves at fixed `t` towards `p_t`).
//!
//! Both have one required method besides their name; bookkeeping the driver
//! can do itself stays out of them: [`crate::Sampler`] counts score
//! evaluations by handing the integrator a [`crate::CountingScore`].

use crate::error::{Error, Result};
use crate::grid::TimeGrid;
use crate::noise::Noise;
use crate::score::Score;
use crate::sde::Sde;
use crate::state::State;
use crate::x0_guard::X0Guard;

/// What an integrator sees at each step: the SDE, the score and the noise.
pub struct Ctx<'a, S: State> {
    /// The forward SDE.
    pub sde: &'a dyn Sde,
    /// The score `s(x, t)`.
    pub score: &'a dyn Score<S>,
    /// Where randomness comes from.
    pub noise: &'a mut dyn Noise<S>,
}

/// Which way in time an integrator runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From small `t` to large `t` (the forward, noising SDE).
    Forward,
    /// From `T` down to `eps` (sampling).
    Reverse,
}

/// A one-step integrator. Object-safe, so a solver chosen by name at run time
/// is a `Box<dyn Solver<S>>`.
pub trait Solver<S: State>: Send {
    /// The name it is selected by (see [`crate::by_name`]).
    fn name(&self) -> &'static str;

    /// Which way in time it runs (reverse by default).
    fn direction(&self) -> Direction {
        Direction::Reverse
    }

    /// Called once before every run: forgets any history (multistep methods,
    /// the step size an adaptive method carries between grid steps) and sees
    /// the whole time grid (for rules that depend on the number of steps, such
    /// as EDM's `S_churn / N`).
    ///
    /// # Errors
    /// A grid the solver cannot use.
    fn init(&mut self, _grid: &TimeGrid) -> Result<()> {
        Ok(())
    }

    /// Advances `x` from `t` to `t_next`.
    ///
    /// # Errors
    /// Whatever the score or noise source returns; shape mismatches; for
    /// adaptive solvers, a non-finite stage or a stalled step-size controller.
    fn step(&mut self, x: S, t: f64, t_next: f64, ctx: &mut Ctx<'_, S>) -> Result<S>;

    /// The guard applied to the predicted clean sample `x0_hat` ([`X0Guard::Off`] unless
    /// set); [`crate::Sampler`] applies it after the final Tweedie denoising step too.
    fn x0_guard(&self) -> X0Guard {
        X0Guard::Off
    }

    /// Sets the guard on `x0_hat` (see [`crate::x0_guard`]). Solvers that form `x0_hat`
    /// (the rows of [`crate::SOLVERS`] with `x0: true`) accept any guard.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `x0 guard` from a solver that forms no `x0_hat`
    /// (the default), unless the guard is [`X0Guard::Off`].
    fn set_x0_guard(&mut self, guard: X0Guard) -> Result<()> {
        if guard.is_off() {
            return Ok(());
        }
        Err(Error::param(
            "x0 guard",
            guard,
            format!(
                "`{}` forms no x0 estimate to clip; x0 clipping and dynamic thresholding apply to {}",
                self.name(),
                crate::registry::x0_solver_names()
            ),
        ))
    }

    /// Whether a multistep solver lowers its order on the last steps (diffusers'
    /// `lower_order_final`: the order is capped by the steps left, so the last step is
    /// first order); `false` unless set.
    fn lower_order_final(&self) -> bool {
        false
    }

    /// Sets the lower-order final steps (`NAME:lower-order-final` in [`crate::by_name`]).
    /// The multistep solvers accept it.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `lower-order-final` from any other solver (the
    /// default), unless `yes` is false.
    fn set_lower_order_final(&mut self, yes: bool) -> Result<()> {
        if !yes {
            return Ok(());
        }
        Err(Error::param(
            "lower-order-final",
            self.name(),
            format!(
                "`{}` is not a multistep solver; lower-order final steps apply to the DPM-Solver++ and UniPC solvers",
                self.name()
            ),
        ))
    }
}

/// A corrector: a Markov move at fixed `t` that leaves `p_t` (approximately) invariant.
pub trait Corrector<S: State>: Send {
    /// Name, used in the name of a predictor–corrector pair.
    fn name(&self) -> &'static str;

    /// Moves `x` at time `t`; `t_prev` is the time the sampler came from
    /// (`t_prev > t` in reverse time), which sets the step size of rules that
    /// scale with the discrete `alpha_i = 1 - beta_i`.
    ///
    /// # Errors
    /// Whatever the score returns; shape mismatches.
    fn correct(&mut self, x: S, t: f64, t_prev: f64, ctx: &mut Ctx<'_, S>) -> Result<S>;
}

impl<S: State, T: Solver<S> + ?Sized> Solver<S> for Box<T> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn direction(&self) -> Direction {
        (**self).direction()
    }
    fn init(&mut self, grid: &TimeGrid) -> Result<()> {
        (**self).init(grid)
    }
    fn step(&mut self, x: S, t: f64, t_next: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        (**self).step(x, t, t_next, ctx)
    }
    fn x0_guard(&self) -> X0Guard {
        (**self).x0_guard()
    }
    fn set_x0_guard(&mut self, guard: X0Guard) -> Result<()> {
        (**self).set_x0_guard(guard)
    }
    fn lower_order_final(&self) -> bool {
        (**self).lower_order_final()
    }
    fn set_lower_order_final(&mut self, yes: bool) -> Result<()> {
        (**self).set_lower_order_final(yes)
    }
}

impl<S: State, T: Corrector<S> + ?Sized> Corrector<S> for Box<T> {
    fn name(&self) -> &'static str {
        (**self).name()
    }
    fn correct(&mut self, x: S, t: f64, t_prev: f64, ctx: &mut Ctx<'_, S>) -> Result<S> {
        (**self).correct(x, t, t_prev, ctx)
    }
}
