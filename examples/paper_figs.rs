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
//! * `ode_vs_sde_paths_1d.png`: probability-flow ODE paths beside reverse-SDE paths
//!   from the same prior draws on the same 1-D data (Song et al. 2021, Fig. 2).
//! * `denoising_2d.png`: DDPM-style progressive denoising of 2-D samples (Ho et al.
//!   2020, Fig. 6): ancestral sampling snapshots of x_t and its Tweedie estimate.
//! * `convergence.png`, `convergence_sde.png`, `convergence_flow.png`, `quality_vs_nfe.png`,
//!   `quality_vs_nfe_sde.png` (+ `.csv`, `.md`): the convergence study
//!   of `examples/convergence.rs` (DPM-Solver, Lu et al. 2022, Fig. 3; Karras et al. 2022, Fig. 2).
//! * `likelihood_2d.png`: a 2-D density by the probability-flow ODE likelihood beside
//!   the true density (Song et al. 2021, §4.3 / FFJORD, Grathwohl et al. 2019, Fig. 2).
//! * `guidance_8gaussians.png` (+ `.md`): one class of eight-gaussians sampled with
//!   classifier guidance and classifier-free guidance at w = 0, 1, 3, 10, with trained
//!   networks (the study of `examples/guidance.rs`; Dhariwal & Nichol 2021, Fig. 3;
//!   Ho & Salimans 2022, Fig. 2).
//!
//! Everything is seeded; the same command draws the same pixels.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Parser;
use ndarray::{array, Array2, Array3, Axis};
use rand::SeedableRng;
use scoresde::metrics::sliced_wasserstein2;
use scoresde::plot::{
    heatmap_panels, paths_over_density, scatter_panels, Bounds, DensityGrid, DensityOptions, DensityPanel,
    HeatmapOptions, HeatmapPanel, PathSet, ScatterOptions, Shading,
};
use scoresde::solvers::prelude::*;
use scoresde::solvers::{log_likelihood, tweedie_denoise, LikelihoodOptions, Rng, SAMPLERS};

#[path = "common/study.rs"]
mod study;

#[path = "common/guidance_study.rs"]
mod guidance_study;

/// Regenerate the paper figures.
#[derive(Parser, Debug)]
struct Args {
    /// Folder to write the PNGs into (created if missing).
    #[arg(long, default_value = "paper-figs")]
    out: PathBuf,
    /// Seed of every random draw (the convergence study always uses seed 0, as its example).
    #[arg(long, default_value_t = 2021)]
    seed: u64,
    /// Skip the convergence study (10-18 minutes on 2 cores); the other figures take seconds.
    #[arg(long)]
    skip_study: bool,
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
    let density = density_1d(&data, &sde, &ts, &xs)?;

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
        panel_x_ranges: None,
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

/// Guided samples of one class of eight-gaussians, both kinds of guidance, trained networks.
fn guidance_8gaussians(out: &Path, seed: u64) -> anyhow::Result<()> {
    let setup = guidance_study::Setup {
        class: 2,
        scales: vec![0.0, 1.0, 3.0, 10.0],
        n: 2000,
        steps: 200,
        score_steps: 3000,
        classifier_steps: 1000,
        seed,
    };
    let models = guidance_study::train(&setup)?;
    let rows = guidance_study::run(&models, &setup)?;
    let floor = guidance_study::sw2_floor(&setup)?;
    let panels: Vec<(String, ndarray::ArrayView2<'_, f64>)> = rows
        .iter()
        .map(|r| {
            let kind = if r.kind == "classifier" { "CG" } else { "CFG" };
            (format!("{kind} w = {}  acc {:.3}  SW₂ {:.3}", r.w, r.accuracy, r.sw2), r.x.view())
        })
        .collect();
    let opts = ScatterOptions {
        bounds: Bounds::square(3.5),
        columns: 4,
        panel_px: 380,
        point_radius: 1,
        alpha: 0.45,
        title: Some(format!(
            "Class {} of eight-gaussians: classifier guidance (CG, top) and classifier-free guidance (CFG, bottom)\n\
             networks trained {} + {} steps on the CPU; ancestral sampling, {} steps\n\
             acc: share of {} samples whose exact p₀(y | x) is largest for class {}; \
             SW₂: sliced W2 to exact class samples (floor {floor:.3})",
            setup.class, setup.score_steps, setup.classifier_steps, setup.steps, setup.n, setup.class
        )),
    };
    scatter_panels(out.join("guidance_8gaussians.png"), &panels, &opts)?;
    let mut md = String::from(
        "| guidance | w | accuracy | mean p(y|x) | sliced W2 to class | spread |\n|---|---:|---:|---:|---:|---:|\n",
    );
    for r in &rows {
        md +=
            &format!("| {} | {} | {:.4} | {:.4} | {:.4} | {:.3} |\n", r.kind, r.w, r.accuracy, r.mass, r.sw2, r.spread);
    }
    md += &format!(
        "\nclass {}, n = {}, seed {seed}; sliced W2 noise floor (two exact class samples): {floor:.4}\n",
        setup.class, setup.n
    );
    scoresde::fsutil::write_atomic(&out.join("guidance_8gaussians.md"), md.as_bytes())?;
    Ok(())
}

/// The exact density p_t(x) of 1-D data on a (t, x) grid.
fn density_1d(data: &GaussianMixture, sde: &VpSde, ts: &[f64], xs: &[f64]) -> anyhow::Result<Array2<f64>> {
    let x_col = Array2::from_shape_vec((xs.len(), 1), xs.to_vec())?;
    let mut density = Array2::zeros((ts.len(), xs.len()));
    for (mut row, &t) in density.rows_mut().into_iter().zip(ts) {
        row.assign(&data.marginal(sde, t).log_density(x_col.view(), 1.0, 0.0)?.mapv(f64::exp));
    }
    Ok(density)
}

/// Figure (c): probability-flow ODE vs reverse-SDE paths from the same prior draws.
fn ode_vs_sde_paths_1d(out: &Path, seed: u64) -> anyhow::Result<()> {
    let sde = VpSde::default();
    let data =
        GaussianMixture::new(&[0.4, 0.6], array![[-1.0], [1.0]].view(), Array3::from_elem((2, 1, 1), 0.0225).view())?;
    let score = ExactScore::new(data.clone(), sde);
    let (n_paths, steps) = (20, 500);
    let grid = TimeGrid::reverse(&sde, steps)?;
    let x_t = prior_sample(&sde, &Array2::<f64>::zeros((n_paths, 1)), &mut GaussianNoise::new(seed + 5));
    let mut sde_paths = Trajectory::every(1);
    Sampler::new(&sde, &score).observe(&mut sde_paths).run(
        &mut ReverseEulerMaruyama,
        x_t.clone(),
        &grid,
        &mut GaussianNoise::new(seed + 6),
    )?;
    let mut ode_paths = Trajectory::every(1);
    Sampler::new(&sde, &score).observe(&mut ode_paths).run(
        &mut OdeHeun,
        x_t,
        &grid,
        &mut GaussianNoise::new(seed + 6),
    )?;
    let ts = linspace(0.0, sde.t_max(), 201);
    let xs = linspace(-2.5, 2.5, 301);
    let density = density_1d(&data, &sde, &ts, &xs)?;
    let (rev, ode) = (stack_paths(&sde_paths)?, stack_paths(&ode_paths)?);
    let grid = DensityGrid { t: &ts, x: &xs, values: density.view() };
    let panels = [
        DensityPanel {
            title: "Reverse SDE (Euler–Maruyama)".into(),
            density: grid.clone(),
            paths: PathSet { t: &sde_paths.times, x: rev.view() },
            time_reversed: true,
        },
        DensityPanel {
            title: "Probability-flow ODE (Heun)".into(),
            density: grid,
            paths: PathSet { t: &ode_paths.times, x: ode.view() },
            time_reversed: true,
        },
    ];
    let opts = DensityOptions {
        x_range: (-2.5, 2.5),
        panel_x_ranges: None,
        shading: Shading::PerTime,
        panel_px: (700, 440),
        path_alpha: 0.85,
        title: Some(format!(
            "The same {n_paths} prior draws pulled back by the reverse SDE and by the probability-flow ODE \
             (exact score, {steps} steps)\n\
             data 0.4·N(−1, 0.15²) + 0.6·N(1, 0.15²); both have marginals p_t (shading, each t scaled to its maximum)"
        )),
    };
    paths_over_density(out.join("ode_vs_sde_paths_1d.png"), &panels, &opts)?;
    Ok(())
}

/// Figure (d): DDPM-style progressive denoising on the 8-Gaussian ring.
fn denoising_2d(out: &Path, seed: u64) -> anyhow::Result<()> {
    let sde = VpSde::default();
    let data = GaussianMixture::ring(8, 2.0, 0.08)?;
    let score = ExactScore::new(data, sde);
    let (n, steps) = (2000, 1000);
    let grid = TimeGrid::reverse(&sde, steps)?;
    let mut noise = GaussianNoise::new(seed + 7);
    let x_t = prior_sample(&sde, &Array2::<f64>::zeros((n, 2)), &mut noise);
    let mut traj = Trajectory::every(1);
    Sampler::new(&sde, &score).observe(&mut traj).run(&mut Ancestral::new(), x_t, &grid, &mut noise)?;
    let wanted = [1.0, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05, sde.t_eps()];
    let mut panels = Vec::new();
    for &t in &wanted {
        let i = traj
            .times
            .iter()
            .enumerate()
            .min_by(|a, b| (a.1 - t).abs().total_cmp(&(b.1 - t).abs()))
            .map(|(i, _)| i)
            .unwrap_or(0);
        let (ti, x) = (traj.times[i], &traj.states[i]);
        panels.push((format!("x_t, t = {ti:.3}"), x.clone()));
    }
    for &t in &wanted {
        let i = traj
            .times
            .iter()
            .enumerate()
            .min_by(|a, b| (a.1 - t).abs().total_cmp(&(b.1 - t).abs()))
            .map(|(i, _)| i)
            .unwrap_or(0);
        let ti = traj.times[i];
        let x0 = tweedie_denoise(traj.states[i].clone(), ti, &sde, &score)?;
        panels.push((format!("x̂₀(x_t), t = {ti:.3}"), x0));
    }
    let views: Vec<_> = panels.iter().map(|(t, x)| (t.as_str(), x.view())).collect();
    let opts = ScatterOptions {
        bounds: Bounds::square(3.5),
        columns: wanted.len(),
        panel_px: 260,
        point_radius: 1,
        alpha: 0.5,
        title: Some(format!(
            "Progressive denoising (ancestral sampling, {steps} steps, exact score, 8 Gaussians, {n} samples)\n\
             top: the samples x_t as t falls; bottom: the Tweedie estimate x̂₀ = (x_t + σ² s)/a at the same t"
        )),
    };
    scatter_panels(out.join("denoising_2d.png"), &views, &opts)?;
    Ok(())
}

/// Figure (e): the probability-flow ODE's log-likelihood of a 2-D mixture on a grid, beside the truth.
fn likelihood_2d(out: &Path) -> anyhow::Result<()> {
    let sde = VpSde::default();
    let means = array![[-1.0, -0.6], [1.1, -0.4], [0.0, 1.0]];
    let mut covs = Array3::zeros((3, 2, 2));
    for (k, c) in [[0.25, 0.12, 0.2], [0.15, -0.08, 0.3], [0.4, 0.0, 0.08]].iter().enumerate() {
        covs[[k, 0, 0]] = c[0];
        covs[[k, 0, 1]] = c[1];
        covs[[k, 1, 0]] = c[1];
        covs[[k, 1, 1]] = c[2];
    }
    let data = GaussianMixture::new(&[0.4, 0.35, 0.25], means.view(), covs.view())?;
    let score = ExactScore::new(data.clone(), sde);
    let m = 64;
    let axis = linspace(-2.5, 2.5, m);
    let pts = Array2::from_shape_fn((m * m, 2), |(k, j)| if j == 0 { axis[k % m] } else { axis[k / m] });
    let t0 = sde.t_eps();
    let start = std::time::Instant::now();
    let lik = log_likelihood(&sde, &score, &pts, &LikelihoodOptions::default(), None)?;
    let truth = data.marginal(&sde, t0).log_density(pts.view(), 1.0, 0.0)?;
    let to_grid = |v: &ndarray::Array1<f64>| Array2::from_shape_fn((m, m), |(i, j)| v[i * m + j]);
    let (ode, exact) = (to_grid(&lik.log_p.mapv(f64::exp)), to_grid(&truth.mapv(f64::exp)));
    let err = to_grid(&(&lik.log_p - &truth).mapv(f64::abs));
    let max_err = err.iter().fold(0.0f64, |a, b| a.max(*b));
    println!(
        "  likelihood: {} points, {} evaluations, {:.1} s, max |log p error| {max_err:.2e}",
        m * m,
        lik.evals,
        start.elapsed().as_secs_f64()
    );
    let panels = [
        HeatmapPanel { title: "p by the ODE".into(), x: &axis, y: &axis, values: ode.view() },
        HeatmapPanel { title: "true p_eps".into(), x: &axis, y: &axis, values: exact.view() },
        HeatmapPanel { title: "|log p error| (nats)".into(), x: &axis, y: &axis, values: err.view() },
    ];
    let opts = HeatmapOptions {
        title: Some(format!(
            "Likelihood by the probability-flow ODE vs the closed form: 3-component 2-D Gaussian mixture, VP-SDE, t = {t0}\n\
             Dormand–Prince (rtol = atol = 1e-5) with exact divergence, {} evaluations; prior N(0, I) at T = 1\n\
             max |log p error| = {max_err:.1e} nats, in the far tails: solver tolerance + prior N(0, I) in place of p_T (tests: both vanish)",
            lik.evals
        )),
        shared_range: None,
        panel_px: (440, 440),
    };
    heatmap_panels(out.join("likelihood_2d.png"), &panels, &opts)?;
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
    let t = std::time::Instant::now();
    ode_vs_sde_paths_1d(&args.out, args.seed)?;
    println!("wrote {} ({:.1} s)", args.out.join("ode_vs_sde_paths_1d.png").display(), t.elapsed().as_secs_f64());
    let t = std::time::Instant::now();
    denoising_2d(&args.out, args.seed)?;
    println!("wrote {} ({:.1} s)", args.out.join("denoising_2d.png").display(), t.elapsed().as_secs_f64());
    let t = std::time::Instant::now();
    likelihood_2d(&args.out)?;
    println!("wrote {} ({:.1} s)", args.out.join("likelihood_2d.png").display(), t.elapsed().as_secs_f64());
    let t = std::time::Instant::now();
    guidance_8gaussians(&args.out, args.seed)?;
    println!(
        "wrote {} (+ .md) ({:.1} s)",
        args.out.join("guidance_8gaussians.png").display(),
        t.elapsed().as_secs_f64()
    );
    if args.skip_study {
        println!("skipped the convergence study (--skip-study)");
        return Ok(());
    }
    let t = std::time::Instant::now();
    let study = study::run(1.5, 0.3, 20_000, 128, 0)?;
    let setup = "Written by `cargo run --release --example paper_figs` (the same study as \
                 `cargo run --release --example convergence`, seed 0, n = 20 000); see that example's doc comment.";
    study::write_outputs(&args.out, &study, setup)?;
    println!(
        "wrote {}/convergence.{{csv,md,png}}, convergence_{{sde,flow}}.png, quality_vs_nfe{{,_sde}}.png ({:.1} s)",
        args.out.display(),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
