//! # scoresde
//!
//! Score-based generative modelling with SDEs. The numerical core lives in
//! [`solvers`] (crate `scoresde-solvers`); this crate adds neural scores with
//! `tch`, data sets, metrics, plotting and the command-line program.
pub use scoresde_solvers as solvers;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod features;
pub mod fsutil;
pub mod image_metrics;
pub use error::{Error, Result};
pub mod metrics;
pub mod model;
pub mod net;
pub mod plot;
pub mod rng;
pub mod schedule;
pub mod torchscript;
pub mod train;
pub mod unet;

/// The README's code blocks, compiled and run as doc tests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
