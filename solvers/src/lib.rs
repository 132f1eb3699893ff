//! # scoresde-solvers
//!
//! The numerical core of scoresde: forward SDEs, closed-form scores, noise
//! sources, time grids, and interchangeable integrators for score-based
//! generative models (Song et al. 2021, "Score-Based Generative Modeling
//! through Stochastic Differential Equations").
//!
//! * [`Sde`]: `dx = f(t) x dt + g(t) dw` with kernel `x_t = a(t) x_0 + sigma(t) z` ([`VpSde`],
//!   [`SubVpSde`], [`VeSde`], [`CosineVpSde`]).
//! * [`Score`]: `s(x, t)`; [`ExactScore`] of [`GaussianMixture`] data is exact at every t.
//! * [`State`]: the few array operations integrators use (ndarray f32/f64; `tch::Tensor`
//!   on any device with the cargo feature `tch`).
//! * [`Noise`]: [`GaussianNoise`] (seeded i.i.d.) or [`BrownianPath`] (one path, any step size).
//! * [`Solver`] / [`Corrector`]: one file per integrator in [`integrators`].
//! * Guidance: [`ClassifierGuided`] and [`ClassifierFreeGuided`] wrap scores (see [`guidance`]).
//! * [`Sampler`]: runs a solver over a [`TimeGrid`] with [`Observer`]s.
//!
//! Swapping a solver is one line: every solver is a `Solver<S>`, and
//! [`by_name`] builds one from a string.

mod error;
mod grid;
pub mod guidance;
pub mod integrators;
pub mod law;
pub mod likelihood;
pub mod noise;
mod observe;
mod registry;
mod sample;
pub mod score;
pub mod sde;
mod solver;
pub mod state;
#[cfg(feature = "tch")]
pub mod tensor;

pub use error::{Error, Result};
pub use grid::{TimeGrid, GRIDS};
pub use guidance::{
    check_class, ClassifierFreeGuided, ClassifierGradient, ClassifierGuided, ConditionalScore, Conditioned,
    ExactConditional, LabelledMixture,
};
pub use integrators::{
    tweedie_denoise, Ancestral, AnnealedLangevin, Ddim, DpmSolverPp, EdmHeun, ForwardEulerMaruyama, Identity, Langevin,
    OdeDopri5, OdeEuler, OdeHeun, OdeRk4, Pc, ReverseDiffusion, ReverseEulerMaruyama, Sgld, StepSchedule, Variance,
};
pub use likelihood::{bits_per_dim, log_likelihood, Divergence, DivergenceMethod, Likelihood, LikelihoodOptions};
pub use noise::{BrownianPath, GaussianNoise, Noise};
pub use observe::{FiniteCheck, Observer, StepEvent, Trajectory};
pub use registry::{by_name, SAMPLERS};
pub use sample::{prior_sample, Run, Sampler};
pub use score::{ExactScore, GaussianMixture, Score};
pub use sde::{sde_by_name, CosineVpSde, Sde, SubVpSde, VeSde, VpSde, SDES};
pub use solver::{Corrector, Ctx, Direction, Solver};
pub use state::{Element, Rng, State};

/// Everything a user of the solvers needs, in one import.
pub mod prelude {
    pub use crate::{
        by_name, prior_sample, Ancestral, AnnealedLangevin, BrownianPath, ClassifierFreeGuided, ClassifierGradient,
        ClassifierGuided, ConditionalScore, Conditioned, Corrector, CosineVpSde, Ctx, Ddim, DpmSolverPp, EdmHeun,
        Error, ExactConditional, ExactScore, ForwardEulerMaruyama, GaussianMixture, GaussianNoise, LabelledMixture,
        Langevin, Noise, Observer, OdeDopri5, OdeEuler, OdeHeun, OdeRk4, Pc, ReverseDiffusion, ReverseEulerMaruyama,
        Run, Sampler, Score, Sde, Sgld, Solver, State, StepSchedule, SubVpSde, TimeGrid, Trajectory, Variance, VeSde,
        VpSde,
    };
}
