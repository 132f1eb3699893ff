//! What the adaptive step-size integrators share ([`crate::OdeDopri5`],
//! [`crate::AdaptiveSde`]): the tolerances and their checks, the budget of internal steps,
//! and the guards of the accept/reject loop (a step too small for `t` to resolve, the last
//! step shortened to land on the interval's end, a non-finite error estimate or result).
//!
//! Both accept an internal step when a mixed absolute/relative error norm
//! `E = norm((y_hi - y_lo) / (atol + rtol |y|))` is `<= 1` (Hairer, Nørsett & Wanner 1993,
//! §II.4, eq. 4.11; the norms themselves are [`State::error_norm`] and
//! [`State::sample_error_norms`]) and retry a rejected one with a smaller step; the
//! step-size update `h <- h theta E^(-r)` is each method's own (its safety factor,
//! exponent and limits follow its paper) and stays in its file.

use crate::error::{Error, Result};
use crate::grid::TimeGrid;
use crate::state::State;

/// Checked tolerances and the cap on internal steps (accepted and rejected) of an adaptive
/// integrator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct StepControl {
    pub(crate) rtol: f64,
    pub(crate) atol: f64,
    pub(crate) max_steps: usize,
}

impl StepControl {
    /// The tolerances, checked: `min_rtol <= rtol < 1` ([`check_rtol`]) and `atol` finite
    /// and > 0.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `rtol` or `atol`.
    pub(crate) fn new(rtol: f64, atol: f64, min_rtol: f64, max_steps: usize) -> Result<Self> {
        check_rtol(rtol, min_rtol)?;
        if !(atol.is_finite() && atol > 0.0) {
            return Err(Error::param("atol", show(atol), "must be finite and > 0"));
        }
        Ok(Self { rtol, atol, max_steps })
    }

    /// The same tolerances with another cap on internal steps.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for zero.
    pub(crate) fn with_max_steps(self, max_steps: usize) -> Result<Self> {
        if max_steps == 0 {
            return Err(Error::param("max_steps", max_steps, "must be >= 1"));
        }
        Ok(Self { max_steps, ..self })
    }

    /// Checks, at the start of a run, that the cap allows one internal step per grid step.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] naming `max_steps` when the grid has more steps.
    pub(crate) fn check_grid(&self, grid: &TimeGrid) -> Result<()> {
        if grid.steps() > self.max_steps {
            return Err(Error::param(
                "max_steps",
                self.max_steps,
                format!(
                    "below the grid's {} steps, each of which takes at least one internal step: use fewer grid steps \
                     (the controller places its own; one grid step is usual) or raise the cap",
                    grid.steps()
                ),
            ));
        }
        Ok(())
    }
}

/// The next internal step from `now` with the controller's step size `h > 0` and
/// `remaining > 0` left to the interval's end: `(remaining, true)` when `h` reaches the
/// end (within a relative 1e-12, so that rounding leaves no sliver of a step), else
/// `(h, false)`.
///
/// # Errors
/// [`Error::StepSizeTooSmall`] when `h <= 1e-12 max(|now|, 1e-3)`, below what `t`
/// resolves.
pub(crate) fn next_step(now: f64, h: f64, remaining: f64) -> Result<(f64, bool)> {
    if h <= 1e-12 * now.abs().max(1e-3) {
        return Err(Error::StepSizeTooSmall { t: now, h });
    }
    let last = h >= remaining * (1.0 - 1e-12);
    Ok(if last { (remaining, true) } else { (h, false) })
}

/// Whether an internal step with error norm `norm` and result `y` is accepted (`norm <=
/// 1`).
///
/// # Errors
/// [`Error::NonFinite`] (with the accepted steps + 1 and the time the step aimed at) when
/// the norm is not finite (NaN in any stage makes it NaN), or when the step would be
/// accepted with a non-finite `y` (an infinite result need not show in the norm).
pub(crate) fn accepts<S: State>(norm: f64, y: &S, step: usize, t: f64) -> Result<bool> {
    if !norm.is_finite() || (norm <= 1.0 && !y.all_finite()) {
        return Err(Error::NonFinite { step, t });
    }
    Ok(norm <= 1.0)
}

/// Checks `eps <= rtol < 1`, with `eps` the machine epsilon of the numbers
/// the integration runs in (see "Tolerances" on [`crate::OdeDopri5`]).
pub(crate) fn check_rtol(rtol: f64, eps: f64) -> Result<()> {
    let value = show(rtol);
    if !(rtol.is_finite() && rtol > 0.0) {
        return Err(Error::param("rtol", value, "must be finite and > 0"));
    }
    if rtol < eps {
        let (of, more) = match eps {
            e if e == f64::EPSILON => ("f64's machine epsilon, the finest of any state", ""),
            e if e == f64::from(f32::EPSILON) => {
                ("the machine epsilon of f32, the state's numbers", "; f64 states resolve down to 2.2e-16")
            }
            _ => ("the machine epsilon of the state's numbers", "; f64 states resolve down to 2.2e-16"),
        };
        return Err(Error::param(
            "rtol",
            value,
            format!(
                "must be >= {eps:.2e}, {of}: a step's result is rounded to about that relative error, so a smaller \
                 one cannot be met (the step size would shrink until the run stalls){more}"
            ),
        ));
    }
    if rtol >= 1.0 {
        return Err(Error::param("rtol", value, "must be < 1 (a relative error of 100% controls nothing)"));
    }
    Ok(())
}

/// A tolerance as the user would write it: `1e-14`, not 14 zeros and a 1.
pub(crate) fn show(v: f64) -> String {
    if v != 0.0 && v.is_finite() && !(1e-4..1e6).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The last step lands on the end exactly, a sliver within 1e-12 counts as reaching it,
    /// and a step below the resolution of `t` is an error.
    #[test]
    fn next_step_lands_and_guards() {
        assert_eq!(next_step(0.5, 0.1, 0.3).unwrap(), (0.1, false));
        assert_eq!(next_step(0.5, 0.3, 0.3).unwrap(), (0.3, true));
        assert_eq!(next_step(0.5, 0.3 * (1.0 - 1e-13), 0.3).unwrap(), (0.3, true));
        assert_eq!(next_step(0.5, 0.7, 0.3).unwrap(), (0.3, true));
        assert!(matches!(next_step(0.5, 1e-13, 0.3), Err(Error::StepSizeTooSmall { .. })));
        assert!(matches!(next_step(0.0, 1e-15, 0.3), Err(Error::StepSizeTooSmall { .. })));
    }

    /// Accepts at `norm <= 1`, rejects above, and a non-finite norm or accepted result is an error.
    #[test]
    fn accepts_by_the_norm() {
        let y = ndarray::Array2::<f64>::zeros((2, 1));
        assert!(accepts(1.0, &y, 1, 0.5).unwrap());
        assert!(!accepts(1.5, &y, 1, 0.5).unwrap());
        assert!(accepts(f64::NAN, &y, 3, 0.5).is_err());
        let bad = ndarray::Array2::from_elem((2, 1), f64::INFINITY);
        assert!(matches!(accepts(0.5, &bad, 3, 0.25), Err(Error::NonFinite { step: 3, .. })));
        assert!(!accepts(2.0, &bad, 3, 0.25).unwrap());
        let control = StepControl::new(1e-3, 1e-6, f64::EPSILON, 4).unwrap();
        assert!(StepControl::new(1.0, 1e-6, f64::EPSILON, 4).is_err());
        assert!(StepControl::new(1e-3, 0.0, f64::EPSILON, 4).is_err());
        assert!(control.with_max_steps(0).is_err());
        assert!(control.check_grid(&TimeGrid::uniform(1.0, 0.1, 5).unwrap()).is_err());
        assert!(control.with_max_steps(5).unwrap().check_grid(&TimeGrid::uniform(1.0, 0.1, 5).unwrap()).is_ok());
    }
}
