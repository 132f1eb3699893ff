//! Solvers by name: one table, [`SOLVERS`], with one row per named solver.
//!
//! Each row ([`SolverInfo`]) declares what a solver is: its name, constructor, update
//! rule, [`Order`] (and strong order where it has one), whether it is deterministic
//! ([`SolverKind`]), its [`ScoreEvals`] per step, the [`DefaultGrid`] its paper uses, its
//! [`Direction`], how its order is checked ([`OrderCheck`]), whether it takes an x0 guard
//! and a citation. Everything
//! that lists solvers reads this table and nothing else: [`by_name`], [`SAMPLERS`],
//! [`solver_info`], the `scoresde solvers` listing, the README's "Solvers" table
//! ([`solvers_markdown_table`]), the convergence study, `examples/swap_solvers.rs`, and
//! the tests (order, f32, tensor backend, determinism, score-evaluation counts).
//!
//! # How to add a solver
//!
//! 1. Write the integrator in one file in `integrators/`, named as in the literature,
//!    its doc comment giving the update rule, order and citation; export it.
//! 2. Add one row to the `solvers!` table below (an identifier, `name`, `build`, and the
//!    declared fields). A parameterised form (`ddim-eta:ETA`) also needs one arm in
//!    `build_param`. A solver that forms the Tweedie estimate `x0_hat` declares `x0: true`
//!    and implements [`Solver::set_x0_guard`] / [`Solver::x0_guard`], applying the
//!    [`X0Guard`] where it forms `x0_hat`; `solvers/tests/x0_guard.rs` then checks it.
//!    A multistep solver that can lower its order on the last steps implements
//!    [`Solver::set_lower_order_final`] (`NAME:lower-order-final`).
//!
//! Its tests come for free: `solvers/tests/ode.rs` measures the order of its exact law on
//! 1-D Gaussian data on its default grid and checks it against the declared [`Order`]
//! (±0.15) and against the recorded `measured` value; `solvers/tests/sdes.rs` checks the
//! order on every SDE; `solvers/tests/registry.rs` checks the built solver's name,
//! direction and declared kind (a deterministic row draws no noise); the score-evaluation
//! count, f32 finiteness, tensor-vs-ndarray, determinism and bad-input tests loop over
//! the table. A deterministic fixed-step row also needs its hand-derived recursion in
//! `solvers/tests/ode.rs` (`hand_map`), the closed-form oracle; a test there says so. Then regenerate the README table:
//! `UPDATE_README=1 cargo test -p scoresde-solvers --test readme` (the test fails until
//! the README agrees with the table).

use std::fmt;

use crate::error::{Error, Result};
use crate::grid::TimeGrid;
use crate::integrators::{
    AdaptiveSde, Ancestral, AnnealedLangevin, Ddim, DpmSolverPp, EdmHeun, FlowEulerMaruyama, ForwardEulerMaruyama,
    Langevin, OdeDopri5, OdeEuler, OdeHeun, OdeRk4, Pc, Restart, ReverseDiffusion, ReverseEulerMaruyama, SaSolver,
    Variance,
};
use crate::integrators::{Bh, UniC, UniPc};
use crate::sde::Sde;
use crate::solver::{Direction, Solver};
use crate::state::State;
use crate::x0_guard::X0Guard;

/// The convergence order a solver declares, for an exact score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Weak order `p` of a stochastic scheme: moments of the output law converge as `h^p`.
    Weak(u32),
    /// Order `p` of a deterministic (ODE) scheme: the output converges pathwise as `h^p`.
    Ode(u32),
    /// An adaptive method of order `p` (an ODE method's order, or the weak order of an
    /// SDE method): the step size is chosen from a tolerance.
    Adaptive(u32),
    /// A corrector-only sampler: MCMC at each noise level with an `O(step)` bias, not a
    /// discretisation that converges with the number of steps.
    Mcmc,
    /// No order is claimed: EDM's churn (its noise depends on the number of steps), or a
    /// predictor–corrector pair whose SNR-rule corrector makes the law non-affine.
    None,
}

impl Order {
    /// The order `p` the error should fall with (`error ~ h^p`), if one is claimed.
    pub fn value(self) -> Option<u32> {
        match self {
            Order::Weak(p) | Order::Ode(p) | Order::Adaptive(p) => Some(p),
            Order::Mcmc | Order::None => None,
        }
    }
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Order::Weak(p) => write!(f, "weak {p}"),
            Order::Ode(p) => write!(f, "{p}"),
            Order::Adaptive(p) => write!(f, "{p}, adaptive"),
            Order::Mcmc => f.write_str("MCMC, O(e) bias"),
            Order::None => f.write_str("—"),
        }
    }
}

/// Whether a solver draws noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SolverKind {
    /// The output is a deterministic function of the start point.
    Deterministic,
    /// The solver draws from its noise source.
    Stochastic,
}

impl fmt::Display for SolverKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SolverKind::Deterministic => "deterministic",
            SolverKind::Stochastic => "stochastic",
        })
    }
}

/// Score evaluations a solver makes per step of the time grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreEvals {
    /// Exactly this many per step.
    Fixed(usize),
    /// An adaptive solver: at least `min` per grid interval; the count is reported in
    /// [`crate::Run::score_evals`].
    Adaptive {
        /// The fewest evaluations one grid interval can take.
        min: usize,
    },
}

impl ScoreEvals {
    /// Evaluations per step, or the minimum for an adaptive solver (for budgets).
    pub fn min(self) -> usize {
        match self {
            ScoreEvals::Fixed(n) | ScoreEvals::Adaptive { min: n } => n,
        }
    }
}

impl fmt::Display for ScoreEvals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScoreEvals::Fixed(n) => write!(f, "{n}"),
            ScoreEvals::Adaptive { min } => write!(f, "≥ {min}, counted"),
        }
    }
}

/// The time grid a solver's paper uses (the convergence study's default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultGrid {
    /// Uniform in t ([`TimeGrid::uniform`]).
    Uniform,
    /// Quadratic in t, denser near `eps` ([`TimeGrid::quadratic`]).
    Quadratic,
    /// Uniform in log-SNR ([`TimeGrid::log_snr`]).
    LogSnr,
    /// Karras et al. 2022 with rho = 7 ([`TimeGrid::karras`]).
    Karras,
    /// The solver chooses its own steps inside each grid interval; the study gives it one.
    Adaptive,
}

impl DefaultGrid {
    /// The name ([`TimeGrid::by_name`] takes all but `adaptive`).
    pub fn name(self) -> &'static str {
        match self {
            DefaultGrid::Uniform => "uniform",
            DefaultGrid::Quadratic => "quadratic",
            DefaultGrid::LogSnr => "log-snr",
            DefaultGrid::Karras => "karras",
            DefaultGrid::Adaptive => "adaptive",
        }
    }

    /// The grid from `t_start` to `t_end` in `steps` steps (`Adaptive`: uniform; the
    /// solver subdivides each interval itself).
    ///
    /// # Errors
    /// As the [`TimeGrid`] constructor.
    pub fn build(self, sde: &dyn Sde, t_start: f64, t_end: f64, steps: usize) -> Result<TimeGrid> {
        match self {
            DefaultGrid::Adaptive => TimeGrid::uniform(t_start, t_end, steps),
            other => TimeGrid::by_name(other.name(), sde, t_start, t_end, steps),
        }
    }
}

/// How a solver's declared order is checked by the test suite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OrderCheck {
    /// The output law on 1-D Gaussian data `N(1, 0.5²)` (VP-SDE, exact score, the row's
    /// default grid) is read off exactly (`law::scheme_law_1d`), and the least-squares
    /// slope of its error `|Δmean| + |Δvar|` against `h` over these step counts must be
    /// within ±0.15 of the declared order and within 0.01 of `measured`.
    Measured {
        /// Step counts of the fit.
        steps: &'static [usize],
        /// The slope the suite measures (shown in the README; the test keeps it current).
        measured: f64,
    },
    /// Not measured by the order tests; why, and what covers the solver instead.
    Elsewhere(&'static str),
}

/// A parameterised form of a name, such as `ddim-eta:ETA`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    /// What comes before the `:`.
    pub prefix: &'static str,
    /// What comes after it, for the listing (`ETA`, `RTOL[:ATOL]`).
    pub syntax: &'static str,
}

/// One row of the registry: what a named solver is. See the [module docs](self).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct SolverInfo {
    /// The name [`by_name`] and `--solver` take.
    pub name: &'static str,
    /// The Rust constructor [`SolverInfo::build`] calls, as text.
    pub rust: &'static str,
    /// The update rule in one line (markdown, `h > 0` taken from the grid).
    pub update: &'static str,
    /// Declared order.
    pub order: Order,
    /// Declared strong order, where the scheme has one worth stating (additive noise).
    pub strong_order: Option<u32>,
    /// Deterministic or stochastic.
    pub kind: SolverKind,
    /// Score evaluations per step.
    pub evals: ScoreEvals,
    /// The time grid its paper uses.
    pub grid: DefaultGrid,
    /// Forward (noising) or reverse (sampling) time.
    pub direction: Direction,
    /// Whether each step is affine in `x` (given the noise) on linear-Gaussian problems,
    /// so that `law::scheme_law_1d` gives its exact output law. SNR-rule correctors,
    /// whose step size depends on the batch, are not.
    pub affine: bool,
    /// How the declared order is checked.
    pub check: OrderCheck,
    /// A parameterised form of the name, if any.
    pub param: Option<Param>,
    /// Whether it forms the Tweedie estimate `x0_hat` and so takes an [`X0Guard`]
    /// (`NAME:clip[=C]`, `NAME:threshold[=P]`; see [`by_name`]).
    pub x0: bool,
    /// Where the method comes from.
    pub citation: &'static str,
    id: Id,
}

impl SolverInfo {
    /// A new solver of this row, with its default settings.
    ///
    /// # Errors
    /// None for the rows of [`SOLVERS`] (their parameters are valid); the `Result` is for
    /// constructors that validate.
    pub fn build<S: State>(&self) -> Result<Box<dyn Solver<S>>> {
        build(self.id)
    }

    /// Whether it samples (runs in reverse time).
    pub fn is_sampler(&self) -> bool {
        self.direction == Direction::Reverse
    }

    /// The name, with the parameterised form if there is one: `ode-dopri5 | ode-dopri5:RTOL[:ATOL]`.
    pub fn usage(&self) -> String {
        match self.param {
            Some(p) => format!("{} | {}:{}", self.name, p.prefix, p.syntax),
            None => self.name.to_string(),
        }
    }

    /// The declared order as text, with the strong order when there is one:
    /// `weak 1, strong 1 (additive noise)`.
    pub fn order_text(&self) -> String {
        match self.strong_order {
            Some(s) => format!("{}, strong {s} (additive noise)", self.order),
            None => self.order.to_string(),
        }
    }
}

/// Builds the registry: the [`SOLVERS`] table and the constructor match, from one list of
/// rows, so that each name is written once.
macro_rules! solvers {
    ($( $id:ident { name: $name:expr, build: $build:expr, $($field:ident: $value:expr),+ $(,)? } )+) => {
        /// Private row identifiers, one per row, for the constructor match.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Id { $($id),+ }

        /// Every named solver, one row each: the samplers in the order examples list
        /// them, and `forward-em`.
        pub const SOLVERS: &[SolverInfo] = &[$( SolverInfo { id: Id::$id, name: $name, $($field: $value),+ } ),+];

        fn build<S: State>(id: Id) -> Result<Box<dyn Solver<S>>> {
            Ok(match id { $( Id::$id => Box::new($build) ),+ })
        }
    };
}

solvers! {
    ForwardEm {
        name: "forward-em",
        build: ForwardEulerMaruyama,
        rust: "ForwardEulerMaruyama",
        update: "`x += f x h + g √h z` (forward SDE)",
        order: Order::Weak(1),
        strong_order: Some(1),
        kind: SolverKind::Stochastic,
        evals: ScoreEvals::Fixed(0),
        grid: DefaultGrid::Uniform,
        direction: Direction::Forward,
        affine: true,
        check: OrderCheck::Measured { steps: &[32, 64, 128, 256, 512], measured: 1.05 },
        param: None,
        x0: false,
        citation: "Maruyama 1955; Kloeden & Platen 1992 §10.2",
    }
    ReverseEm {
        name: "reverse-em",
        build: ReverseEulerMaruyama,
        rust: "ReverseEulerMaruyama",
        update: "`x += (g² s − f x) h + g √h z`",
        order: Order::Weak(1),
        strong_order: None,
        kind: SolverKind::Stochastic,
        evals: ScoreEvals::Fixed(1),
        grid: DefaultGrid::Uniform,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Measured { steps: &[128, 256, 512, 1024, 2048], measured: 1.01 },
        param: None,
        x0: false,
        citation: "Anderson 1982; Song et al. 2021 eq. 6",
    }
    ReverseDiffusion {
        name: "reverse-diffusion",
        build: ReverseDiffusion,
        rust: "ReverseDiffusion",
        update: "`x ← (2 − a_ts) x + G² s + G z`",
        order: Order::Weak(1),
        strong_order: None,
        kind: SolverKind::Stochastic,
        evals: ScoreEvals::Fixed(1),
        grid: DefaultGrid::Uniform,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Measured { steps: &[128, 256, 512, 1024, 2048], measured: 1.01 },
        param: None,
        x0: false,
        citation: "Song et al. 2021 App. E",
    }
    Ancestral {
        name: "ancestral",
        build: Ancestral::with_variance(Variance::Small),
        rust: "Ancestral::with_variance(Variance::Small)",
        update: "posterior mean from Tweedie `x̂₀`, variance `σ_ts² σ_s²/σ_t²`",
        order: Order::Weak(1),
        strong_order: None,
        kind: SolverKind::Stochastic,
        evals: ScoreEvals::Fixed(1),
        grid: DefaultGrid::Uniform,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Measured { steps: &[128, 256, 512, 1024, 2048], measured: 0.93 },
        param: None,
        x0: true,
        citation: "Ho et al. 2020 Alg. 2",
    }
    AncestralLarge {
        name: "ancestral-large",
        build: Ancestral::with_variance(Variance::Large),
        rust: "Ancestral::with_variance(Variance::Large)",
        update: "same mean, variance `σ_ts²` (DDPM β)",
        order: Order::Weak(1),
        strong_order: None,
        kind: SolverKind::Stochastic,
        evals: ScoreEvals::Fixed(1),
        grid: DefaultGrid::Uniform,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Measured { steps: &[128, 256, 512, 1024, 2048], measured: 1.01 },
        param: None,
        x0: true,
        citation: "Ho et al. 2020 §3.2",
    }
    Pc {
        name: "pc",
        build: Pc::new(ReverseDiffusion, Langevin::default()),
        rust: "Pc::new(ReverseDiffusion, Langevin::default())",
        update: "`reverse-diffusion` predictor, then one `langevin` corrector move at `t_next`",
        order: Order::None,
        strong_order: None,
        kind: SolverKind::Stochastic,
        evals: ScoreEvals::Fixed(2),
        grid: DefaultGrid::Uniform,
        direction: Direction::Reverse,
        affine: false,
        check: OrderCheck::Elsewhere(
            "SNR-rule step depends on the batch, so its law is not affine: parts checked (`reverse-diffusion` above, the corrector in tests/langevin.rs)",
        ),
        param: None,
        x0: false,
        citation: "Song et al. 2021 Alg. 1",
    }
    Langevin {
        name: "langevin",
        build: Pc::corrector_only(Langevin::default()).named("langevin"),
        rust: "Pc::corrector_only(Langevin::default())",
        update: "`x += e s + √(2e) z`, `e = 2α (r‖z‖/‖s‖)²`, r = 0.16",
        order: Order::Mcmc,
        strong_order: None,
        kind: SolverKind::Stochastic,
        evals: ScoreEvals::Fixed(1),
        grid: DefaultGrid::Uniform,
        direction: Direction::Reverse,
        affine: false,
        check: OrderCheck::Elsewhere("MCMC at each level: step rule and stationary variance `v/(1 − e/2v)` (tests/langevin.rs)"),
        param: None,
        x0: false,
        citation: "Song et al. 2021 Alg. 4",
    }
    AnnealedLangevin {
        name: "annealed-langevin",
        build: Pc::corrector_only(AnnealedLangevin::default()).named("annealed-langevin"),
        rust: "Pc::corrector_only(AnnealedLangevin::default())",
        update: "same move, `e = 2α (r σ(t))²`",
        order: Order::Mcmc,
        strong_order: None,
        kind: SolverKind::Stochastic,
        evals: ScoreEvals::Fixed(1),
        grid: DefaultGrid::Uniform,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Elsewhere("MCMC at each level: step rule (tests/langevin.rs)"),
        param: None,
        x0: false,
        citation: "Song & Ermon 2019 Alg. 1",
    }
    OdeEuler {
        name: "ode-euler",
        build: OdeEuler,
        rust: "OdeEuler",
        update: "pf-ODE `v = f x − ½ g² s`; `x += h v(x, t)`",
        order: Order::Ode(1),
        strong_order: None,
        kind: SolverKind::Deterministic,
        evals: ScoreEvals::Fixed(1),
        grid: DefaultGrid::Uniform,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Measured { steps: &[64, 128, 256, 512, 1024], measured: 0.99 },
        param: None,
        x0: false,
        citation: "Song et al. 2021 eq. 13; Euler",
    }
    OdeHeun {
        name: "ode-heun",
        build: OdeHeun,
        rust: "OdeHeun",
        update: "explicit trapezoid: `x += h/2 (v(x,t) + v(x + h v, t_next))`",
        order: Order::Ode(2),
        strong_order: None,
        kind: SolverKind::Deterministic,
        evals: ScoreEvals::Fixed(2),
        grid: DefaultGrid::Uniform,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Measured { steps: &[64, 128, 256, 512, 1024], measured: 1.99 },
        param: None,
        x0: false,
        citation: "Song et al. 2021 eq. 13; Heun 1900",
    }
    OdeRk4 {
        name: "ode-rk4",
        build: OdeRk4,
        rust: "OdeRk4",
        update: "classical Runge–Kutta on the pf-ODE",
        order: Order::Ode(4),
        strong_order: None,
        kind: SolverKind::Deterministic,
        evals: ScoreEvals::Fixed(4),
        grid: DefaultGrid::Uniform,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Measured { steps: &[32, 64, 128, 256], measured: 4.07 },
        param: None,
        x0: false,
        citation: "Kutta 1901",
    }
    OdeDopri5 {
        name: "ode-dopri5",
        build: OdeDopri5::default(),
        rust: "OdeDopri5::default()",
        update: "adaptive Dormand–Prince 5(4), FSAL, Hairer's scaled RMS error, rtol = atol = 1e-5 default",
        order: Order::Adaptive(5),
        strong_order: None,
        kind: SolverKind::Deterministic,
        evals: ScoreEvals::Adaptive { min: 7 },
        grid: DefaultGrid::Adaptive,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Elsewhere("adaptive: error ≤ 100 × rtol for rtol 1e-3…1e-9 (tests/ode.rs)"),
        param: Some(Param { prefix: "ode-dopri5", syntax: "RTOL[:ATOL]" }),
        x0: false,
        citation: "Dormand & Prince 1980; Hairer et al. 1993 §II.5",
    }
    Ddim {
        name: "ddim",
        build: Ddim::new(),
        rust: "Ddim::new()",
        update: "`x_s = a_s x̂₀ + σ_s ε̂`, `ε̂ = −σ_t s`",
        order: Order::Ode(1),
        strong_order: None,
        kind: SolverKind::Deterministic,
        evals: ScoreEvals::Fixed(1),
        grid: DefaultGrid::Quadratic,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Measured { steps: &[64, 128, 256, 512, 1024], measured: 0.99 },
        param: None,
        x0: true,
        citation: "Song, Meng & Ermon 2021 eq. 12",
    }
    DdimEta1 {
        name: "ddim-eta1",
        build: Ddim::with_eta(1.0)?,
        rust: "Ddim::with_eta(1.0)",
        update: "`x_s = a_s x̂₀ + √(σ_s² − σ_η²) ε̂ + σ_η z`, `σ_η² = η²` × posterior variance; η = 1 is `ancestral`",
        order: Order::Weak(1),
        strong_order: None,
        kind: SolverKind::Stochastic,
        evals: ScoreEvals::Fixed(1),
        grid: DefaultGrid::Quadratic,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Measured { steps: &[256, 512, 1024, 2048, 4096], measured: 0.99 },
        param: Some(Param { prefix: "ddim-eta", syntax: "ETA" }),
        x0: true,
        citation: "Song, Meng & Ermon 2021",
    }
    Dpm1 {
        name: "dpm1",
        build: DpmSolverPp::<S>::first_order(),
        rust: "DpmSolverPp::first_order()",
        update: "`x_s = (σ_s/σ_t) x − a_s (e^{−h} − 1) x̂₀`, `h = λ_s − λ_t` (= `ddim`)",
        order: Order::Ode(1),
        strong_order: None,
        kind: SolverKind::Deterministic,
        evals: ScoreEvals::Fixed(1),
        grid: DefaultGrid::LogSnr,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Measured { steps: &[64, 128, 256, 512, 1024], measured: 0.99 },
        param: None,
        x0: true,
        citation: "Lu et al. 2022 (DPM-Solver++)",
    }
    Dpm2m {
        name: "dpm2m",
        build: DpmSolverPp::<S>::two_m(),
        rust: "DpmSolverPp::two_m()",
        update: "same with `D = (1 + 1/2r) x̂₀ᵢ₋₁ − 1/2r x̂₀ᵢ₋₂`, `r = hᵢ₋₁/hᵢ`",
        order: Order::Ode(2),
        strong_order: None,
        kind: SolverKind::Deterministic,
        evals: ScoreEvals::Fixed(1),
        grid: DefaultGrid::LogSnr,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Measured { steps: &[64, 128, 256, 512, 1024], measured: 2.00 },
        param: None,
        x0: true,
        citation: "Lu et al. 2022, Alg. 2",
    }
    Dpm3m {
        name: "dpm3m",
        build: DpmSolverPp::<S>::three_m(),
        rust: "DpmSolverPp::three_m()",
        update: "3M as published: `x_s = (σ_s/σ_t) x − a_s (e^{−h} − 1) x̂₀ᵢ₋₁ + a_s ((e^{−h} − 1)/h + 1) D₁ − a_s ((e^{−h} − 1 + h)/h² − ½) D₂` from the last three `x̂₀`; `D₂ ≈ h² x̂₀''/2` gets the weight of `h² x̂₀''`, so it is of order 2 (a smaller constant than 2M)",
        order: Order::Ode(2),
        strong_order: None,
        kind: SolverKind::Deterministic,
        evals: ScoreEvals::Fixed(1),
        grid: DefaultGrid::LogSnr,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Measured { steps: &[64, 128, 256, 512, 1024], measured: 2.03 },
        param: None,
        x0: true,
        citation: "Lu et al. 2022; diffusers' 3M",
    }
    UniPc {
        name: "unipc",
        build: UniPc::<S>::bh2(),
        rust: "UniPc::bh2()",
        update: "UniP-p `x_s = (σ_s/σ_t) x − a_s (e^{−h} − 1) x̂₀ − a_s B(h) Σ ρₖ Dₖ`, then UniC corrects `x_s` with the next step's `x̂₀`; `B(h) = e^h − 1`, p = 2 (`:P`, 1–3; order p + 1)",
        order: Order::Ode(3),
        strong_order: None,
        kind: SolverKind::Deterministic,
        evals: ScoreEvals::Fixed(1),
        grid: DefaultGrid::LogSnr,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Measured { steps: &[32, 64, 128, 256, 512], measured: 2.99 },
        param: Some(Param { prefix: "unipc", syntax: "P" }),
        x0: true,
        citation: "Zhao et al. 2023, Alg. 1–3",
    }
    UniPcBh1 {
        name: "unipc-bh1",
        build: UniPc::<S>::bh1(),
        rust: "UniPc::bh1()",
        update: "same with `B(h) = h`",
        order: Order::Ode(3),
        strong_order: None,
        kind: SolverKind::Deterministic,
        evals: ScoreEvals::Fixed(1),
        grid: DefaultGrid::LogSnr,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Measured { steps: &[32, 64, 128, 256, 512], measured: 3.04 },
        param: Some(Param { prefix: "unipc-bh1", syntax: "P" }),
        x0: true,
        citation: "Zhao et al. 2023, Alg. 1–3",
    }
    Dpm2mUniC {
        name: "dpm2m-unic",
        build: DpmSolverPp::<S>::two_m().with_corrector(Some(UniC::new(Bh::Bh2))),
        rust: "DpmSolverPp::two_m().with_corrector(Some(UniC::new(Bh::Bh2)))",
        update: "`dpm2m`, each result but the last corrected by UniC (`B(h) = e^h − 1`) with the next step's `x̂₀` (= `unipc`)",
        order: Order::Ode(3),
        strong_order: None,
        kind: SolverKind::Deterministic,
        evals: ScoreEvals::Fixed(1),
        grid: DefaultGrid::LogSnr,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Measured { steps: &[32, 64, 128, 256, 512], measured: 2.99 },
        param: None,
        x0: true,
        citation: "Lu et al. 2022; Zhao et al. 2023 §3.2",
    }
    EdmHeun {
        name: "edm-heun",
        build: EdmHeun::new(),
        rust: "EdmHeun::new()",
        update: "Heun on `x̃ = x/a` in `σ̃ = σ/a`, `dx̃/dσ̃ = −σ s`",
        order: Order::Ode(2),
        strong_order: None,
        kind: SolverKind::Deterministic,
        evals: ScoreEvals::Fixed(2),
        grid: DefaultGrid::Karras,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Measured { steps: &[64, 128, 256, 512, 1024], measured: 2.01 },
        param: None,
        x0: false,
        citation: "Karras et al. 2022, Alg. 1",
    }
    EdmHeunChurn {
        name: "edm-heun-churn",
        build: EdmHeun::churned(),
        rust: "EdmHeun::churned()",
        update: "churn `γ = min(S_churn/N, √2−1)` on `[S_tmin, S_tmax]`, then the Heun step; 40, 0.05, 50, 1",
        order: Order::None,
        strong_order: None,
        kind: SolverKind::Stochastic,
        evals: ScoreEvals::Fixed(2),
        grid: DefaultGrid::Karras,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Elsewhere("churn depends on N: Monte Carlo moments vs its exact law (tests/ode.rs)"),
        param: None,
        x0: false,
        citation: "Karras et al. 2022, Alg. 2",
    }
    SaSolver {
        name: "sa-solver",
        build: SaSolver::<S>::sde(),
        rust: "SaSolver::sde()",
        update: "stochastic Adams PC on `λ`, `τ = 1`: `x' = e^{−τ²h} (σ'/σ) x + a' Σ b_j x̂₀ⱼ + σ' √(1 − e^{−2τ²h}) z`, `b_j = (1+τ²)∫ e^{−(1+τ²)(λ'−λ)} L_j`; predictor 3, corrector 4 (reuses the next evaluation)",
        order: Order::Weak(2),
        strong_order: None,
        kind: SolverKind::Stochastic,
        evals: ScoreEvals::Fixed(1),
        grid: DefaultGrid::LogSnr,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Measured { steps: &[32, 64, 128, 256, 512], measured: 2.01 },
        param: Some(Param { prefix: "sa-solver", syntax: "TAU[:SIGMA_LO:SIGMA_HI]" }),
        x0: true,
        citation: "Xue et al. 2023 (SA-Solver), eqs. 15, 18",
    }
    SaSolverOde {
        name: "sa-solver-ode",
        build: SaSolver::<S>::ode(),
        rust: "SaSolver::ode()",
        update: "`sa-solver` with `τ = 0`: the data-prediction exponential Adams predictor (3) – corrector (4)",
        order: Order::Ode(4),
        strong_order: None,
        kind: SolverKind::Deterministic,
        evals: ScoreEvals::Fixed(1),
        grid: DefaultGrid::LogSnr,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Measured { steps: &[128, 256, 512, 1024], measured: 3.93 },
        param: None,
        x0: true,
        citation: "Xue et al. 2023 (SA-Solver, τ = 0)",
    }
    Restart {
        name: "restart",
        build: Restart::default(),
        rust: "Restart::default()",
        update: "`edm-heun`; at the grid point nearest `σ̃_min`, K times: exact forward transition to `σ̃_max`, `N_r` Heun steps back; [0.06, 0.30], K = 2, N_r = 3",
        order: Order::None,
        strong_order: None,
        kind: SolverKind::Stochastic,
        evals: ScoreEvals::Adaptive { min: 2 },
        grid: DefaultGrid::Karras,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Elsewhere(
            "fixed `N_r` restart steps: an error floor in N; exact law vs hand recursion, order 2 with `N_r` refined, Monte Carlo law (tests/restart.rs)",
        ),
        param: Some(Param { prefix: "restart", syntax: "SIGMA_MIN:SIGMA_MAX[:K[:N_R]]" }),
        x0: false,
        citation: "Xu et al. 2023 (Restart), Alg. 1",
    }
    AdaptiveSde {
        name: "adaptive-sde",
        build: AdaptiveSde::default(),
        rust: "AdaptiveSde::default()",
        update: "EM proposal `x'`, improved Euler `x'' = (x + EM(x', t−h))/2`; accept if the largest per-sample RMS of `(x' − x'') / max(atol, rtol · max(abs x', abs x'_prev))` is `E ≤ 1`; `h ← 0.9 h E^−0.9`; a retry reuses the Brownian path; rtol = 0.05, atol = 0.0078",
        order: Order::Adaptive(1),
        strong_order: None,
        kind: SolverKind::Stochastic,
        evals: ScoreEvals::Adaptive { min: 2 },
        grid: DefaultGrid::Adaptive,
        direction: Direction::Reverse,
        affine: false,
        check: OrderCheck::Elsewhere("adaptive: Monte Carlo law vs exact, error falls with rtol (tests/adaptive_sde.rs)"),
        param: Some(Param { prefix: "adaptive-sde", syntax: "RTOL[:ATOL]" }),
        x0: false,
        citation: "Jolicoeur-Martineau et al. 2021, Alg. 1",
    }
    FlowEm {
        name: "flow-em",
        build: FlowEulerMaruyama::default(),
        rust: "FlowEulerMaruyama::default()",
        update: "reverse SDE with chosen `g_s = c σ(t)`: `x ← (1 − f h) x + (g² + g_s²)/2 h s + g_s √h z`; c = 1 default, c = 0 is `ode-euler`",
        order: Order::Weak(1),
        strong_order: None,
        kind: SolverKind::Stochastic,
        evals: ScoreEvals::Fixed(1),
        grid: DefaultGrid::Uniform,
        direction: Direction::Reverse,
        affine: true,
        check: OrderCheck::Measured { steps: &[128, 256, 512, 1024, 2048], measured: 0.99 },
        param: Some(Param { prefix: "flow-em", syntax: "C" }),
        x0: false,
        citation: "Song et al. 2021 App. D.1; Ma et al. 2024 (SiT)",
    }
}

/// A solver of a parameterised form (`ddim-eta:0.5`, `ode-dopri5:1e-4:1e-6`).
fn build_param<S: State>(info: &SolverInfo, args: &str) -> Result<Box<dyn Solver<S>>> {
    let parse = |what: &'static str, v: &str| -> Result<f64> {
        v.parse::<f64>().map_err(|_| Error::param(what, v, "not a number"))
    };
    match info.id {
        Id::DdimEta1 => Ok(Box::new(Ddim::with_eta(parse("eta", args)?)?)),
        Id::UniPc | Id::UniPcBh1 => {
            let p = args.parse::<usize>().map_err(|_| Error::param("order", args, "UniPC's order p is 1, 2 or 3"))?;
            let bh = if info.id == Id::UniPc { Bh::Bh2 } else { Bh::Bh1 };
            Ok(Box::new(UniPc::<S>::new(p, bh)?))
        }
        Id::FlowEm => Ok(Box::new(FlowEulerMaruyama::new(parse("c", args)?)?)),
        Id::OdeDopri5 => {
            let (rtol, atol) = match args.split_once(':') {
                Some((r, a)) => (parse("rtol", r)?, parse("atol", a)?),
                None => (parse("rtol", args)?, parse("rtol", args)?),
            };
            Ok(Box::new(OdeDopri5::new(rtol, atol)?))
        }
        Id::SaSolver => {
            let parts: Vec<&str> = args.split(':').collect();
            let tau = parse("tau", parts[0])?;
            let solver = SaSolver::new(tau, 3, 4)?;
            match parts[1..] {
                [] => Ok(Box::new(solver)),
                [lo, hi] => Ok(Box::new(solver.with_interval(parse("sigma_lo", lo)?, parse("sigma_hi", hi)?)?)),
                _ => Err(Error::param("sa-solver", args, "give TAU or TAU:SIGMA_LO:SIGMA_HI")),
            }
        }
        Id::Restart => {
            let parts: Vec<&str> = args.split(':').collect();
            let count = |what: &'static str, v: &str| -> Result<usize> {
                v.parse::<usize>().map_err(|_| Error::param(what, v, "not a whole number"))
            };
            let (k, n) = match parts[..] {
                [_, _] => (2, 3),
                [_, _, k] => (count("restarts", k)?, 3),
                [_, _, k, n] => (count("restarts", k)?, count("restart steps", n)?),
                _ => return Err(Error::param("restart", args, "give SIGMA_MIN:SIGMA_MAX[:K[:N_R]]")),
            };
            Ok(Box::new(Restart::new(parse("sigma_min", parts[0])?, parse("sigma_max", parts[1])?, k, n)?))
        }
        Id::AdaptiveSde => {
            let (rtol, atol) = match args.split_once(':') {
                Some((r, a)) => (parse("rtol", r)?, parse("atol", a)?),
                None => (parse("rtol", args)?, AdaptiveSde::DEFAULT_ATOL),
            };
            Ok(Box::new(AdaptiveSde::new(rtol, atol)?))
        }
        _ => Err(unknown(info.name)),
    }
}

const fn count_samplers() -> usize {
    let (mut i, mut n) = (0, 0);
    while i < SOLVERS.len() {
        if matches!(SOLVERS[i].direction, Direction::Reverse) {
            n += 1;
        }
        i += 1;
    }
    n
}

const N_SAMPLERS: usize = count_samplers();

const fn sampler_names() -> [&'static str; N_SAMPLERS] {
    let mut out = [""; N_SAMPLERS];
    let (mut i, mut n) = (0, 0);
    while i < SOLVERS.len() {
        if matches!(SOLVERS[i].direction, Direction::Reverse) {
            out[n] = SOLVERS[i].name;
            n += 1;
        }
        i += 1;
    }
    out
}

const SAMPLER_NAMES: [&str; N_SAMPLERS] = sampler_names();

/// The names of the reverse-time samplers in [`SOLVERS`], in table order (derived from it).
pub const SAMPLERS: &[&str] = &SAMPLER_NAMES;

fn unknown(name: &str) -> Error {
    let names = SOLVERS.iter().map(|s| s.name.to_string());
    let forms = SOLVERS.iter().filter_map(|s| s.param.map(|p| format!("{}:{}", p.prefix, p.syntax)));
    let known: Vec<String> = names.chain(forms).collect();
    Error::UnknownSolver { name: name.to_string(), known: known.join(", ") }
}

/// A solver name taken apart (see [`by_name`]).
struct Spec<'a> {
    info: &'static SolverInfo,
    /// The positional parameter (`0.5` of `ddim-eta:0.5`).
    positional: Option<&'a str>,
    /// The x0 guard option, `(key, value)`, not yet validated.
    guard: Option<(&'a str, Option<&'a str>)>,
    /// Whether `lower-order-final` was given.
    lower_order_final: bool,
}

/// The option item that lowers a multistep solver's order on the last steps.
const LOWER_ORDER_FINAL: &str = "lower-order-final";

/// Takes `NAME[:ITEM[,ITEM]...]` apart: each `ITEM` is an x0 guard option
/// (`clip[=C]`, `threshold[=P]`), `lower-order-final`, or the one positional parameter of
/// a parameterised form.
fn parse(name: &str) -> Result<Spec<'_>> {
    let Some((head, args)) = name.split_once(':') else {
        let info = SOLVERS.iter().find(|s| s.name == name).ok_or_else(|| unknown(name))?;
        return Ok(Spec { info, positional: None, guard: None, lower_order_final: false });
    };
    let (mut positional, mut guard, mut lower_order_final) = (None, None, false);
    for item in args.split(',') {
        let (key, value) = match item.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (item, None),
        };
        if X0Guard::from_option(key, value).is_some() {
            if guard.is_some() {
                return Err(Error::param("x0 guard", args, "clip and threshold exclude each other: give one"));
            }
            guard = Some((key, value));
        } else if item == LOWER_ORDER_FINAL {
            lower_order_final = true;
        } else if value.is_some() {
            return Err(Error::param(
                "option",
                item,
                "unknown; solver options are clip[=C] and threshold[=P] (x0 clipping, dynamic thresholding) \
                 and lower-order-final (multistep solvers)",
            ));
        } else if positional.is_none() {
            positional = Some(item);
        } else {
            return Err(Error::param("parameter", item, "a solver name takes one positional parameter"));
        }
    }
    let info = match positional {
        Some(_) => SOLVERS.iter().find(|s| s.param.is_some_and(|p| p.prefix == head)),
        None => SOLVERS.iter().find(|s| s.name == head),
    };
    Ok(Spec { info: info.ok_or_else(|| unknown(name))?, positional, guard, lower_order_final })
}

/// The names of the rows that take an [`X0Guard`], comma-separated (for messages).
pub fn x0_solver_names() -> String {
    SOLVERS.iter().filter(|s| s.x0).map(|s| s.name).collect::<Vec<_>>().join(", ")
}

/// The names of the rows whose solvers take `lower-order-final`
/// ([`Solver::set_lower_order_final`]), comma-separated (for messages).
pub fn lower_order_final_names() -> String {
    let takes = |s: &&SolverInfo| {
        s.build::<ndarray::Array2<f64>>().is_ok_and(|mut solver| solver.set_lower_order_final(true).is_ok())
    };
    SOLVERS.iter().filter(takes).map(|s| s.name).collect::<Vec<_>>().join(", ")
}

/// The row of a name: a name in [`SOLVERS`], or a parameterised form (`ddim-eta:0.5`,
/// `ode-dopri5:1e-4`), which gives the row that declares that form; x0 guard options
/// (`ddim:clip=1`) leave the row as it is.
///
/// # Errors
/// [`Error::UnknownSolver`] listing the known names; [`Error::InvalidParameter`] for an
/// unknown option or more than one positional parameter.
pub fn solver_info(name: &str) -> Result<&'static SolverInfo> {
    parse(name).map(|spec| spec.info)
}

/// A solver from its name (see [`SOLVERS`] and the README's "Solvers" table), with
/// default settings; `ddim-eta:ETA`, `ode-dopri5:RTOL[:ATOL]`, `unipc:P` /
/// `unipc-bh1:P` (UniPC-p, p = 1, 2, 3) and `adaptive-sde:RTOL[:ATOL]` (ATOL defaults to
/// 0.0078) set a parameter.
///
/// Solvers that form `x0_hat` ([`SolverInfo::x0`]) also take an [`X0Guard`] after a colon,
/// or after a comma behind a positional parameter: `ddim:clip` (= `clip=1`),
/// `ancestral:clip=2`, `dpm2m:threshold` (= `threshold=0.995`), `ddim-eta:0.5,threshold=0.99`.
///
/// The multistep solvers (DPM-Solver++ and UniPC, see [`lower_order_final_names`]) take
/// `lower-order-final` the same way (diffusers' `lower_order_final`, at any step count):
/// the order is capped by the steps left, so the last step is first order (and a
/// third-order method's step before it second order), everything before unchanged:
/// `dpm2m:lower-order-final`, `unipc:3,lower-order-final,threshold`.
///
/// # Errors
/// [`Error::UnknownSolver`] listing the known names; [`Error::InvalidParameter`]
/// for a bad parameter of a parameterised name, a bad or unknown option, both `clip` and
/// `threshold`, a guard on a solver that forms no `x0_hat`, or `lower-order-final` on a
/// solver that is not multistep.
pub fn by_name<S: State>(name: &str) -> Result<Box<dyn Solver<S>>> {
    let spec = parse(name)?;
    let guard = match spec.guard {
        Some((key, value)) => X0Guard::from_option(key, value).unwrap_or(Ok(X0Guard::Off))?,
        None => X0Guard::Off,
    };
    let mut solver = match spec.positional {
        Some(args) => build_param(spec.info, args)?,
        None => spec.info.build()?,
    };
    // A solver that forms no x0_hat refuses a guard (`SolverInfo::x0` declares which do;
    // solvers/tests/x0_guard.rs checks the two agree).
    solver.set_x0_guard(guard)?;
    if solver.set_lower_order_final(spec.lower_order_final).is_err() {
        let names = lower_order_final_names();
        let why = format!("`{}` is not a multistep solver; lower-order final steps apply to {names}", solver.name());
        return Err(Error::param("lower-order-final", name, why));
    }
    Ok(solver)
}

/// The README's "Solvers" table, rendered from [`SOLVERS`] (markdown, one row each).
/// `solvers/tests/readme.rs` checks the README contains it verbatim.
pub fn solvers_markdown_table() -> String {
    let mut out = String::from(
        "| name | constructor | update (h > 0 from the grid) | order | measured (or how it is checked) | kind | \
         score evals / step | grid | reference |\n|---|---|---|---|---|---|---:|---|---|\n",
    );
    for s in SOLVERS {
        let name = match s.param {
            Some(p) => format!("`{}` (`{}:{}`)", s.name, p.prefix, p.syntax),
            None => format!("`{}`", s.name),
        };
        let measured = match s.check {
            OrderCheck::Measured { measured, .. } => format!("{measured:.2}"),
            OrderCheck::Elsewhere(why) => why.to_string(),
        };
        out.push_str(&format!(
            "| {name} | `{}` | {} | {} | {measured} | {} | {} | {} | {} |\n",
            s.rust,
            s.update,
            s.order_text(),
            s.kind,
            s.evals,
            s.grid.name(),
            s.citation
        ));
    }
    out
}

/// One line on the x0 guard options and the solvers that take them (markdown), for the
/// README's "Solvers" section (`solvers/tests/readme.rs` checks it is there verbatim) and
/// `scoresde solvers`.
pub fn x0_guard_note() -> String {
    let names: Vec<String> = SOLVERS.iter().filter(|s| s.x0).map(|s| format!("`{}`", s.name)).collect();
    format!(
        "x0 guard: {} form the Tweedie estimate `x̂₀ = (x + σ_t² s) / a_t` and take \
         `NAME:clip[=C]` (clip `x̂₀` to `[−C, C]`, default 1) or `NAME:threshold[=P]` (dynamic \
         thresholding, Saharia et al. 2022: per sample `s = max(1, quantile_P |x̂₀|)`, \
         `x̂₀ ← clip(x̂₀, −s, s)/s`, default P = 0.995), also after a positional parameter \
         (`ddim-eta:0.5,clip`); the final denoising step applies the same guard. Off by default; \
         for data scaled to about [−1, 1].",
        names.join(", ")
    )
}

/// One line on the `lower-order-final` option and the solvers that take it (markdown), for
/// `scoresde solvers` and the README.
pub fn lower_order_final_note() -> String {
    let names: Vec<String> = lower_order_final_names().split(", ").map(|n| format!("`{n}`")).collect();
    format!(
        "lower-order-final: the multistep solvers {} take `NAME:lower-order-final` (diffusers' \
         `lower_order_final`, here at any step count): the order is capped by the steps left, so the last \
         step is first order and a third-order method's step before it second order; also with a \
         positional parameter or a guard (`unipc:3,lower-order-final,clip`).",
        names.join(", ")
    )
}
