//! # scoresde-solvers
//!
//! The numerical core of scoresde: forward SDEs, closed-form scores, noise
//! sources, time grids, and interchangeable integrators for score-based
//! generative models (Song et al. 2021, "Score-Based Generative Modeling
//! through Stochastic Differential Equations").
#![warn(missing_docs)]

mod error;
pub mod noise;
pub mod score;
pub mod sde;
pub mod state;

pub use error::{Error, Result};
pub use noise::{BrownianPath, GaussianNoise, Noise};
pub use score::{ExactScore, GaussianMixture, Score};
pub use sde::{Sde, VpSde};
pub use state::{Element, Rng, State};
