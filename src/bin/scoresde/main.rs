//! `scoresde`: train score networks by denoising score matching and sample
//! them with any integrator.
//!
//! ```text
//! scoresde demo                      # train on eight-gaussians, sample with every solver, figures + table
//! scoresde train --data two-moons --steps 4000 --out out/moons
//! scoresde sample --model out/moons --solver dpm2m --steps 20
//! scoresde train --conditional --out out/cond            # class-conditional score (eight-gaussians)
//! scoresde sample --model out/cond --class 3 --guidance 3 --cfg
//! scoresde train-classifier --out out/cond               # noise-conditional classifier, OUT/classifier
//! scoresde sample --model out/cond --class 3 --guidance 3 --classifier out/cond/classifier
//! scoresde eval --model out/moons
//! scoresde plot --model out/moons
//! scoresde solvers                   # every integrator and time grid by name
//! ```

mod common;
mod demo;
mod eval;
mod plot;
mod sample;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "scoresde", version, about = "Score-based generative modelling with SDEs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train a score network by denoising score matching (Ctrl-C saves; --resume continues).
    Train(train::TrainArgs),
    /// Train a noise-conditional classifier p(y | x_t, t) for classifier guidance
    /// (saved as OUT/classifier; same options as `train`).
    TrainClassifier(train::TrainArgs),
    /// Draw samples from a trained model with any integrator.
    Sample(sample::SampleArgs),
    /// Sample quality (sliced W2, MMD) against held-out data; score error for mixture data.
    Eval(eval::EvalArgs),
    /// Redraw the figures of a run folder.
    Plot(plot::PlotArgs),
    /// Train on the default 2-D set, sample with every integrator, write figures and a table.
    Demo(demo::DemoArgs),
    /// List the integrators (name, order, kind, score evaluations per step, default grid,
    /// citation) and the time grids.
    Solvers,
}

fn main() {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Train(a) => train::train(a).map(|t| {
            if t.outcome == scoresde::train::Outcome::Interrupted {
                std::process::exit(130);
            }
        }),
        Command::TrainClassifier(a) => {
            if a.conditional {
                eprintln!("error: --conditional is for `scoresde train`; a classifier takes no labels as input");
                std::process::exit(2);
            }
            let a = train::TrainArgs { classifier: true, ..a.clone() };
            train::train(&a).map(|t| {
                if t.outcome == scoresde::train::Outcome::Interrupted {
                    std::process::exit(130);
                }
            })
        }
        Command::Sample(a) => sample::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Plot(a) => plot::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Solvers => {
            list_solvers();
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        let interrupted = e.chain().any(|c| {
            matches!(c.downcast_ref::<scoresde::solvers::Error>(), Some(scoresde::solvers::Error::Stopped { .. }))
        });
        std::process::exit(if interrupted { 130 } else { 1 });
    }
}

/// The registry's table (`scoresde_solvers::SOLVERS`), one line per solver.
fn list_solvers() {
    use scoresde::solvers::SOLVERS;
    let rows: Vec<[String; 6]> = SOLVERS
        .iter()
        .map(|s| {
            let name = if s.is_sampler() { s.usage() } else { format!("{} (forward SDE)", s.usage()) };
            [name, s.order_text(), s.kind.to_string(), s.evals.to_string(), s.grid.name().into(), s.citation.into()]
        })
        .collect();
    let head = ["name", "order", "kind", "evals/step", "grid", "citation"].map(String::from);
    let width = |i: usize| rows.iter().chain([&head]).map(|r| r[i].chars().count()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..5).map(width).collect();
    for row in std::iter::once(&head).chain(&rows) {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(&widths) {
            line.push_str(&format!("{cell:<w$}  "));
        }
        line.push_str(&row[5]);
        println!("{line}");
    }
    println!("\ngrids: {}", scoresde::solvers::GRIDS.join(", "));
}
