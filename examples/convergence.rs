//! The convergence study: every integrator at several step counts (or tolerances),
//! error against score evaluations, fitted orders.
//!
//! ```text
//! cargo run --release --example convergence [-- --out paper-figs --n 20000 --seed 0]
//! cargo run --release --example convergence -- --out /tmp/few --n 2000 \
//!     --solvers dpm2m unipc unipc:3,lower-order-final --steps 5,6,8,10,20 --budgets 5,6,8,10,20
//! ```
//!
//! * 1-D Gaussian data `N(1.5, 0.3^2)`, VP-SDE, exact score: every scheme is affine in its
//!   start and noise, so its output law is exactly Gaussian; it is read off the solver
//!   (`scoresde_solvers::law::scheme_law_1d`) and compared with `p_eps` by the exact
//!   W2 between Gaussians. No Monte Carlo; orders are fitted on these errors.
//! * The 8-Gaussian ring with its exact score: `--n` samples started from exact `p_T`
//!   samples, sliced W2 to `--n` exact samples of `p_eps`, with the exact-vs-exact floor.
//!
//! * The schemes whose law is not affine (`adaptive-sde`, `pc`) on the same Gaussian data by
//!   Monte Carlo (200 000 chains; W2 between the sample moments' Gaussian and `p_eps`).
//! * A few solvers on the same data under the flow-matching SDE (`FlowSde`), exact W2.
//!
//! Writes `convergence.csv`, `convergence.md`, `convergence.png` (deterministic samplers),
//! `convergence_sde.png` (stochastic ones), `convergence_flow.png`, `quality_vs_nfe.png`
//! and `quality_vs_nfe_sde.png` (the ring, deterministic and stochastic).

#[path = "common/study.rs"]
mod study;

use std::path::PathBuf;

use clap::Parser;

/// Run the convergence study.
#[derive(Parser, Debug)]
struct Args {
    /// Output folder (created if missing).
    #[arg(long, default_value = "paper-figs")]
    out: PathBuf,
    /// Samples of the mixture runs.
    #[arg(long, default_value_t = 20_000)]
    n: usize,
    /// Seed of every draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Only these solvers (names as `--solver` takes them, parameterised forms and options
    /// included, space-separated); default: every sampler of the registry and the study's extra
    /// parameterised forms (`unipc:3`, `sa-solver:0.2`, ...).
    #[arg(long, num_args = 1..)]
    solvers: Vec<String>,
    /// Step counts of the fixed-step runs (comma-separated); default 2, 3, 4, 5, 6, 8, 10, ..., 1000.
    #[arg(long, value_delimiter = ',')]
    steps: Vec<usize>,
    /// Score-evaluation budgets of the tables (comma-separated); default 5, 6, 8, 10, 20, ..., 1000.
    #[arg(long, value_delimiter = ',')]
    budgets: Vec<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!("seed: {}", args.seed);
    anyhow::ensure!(args.n >= 2, "--n must be at least 2");
    anyhow::ensure!(args.steps.iter().all(|&n| n >= 1), "--steps must be at least 1");
    study::select(&args.solvers, &args.steps, &args.budgets)?;
    std::fs::create_dir_all(&args.out)?;
    let study = study::run(1.5, 0.3, args.n, 128, args.seed)?;
    let setup = format!(
        "`cargo run --release --example convergence` (seed {}): VP-SDE (beta 0.1 → 20), from exact p_1 \
         to eps = 1e-3, no final denoising, each solver on the time grid of its paper; fixed-step solvers at \
         {:?} steps (at most 2000 score evaluations; 1000 on the mixture), Dormand–Prince at rtol = atol in {:?} \
         and the adaptive SDE solver at {:?}, each on one grid step. \
         Gaussian: data N(1.5, 0.3²), error = exact W2 between the scheme's output law and p_eps. \
         Mixture: 8 Gaussians (radius 2, std 0.08), n = {} samples, sliced W2 (128 directions) to n exact samples. \
         Fitted order: least-squares slope of −ln W2 against ln NFE over runs with ≥ 50 steps (tolerance ≤ 1e-4). \
         A cell is the best error among runs within that many score evaluations.",
        args.seed,
        study::steps(),
        study::TOLS,
        study::SDE_TOLS,
        args.n
    );
    study::write_outputs(&args.out, &study, &setup)?;
    for e in study::entries().filter(|e| e.affine) {
        if let Some(o) = study::fitted_order(&study.gaussian, e.name) {
            println!("fitted order {:<16} {o:.2} (declared {})", e.name, e.order_text());
        }
    }
    println!("{}", std::fs::read_to_string(args.out.join("convergence.md"))?);
    println!(
        "wrote {}/convergence.{{csv,md,png}}, convergence_{{sde,flow}}.png and quality_vs_nfe{{,_sde}}.png",
        args.out.display()
    );
    Ok(())
}
