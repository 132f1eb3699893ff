//! Regenerates the figures in `paper-figs/` (see `paper-figs/README.md`):
//!
//! ```text
//! cargo run --release --example paper_figs [-- --out DIR --seed N]
//! ```
//!
//! * `vp_paths_1d.png`: forward VP-SDE paths of 1-D two-mode data over the exact
//!   marginal density `p_t`, and reverse-SDE paths (exact score) from the prior
//!   back to the data (Song et al. 2021, Fig. 1).
//! * `solvers_8gaussians.png`: samples of the 8-Gaussian ring from every
//!   sampler in `SAMPLERS` next to exact samples, with the sliced W2 distance
//!   to an independent exact sample set in each title.
//!
//! Everything is seeded; the same command draws the same pixels.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Parser;
use ndarray::{array, Array2, Array3, Axis};
use rand::SeedableRng;
use scoresde::metrics::sliced_wasserstein2;
use scoresde::plot::{
    paths_over_density, scatter_panels, Bounds, DensityGrid, DensityOptions, DensityPanel, PathSet, ScatterOptions,
    Shading,
};
use scoresde::solvers::prelude::*;
use scoresde::solvers::{Rng, SAMPLERS};

/// Regenerate the paper figures.
#[derive(Parser, Debug)]
struct Args {
    /// Folder to write the PNGs into (created if missing).
    #[arg(long, default_value = "paper-figs")]
    out: PathBuf,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 2021)]
    seed: u64,
}

fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    (0..n).map(|i| a + (b - a) * i as f64 / (n - 1) as f64).collect()
}

/// Stacks a recorded trajectory of `(n_paths, 1)` states into `(n_times, n_paths)`.
fn stack_paths(traj: &Trajectory<Array2<f64>>) -> anyhow::Result<Array2<f64>> {
    let rows: Vec<_> = traj.states.iter().map(|s| s.column(0)).collect();
    Ok(ndarray::stack(Axis(0), &rows)?)
}

/// Figure (a): forward and reverse VP-SDE paths over the exact density of p_t.
fn vp_paths_1d(out: &Path, seed: u64) -> anyhow::Result<()> {
    let sde = VpSde::default();
    // Two components at -1 and +1 (weights 0.4 / 0.6), standard deviation 0.15.
    let data =
        GaussianMixture::new(&[0.4, 0.6], array![[-1.0], [1.0]].view(), Array3::from_elem((2, 1, 1), 0.0225).view())?;
    let score = ExactScore::new(data.clone(), sde);
    let (n_paths, steps) = (20, 500);

    // Forward: exact data samples pushed through the forward SDE by Euler–Maruyama.
    let x0 = data.sample(n_paths, &mut Rng::seed_from_u64(seed));
    let mut forward = Trajectory::every(1);
    let mut solver = ForwardEulerMaruyama;
    Sampler::new(&sde, &score).observe(&mut forward).run(
        &mut solver,
        x0,
        &TimeGrid::uniform(0.0, sde.t_max(), steps)?,
        &mut GaussianNoise::new(seed),
    )?;

    // Reverse: prior samples pulled back by reverse-SDE Euler–Maruyama with the exact score.
    let mut noise = GaussianNoise::new(seed + 1);
    let x_t = prior_sample(&sde, &Array2::<f64>::zeros((n_paths, 1)), &mut noise);
    let mut reverse = Trajectory::every(1);
    let mut solver = ReverseEulerMaruyama;
    Sampler::new(&sde, &score).observe(&mut reverse).run(
        &mut solver,
        x_t,
        &TimeGrid::reverse(&sde, steps)?,
        &mut noise,
    )?;

    // The exact density p_t(x) on a (t, x) grid.
    let ts = linspace(0.0, sde.t_max(), 201);
    let xs = linspace(-2.5, 2.5, 301);
    let x_col = Array2::from_shape_vec((xs.len(), 1), xs.clone())?;
    let mut density = Array2::zeros((ts.len(), xs.len()));
    for (mut row, &t) in density.rows_mut().into_iter().zip(&ts) {
        row.assign(&data.marginal(&sde, t).log_density(x_col.view(), 1.0, 0.0)?.mapv(f64::exp));
    }

    let fwd = stack_paths(&forward)?;
    let rev = stack_paths(&reverse)?;
    let grid = DensityGrid { t: &ts, x: &xs, values: density.view() };
    let panels = [
        DensityPanel {
            title: "Forward SDE: data → noise".into(),
            density: grid.clone(),
            paths: PathSet { t: &forward.times, x: fwd.view() },
            time_reversed: false,
        },
        DensityPanel {
            title: "Reverse SDE (exact score): noise → data".into(),
            density: grid,
            paths: PathSet { t: &reverse.times, x: rev.view() },
            time_reversed: true,
        },
    ];
    let opts = DensityOptions {
        x_range: (-2.5, 2.5),
        shading: Shading::PerTime,
        panel_px: (700, 440),
        path_alpha: 0.85,
        title: Some(format!(
            "VP-SDE (β 0.1 → 20) on 1-D data 0.4·N(−1, 0.15²) + 0.6·N(1, 0.15²)\n\
             shading: exact density p_t(x), each t scaled to its maximum; white: {n_paths} Euler–Maruyama paths, {steps} steps"
        )),
    };
    paths_over_density(out.join("vp_paths_1d.png"), &panels, &opts)?;
    Ok(())
}

/// Figure (b): every sampler on the 8-Gaussian ring, with sliced W2 to exact samples.
fn solvers_8gaussians(out: &Path, seed: u64) -> anyhow::Result<()> {
    let sde = VpSde::default();
    let data = GaussianMixture::ring(8, 2.0, 0.08)?;
    let score = ExactScore::new(data.clone(), sde);
    // SW2 is computed on n samples; the panels show the first n_shown of them.
    let (n, n_shown, steps, n_proj) = (10_000, 3000, 200, 256);
    let grid = TimeGrid::reverse(&sde, steps)?;
    let reference = data.sample(n, &mut Rng::seed_from_u64(seed + 2));

    let exact = data.sample(n, &mut Rng::seed_from_u64(seed + 1));
    let sw = sliced_wasserstein2(exact.view(), reference.view(), n_proj, seed)?;
    let mut panels = vec![(format!("exact samples   SW₂ = {sw:.3}"), exact)];
    for name in SAMPLERS {
        let mut solver = by_name::<Array2<f64>>(name)?;
        let mut noise = GaussianNoise::new(seed);
        let x_t = prior_sample(&sde, &Array2::<f64>::zeros((n, 2)), &mut noise);
        let run = Sampler::new(&sde, &score)
            .denoise(true)
            .run(solver.as_mut(), x_t, &grid, &mut noise)
            .with_context(|| format!("sampler {name}"))?;
        let sw = sliced_wasserstein2(run.x.view(), reference.view(), n_proj, seed)?;
        panels.push((format!("{name}   SW₂ = {sw:.3}"), run.x));
    }
    let views: Vec<_> = panels.iter().map(|(t, x)| (t.as_str(), x.slice(ndarray::s![..n_shown, ..]))).collect();
    let opts = ScatterOptions {
        bounds: Bounds::square(3.0),
        columns: 4,
        panel_px: 380,
        point_radius: 1,
        alpha: 0.45,
        title: Some(format!(
            "8 Gaussians (radius 2, std 0.08), VP-SDE with the exact score; {steps} uniform steps from t = 1 to 1e-3, \
             then Tweedie denoising\n\
             SW₂: sliced W2 of {n} samples to {n} other exact samples ({n_proj} directions); {n_shown} samples shown"
        )),
    };
    scatter_panels(out.join("solvers_8gaussians.png"), &views, &opts)?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!("seed: {}", args.seed);
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let t = std::time::Instant::now();
    vp_paths_1d(&args.out, args.seed)?;
    println!("wrote {} ({:.1} s)", args.out.join("vp_paths_1d.png").display(), t.elapsed().as_secs_f64());
    let t = std::time::Instant::now();
    solvers_8gaussians(&args.out, args.seed)?;
    println!("wrote {} ({:.1} s)", args.out.join("solvers_8gaussians.png").display(), t.elapsed().as_secs_f64());
    Ok(())
}
