//! Oracles: data whose scores and sampler output laws are known in closed
//! form, the reference every integrator and guidance test is checked against.
//!
//! * [`GaussianMixture`]: `sum_k w_k N(mu_k, Sigma_k)` in `d` dimensions. Every
//!   marginal `p_t` of a linear SDE is again a mixture, so its density, score
//!   ([`GaussianMixture::score_at`], fast: chunked, vectorised, parallel) and
//!   score derivatives ([`GaussianMixture::score_derivatives_at`]) are exact at
//!   every `t`. [`ExactScore`](crate::ExactScore) puts it under an SDE.
//! * [`LabelledMixture`]: a mixture whose classes are sets of components, so
//!   `p_t(x | y)`, `p_t(y | x)` and `grad_x log p_t(y | x)` are exact;
//!   [`ExactConditional`] puts it under an SDE as the exact
//!   [`ConditionalScore`](crate::ConditionalScore) and
//!   [`ClassifierGradient`](crate::ClassifierGradient).
//! * [`law`]: the exact output law of a sampler on 1-D Gaussian data
//!   ([`law::scheme_law_1d`]), with no Monte Carlo.
//!
//! All are re-exported at the crate root (and `law` as `scoresde_solvers::law`).

mod labelled;
pub mod law;
mod mixture;
mod mixture_simd;

pub use labelled::{ExactConditional, LabelledMixture};
pub use mixture::{GaussianMixture, ScoreDerivatives};
