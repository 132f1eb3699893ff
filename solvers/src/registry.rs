//! Solvers by name, for command lines and examples.

use crate::error::{Error, Result};
use crate::integrators::{
    Ancestral, AnnealedLangevin, Ddim, DpmSolverPp, EdmHeun, ForwardEulerMaruyama, Langevin, OdeDopri5, OdeEuler,
    OdeHeun, OdeRk4, Pc, ReverseDiffusion, ReverseEulerMaruyama, Variance,
};
use crate::solver::Solver;
use crate::state::State;

/// The reverse-time samplers [`by_name`] knows, in the order examples list them.
pub const SAMPLERS: &[&str] = &[
    "reverse-em",
    "reverse-diffusion",
    "ancestral",
    "ancestral-large",
    "pc",
    "langevin",
    "annealed-langevin",
    "ode-euler",
    "ode-heun",
    "ode-rk4",
    "ode-dopri5",
    "ddim",
    "ddim-eta1",
    "dpm1",
    "dpm2m",
    "edm-heun",
    "edm-heun-churn",
];

/// A solver from its name, with default settings:
///
/// | name | solver | order | score evals / step |
/// |---|---|---|---:|
/// | `forward-em` | [`ForwardEulerMaruyama`] (forward SDE) | weak 1 | 0 |
/// | `reverse-em` | [`ReverseEulerMaruyama`] | weak 1 | 1 |
/// | `reverse-diffusion` | [`ReverseDiffusion`] | weak 1 | 1 |
/// | `ancestral` / `ancestral-large` | [`Ancestral`] with [`Variance::Small`] / [`Variance::Large`] | weak 1 | 1 |
/// | `pc` | [`Pc`] of [`ReverseDiffusion`] and [`Langevin`] (snr 0.16) | weak 1 | 2 |
/// | `langevin` | corrector-only [`Langevin`] (snr 0.16) | MCMC | 1 |
/// | `annealed-langevin` | corrector-only [`AnnealedLangevin`] (snr 0.16) | MCMC | 1 |
/// | `ode-euler` | [`OdeEuler`] (probability-flow ODE) | 1 | 1 |
/// | `ode-heun` | [`OdeHeun`] | 2 | 2 |
/// | `ode-rk4` | [`OdeRk4`] | 4 | 4 |
/// | `ode-dopri5` | [`OdeDopri5`], rtol = atol = 1e-5; `ode-dopri5:RTOL` or `ode-dopri5:RTOL:ATOL` to set them | 5, adaptive | >= 7, reported |
/// | `ddim` | [`Ddim`], eta = 0 | 1 | 1 |
/// | `ddim-eta1` | [`Ddim`], eta = 1 (= `ancestral`); `ddim-eta:ETA` for any eta >= 0 | weak 1 | 1 |
/// | `dpm1` | [`DpmSolverPp`] first order (= `ddim`) | 1 | 1 |
/// | `dpm2m` | [`DpmSolverPp`] 2M | 2 | 1 |
/// | `edm-heun` | [`EdmHeun`], S_churn = 0 (Karras Alg. 1) | 2 | 2 |
/// | `edm-heun-churn` | [`EdmHeun::churned`] (S_churn 40, S_tmin 0.05, S_tmax 50, S_noise 1) | — | 2 |
///
/// # Errors
/// [`Error::UnknownSolver`] listing the known names; [`Error::InvalidParameter`]
/// for a bad parameter of a parameterised name.
pub fn by_name<S: State>(name: &str) -> Result<Box<dyn Solver<S>>> {
    let parse = |what: &'static str, v: &str| -> Result<f64> {
        v.parse::<f64>().map_err(|_| Error::param(what, v, "not a number"))
    };
    if let Some(eta) = name.strip_prefix("ddim-eta:") {
        return Ok(Box::new(Ddim::with_eta(parse("eta", eta)?)?));
    }
    if let Some(tols) = name.strip_prefix("ode-dopri5:") {
        let mut it = tols.splitn(2, ':');
        let rtol = parse("rtol", it.next().unwrap_or(""))?;
        let atol = match it.next() {
            Some(a) => parse("atol", a)?,
            None => rtol,
        };
        return Ok(Box::new(OdeDopri5::new(rtol, atol)?));
    }
    Ok(match name {
        "forward-em" => Box::new(ForwardEulerMaruyama),
        "reverse-em" => Box::new(ReverseEulerMaruyama),
        "reverse-diffusion" => Box::new(ReverseDiffusion),
        "ancestral" => Box::new(Ancestral::with_variance(Variance::Small)),
        "ancestral-large" => Box::new(Ancestral::with_variance(Variance::Large)),
        "pc" => Box::new(Pc::new(ReverseDiffusion, Langevin::default())),
        "langevin" => Box::new(Pc::corrector_only(Langevin::default()).named("langevin")),
        "annealed-langevin" => Box::new(Pc::corrector_only(AnnealedLangevin::default()).named("annealed-langevin")),
        "ode-euler" => Box::new(OdeEuler),
        "ode-heun" => Box::new(OdeHeun),
        "ode-rk4" => Box::new(OdeRk4),
        "ode-dopri5" => Box::new(OdeDopri5::default()),
        "ddim" => Box::new(Ddim::new()),
        "ddim-eta1" => Box::new(Ddim::with_eta(1.0)?),
        "dpm1" => Box::new(DpmSolverPp::<S>::first_order()),
        "dpm2m" => Box::new(DpmSolverPp::<S>::two_m()),
        "edm-heun" => Box::new(EdmHeun::new()),
        "edm-heun-churn" => Box::new(EdmHeun::churned()),
        _ => {
            let mut known = vec!["forward-em"];
            known.extend_from_slice(SAMPLERS);
            known.extend_from_slice(&["ddim-eta:ETA", "ode-dopri5:RTOL[:ATOL]"]);
            return Err(Error::UnknownSolver { name: name.to_string(), known: known.join(", ") });
        }
    })
}
