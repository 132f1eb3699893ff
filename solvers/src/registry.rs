//! Solvers by name, for command lines and examples.

use crate::error::{Error, Result};
use crate::integrators::{
    Ancestral, AnnealedLangevin, ForwardEulerMaruyama, Langevin, Pc, ReverseDiffusion, ReverseEulerMaruyama, Variance,
};
use crate::solver::Solver;
use crate::state::State;

/// The reverse-time samplers [`by_name`] knows, in the order examples list them.
pub const SAMPLERS: &[&str] =
    &["reverse-em", "reverse-diffusion", "ancestral", "ancestral-large", "pc", "langevin", "annealed-langevin"];

/// A solver from its name, with default settings:
///
/// | name | solver |
/// |---|---|
/// | `forward-em` | [`ForwardEulerMaruyama`] (forward SDE) |
/// | `reverse-em` | [`ReverseEulerMaruyama`] |
/// | `reverse-diffusion` | [`ReverseDiffusion`] |
/// | `ancestral` / `ancestral-large` | [`Ancestral`] with [`Variance::Small`] / [`Variance::Large`] |
/// | `pc` | [`Pc`] of [`ReverseDiffusion`] and [`Langevin`] (snr 0.16) |
/// | `langevin` | corrector-only [`Langevin`] (snr 0.16) |
/// | `annealed-langevin` | corrector-only [`AnnealedLangevin`] (snr 0.16) |
///
/// # Errors
/// [`Error::UnknownSolver`] listing the known names.
pub fn by_name<S: State>(name: &str) -> Result<Box<dyn Solver<S>>> {
    Ok(match name {
        "forward-em" => Box::new(ForwardEulerMaruyama),
        "reverse-em" => Box::new(ReverseEulerMaruyama),
        "reverse-diffusion" => Box::new(ReverseDiffusion),
        "ancestral" => Box::new(Ancestral::with_variance(Variance::Small)),
        "ancestral-large" => Box::new(Ancestral::with_variance(Variance::Large)),
        "pc" => Box::new(Pc::new(ReverseDiffusion, Langevin::default())),
        "langevin" => Box::new(Pc::corrector_only(Langevin::default()).named("langevin")),
        "annealed-langevin" => Box::new(Pc::corrector_only(AnnealedLangevin::default()).named("annealed-langevin")),
        _ => {
            let mut known = vec!["forward-em"];
            known.extend_from_slice(SAMPLERS);
            return Err(Error::UnknownSolver { name: name.to_string(), known: known.join(", ") });
        }
    })
}
