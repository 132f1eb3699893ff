//! The integrators, one per file, each named as in the literature.

mod ancestral;
mod annealed_langevin;
mod forward_em;
mod langevin;
mod pc;
mod reverse_diffusion;
mod reverse_em;
mod sgld;
mod tweedie;

pub use ancestral::{Ancestral, Variance};
pub use annealed_langevin::AnnealedLangevin;
pub use forward_em::ForwardEulerMaruyama;
pub use langevin::Langevin;
pub use pc::{Identity, Pc};
pub use reverse_diffusion::ReverseDiffusion;
pub use reverse_em::ReverseEulerMaruyama;
pub use sgld::{Sgld, StepSchedule};
pub use tweedie::tweedie_denoise;
