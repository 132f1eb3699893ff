//! `scoresde`: train score networks by denoising score matching and sample
//! them with any integrator.
//!
//! ```text
//! scoresde demo                      # train on eight-gaussians, sample with every solver, figures + table
//! scoresde train --data two-moons --steps 4000 --out out/moons
//! scoresde sample --model out/moons --solver dpm2m --steps 20
//! scoresde sample --model out/moons --shard 0/2 -n 10000   # and 1/2 elsewhere, then:
//! scoresde merge-shards out/moons                          # samples-...-seed0.npy
//! scoresde train --conditional --out out/cond            # class-conditional score (eight-gaussians)
//! scoresde sample --model out/cond --class 3 --guidance 3 --cfg
//! scoresde train-classifier --out out/cond               # noise-conditional classifier, OUT/classifier
//! scoresde sample --model out/cond --class 3 --guidance 3 --classifier out/cond/classifier
//! scoresde eval --model out/moons
//! scoresde train-features --data images.npy --labels labels.npy --out out/img   # OUT/features, for eval's image table
//! scoresde plot --model out/moons
//! scoresde solvers                   # every integrator and time grid by name
//! ```
//!
//! Modules: `common` (helpers every subcommand shares: device, Ctrl-C, run
//! folders, tables), `plot` (the figures of a run, and `scoresde plot`), then
//! one module per subcommand. Only this file decides exit codes.

mod common;
mod demo;
mod eval;
mod features;
mod plot;
mod sample;
mod shard;
mod torchscript;
mod train;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use common::{CtrlC, Status};

/// Exit code of a failed run.
const EXIT_FAILED: u8 = 1;
/// Exit code of a command line that asks for something contradictory.
const EXIT_USAGE: u8 = 2;

#[derive(Parser, Debug)]
#[command(name = "scoresde", version, about = "Score-based generative modelling with SDEs")]
struct Cli {
    /// Threads for tensor work (libtorch's intra-op pool) and for the host-side
    /// parallel loops (rayon): N from 1 to 1024, or 0 for each library's own default
    /// (one per core). Small models on a shared CPU run fastest with 1 (README, "Threads").
    #[arg(long, global = true, value_name = "N", default_value_t = common::DEFAULT_THREADS.into(),
          allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(0..=i64::from(common::MAX_THREADS)))]
    threads: i64,
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
    /// Train a convolutional classifier of labelled images (a .npy of images and
    /// one of labels) whose features `eval` uses for the image metrics (saved as OUT/features).
    TrainFeatures(features::TrainFeaturesArgs),
    /// Draw samples from a trained model with any integrator.
    Sample(sample::SampleArgs),
    /// Join the shards of a `sample --shard K/N` run into its samples file, in order,
    /// after checking that they are all of one run, each once.
    MergeShards(shard::MergeArgs),
    /// Sample quality (sliced W2, MMD) against held-out data; score error for mixture data;
    /// image metrics (classifier FID, coverage, confidence, memorisation) with a feature classifier.
    Eval(eval::EvalArgs),
    /// Redraw the figures of a run folder.
    Plot(plot::PlotArgs),
    /// Train on the default 2-D set, sample with every integrator, write figures and a table.
    Demo(demo::DemoArgs),
    /// List the integrators (name, order, kind, score evaluations per step, default grid,
    /// citation) and the time grids.
    Solvers,
}

/// SIGINT and SIGTERM: a run stopped by one exits with 128 + its number.
static CTRL_C: CtrlC = CtrlC::new();

/// The ids of the options `matches` got from the command line (not defaults).
fn given(matches: &clap::ArgMatches) -> Vec<String> {
    matches
        .ids()
        .filter(|id| matches.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine))
        .map(|id| id.to_string())
        .collect()
}

fn run(command: &Command) -> anyhow::Result<Status> {
    match command {
        Command::Train(a) => match &a.save_train {
            Some(file) => train::export(a, file).map(|()| Status::Done),
            None => train::train(a, &CTRL_C).map(|t| t.status()),
        },
        Command::TrainClassifier(a) => {
            let a = train::TrainArgs { classifier: true, ..a.clone() };
            train::train(&a, &CTRL_C).map(|t| t.status())
        }
        Command::TrainFeatures(a) => features::run(a),
        Command::Sample(a) => sample::run(a, &CTRL_C),
        Command::MergeShards(a) => shard::merge(a),
        Command::Eval(a) => eval::run(a),
        Command::Plot(a) => plot::run(a),
        Command::Demo(a) => demo::run(a, &CTRL_C),
        Command::Solvers => {
            list_solvers();
            Ok(Status::Done)
        }
    }
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let (Command::Train(a) | Command::TrainClassifier(a), Some((_, sub))) = (&mut cli.command, matches.subcommand())
    {
        a.given = given(sub);
    }
    if let Command::TrainClassifier(a) = &cli.command {
        if a.conditional {
            eprintln!("error: --conditional is for `scoresde train`; a classifier takes no labels as input");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    // The parser keeps --threads within 0..=MAX_THREADS.
    if let Err(e) = common::set_threads(u32::try_from(cli.threads).unwrap_or(common::DEFAULT_THREADS)) {
        eprintln!("error: {e:#}");
        return ExitCode::from(EXIT_FAILED);
    }
    match run(&cli.command) {
        Ok(Status::Done) => ExitCode::SUCCESS,
        Ok(Status::Interrupted) => ExitCode::from(CTRL_C.exit_code()),
        Err(e) => {
            eprintln!("error: {e:#}");
            let stopped = e.chain().any(|c| {
                matches!(c.downcast_ref::<scoresde::solvers::Error>(), Some(scoresde::solvers::Error::Stopped { .. }))
            });
            ExitCode::from(if stopped { CTRL_C.exit_code() } else { EXIT_FAILED })
        }
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
    println!("\n{}", scoresde::solvers::x0_guard_note().replace('`', ""));
    println!("\n{}", scoresde::solvers::lower_order_final_note().replace('`', ""));
}
