//! The convergence study shared by `examples/convergence.rs` and `examples/paper_figs.rs`:
//! every integrator at several step counts on (a) 1-D Gaussian data, error = exact W2
//! between the scheme's exact output law and `p_eps` (no Monte Carlo), and (b) the
//! 8-Gaussian ring with its exact score, error = sliced W2 to exact samples of `p_eps`.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::OnceLock;

use ndarray::Array2;
use rand::SeedableRng;
use scoresde::metrics::sliced_wasserstein2;
use scoresde::plot::{line_chart, LineChartOptions, Series};
use scoresde::solvers::law::{scheme_law_1d, Gauss1d};
use scoresde::solvers::prelude::*;
use scoresde::solvers::{solver_info, DefaultGrid, Order, Rng, ScoreEvals, SolverInfo, SolverKind, SOLVERS};

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

/// Every sampler row but the corrector-only (MCMC) ones.
fn every_entry() -> Vec<Entry> {
    SOLVERS
        .iter()
        .filter(|s| s.is_sampler() && s.order != Order::Mcmc)
        .map(|info| Entry { name: info.name, info })
        .collect()
}

/// Narrows the study (before it runs; once): `names` (empty: every entry of [`entries`]'s
/// default), `steps` (empty: [`STEPS`]), `budgets` (empty: [`BUDGETS`]).
///
/// # Errors
/// An unknown name, or a second call.
#[allow(dead_code)] // `paper_figs` runs the whole study
pub fn select(names: &[String], steps: &[usize], budgets: &[usize]) -> anyhow::Result<()> {
    let mut entries = Vec::new();
    for name in names {
        let info = solver_info(name)?;
        by_name::<Array2<f64>>(name)?;
        anyhow::ensure!(info.is_sampler(), "{name} is not a sampler");
        entries.push(Entry { name: Box::leak(name.clone().into_boxed_str()), info });
    }
    let chosen = Selection {
        entries: if entries.is_empty() { every_entry() } else { entries },
        steps: if steps.is_empty() { STEPS.to_vec() } else { steps.to_vec() },
        budgets: if budgets.is_empty() { BUDGETS.to_vec() } else { budgets.to_vec() },
    };
    SELECTION.set(chosen).map_err(|_| anyhow::anyhow!("the study's selection is already fixed"))
}

/// The integrators of the study: by default every sampler of the registry ([`SOLVERS`]),
/// each on the grid its paper uses, except the corrector-only Langevin samplers (MCMC at
/// each level, not discretisations that converge with the step count); or those given
/// to [`select`]. `affine` rows also enter the Gaussian study, whose exact law needs an
/// affine step.
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
pub const STEPS: [usize; 10] = [2, 3, 5, 10, 20, 50, 100, 200, 500, 1000];
/// Tolerances (rtol = atol) of the adaptive runs.
pub const TOLS: [f64; 7] = [1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8];
/// Tolerances (rtol = atol) of the adaptive SDE runs: weak order 1, so the steps grow
/// like 1/tol (about 2000 evaluations at 1e-2 for 1-D data).
pub const SDE_TOLS: [f64; 5] = [0.2, 0.1, 0.05, 0.02, 0.01];
/// Score-evaluation budgets of the markdown table.
pub const BUDGETS: [usize; 6] = [10, 20, 50, 100, 200, 1000];
const MAX_NFE: usize = 2000;
/// The mixture runs stop earlier: past ~100 evaluations they sit on the metric's noise floor.
const MAX_NFE_MIXTURE: usize = 1000;
/// Independent exact sample sets of the noise-floor estimate.
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

/// One run of the study: a label (step count or tolerance), the solver and its grid.
type Run = (String, Box<dyn Solver<Array2<f64>>>, TimeGrid);

/// The runs of one entry, one per step count or, for an adaptive solver, per tolerance
/// (its parameterised form `NAME:TOL`, one grid interval).
fn runs(entry: &Entry, sde: &VpSde, max_nfe: usize) -> anyhow::Result<Vec<Run>> {
    let eps = sde.t_eps();
    let mut out = Vec::new();
    // Adaptive step-size solvers run per tolerance; a solver whose evaluations per step merely
    // vary (`restart`) runs per step count like the fixed-step ones.
    if let (ScoreEvals::Adaptive { .. }, DefaultGrid::Adaptive) = (entry.evals, entry.grid) {
        let param = entry.param.ok_or_else(|| anyhow::anyhow!("{}: adaptive without a tolerance form", entry.name))?;
        let tols: &[f64] = if entry.kind == SolverKind::Stochastic { &SDE_TOLS } else { &TOLS };
        for &tol in tols {
            let solver = by_name::<Array2<f64>>(&format!("{}:{tol:e}:{tol:e}", param.prefix))?;
            out.push((format!("tol {tol:e}"), solver, entry.grid.build(sde, 1.0, eps, 1)?));
        }
        return Ok(out);
    }
    let per_step = entry.evals.min();
    for &n in steps() {
        if n * per_step <= max_nfe {
            out.push((n.to_string(), by_name::<Array2<f64>>(entry.name)?, entry.grid.build(sde, 1.0, eps, n)?));
        }
    }
    Ok(out)
}

/// 1-D Gaussian data `N(mu, s0^2)`: exact W2 of each scheme's output law to `p_eps`.
pub fn gaussian_study(mu: f64, s0: f64) -> anyhow::Result<Vec<Point>> {
    let sde = VpSde::default();
    let exact = Gauss1d::marginal(&sde, mu, s0, sde.t_eps());
    let mut points = Vec::new();
    for entry in entries().filter(|e| e.affine) {
        for (label, mut solver, grid) in runs(&entry, &sde, MAX_NFE)? {
            let (law, nfe) = scheme_law_1d(solver.as_mut(), &sde, mu, s0, &grid, false)?;
            let error = law.w2(&exact);
            let grid_name = entry.grid.name();
            points.push(Point { problem: "gaussian", solver: entry.name, grid: grid_name, steps: label, nfe, error });
        }
    }
    Ok(points)
}

/// The 8-Gaussian ring: sliced W2 of `n` samples (from exact `p_T` samples) to `n`
/// exact samples of `p_eps`; also returns the exact-vs-exact noise floor (mean and sd
/// over [`FLOOR_SETS`] independent exact sets).
pub fn mixture_study(n: usize, n_proj: usize, seed: u64) -> anyhow::Result<(Vec<Point>, (f64, f64))> {
    let sde = VpSde::default();
    let data = GaussianMixture::ring(8, 2.0, 0.08)?;
    let score = ExactScore::new(data.clone(), sde);
    let reference = data.marginal(&sde, sde.t_eps()).sample(n, &mut Rng::seed_from_u64(seed + 1));
    let mut floors = Vec::new();
    for k in 0..FLOOR_SETS {
        let other = data.marginal(&sde, sde.t_eps()).sample(n, &mut Rng::seed_from_u64(seed + 100 + k));
        floors.push(sliced_wasserstein2(other.view(), reference.view(), n_proj, seed)?);
    }
    let mean = floors.iter().sum::<f64>() / floors.len() as f64;
    let sd = (floors.iter().map(|f| (f - mean).powi(2)).sum::<f64>() / (floors.len() - 1) as f64).sqrt();
    let floor = (mean, sd);
    let x_t = data.marginal(&sde, 1.0).sample(n, &mut Rng::seed_from_u64(seed + 3));
    let mut points = Vec::new();
    for entry in entries() {
        for (label, mut solver, grid) in runs(&entry, &sde, MAX_NFE_MIXTURE)? {
            let mut noise = GaussianNoise::new(seed + 4);
            let run = match Sampler::new(&sde, &score).run(solver.as_mut(), x_t.clone(), &grid, &mut noise) {
                Ok(run) => run,
                Err(err) => {
                    eprintln!("  {} ({label}): {err}; point left out", entry.name);
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
    Ok((points, floor))
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
    points.iter().filter(|p| p.solver == solver && p.nfe <= budget).map(|p| p.error).reduce(f64::min)
}

fn cell(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{v:.2e}"))
}

/// The solver with the smallest error within `budget` evaluations.
pub fn best_solver(points: &[Point], budget: usize) -> Option<(&'static str, f64)> {
    entries()
        .filter_map(|e| best_within(points, e.name, budget).map(|v| (e.name, v)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
}

/// Writes `convergence.csv`, `convergence.md`, `convergence.png` (Gaussian, exact W2) and
/// `quality_vs_nfe.png` (mixture, sliced W2) into `out`.
pub fn write_outputs(
    out: &Path,
    gaussian: &[Point],
    mixture: &[Point],
    floor: (f64, f64),
    setup: &str,
) -> anyhow::Result<()> {
    let mut csv = String::from("problem,solver,grid,steps_or_tol,score_evals,error,metric\n");
    for p in gaussian.iter().chain(mixture) {
        let metric = if p.problem == "gaussian" { "exact_w2" } else { "sliced_w2" };
        // A name with options (`unipc:3,lower-order-final`) is quoted.
        let solver = if p.solver.contains(',') { format!("\"{}\"", p.solver) } else { p.solver.to_string() };
        writeln!(csv, "{},{solver},{},{},{},{:.6e},{metric}", p.problem, p.grid, p.steps, p.nfe, p.error)?;
    }
    std::fs::write(out.join("convergence.csv"), csv)?;

    let mut md = String::new();
    writeln!(md, "# Convergence study\n\n{setup}\n")?;
    writeln!(md, "## Gaussian data: exact W2 to p_eps (no Monte Carlo)\n")?;
    let budget_head: Vec<String> = budgets().iter().map(|b| format!("≤{b} NFE")).collect();
    writeln!(md, "| solver | grid | order (theory) | fitted order | {} |", budget_head.join(" | "))?;
    writeln!(md, "|---|---|---|---:|{}", "---:|".repeat(budgets().len()))?;
    for e in entries().filter(|e| e.affine) {
        let fit = fitted_order(gaussian, e.name).map_or("—".into(), |o| format!("{o:.2}"));
        let cells: Vec<String> = budgets().iter().map(|b| cell(best_within(gaussian, e.name, *b))).collect();
        // A parameterised form's order is not its row's (`unipc:3`): the table leaves it out.
        let order = if e.name == e.info.name { e.order_text() } else { "—".into() };
        let grid = e.grid.name();
        writeln!(md, "| `{}` | {grid} | {order} | {fit} | {} |", e.name, cells.join(" | "))?;
    }
    writeln!(md, "\n## 8-Gaussian ring: sliced W2 to exact samples of p_eps\n")?;
    writeln!(
        md,
        "Noise floor: exact vs exact samples of the same size, over {FLOOR_SETS} independent sets: \
         **{:.3} ± {:.3}** (mean ± sd). Differences below the floor's spread are Monte-Carlo noise, \
         mostly from how many samples land in each mode; deterministic solvers all map the same p_1 \
         samples, so they converge to one common value.\n",
        floor.0, floor.1
    )?;
    writeln!(md, "| solver | grid | {} |", budget_head.join(" | "))?;
    writeln!(md, "|---|---|{}", "---:|".repeat(budgets().len()))?;
    for e in entries() {
        let cells: Vec<String> = budgets().iter().map(|b| cell(best_within(mixture, e.name, *b))).collect();
        writeln!(md, "| `{}` | {} | {} |", e.name, e.grid.name(), cells.join(" | "))?;
    }
    writeln!(md, "\n## Best quality per score evaluation\n")?;
    for b in [10, 20, 50] {
        if let (Some(g), Some(m)) = (best_solver(gaussian, b), best_solver(mixture, b)) {
            writeln!(md, "* ≤{b} NFE: Gaussian `{}` (W2 {:.2e}); mixture `{}` (SW2 {:.3})", g.0, g.1, m.0, m.1)?;
        }
    }
    std::fs::write(out.join("convergence.md"), md)?;

    let series = |points: &[Point], exact_only: bool| -> Vec<Series> {
        entries()
            .filter(|e| !exact_only || e.affine)
            .map(|e| {
                let pts: Vec<(f64, f64)> = points
                    .iter()
                    .filter(|p| p.solver == e.name && p.error > 0.0 && p.error.is_finite())
                    .map(|p| (p.nfe as f64, p.error))
                    .collect();
                Series::new(format!("{} ({})", e.name, e.grid.name()), pts)
            })
            .filter(|s| !s.points.is_empty())
            .collect()
    };
    let opts = LineChartOptions {
        title: Some(
            "Convergence on 1-D Gaussian data N(1.5, 0.3²), VP-SDE, exact score\n\
             exact W2 between each scheme's output law and p_eps vs score evaluations"
                .into(),
        ),
        x_label: "score evaluations (NFE)".into(),
        y_label: "W2 to p_eps".into(),
        log_x: true,
        log_y: true,
        size: (980, 640),
        legend_px: 260,
        ..Default::default()
    };
    line_chart(out.join("convergence.png"), &series(gaussian, true), &opts)?;
    let mut floor_line = series(mixture, false);
    let (lo, hi) = mixture.iter().fold((f64::INFINITY, 0.0f64), |(l, h), p| (l.min(p.nfe as f64), h.max(p.nfe as f64)));
    floor_line.push(Series::new("floor: exact vs exact", vec![(lo, floor.0), (hi, floor.0)]));
    floor_line.push(Series::new("floor + sd", vec![(lo, floor.0 + floor.1), (hi, floor.0 + floor.1)]));
    floor_line.push(Series::new("floor − sd", vec![(lo, floor.0 - floor.1), (hi, floor.0 - floor.1)]));
    let opts = LineChartOptions {
        title: Some(
            "Quality vs score evaluations: 8 Gaussians (radius 2, std 0.08), VP-SDE, exact score\n\
             sliced W2 to exact samples of p_eps"
                .into(),
        ),
        y_label: "sliced W2 to exact samples".into(),
        ..opts
    };
    line_chart(out.join("quality_vs_nfe.png"), &floor_line, &opts)?;
    Ok(())
}
