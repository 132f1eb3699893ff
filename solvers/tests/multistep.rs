//! The multistep data-prediction samplers: DPM-Solver++ (1, 2M, 3M), UniPC (orders 1-3,
//! `B(h)` = h and e^h - 1) and DPM-Solver++(2M) with the UniC corrector, each with and
//! without `lower-order-final`:
//!
//! * every one equals diffusers' recursion, written out again as a plain scalar recursion
//!   (`common/multistep_oracle.rs`), on 1-D Gaussian data with the exact score, to 1e-12,
//!   on every grid kind and step count from 1 to 24;
//! * UniPC-p has order p + 1 for p = 1, 2, 3 and both `B(h)`, measured on the exact law
//!   (the registry rows are measured in `ode.rs`);
//! * `lower-order-final` changes the last step only (and, for third-order methods, the
//!   one before it, as diffusers), and the last step is then first order;
//! * `dpm2m-unic` is `unipc` (UniP-2 with `B(h) = e^h - 1` is DPM-Solver++(2M)) on a
//!   nonlinear score and every SDE; a solver stepped by hand (no `init`) runs the same
//!   recursion; the parameterised forms make one score evaluation per step and stay finite
//!   in f32 down to `eps`.

mod common;

use common::multistep_oracle;
use common::*;
use ndarray::{array, Array2};
use scoresde_solvers::law::scheme_law_1d;
use scoresde_solvers::prelude::*;
use scoresde_solvers::{sde_by_name, GRIDS};

/// The methods of the oracle comparison, by the names `by_name` takes.
const METHODS: [&str; 10] =
    ["dpm1", "dpm2m", "dpm3m", "dpm2m-unic", "unipc:1", "unipc", "unipc:3", "unipc-bh1:1", "unipc-bh1", "unipc-bh1:3"];

/// `name` with `lower-order-final` added.
fn lof(name: &str) -> String {
    if name.contains(':') {
        format!("{name},lower-order-final")
    } else {
        format!("{name}:lower-order-final")
    }
}

/// `name` run by the sampler over `grid` from the start points `x` (exact score of `data`).
fn run(name: &str, data: &Gauss1, grid: &TimeGrid, x: &Array2<f64>) -> Array2<f64> {
    let sde = VpSde::default();
    let mut solver = by_name::<Array2<f64>>(name).unwrap();
    Sampler::new(&sde, &data.score()).run(solver.as_mut(), x.clone(), grid, &mut GaussianNoise::new(0)).unwrap().x
}

/// Every method, with and without `lower-order-final`, on every grid kind and 1 to 24
/// steps, equals the scalar recursion of diffusers' formulas to 1e-12 (relative to 1 + |x|).
#[test]
fn solvers_match_the_diffusers_recursion() {
    let data = Gauss1 { mu: 1.3, s0: 0.6 };
    let sde = VpSde::default();
    // Tweedie with the exact score: s = -(x - a mu) / V, x0_hat = (x + sigma^2 s) / a.
    let x0_of = |x: f64, t: f64| {
        let (am, v) = data.marginal(&VP, t);
        (x - VP.sigma2(t) * (x - am) / v) / VP.a(t)
    };
    let starts = array![[-2.1], [0.2], [1.7]];
    let mut worst = 0.0f64;
    for kind in [GridKind::LogSnr, GridKind::Uniform, GridKind::Quadratic, GridKind::Karras] {
        for steps in [1usize, 2, 3, 4, 5, 6, 8, 10, 13, 24] {
            let grid = kind.build(&sde, 1.0, sde.t_eps(), steps);
            for name in METHODS {
                for lower in [false, true] {
                    let full = if lower { lof(name) } else { name.to_string() };
                    let got = run(&full, &data, &grid, &starts);
                    for (g, &x) in got.iter().zip(starts.iter()) {
                        let want =
                            multistep_oracle::run(multistep_oracle::by_name(name), lower, grid.times(), x, &x0_of);
                        let err = (g - want).abs() / (1.0 + want.abs());
                        worst = worst.max(err);
                        assert!(err <= 1e-12, "{full} on {kind:?}, {steps} steps, x_T = {x}: {g} vs oracle {want}");
                    }
                }
            }
        }
    }
    eprintln!("largest relative difference from the oracle: {worst:.1e}");
}

/// The declared order of a parameterised form, measured like the registry rows: the exact
/// law on N(1, 0.5^2) data on the log-SNR grid, least-squares slope of `|Δmean| + |Δvar|`.
fn measured_order(name: &str, steps: &[usize]) -> f64 {
    let sde = VpSde::default();
    let data = Gauss1 { mu: 1.0, s0: 0.5 };
    let exact = data.marginal(&VP, sde.t_eps());
    let (mut hs, mut errs) = (vec![], vec![]);
    for &n in steps {
        let grid = TimeGrid::log_snr(&sde, 1.0, sde.t_eps(), n).unwrap();
        let mut solver = by_name::<Array2<f64>>(name).unwrap();
        let law = scheme_law_1d(solver.as_mut(), &sde, data.mu, data.s0, &grid, false).unwrap().0;
        hs.push(1.0 / n as f64);
        errs.push(law_error((law.mean, law.var), exact));
    }
    loglog_slope(&hs, &errs)
}

/// UniPC-p is of order p + 1 for both `B(h)` (UniP-p of order p, raised by one by UniC):
/// the parameterised forms' orders, measured like the rows'. UniPC-3 reaches its
/// asymptotic slope later (its warm-up steps at orders 1 and 2), hence larger step counts.
#[test]
fn unipc_of_every_order_has_order_p_plus_1() {
    let (mid, late): (&[usize], &[usize]) = (&[32, 64, 128, 256, 512], &[128, 256, 512, 1024]);
    let cases = [
        ("unipc:1", 2.0, mid),
        ("unipc:2", 3.0, mid),
        ("unipc:3", 4.0, late),
        ("unipc-bh1:1", 2.0, mid),
        ("unipc-bh1:2", 3.0, mid),
        ("unipc-bh1:3", 4.0, late),
    ];
    for (name, order, steps) in cases {
        let slope = measured_order(name, steps);
        eprintln!("measured order {name} (log-snr grid, N = {steps:?}): {slope:.3}");
        assert!((slope - order).abs() <= ORDER_TOL, "{name}: order {slope}, expected {order}");
    }
}

/// A nonlinear score (any SDE): the tests of identities that hold for every score.
struct Wavy;

impl Score<Array2<f64>> for Wavy {
    fn score(&self, x: &Array2<f64>, t: f64) -> scoresde_solvers::Result<Array2<f64>> {
        Ok(x.mapv(|v| -(1.0 + t) * v + 0.3 * (2.0 * v).sin()))
    }
}

fn wavy_start() -> Array2<f64> {
    Array2::from_shape_fn((6, 2), |(i, j)| i as f64 * 0.7 - 1.9 + j as f64 * 0.3)
}

/// The states of a run of `name` with the [`Wavy`] score, one per grid time.
fn trajectory(name: &str, sde: &dyn Sde, grid: &TimeGrid) -> Vec<Array2<f64>> {
    let mut traj = Trajectory::every(1);
    let mut solver = by_name::<Array2<f64>>(name).unwrap();
    Sampler::new(sde, &Wavy)
        .observe(&mut traj)
        .run(solver.as_mut(), wavy_start(), grid, &mut GaussianNoise::new(0))
        .unwrap();
    traj.states
}

/// `lower-order-final` leaves every state but the last (second-order methods) or the last
/// two (third-order methods) bit for bit as they were and changes those; a DPM-Solver++
/// run's last step is then the first-order (DDIM) step.
#[test]
fn lower_order_final_changes_only_the_last_steps() {
    let sde = VpSde::default();
    let grid = TimeGrid::log_snr(&sde, 1.0, sde.t_eps(), 9).unwrap();
    let n = grid.steps();
    for (name, order) in
        [("dpm2m", 2), ("dpm3m", 3), ("unipc", 2), ("unipc:3", 3), ("unipc-bh1:3", 3), ("dpm2m-unic", 2), ("dpm1", 1)]
    {
        let plain = trajectory(name, &sde, &grid);
        let lowered = trajectory(&lof(name), &sde, &grid);
        assert_eq!(plain.len(), n + 1);
        // The order of step i (from times[i]) is capped at n - i: steps i > n - order change.
        let first_changed = n + 2 - order;
        for k in 0..=n {
            let same = plain[k] == lowered[k];
            if k < first_changed {
                assert!(same, "{name}: state {k} of {n} changed");
            } else {
                assert!(!same, "{name}: state {k} of {n} did not change");
            }
        }
        if name.starts_with("dpm") && !name.contains("unic") {
            let times = grid.times();
            let mut noise = GaussianNoise::new(0);
            let mut ctx = Ctx { sde: &sde, score: &Wavy, noise: &mut noise };
            let ddim =
                Solver::<Array2<f64>>::step(&mut Ddim::new(), lowered[n - 1].clone(), times[n - 1], times[n], &mut ctx)
                    .unwrap();
            let diff = (&ddim - &lowered[n]).mapv(f64::abs).fold(0.0f64, |m, &d| m.max(d));
            assert!(diff <= 1e-12, "{name}: the last step differs from DDIM by {diff:e}");
        }
    }
}

/// DPM-Solver++(2M) followed by UniC with `B(h) = e^h - 1` is UniPC-2 with the same `B(h)`
/// (UniP-2 is DPM-Solver++(2M) then), on a nonlinear score, every SDE and grid kind.
#[test]
fn dpm2m_with_unic_is_unipc_bh2() {
    for sde in ["vp", "subvp", "ve", "vp-cosine"].map(|n| sde_by_name(n).unwrap()) {
        for g in GRIDS {
            let grid = TimeGrid::by_name(g, sde.as_ref(), 1.0, sde.t_eps(), 11).unwrap();
            for (a, b) in [("dpm2m-unic", "unipc"), ("dpm2m-unic:lower-order-final", "unipc:2,lower-order-final")] {
                let (xa, xb) = (trajectory(a, sde.as_ref(), &grid), trajectory(b, sde.as_ref(), &grid));
                for (p, q) in xa.last().unwrap().iter().zip(xb.last().unwrap().iter()) {
                    assert!((p - q).abs() <= 1e-12 * (1.0 + q.abs()), "{a} vs {b} on {g}: {p} vs {q}");
                }
            }
        }
    }
}

/// Stepped by hand (no `init`, so no steps left are known), each method runs the same
/// recursion as under the sampler, and `lower-order-final` has no last step to act on.
#[test]
fn stepping_by_hand_runs_the_same_recursion() {
    let sde = VpSde::default();
    let grid = TimeGrid::log_snr(&sde, 1.0, sde.t_eps(), 7).unwrap();
    for name in METHODS {
        let want = trajectory(name, &sde, &grid).pop().unwrap();
        for full in [name.to_string(), lof(name)] {
            let mut solver = by_name::<Array2<f64>>(&full).unwrap();
            let mut noise = GaussianNoise::new(0);
            let mut ctx = Ctx { sde: &sde, score: &Wavy, noise: &mut noise };
            let mut x = wavy_start();
            for w in grid.times().windows(2) {
                x = solver.step(x, w[0], w[1], &mut ctx).unwrap();
            }
            assert_eq!(x, want, "{full}");
        }
    }
}

/// The parameterised forms and options make one score evaluation per step, and their f32
/// runs from the prior to `eps` stay finite on every SDE and grid.
#[test]
fn parameterised_forms_count_and_stay_finite_in_f32() {
    let data = GaussianMixture::ring(8, 2.0, 0.02).unwrap();
    let names =
        ["unipc:1", "unipc:3", "unipc-bh1:1", "unipc-bh1:3", "dpm3m:lower-order-final", "unipc:3,lower-order-final"];
    for sde_name in ["vp", "subvp", "ve", "vp-cosine"] {
        let sde = sde_by_name(sde_name).unwrap();
        let score = ExactF32 { data: data.clone(), sde: sde.as_ref() };
        for g in GRIDS {
            for steps in [1usize, 4, 50] {
                let grid = TimeGrid::by_name(g, sde.as_ref(), 1.0, sde.t_eps(), steps).unwrap();
                for name in names {
                    let mut noise = GaussianNoise::new(5);
                    let x = prior_sample(sde.as_ref(), &Array2::<f32>::zeros((256, 2)), &mut noise);
                    let mut solver = by_name::<Array2<f32>>(name).unwrap();
                    let run =
                        Sampler::new(sde.as_ref(), &score).denoise(true).run(solver.as_mut(), x, &grid, &mut noise);
                    let run = run.unwrap_or_else(|e| panic!("{name} on {sde_name}/{g}/{steps}: {e}"));
                    assert!(run.x.iter().all(|v| v.is_finite()), "{name} on {sde_name}/{g}/{steps}");
                    assert_eq!(run.score_evals, steps + 1, "{name}: one evaluation per step and the denoising one");
                }
            }
        }
    }
}

/// The exact mixture score under a `dyn Sde`, on f32 states.
struct ExactF32<'a> {
    data: GaussianMixture,
    sde: &'a dyn Sde,
}

impl Score<Array2<f32>> for ExactF32<'_> {
    fn score(&self, x: &Array2<f32>, t: f64) -> scoresde_solvers::Result<Array2<f32>> {
        self.sde.check_time(t)?;
        self.data.score_at(x, self.sde.alpha(t), self.sde.sigma(t))
    }
}

/// The option's name and errors: it is set by name on the multistep solvers only.
#[test]
fn lower_order_final_is_set_by_name_on_multistep_solvers_only() {
    for name in ["dpm1", "dpm2m", "dpm3m", "dpm2m-unic", "unipc", "unipc-bh1", "unipc:3"] {
        assert!(!by_name::<Array2<f64>>(name).unwrap().lower_order_final(), "{name}");
        assert!(by_name::<Array2<f64>>(&lof(name)).unwrap().lower_order_final(), "{name}");
    }
    let s = by_name::<Array2<f64>>("unipc-bh1:3,lower-order-final,threshold=0.9").unwrap();
    assert_eq!((s.name(), s.lower_order_final(), s.x0_guard()), ("unipc-bh1", true, X0Guard::Threshold(0.9)));
    for name in ["ddim:lower-order-final", "ode-heun:lower-order-final", "ddim-eta:0.5,lower-order-final"] {
        match by_name::<Array2<f64>>(name) {
            Err(Error::InvalidParameter { name: what, reason, .. }) => {
                assert_eq!(what, "lower-order-final", "{name}");
                assert!(reason.contains("dpm2m") && reason.contains("unipc"), "{name}: {reason}");
            }
            other => panic!("{name}: {:?}", other.map(|s| s.name())),
        }
    }
    assert_eq!(scoresde_solvers::lower_order_final_names(), "dpm1, dpm2m, dpm3m, unipc, unipc-bh1, dpm2m-unic");
}
