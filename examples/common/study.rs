//! The convergence study shared by `examples/convergence.rs` and `examples/paper_figs.rs`:
//! every integrator at several step counts on (a) 1-D Gaussian data, error = exact W2
//! between the scheme's exact output law and `p_eps` (no Monte Carlo), for the schemes
//! whose law is not affine a Monte-Carlo lower bound on it; (b) the same data under the
//! flow-matching SDE ([`FlowSde`]) for a few solvers; and (c) the 8-Gaussian ring with its
//! exact score, error = sliced W2 to exact samples of `p_eps`.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;

use ndarray::Array2;
use rand::SeedableRng;
use scoresde::metrics::sliced_wasserstein2;
use scoresde::plot::{line_chart, LineChartOptions, Series};
use scoresde::solvers::law::{scheme_law_1d, Gauss1d, Gauss1dScore};
use scoresde::solvers::prelude::*;
use scoresde::solvers::{solver_info, DefaultGrid, FlowSde, Order, Rng, ScoreEvals, SolverInfo, SolverKind, SOLVERS};

/// One integrator of the study: the name [`by_name`] takes (a row's name, or a
/// parameterised form such as `unipc:3` or `dpm3m:lower-order-final`) and its row, whose
/// fields it derefs to.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    /// The name it is built from and shown by.
    pub name: &'static str,
    info: &'static SolverInfo,
}

impl std::ops::Deref for Entry {
    type Target = SolverInfo;
    fn deref(&self) -> &SolverInfo {
        self.info
    }
}

impl Entry {
    /// The entry of `name`, checked to build and to sample.
    fn new(name: &str) -> anyhow::Result<Self> {
        let info = solver_info(name)?;
        by_name::<Array2<f64>>(name)?;
        anyhow::ensure!(info.is_sampler(), "{name} is not a sampler");
        Ok(Entry { name: Box::leak(name.to_owned().into_boxed_str()), info })
    }

    /// Whether it is stochastic (its row's kind; a parameterised form keeps it).
    pub fn stochastic(&self) -> bool {
        self.kind == SolverKind::Stochastic
    }
}

/// What the study runs: its integrators, step counts and the budgets of the tables.
struct Selection {
    entries: Vec<Entry>,
    steps: Vec<usize>,
    budgets: Vec<usize>,
}

static SELECTION: OnceLock<Selection> = OnceLock::new();

fn selection() -> &'static Selection {
    SELECTION.get_or_init(|| Selection { entries: every_entry(), steps: STEPS.to_vec(), budgets: BUDGETS.to_vec() })
}

/// Parameterised forms the default study adds after their rows: the short-run option
/// `lower-order-final` (diffusers' default below 15 steps), UniPC-3 (order 4) and
/// SA-Solver at smaller noise scales `tau` (the registry's row has `tau = 1`).
pub const EXTRA: [&str; 7] = [
    "dpm2m:lower-order-final",
    "unipc:lower-order-final",
    "unipc:3",
    "unipc-bh1:3,lower-order-final",
    "sa-solver:0.1",
    "sa-solver:0.2",
    "sa-solver:0.5",
];

/// Every sampler row but the corrector-only (MCMC) ones, each followed by its [`EXTRA`] forms.
fn every_entry() -> Vec<Entry> {
    let mut out = Vec::new();
    for info in SOLVERS.iter().filter(|s| s.is_sampler() && s.order != Order::Mcmc) {
        out.push(Entry { name: info.name, info });
        for name in EXTRA {
            match solver_info(name) {
                Ok(row) if row.name == info.name => match Entry::new(name) {
                    Ok(e) => out.push(e),
                    Err(err) => eprintln!("  {name}: {err}; left out"),
                },
                Ok(_) => {}
                Err(err) => eprintln!("  {name}: {err}; left out"),
            }
        }
    }
    out
}

/// Narrows the study (before it runs; once): `names` (empty: every entry of [`entries`]'s
/// default), `steps` (empty: [`STEPS`]), `budgets` (empty: [`BUDGETS`]).
///
/// # Errors
/// An unknown name, or a second call.
#[allow(dead_code)] // `paper_figs` runs the whole study
pub fn select(names: &[String], steps: &[usize], budgets: &[usize]) -> anyhow::Result<()> {
    let entries = names.iter().map(|n| Entry::new(n)).collect::<anyhow::Result<Vec<_>>>()?;
    let chosen = Selection {
        entries: if entries.is_empty() { every_entry() } else { entries },
        steps: if steps.is_empty() { STEPS.to_vec() } else { steps.to_vec() },
        budgets: if budgets.is_empty() { BUDGETS.to_vec() } else { budgets.to_vec() },
    };
    SELECTION.set(chosen).map_err(|_| anyhow::anyhow!("the study's selection is already fixed"))
}

/// The integrators of the study: by default every sampler of the registry ([`SOLVERS`])
/// and the [`EXTRA`] forms, each on the grid its paper uses, except the corrector-only
/// Langevin samplers (MCMC at each level, not discretisations that converge with the step
/// count); or those given to [`select`]. `affine` rows enter the exact Gaussian study,
/// whose exact law needs an affine step; the others its Monte-Carlo part.
pub fn entries() -> impl Iterator<Item = Entry> {
    selection().entries.iter().copied()
}

/// The step counts of the fixed-step runs ([`STEPS`] unless [`select`]ed).
pub fn steps() -> &'static [usize] {
    &selection().steps
}

/// The score-evaluation budgets of the markdown tables ([`BUDGETS`] unless [`select`]ed).
pub fn budgets() -> &'static [usize] {
    &selection().budgets
}

/// Step counts of the fixed-step runs (capped at 2000 score evaluations).
pub const STEPS: [usize; 15] = [2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100, 200, 500, 1000];
/// Tolerances (rtol = atol) of the adaptive runs.
pub const TOLS: [f64; 7] = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8];
/// Tolerances (rtol = atol) of the adaptive SDE runs: weak order 1, so the steps grow
/// like 1/tol (about 2000 evaluations at 1e-2 for 1-D data).
pub const SDE_TOLS: [f64; 5] = [0.2, 0.1, 0.05, 0.02, 0.01];
/// Score-evaluation budgets of the markdown table.
pub const BUDGETS: [usize; 8] = [5, 6, 8, 10, 20, 50, 100, 1000];
/// The budgets of the "best per score evaluation" lines.
pub const HEADLINE: [usize; 5] = [6, 8, 10, 20, 50];
/// The solvers of the flow-matching table (those of them in the selection).
pub const FLOW: [&str; 12] = [
    "ode-euler",
    "ode-heun",
    "ode-rk4",
    "ddim",
    "dpm2m",
    "unipc",
    "unipc:3",
    "sa-solver-ode",
    "reverse-em",
    "ancestral",
    "sa-solver:0.2",
    "flow-em",
];
/// Samples of the Monte-Carlo Gaussian runs (the schemes whose law is not affine).
pub const GAUSS_MC_N: usize = 200_000;
const MAX_NFE: usize = 2000;
/// The mixture runs stop earlier: past ~100 evaluations they sit on the metric's noise floor.
const MAX_NFE_MIXTURE: usize = 1000;
/// Independent exact sample sets of the noise-floor estimates.
const FLOOR_SETS: u64 = 8;

/// One run: which problem, solver, grid, steps (or tolerance), evaluations, error.
#[derive(Debug, Clone)]
pub struct Point {
    pub problem: &'static str,
    pub solver: &'static str,
    pub grid: &'static str,
    pub steps: String,
    pub nfe: usize,
    pub error: f64,
}

/// Everything the study measures.
#[derive(Debug, Clone)]
pub struct Study {
    /// 1-D Gaussian data, VP-SDE, exact W2 (the affine schemes).
    pub gaussian: Vec<Point>,
    /// 1-D Gaussian data, VP-SDE, Monte-Carlo moment W2 (the schemes that are not affine).
    pub gaussian_mc: Vec<Point>,
    /// The Monte-Carlo metric's floor: exact samples against the exact law (mean, sd).
    pub gaussian_mc_floor: (f64, f64),
    /// 1-D Gaussian data, flow-matching SDE, exact W2 (the [`FLOW`] solvers).
    pub flow: Vec<Point>,
    /// The 8-Gaussian ring, sliced W2.
    pub mixture: Vec<Point>,
    /// The sliced-W2 floor: exact against exact samples (mean, sd).
    pub mixture_floor: (f64, f64),
}

/// Runs every part of the study on data `N(mu, s0^2)` and the ring (`n` samples,
/// `n_proj` directions, `seed`), printing each part's time.
///
/// # Errors
/// A solver that cannot be built, or a metric that fails.
pub fn run(mu: f64, s0: f64, n: usize, n_proj: usize, seed: u64) -> anyhow::Result<Study> {
    let vp = VpSde::default();
    let flow_sde = FlowSde::default();
    let timed = |what: &str, start: std::time::Instant, runs: usize| {
        println!("{what}: {runs} runs ({:.1} s)", start.elapsed().as_secs_f64());
    };
    let start = std::time::Instant::now();
    let gaussian = exact_study("gaussian", &vp, mu, s0, entries().filter(|e| e.affine))?;
    timed("gaussian study (exact law)", start, gaussian.len());
    let start = std::time::Instant::now();
    let (gaussian_mc, gaussian_mc_floor) = gaussian_mc_study(mu, s0, GAUSS_MC_N, seed)?;
    timed("gaussian study (Monte Carlo)", start, gaussian_mc.len());
    let start = std::time::Instant::now();
    let flow = exact_study("flow", &flow_sde, mu, s0, entries().filter(|e| e.affine && FLOW.contains(&e.name)))?;
    timed("flow study (exact law)", start, flow.len());
    let start = std::time::Instant::now();
    let (mixture, mixture_floor) = mixture_study(n, n_proj, seed)?;
    timed("mixture study", start, mixture.len());
    Ok(Study { gaussian, gaussian_mc, gaussian_mc_floor, flow, mixture, mixture_floor })
}

/// One run of the study: a label (step count or tolerance), the solver and its grid.
type Run = (String, Box<dyn Solver<Array2<f64>>>, TimeGrid);

/// The runs of one entry from `sde.t_max()` to `sde.t_eps()`, one per step count or, for
/// an adaptive solver, per tolerance (its parameterised form `NAME:TOL`, one grid interval).
fn runs(entry: &Entry, sde: &dyn Sde, max_nfe: usize) -> anyhow::Result<Vec<Run>> {
    let (start, eps) = (sde.t_max(), sde.t_eps());
    let mut out = Vec::new();
    // Adaptive step-size solvers run per tolerance; a solver whose evaluations per step merely
    // vary (`restart`) runs per step count like the fixed-step ones.
    if let (ScoreEvals::Adaptive { .. }, DefaultGrid::Adaptive) = (entry.evals, entry.grid) {
        let param = entry.param.ok_or_else(|| anyhow::anyhow!("{}: adaptive without a tolerance form", entry.name))?;
        let tols: &[f64] = if entry.stochastic() { &SDE_TOLS } else { &TOLS };
        for &tol in tols {
            let solver = by_name::<Array2<f64>>(&format!("{}:{tol:e}:{tol:e}", param.prefix))?;
            out.push((format!("tol {tol:e}"), solver, entry.grid.build(sde, start, eps, 1)?));
        }
        return Ok(out);
    }
    let per_step = entry.evals.min();
    for &n in steps() {
        if n * per_step <= max_nfe {
            out.push((n.to_string(), by_name::<Array2<f64>>(entry.name)?, entry.grid.build(sde, start, eps, n)?));
        }
    }
    Ok(out)
}

/// 1-D Gaussian data `N(mu, s0^2)` under `sde`: exact W2 of each (affine) scheme's output
/// law to `p_eps`. A run that fails is reported and left out.
fn exact_study(
    problem: &'static str,
    sde: &dyn Sde,
    mu: f64,
    s0: f64,
    chosen: impl Iterator<Item = Entry>,
) -> anyhow::Result<Vec<Point>> {
    let exact = Gauss1d::marginal(sde, mu, s0, sde.t_eps());
    let mut points = Vec::new();
    for entry in chosen {
        for (label, mut solver, grid) in runs(&entry, sde, MAX_NFE)? {
            match scheme_law_1d(solver.as_mut(), sde, mu, s0, &grid, false) {
                Ok((law, nfe)) => points.push(Point {
                    problem,
                    solver: entry.name,
                    grid: entry.grid.name(),
                    steps: label,
                    nfe,
                    error: law.w2(&exact),
                }),
                Err(err) => eprintln!("  {problem}: {} ({label}): {err}; point left out", entry.name),
            }
        }
    }
    Ok(points)
}

/// `n` draws of `law`, shape (n, 1).
fn draw(law: &Gauss1d, n: usize, seed: u64) -> Array2<f64> {
    let z = GaussianNoise::new(seed).normal(&Array2::<f64>::zeros((n, 1)));
    z.mapv(|v| law.mean + law.var.sqrt() * v)
}

/// The Gaussian with the sample mean and (unbiased) variance of `x`'s one column.
fn moments(x: &Array2<f64>) -> Gauss1d {
    let n = x.nrows() as f64;
    let mean = x.sum() / n;
    let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    Gauss1d { mean, var }
}

/// Mean and sd of `values`.
fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    (mean, (values.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt())
}

/// 1-D Gaussian data `N(mu, s0^2)`, VP-SDE, for the schemes whose law is not affine (step
/// sizes that depend on the batch): `n` chains from exact `p_1` samples, error = W2
/// between `N(sample mean, sample variance)` and `p_eps`. In 1-D, `W2^2 >= (Δ mean)^2 +
/// (Δ sd)^2` for any two laws, so this is a lower bound on the W2 of the scheme's law
/// (up to Monte-Carlo noise). Also returns the metric's floor: the same statistic of `n`
/// exact `p_eps` samples (mean and sd over [`FLOOR_SETS`] sets); its mean is about
/// `sd(p_eps) sqrt(3 / 2n)`.
fn gaussian_mc_study(mu: f64, s0: f64, n: usize, seed: u64) -> anyhow::Result<(Vec<Point>, (f64, f64))> {
    let sde = VpSde::default();
    let exact = Gauss1d::marginal(&sde, mu, s0, sde.t_eps());
    let floors: Vec<f64> = (0..FLOOR_SETS).map(|k| moments(&draw(&exact, n, seed + 200 + k)).w2(&exact)).collect();
    let score = Gauss1dScore::new(&sde, mu, s0);
    let x_t = draw(&Gauss1d::marginal(&sde, mu, s0, sde.t_max()), n, seed + 5);
    let mut points = Vec::new();
    for entry in entries().filter(|e| !e.affine) {
        for (label, mut solver, grid) in runs(&entry, &sde, MAX_NFE)? {
            let mut noise = GaussianNoise::new(seed + 6);
            match Sampler::new(&sde, &score).run(solver.as_mut(), x_t.clone(), &grid, &mut noise) {
                Ok(run) => points.push(Point {
                    problem: "gaussian-mc",
                    solver: entry.name,
                    grid: entry.grid.name(),
                    steps: label,
                    nfe: run.score_evals,
                    error: moments(&run.x).w2(&exact),
                }),
                Err(err) => eprintln!("  gaussian-mc: {} ({label}): {err}; point left out", entry.name),
            }
        }
    }
    Ok((points, mean_sd(&floors)))
}

/// The 8-Gaussian ring: sliced W2 of `n` samples (from exact `p_T` samples) to `n`
/// exact samples of `p_eps`; also returns the exact-vs-exact noise floor (mean and sd
/// over [`FLOOR_SETS`] independent exact sets).
fn mixture_study(n: usize, n_proj: usize, seed: u64) -> anyhow::Result<(Vec<Point>, (f64, f64))> {
    let sde = VpSde::default();
    let data = GaussianMixture::ring(8, 2.0, 0.08)?;
    let score = ExactScore::new(data.clone(), sde);
    let reference = data.marginal(&sde, sde.t_eps()).sample(n, &mut Rng::seed_from_u64(seed + 1));
    let mut floors = Vec::new();
    for k in 0..FLOOR_SETS {
        let other = data.marginal(&sde, sde.t_eps()).sample(n, &mut Rng::seed_from_u64(seed + 100 + k));
        floors.push(sliced_wasserstein2(other.view(), reference.view(), n_proj, seed)?);
    }
    let x_t = data.marginal(&sde, 1.0).sample(n, &mut Rng::seed_from_u64(seed + 3));
    let mut points = Vec::new();
    for entry in entries() {
        for (label, mut solver, grid) in runs(&entry, &sde, MAX_NFE_MIXTURE)? {
            let mut noise = GaussianNoise::new(seed + 4);
            let run = match Sampler::new(&sde, &score).run(solver.as_mut(), x_t.clone(), &grid, &mut noise) {
                Ok(run) => run,
                Err(err) => {
                    eprintln!("  mixture: {} ({label}): {err}; point left out", entry.name);
                    continue;
                }
            };
            let error = sliced_wasserstein2(run.x.view(), reference.view(), n_proj, seed)?;
            points.push(Point {
                problem: "mixture",
                solver: entry.name,
                grid: entry.grid.name(),
                steps: label,
                nfe: run.score_evals,
                error,
            });
        }
    }
    Ok((points, mean_sd(&floors)))
}

/// Fitted order `p` in `error ~ NFE^-p`: least squares over the asymptotic runs (at least
/// 50 steps, or tolerance <= 1e-4 for the adaptive solver) with error above 1e-12.
pub fn fitted_order(points: &[Point], solver: &str) -> Option<f64> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.solver == solver && p.error > 1e-12 && p.error.is_finite())
        .filter(|p| match p.steps.parse::<usize>() {
            Ok(n) => n >= 50,
            Err(_) => p.steps.trim_start_matches("tol ").parse::<f64>().is_ok_and(|t| t <= 1e-4),
        })
        .map(|p| ((p.nfe as f64).ln(), p.error.ln()))
        .collect();
    if pts.len() < 3 {
        return None;
    }
    let n = pts.len() as f64;
    let (mx, my) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
    let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = pts.iter().map(|p| (p.0 - mx).powi(2)).sum();
    Some(-sxy / sxx)
}

/// The smallest error among runs of `solver` with at most `budget` score evaluations.
pub fn best_within(points: &[Point], solver: &str, budget: usize) -> Option<f64> {
    points
        .iter()
        .filter(|p| p.solver == solver && p.nfe <= budget && p.error.is_finite())
        .map(|p| p.error)
        .reduce(f64::min)
}

fn cell(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.2e}"))
}

/// The run with the smallest error within `budget` evaluations among `points` that pass `keep`.
pub fn best_run(points: &[Point], budget: usize, keep: impl Fn(&Point) -> bool) -> Option<&Point> {
    points
        .iter()
        .filter(|p| p.nfe <= budget && p.error.is_finite() && keep(p))
        .min_by(|a, b| a.error.total_cmp(&b.error))
}

/// Whether the study's entry named `solver` is stochastic.
fn is_stochastic(solver: &str) -> bool {
    entries().any(|e| e.name == solver && e.stochastic())
}

/// A markdown table of `points`: one row per entry in `chosen` with runs, its grid, the
/// declared and fitted orders when `orders`, and the best error within each budget.
fn table(md: &mut String, points: &[Point], chosen: impl Iterator<Item = Entry>, orders: bool) -> std::fmt::Result {
    let budget_head: Vec<String> = budgets().iter().map(|b| format!("≤{b} NFE")).collect();
    let (head, rule) = if orders { (" order (theory) | fitted order |", "---|---:|") } else { ("", "") };
    writeln!(md, "| solver | kind | grid |{head} {} |", budget_head.join(" | "))?;
    writeln!(md, "|---|---|---|{rule}{}", "---:|".repeat(budgets().len()))?;
    for e in chosen.filter(|e| points.iter().any(|p| p.solver == e.name)) {
        let cells: Vec<String> = budgets().iter().map(|b| cell(best_within(points, e.name, *b))).collect();
        let kind = if e.stochastic() { "SDE" } else { "ODE" };
        let orders = if orders {
            let fit = fitted_order(points, e.name).map_or("—".into(), |o| format!("{o:.2}"));
            // A parameterised form's order is not its row's (`unipc:3`): the table leaves it out.
            let order = if e.name == e.info.name { e.order_text() } else { "—".into() };
            format!(" {order} | {fit} |")
        } else {
            String::new()
        };
        writeln!(md, "| `{}` | {kind} | {} |{orders} {} |", e.name, e.grid.name(), cells.join(" | "))?;
    }
    Ok(())
}

/// The series of `points` whose solver passes `keep`, one per entry, labelled with the grid
/// (and `tag`).
fn series(points: &[Point], keep: impl Fn(&str) -> bool, tag: &str) -> Vec<Series> {
    entries()
        .filter(|e| keep(e.name))
        .map(|e| {
            let pts: Vec<(f64, f64)> = points
                .iter()
                .filter(|p| p.solver == e.name && p.error > 0.0 && p.error.is_finite())
                .map(|p| (p.nfe as f64, p.error))
                .collect();
            Series::new(format!("{} ({}){tag}", e.name, e.grid.name()), pts)
        })
        .filter(|s| !s.points.is_empty())
        .collect()
}

/// The lower envelope of `points` passing `keep`: at each NFE, the best error within it.
fn envelope(points: &[Point], keep: impl Fn(&Point) -> bool) -> Vec<(f64, f64)> {
    let mut pts: Vec<&Point> = points.iter().filter(|p| keep(p) && p.error > 0.0 && p.error.is_finite()).collect();
    pts.sort_by_key(|p| p.nfe);
    let mut out: Vec<(f64, f64)> = Vec::new();
    for p in pts {
        let best = out.last().map_or(p.error, |l| l.1.min(p.error));
        match out.last_mut() {
            Some(l) if l.0 == p.nfe as f64 => l.1 = best,
            _ => out.push((p.nfe as f64, best)),
        }
    }
    out
}

/// Horizontal lines at the floor's mean and mean ± sd across the NFE range of `points`.
fn floor_lines(points: &[Point], floor: (f64, f64), what: &str) -> Vec<Series> {
    let (lo, hi) = points.iter().fold((f64::INFINITY, 0.0f64), |(l, h), p| (l.min(p.nfe as f64), h.max(p.nfe as f64)));
    vec![
        Series::new(format!("floor: {what}"), vec![(lo, floor.0), (hi, floor.0)]),
        Series::new("floor + sd", vec![(lo, floor.0 + floor.1), (hi, floor.0 + floor.1)]),
        Series::new("floor − sd", vec![(lo, floor.0 - floor.1), (hi, floor.0 - floor.1)]),
    ]
}

/// Writes `convergence.csv`, `convergence.md` and the figures into `out`:
/// `convergence.png` (Gaussian, exact W2, deterministic samplers), `convergence_sde.png`
/// (the stochastic ones, with the best deterministic error as a reference),
/// `convergence_flow.png` (the flow-matching SDE), `quality_vs_nfe.png` and
/// `quality_vs_nfe_sde.png` (the ring, sliced W2, deterministic and stochastic).
pub fn write_outputs(out: &Path, study: &Study, setup: &str) -> anyhow::Result<()> {
    let Study { gaussian, gaussian_mc, gaussian_mc_floor, flow, mixture, mixture_floor } = study;
    let mut csv = String::from("problem,solver,grid,steps_or_tol,score_evals,error,metric\n");
    for p in gaussian.iter().chain(gaussian_mc).chain(flow).chain(mixture) {
        let metric = match p.problem {
            "gaussian" | "flow" => "exact_w2",
            "gaussian-mc" => "moment_w2",
            _ => "sliced_w2",
        };
        // A name with options (`unipc:3,lower-order-final`) is quoted.
        let solver = if p.solver.contains(',') { format!("\"{}\"", p.solver) } else { p.solver.to_string() };
        writeln!(csv, "{},{solver},{},{},{},{:.6e},{metric}", p.problem, p.grid, p.steps, p.nfe, p.error)?;
    }
    std::fs::write(out.join("convergence.csv"), csv)?;

    let mut md = String::new();
    writeln!(md, "# Convergence study\n\n{setup}\n")?;
    writeln!(md, "## Gaussian data: exact W2 to p_eps (no Monte Carlo)\n")?;
    table(&mut md, gaussian, entries().filter(|e| e.affine), true)?;
    writeln!(md, "\n## Best quality per score evaluation\n")?;
    writeln!(
        md,
        "Gaussian: exact W2; ring: sliced W2 (noise floor {:.3} ± {:.3}).\n",
        mixture_floor.0, mixture_floor.1
    )?;
    for b in HEADLINE {
        if let (Some(g), Some(m)) = (best_run(gaussian, b, |_| true), best_run(mixture, b, |_| true)) {
            writeln!(
                md,
                "* ≤{b} NFE: Gaussian `{}` (W2 {:.2e}, {} NFE); ring `{}` (SW2 {:.3}, {} NFE)",
                g.solver, g.error, g.nfe, m.solver, m.error, m.nfe
            )?;
        }
    }
    writeln!(md, "\n## Stochastic against deterministic samplers (Gaussian, exact W2)\n")?;
    for b in [10, 20, 50, 100] {
        let ode = best_run(gaussian, b, |p| !is_stochastic(p.solver));
        let sde = best_run(gaussian, b, |p| is_stochastic(p.solver));
        if let (Some(o), Some(s)) = (ode, sde) {
            writeln!(
                md,
                "* ≤{b} NFE: best SDE `{}` W2 {:.2e} ({} NFE), best ODE `{}` W2 {:.2e} ({} NFE): ratio {:.2}",
                s.solver,
                s.error,
                s.nfe,
                o.solver,
                o.error,
                o.nfe,
                s.error / o.error
            )?;
        }
        // At exactly `b` evaluations: a "best within" can be a lucky step count where the
        // mean and variance errors cross zero.
        let ode = best_run(gaussian, b, |p| p.nfe == b && !is_stochastic(p.solver));
        let sde = best_run(gaussian, b, |p| p.nfe == b && is_stochastic(p.solver));
        if let (Some(o), Some(s)) = (ode, sde) {
            writeln!(
                md,
                "  * at exactly {b} NFE: SDE `{}` W2 {:.2e}, ODE `{}` W2 {:.2e}: ratio {:.2}",
                s.solver,
                s.error,
                o.solver,
                o.error,
                s.error / o.error
            )?;
        }
    }
    if !gaussian_mc.is_empty() {
        writeln!(md, "\n## Gaussian data, schemes whose law is not affine: Monte Carlo\n")?;
        writeln!(
            md,
            "Step sizes that depend on the batch (`adaptive-sde`: the worst sample's error sets the step; `pc`: \
             the SNR rule) make the output law non-Gaussian, so it is not read off exactly. n = {GAUSS_MC_N} chains \
             from exact p_1 samples; error = W2 between N(sample mean, sample variance) and p_eps, a lower bound on \
             the scheme's W2 (in 1-D, W2² ≥ Δmean² + Δsd² for any two laws). Floor (the same statistic of n exact \
             p_eps samples, {FLOOR_SETS} sets): **{:.2e} ± {:.2e}**; smaller differences are Monte-Carlo noise. \
             `adaptive-sde` runs at rtol = atol in {SDE_TOLS:?}; its NFE is what it counted on this batch.\n",
            gaussian_mc_floor.0, gaussian_mc_floor.1
        )?;
        table(&mut md, gaussian_mc, entries().filter(|e| !e.affine), false)?;
    }
    if !flow.is_empty() {
        writeln!(md, "\n## Flow matching: Gaussian data under the rectified-flow SDE, exact W2\n")?;
        writeln!(
            md,
            "`FlowSde` (x_t = (1 − t) x₀ + t z), data N(1.5, 0.3²), exact score, from t_max = 0.999 to eps = 1e-3, \
             each solver on its own grid built for this SDE; error = exact W2 between the output law and p_eps.\n"
        )?;
        table(&mut md, flow, entries().filter(|e| FLOW.contains(&e.name)), true)?;
    }
    writeln!(md, "\n## 8-Gaussian ring: sliced W2 to exact samples of p_eps\n")?;
    writeln!(
        md,
        "Noise floor: exact vs exact samples of the same size, over {FLOOR_SETS} independent sets: \
         **{:.3} ± {:.3}** (mean ± sd). Differences below the floor's spread are Monte-Carlo noise, \
         mostly from how many samples land in each mode; deterministic solvers all map the same p_1 \
         samples, so they converge to one common value.\n",
        mixture_floor.0, mixture_floor.1
    )?;
    table(&mut md, mixture, entries(), false)?;
    std::fs::write(out.join("convergence.md"), md)?;

    let opts = LineChartOptions {
        title: Some(
            "Deterministic samplers on 1-D Gaussian data N(1.5, 0.3²), VP-SDE, exact score\n\
             exact W2 between each scheme's output law and p_eps vs score evaluations"
                .into(),
        ),
        x_label: "score evaluations (NFE)".into(),
        y_label: "W2 to p_eps".into(),
        log_x: true,
        log_y: true,
        size: (980, 680),
        legend_px: 320,
        ..Default::default()
    };
    let ode_gauss = series(gaussian, |s| !is_stochastic(s), "");
    line_chart(out.join("convergence.png"), &ode_gauss, &opts)?;
    let mut sde_gauss = series(gaussian, is_stochastic, "");
    sde_gauss.extend(series(gaussian_mc, |_| true, " MC"));
    let best_ode = envelope(gaussian, |p| !is_stochastic(p.solver));
    if !best_ode.is_empty() {
        sde_gauss.push(Series::new("best deterministic (envelope)", best_ode));
    }
    if !sde_gauss.is_empty() {
        let title = "Stochastic samplers on 1-D Gaussian data N(1.5, 0.3²), VP-SDE, exact score\n\
                     exact W2 (MC: moment W2 of 200 000 chains, a lower bound) vs score evaluations";
        line_chart(
            out.join("convergence_sde.png"),
            &sde_gauss,
            &LineChartOptions { title: Some(title.into()), ..opts.clone() },
        )?;
    }
    let flow_series = series(flow, |_| true, "");
    if !flow_series.is_empty() {
        let title = "Flow matching: 1-D Gaussian data N(1.5, 0.3²), rectified-flow SDE, exact score\n\
                     exact W2 between each scheme's output law and p_eps vs score evaluations";
        line_chart(
            out.join("convergence_flow.png"),
            &flow_series,
            &LineChartOptions { title: Some(title.into()), ..opts.clone() },
        )?;
    }
    let ring = |stochastic: bool| -> Vec<Series> {
        let mut s = series(mixture, |name| is_stochastic(name) == stochastic, "");
        if !s.is_empty() {
            s.extend(floor_lines(mixture, *mixture_floor, "exact vs exact"));
        }
        s
    };
    let ring_opts = |kind: &str| LineChartOptions {
        title: Some(format!(
            "{kind} samplers: 8 Gaussians (radius 2, std 0.08), VP-SDE, exact score\n\
             sliced W2 to exact samples of p_eps vs score evaluations"
        )),
        y_label: "sliced W2 to exact samples".into(),
        ..opts.clone()
    };
    let (ode_ring, sde_ring) = (ring(false), ring(true));
    if !ode_ring.is_empty() {
        line_chart(out.join("quality_vs_nfe.png"), &ode_ring, &ring_opts("Deterministic"))?;
    }
    if !sde_ring.is_empty() {
        line_chart(out.join("quality_vs_nfe_sde.png"), &sde_ring, &ring_opts("Stochastic"))?;
    }
    Ok(())
}
