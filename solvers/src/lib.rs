//! # scoresde-solvers
//!
//! The numerical core of scoresde: forward SDEs, closed-form scores, noise
//! sources, time grids, and interchangeable integrators for score-based
//! generative models (Song et al. 2021, "Score-Based Generative Modeling
//! through Stochastic Differential Equations").
//!
//! * [`Sde`]: `dx = f(t) x dt + g(t) dw` with kernel `x_t = a(t) x_0 + sigma(t) z` ([`VpSde`],
//!   [`SubVpSde`], [`VeSde`], [`CosineVpSde`]; DDPM's discrete schedules as [`DiscreteVp`], see
//!   [`discrete`]).
//! * [`Score`]: `s(x, t)`; [`ExactScore`] of [`GaussianMixture`] data is exact at every t.
//! * [`oracle`]: the closed forms every test checks against: [`GaussianMixture`]
//!   (density, score and its derivatives exact at every t), [`LabelledMixture`] with
//!   [`ExactConditional`] (exact class posteriors and conditional scores), and
//!   [`law`] (the exact output law of a sampler on 1-D Gaussian data).
//! * [`State`]: the few array operations integrators use (ndarray f32/f64; `tch::Tensor`
//!   on any device with the cargo feature `tch`).
//! * [`Noise`]: [`GaussianNoise`] (seeded i.i.d.), [`RowNoise`] (counter-based per sample: the same
//!   samples whatever the batching or sharding) or [`BrownianPath`] (one path, any step size).
//! * [`Solver`] / [`Corrector`]: one file per integrator in [`integrators`].
//! * [`VectorField`]: ODE right-hand sides ([`ProbabilityFlow`], the likelihood's augmented
//!   flow), kept apart from the ODE methods that integrate them.
//! * Guidance: [`ClassifierGuided`] and [`ClassifierFreeGuided`] wrap scores (see [`guidance`]).
//! * [`X0Guard`]: optional clipping or dynamic thresholding of the predicted clean sample
//!   in the solvers that form it.
//! * [`Sampler`]: runs a solver over a [`TimeGrid`] with [`Observer`]s, counting score
//!   evaluations through a [`CountingScore`].
//!
//! Swapping a solver is one line: every solver is a `Solver<S>`, and
//! [`by_name`] builds one from a string. [`SOLVERS`] is the one table of named solvers:
//! each row declares its order, kind, score evaluations per step, default grid and
//! citation, and tests, docs and studies read it from there.

pub mod convention;
mod counting;
pub mod discrete;
mod error;
mod grid;
pub mod guidance;
pub mod integrators;
pub mod interpolant;
pub mod likelihood;
pub mod noise;
mod observe;
pub mod oracle;
pub mod registry;
mod sample;
pub mod score;
pub mod sde;
mod solver;
pub mod state;
#[cfg(feature = "tch")]
pub mod tensor;
pub mod vector_field;
pub mod x0_guard;

pub use convention::{ModelConvention, Prediction, TimeInput};
pub use counting::CountingScore;
pub use discrete::{discrete_by_name, DiscreteVp, FinalStep, Spacing, TimeConvention, DISCRETE_SCHEDULES};
pub use error::{Error, Result};
pub use grid::{TimeGrid, GRIDS, MAX_STEPS};
pub use guidance::{
    check_class, ClassifierFreeGuided, ClassifierGradient, ClassifierGuided, ConditionalScore, Conditioned,
};
pub use integrators::FlowEulerMaruyama;
pub use integrators::{
    tweedie_denoise, AdaptiveSde, Ancestral, AnnealedLangevin, Ddim, Dopri5Solution, DpmSolverPp, EdmHeun,
    ForwardEulerMaruyama, Identity, Langevin, OdeDopri5, OdeEuler, OdeHeun, OdeRk4, Pc, ReverseDiffusion,
    ReverseEulerMaruyama, Sgld, StepSchedule, Variance,
};
pub use integrators::{Bh, UniC, UniPc};
pub use integrators::{Restart, SaSolver};
pub use interpolant::{FlowSde, InterpolantSde, VelocityCoefs};
pub use likelihood::{bits_per_dim, log_likelihood, Divergence, DivergenceMethod, Likelihood, LikelihoodOptions};
pub use noise::{BrownianPath, GaussianNoise, Noise, RowNoise};
pub use observe::{EvalEvent, FiniteCheck, Observer, OnEval, StepEvent, Trajectory};
pub use oracle::law;
pub use oracle::{ExactConditional, GaussianMixture, LabelledMixture};
pub use registry::{
    by_name, solver_info, solvers_markdown_table, x0_guard_note, x0_solver_names, DefaultGrid, Order, OrderCheck,
    Param, ScoreEvals, SolverInfo, SolverKind, SAMPLERS, SOLVERS,
};
pub use registry::{lower_order_final_names, lower_order_final_note};
pub use sample::{prior_sample, Run, Sampler};
pub use score::{ExactScore, Score};
pub use sde::{sde_by_name, CosineVpSde, Sde, SubVpSde, VeSde, VpSde, SDES};
pub use solver::{Corrector, Ctx, Direction, Solver};
pub use state::{Element, Rng, State};
pub use vector_field::{ProbabilityFlow, VectorField};
pub use x0_guard::X0Guard;

/// Everything a user of the solvers needs, in one import.
pub mod prelude {
    pub use crate::{
        by_name, prior_sample, Ancestral, AnnealedLangevin, BrownianPath, ClassifierFreeGuided, ClassifierGradient,
        ClassifierGuided, ConditionalScore, Conditioned, Corrector, CosineVpSde, CountingScore, Ctx, Ddim, DiscreteVp,
        DpmSolverPp, EdmHeun, Error, ExactConditional, ExactScore, ForwardEulerMaruyama, GaussianMixture,
        GaussianNoise, LabelledMixture, Langevin, Noise, Observer, OdeDopri5, OdeEuler, OdeHeun, OdeRk4, Pc,
        ReverseDiffusion, ReverseEulerMaruyama, RowNoise, Run, Sampler, Score, Sde, Sgld, Solver, State, StepSchedule,
        SubVpSde, TimeGrid, Trajectory, Variance, VeSde, VpSde, X0Guard,
    };
    pub use crate::{Bh, UniC, UniPc};
}
