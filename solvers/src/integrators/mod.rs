//! The integrators, one per file, each named as in the literature.

mod ancestral;
mod annealed_langevin;
mod ddim;
mod dpm_solver_pp;
mod edm_heun;
mod flow_em;
mod forward_em;
mod langevin;
mod ode_dopri5;
mod ode_euler;
mod ode_heun;
mod ode_rk4;
mod pc;
mod reverse_diffusion;
mod reverse_em;
mod sgld;
mod tweedie;

pub use ancestral::{Ancestral, Variance};
pub use annealed_langevin::AnnealedLangevin;
pub use ddim::Ddim;
pub use dpm_solver_pp::DpmSolverPp;
pub use edm_heun::EdmHeun;
pub use flow_em::FlowEulerMaruyama;
pub use forward_em::ForwardEulerMaruyama;
pub use langevin::Langevin;
pub use ode_dopri5::{Dopri5Solution, OdeDopri5};
pub use ode_euler::OdeEuler;
pub use ode_heun::OdeHeun;
pub use ode_rk4::OdeRk4;
pub use pc::{Identity, Pc};
pub use reverse_diffusion::ReverseDiffusion;
pub use reverse_em::ReverseEulerMaruyama;
pub use sgld::{Sgld, StepSchedule};
pub use tweedie::tweedie_denoise;
pub(crate) use tweedie::x0_hat;
