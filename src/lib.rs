//! # scoresde
#![warn(missing_docs)]
pub use scoresde_solvers as solvers;
