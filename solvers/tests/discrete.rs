//! Discrete DDPM schedules ([`DiscreteVp`]) against their closed forms: the table at the
//! knots, the piecewise-linear `log a(t)` and its inverse, the kernel solving the SDE,
//! diffusers' timestep spacings typed from its `set_timesteps` formulas, ancestral sampling
//! and DDIM against DDPM's and DDIM's recursions on alpha-bar written out here, the exact
//! output laws of the registry's samplers, and the gap to the continuous VP-SDE.

mod common;

use common::*;
use ndarray::Array2;
use scoresde_solvers::law::{scheme_law_1d, Gauss1d, Gauss1dScore};
use scoresde_solvers::prelude::*;
use scoresde_solvers::{
    discrete_by_name, sde_by_name, solver_info, DiscreteVp, FinalStep, OrderCheck, Spacing, TimeConvention,
    DISCRETE_SCHEDULES, SOLVERS,
};

const CONVENTIONS: [TimeConvention; 2] = [TimeConvention::Shifted, TimeConvention::Endpoints];

fn named() -> Vec<DiscreteVp> {
    DISCRETE_SCHEDULES.iter().map(|n| discrete_by_name(&format!("{n}:1000")).unwrap()).collect()
}

/// At every timestep `i`, `a(t_i)^2 = alphabar_i`, `sigma^2 = 1 - alphabar_i` and
/// `lambda = 1/2 ln(alphabar_i / (1 - alphabar_i))` (to rounding), and `log a(t_i)` is
/// `1/2 ln alphabar_i` bit for bit; under `Shifted`, `t = 0` is clean data.
#[test]
fn schedule_agrees_with_the_table_at_the_knots() {
    for base in named() {
        for conv in CONVENTIONS {
            let sde = base.clone().with_convention(conv);
            for (i, &ab) in sde.alphas_cumprod().iter().enumerate() {
                let t = sde.t_of_timestep(i).unwrap();
                assert_eq!(sde.log_alpha(t), 0.5 * ab.ln(), "{} {conv:?} i = {i}", sde.name());
                // exp(1/2 ln ab)^2: rounding of ln ab, relative eps |ln ab|.
                assert!((sde.alpha(t).powi(2) - ab).abs() <= 4.0 * f64::EPSILON * ab * ab.ln().abs().max(1.0));
                assert!((sde.sigma(t).powi(2) - (1.0 - ab)).abs() <= 1e-13 * (1.0 - ab), "i = {i}");
                let lambda = 0.5 * (ab / (1.0 - ab)).ln();
                assert!((sde.log_snr(t) - lambda).abs() <= 1e-12 * lambda.abs().max(1.0), "i = {i}");
                assert_eq!(sde.timestep_of_t(t).unwrap().round() as usize, i);
                assert!((sde.timestep_of_t(t).unwrap() - i as f64).abs() < 1e-9);
            }
        }
        assert_eq!(base.alpha(0.0), 1.0);
        assert_eq!(base.sigma(0.0), 0.0);
        assert_eq!(base.timestep_of_t(0.0).unwrap(), -1.0);
    }
}

/// Timestep `i` is at `(i + 1)/N` (`Shifted`) or `i/(N - 1)` (`Endpoints`); default ends of
/// sampling are timestep 0's time; indices past `N - 1` and times outside `[0, 1]` are errors.
#[test]
fn timestep_conventions() {
    let s = DiscreteVp::ddpm_linear(1000).unwrap();
    assert_eq!(s.convention(), TimeConvention::Shifted);
    assert_eq!(s.t_of_timestep(0).unwrap(), 1e-3);
    assert_eq!(s.t_of_timestep(499).unwrap(), 0.5);
    assert_eq!(s.t_of_timestep(999).unwrap(), 1.0);
    assert_eq!(s.t_eps(), 1e-3);
    let e = s.clone().with_convention(TimeConvention::Endpoints);
    assert_eq!(e.t_of_timestep(0).unwrap(), 0.0);
    assert_eq!(e.t_of_timestep(999).unwrap(), 1.0);
    assert_eq!(e.t_of_timestep(333).unwrap(), 333.0 / 999.0);
    assert_eq!(e.t_eps(), 0.0);
    assert!((e.alpha(0.0).powi(2) - (1.0 - 1e-4)).abs() < 1e-15, "a(0)^2 = alphabar_0 under Endpoints");
    assert!((e.timestep_of_t(0.5).unwrap() - 499.5).abs() < 1e-12);
    for sde in [&s, &e] {
        assert!(matches!(sde.t_of_timestep(1000), Err(Error::InvalidParameter { name: "timestep", .. })));
        assert!(sde.timestep_of_t(1.5).is_err());
        assert!(sde.timestep_of_t(f64::NAN).is_err());
    }
    assert_eq!(s.clone().with_eps(0.0).unwrap().t_eps(), 0.0);
    assert!(s.clone().with_eps(1.0).is_err());
    assert!(s.with_eps(f64::NAN).is_err());
}

/// `t(lambda)` inverts `lambda(t)` (both ways, at and between knots), and `log a` is linear
/// between knots.
#[test]
fn log_snr_inverse_round_trips() {
    for base in named() {
        for conv in CONVENTIONS {
            let sde = base.clone().with_convention(conv);
            let m = match conv {
                TimeConvention::Shifted => 1000.0,
                TimeConvention::Endpoints => 999.0,
            };
            for j in 0..=400 {
                let t = j as f64 / 400.0 * 0.999_3 + 0.000_7 * (j % 3) as f64 / 3.0;
                let back = sde.t_of_log_snr(sde.log_snr(t)).unwrap();
                assert!((back - t).abs() <= 1e-12, "{} {conv:?}: t = {t} -> {back}", sde.name());
                let lam = sde.log_snr(t);
                assert!(lam == f64::INFINITY || (sde.log_snr(back) - lam).abs() <= 1e-10 * lam.abs().max(1.0));
            }
            for k in [1usize, 17, 500, 998] {
                let (t0, t1) = (k as f64 / m, (k + 1) as f64 / m);
                let mid = 0.5 * (sde.log_alpha(t0) + sde.log_alpha(t1));
                assert!((sde.log_alpha(0.5 * (t0 + t1)) - mid).abs() <= 1e-14 * mid.abs().max(1e-3));
                assert_eq!(sde.t_of_log_snr(sde.log_snr(t0)).unwrap(), t0);
            }
            assert!(sde.t_of_log_snr(sde.log_snr(1.0) - 1e-3).is_err());
            assert!(sde.t_of_log_snr(f64::NAN).is_err());
            // lambda = inf is clean data, t = 0, under Shifted only.
            assert_eq!(sde.t_of_log_snr(f64::INFINITY).ok(), (conv == TimeConvention::Shifted).then_some(0.0));
        }
    }
}

/// Between knots the kernel solves the SDE: `d ln a/dt = f` and `d sigma^2/dt = 2 f sigma^2 + g^2`
/// (central differences inside one segment), `g^2 = -2 f`; at a knot `f` is the slope of the
/// segment below it; transitions compose exactly.
#[test]
fn kernel_solves_the_sde_and_transitions_compose() {
    for base in named() {
        for conv in CONVENTIONS {
            let sde = base.clone().with_convention(conv);
            let m = if conv == TimeConvention::Shifted { 1000.0 } else { 999.0 };
            for k in [0usize, 3, 250, 600, 998] {
                let t = (k as f64 + 0.43) / m;
                let f = sde.drift_coef(t);
                // Inside the segment, where ln a is linear; small against 1/|f| for sigma^2's curvature.
                let dt = (0.05 / m).min(1e-3 / (f.abs() + 1.0));
                let dln_a = (sde.alpha(t + dt).ln() - sde.alpha(t - dt).ln()) / (2.0 * dt);
                assert!((dln_a - f).abs() <= 1e-6 * f.abs(), "{} {conv:?} t = {t}: {dln_a} vs {f}", sde.name());
                let v = |t: f64| sde.sigma(t).powi(2);
                let dv = (v(t + dt) - v(t - dt)) / (2.0 * dt);
                let want = 2.0 * f * v(t) + sde.diffusion(t).powi(2);
                let scale = (2.0 * f * v(t)).abs() + sde.diffusion(t).powi(2);
                assert!((dv - want).abs() <= 1e-6 * scale, "{} t = {t}: {dv} vs {want}", sde.name());
                assert!((sde.diffusion(t).powi(2) + 2.0 * f).abs() <= 1e-12 * f.abs());
                // At the knot above the segment, f is this segment's slope; just above it, the next one's.
                let knot = (k + 1) as f64 / m;
                assert_eq!(sde.drift_coef(knot), f);
                if k + 1 < m as usize {
                    assert_ne!(sde.drift_coef(knot + 0.5 / m), f);
                }
            }
            for (s, t) in [(0.0, 0.3), (1e-3, 1.0), (0.5, 0.5001), (0.2, 0.99), (0.0005, 0.0015)] {
                let (a_ts, v_ts) = sde.transition(s, t);
                let (a_s, a_t) = (sde.alpha(s), sde.alpha(t));
                let (v_s, v_t) = (sde.sigma(s).powi(2), sde.sigma(t).powi(2));
                assert!((a_ts * a_s - a_t).abs() <= 1e-12 * a_t);
                assert!((a_ts * a_ts * v_s + v_ts - v_t).abs() <= 1e-10 * v_t);
            }
        }
    }
}

/// The named schedules are diffusers' formulas, typed out here; names parse.
#[test]
fn named_schedules_are_diffusers_formulas() {
    let lin = discrete_by_name("ddpm-linear:1000").unwrap();
    for (i, b) in lin.betas().iter().enumerate() {
        assert!((b - (1e-4 + (0.02 - 1e-4) * i as f64 / 999.0)).abs() <= 1e-15, "beta[{i}] = {b}");
    }
    let sl = discrete_by_name("ddpm-scaled-linear").unwrap();
    assert_eq!(sl.len(), 1000);
    for (i, b) in sl.betas().iter().enumerate() {
        let r = 0.00085f64.sqrt() + (0.012f64.sqrt() - 0.00085f64.sqrt()) * i as f64 / 999.0;
        assert!((b - r * r).abs() <= 1e-15, "beta[{i}] = {b}");
    }
    let cos = discrete_by_name("ddpm-cosine:1000").unwrap();
    let abar = |t: f64| ((t + 0.008) / 1.008 * std::f64::consts::PI / 2.0).cos().powi(2);
    for i in [0usize, 10, 500, 900] {
        // Uncapped, alphabar_i telescopes to abar((i + 1)/N) / abar(0).
        let want = abar((i + 1) as f64 / 1000.0) / abar(0.0);
        assert!((cos.alphas_cumprod()[i] - want).abs() <= 1e-12 * want, "i = {i}");
    }
    assert!((cos.betas()[999] - 0.999).abs() < 1e-12, "the last beta is capped at 0.999");
    assert_eq!(discrete_by_name("ddpm-linear:50").unwrap().len(), 50);
    for name in ["ddpm-linear:1000", "ddpm-cosine:64", "ddpm-scaled-linear"] {
        let sde = sde_by_name(name).unwrap();
        assert!(sde.name().starts_with("ddpm-"));
    }
    for bad in ["ddpm-linear:", "ddpm-linear:1e3", "ddpm-linear:1", "ddpm-linear:0", "ddpm-squares:1000"] {
        assert!(sde_by_name(bad).is_err(), "{bad}");
        assert!(discrete_by_name(bad).is_err(), "{bad}");
    }
    let from_betas = DiscreteVp::from_betas(&lin.betas()).unwrap();
    for (x, y) in from_betas.alphas_cumprod().iter().zip(lin.alphas_cumprod()) {
        assert!((x - y).abs() <= 1e-15);
    }
}

/// diffusers' `set_timesteps`, worked by hand from its formulas (numpy rounds half to even).
#[test]
fn diffusers_timesteps_by_hand() {
    let s = DiscreteVp::ddpm_linear(1000).unwrap();
    let ts = |sp, n| s.diffusers_timesteps(sp, n).unwrap();
    let lead0 = Spacing::Leading { steps_offset: 0 };
    let lead1 = Spacing::Leading { steps_offset: 1 };
    assert_eq!(ts(lead0, 10), vec![900, 800, 700, 600, 500, 400, 300, 200, 100, 0]);
    assert_eq!(ts(lead1, 10), vec![901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
    assert_eq!(ts(Spacing::Trailing, 10), vec![999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
    assert_eq!(ts(Spacing::Linspace, 10), vec![999, 888, 777, 666, 555, 444, 333, 222, 111, 0]);
    // arange(1000, 0, -333.33) = 1000, 666.67, 333.33 -> round - 1; 1000 // 3 = 333.
    assert_eq!(ts(Spacing::Trailing, 3), vec![999, 666, 332]);
    assert_eq!(ts(lead1, 3), vec![667, 334, 1]);
    assert_eq!(ts(Spacing::Trailing, 1000).len(), 1000);
    // numpy's arange steps by delta = (999 - 19.98) - 999 = -19.980000000000018, so at k = 25 it
    // gives 499.4999999999995 (rounds to 499), not 499.5 (which would round to 500).
    let odd = DiscreteVp::ddpm_linear(999).unwrap().diffusers_timesteps(Spacing::Trailing, 50).unwrap();
    assert_eq!(&odd[24..27], &[518, 498, 479]);
    assert_eq!(ts(Spacing::Linspace, 1), vec![0]);
    let small = DiscreteVp::ddpm_linear(10).unwrap();
    // linspace(0, 9, 3) = 0, 4.5, 9: 4.5 rounds to 4; arange(10, 0, -2.5) = 10, 7.5, 5, 2.5 -> 10, 8, 5, 2.
    assert_eq!(small.diffusers_timesteps(Spacing::Linspace, 3).unwrap(), vec![9, 4, 0]);
    assert_eq!(small.diffusers_timesteps(Spacing::Trailing, 4).unwrap(), vec![9, 7, 4, 1]);
    assert_eq!(small.diffusers_timesteps(lead0, 3).unwrap(), vec![6, 3, 0]);
    // Bad counts and offsets.
    for n in [0usize, 1001] {
        assert!(matches!(s.diffusers_timesteps(Spacing::Trailing, n), Err(Error::InvalidSteps { .. })), "{n}");
    }
    assert!(matches!(s.diffusers_timesteps(lead1, 1000), Err(Error::InvalidParameter { name: "steps_offset", .. })));
    // Grid ends.
    let g = s.diffusers_grid(Spacing::Trailing, 10, FinalStep::AlphaOne).unwrap();
    assert_eq!(g.steps(), 10);
    assert_eq!(g.start(), 1.0);
    assert_eq!(g.times()[9], 0.1);
    assert_eq!(g.end(), 0.0);
    let g = s.diffusers_grid(Spacing::Trailing, 10, FinalStep::FirstTimestep).unwrap();
    assert_eq!(g.end(), 1e-3);
    let g = s.diffusers_grid(Spacing::Linspace, 10, FinalStep::FirstTimestep).unwrap();
    assert_eq!((g.steps(), g.end()), (9, 1e-3), "no step from timestep 0 to itself");
    let g = s.diffusers_grid(Spacing::Linspace, 10, FinalStep::Tweedie).unwrap();
    assert_eq!((g.steps(), g.end()), (9, 1e-3));
    let e = s.clone().with_convention(TimeConvention::Endpoints);
    assert!(matches!(
        e.diffusers_grid(Spacing::Trailing, 10, FinalStep::AlphaOne),
        Err(Error::InvalidParameter { name: "final_step", .. })
    ));
    assert_eq!(e.diffusers_grid(lead0, 10, FinalStep::Tweedie).unwrap().end(), 0.0);
    assert!(matches!(s.diffusers_grid(Spacing::Linspace, 1, FinalStep::Tweedie), Err(Error::InvalidGrid { .. })));
}

// ---------------------------------------------------------------------------
// DDPM and DDIM, written on alpha-bar as in Ho et al. (2020) and Song et al. (2021a).
// ---------------------------------------------------------------------------

const MU: f64 = 0.7;
const S0: f64 = 0.45;

/// The exact eps-prediction of data `N(MU, S0^2)` at `alphabar = ab`: `-sqrt(1 - ab)` times the score.
fn eps_of(ab: f64, x: f64) -> f64 {
    let score = -(x - ab.sqrt() * MU) / (ab * S0 * S0 + 1.0 - ab);
    -(1.0 - ab).sqrt() * score
}

/// DDPM's loop over timesteps `ts` with "fixed_small" variance, the last step going to `alphabar = 1`.
fn ddpm_by_hand(abar: &[f64], ts: &[usize], mut x: f64, z: &[f64]) -> f64 {
    for (k, &i) in ts.iter().enumerate() {
        let ab_t = abar[i];
        let ab_prev = ts.get(k + 1).map_or(1.0, |&j| abar[j]);
        let alpha_t = ab_t / ab_prev;
        let beta_t = 1.0 - alpha_t;
        let x0 = (x - (1.0 - ab_t).sqrt() * eps_of(ab_t, x)) / ab_t.sqrt();
        let mean = ab_prev.sqrt() * beta_t / (1.0 - ab_t) * x0 + alpha_t.sqrt() * (1.0 - ab_prev) / (1.0 - ab_t) * x;
        let var = (1.0 - ab_prev) / (1.0 - ab_t) * beta_t;
        x = mean + var.sqrt() * z[k];
    }
    x
}

/// DDIM(eta)'s loop over timesteps `ts`, the last step going to `alphabar = 1`.
fn ddim_by_hand(abar: &[f64], ts: &[usize], eta: f64, mut x: f64, z: &[f64]) -> f64 {
    for (k, &i) in ts.iter().enumerate() {
        let ab_t = abar[i];
        let ab_prev = ts.get(k + 1).map_or(1.0, |&j| abar[j]);
        let eps = eps_of(ab_t, x);
        let x0 = (x - (1.0 - ab_t).sqrt() * eps) / ab_t.sqrt();
        let std = eta * ((1.0 - ab_prev) / (1.0 - ab_t) * (1.0 - ab_t / ab_prev)).sqrt();
        x = ab_prev.sqrt() * x0 + (1.0 - ab_prev - std * std).sqrt() * eps + std * z[k];
    }
    x
}

type BoxedSolver = Box<dyn Solver<Array2<f64>>>;

/// Hands out the rows of `z[k]` on draw `k`.
struct SeqNoise {
    z: Vec<Vec<f64>>,
    draws: usize,
}

impl SeqNoise {
    fn next(&mut self, like: &Array2<f64>) -> Array2<f64> {
        let col = self.z[self.draws].clone();
        self.draws += 1;
        Array2::from_shape_vec(like.raw_dim(), col).unwrap()
    }
}

impl Noise<Array2<f64>> for SeqNoise {
    fn step_normal(&mut self, _t: f64, _t_next: f64, like: &Array2<f64>) -> scoresde_solvers::Result<Array2<f64>> {
        Ok(self.next(like))
    }
    fn normal(&mut self, like: &Array2<f64>) -> Array2<f64> {
        self.next(like)
    }
}

/// `ancestral` (fixed small) and `ddim` (eta 0 and 1) on a discrete schedule's diffusers grid, with
/// the exact Gaussian score and injected noise, against DDPM's and DDIM's recursions on alpha-bar,
/// to 1e-12: linear and cosine tables, trailing and leading grids, both conventions (`Shifted` ending
/// at `t = 0`, `Endpoints` ending with the Tweedie step), and `Shifted` ending with the Tweedie
/// step gives the same samples as its step to `t = 0`.
#[test]
fn ancestral_and_ddim_are_ddpm_and_ddim_on_alphabar() {
    let x_start = [-2.3, -0.4, 0.05, 0.9, 1.8];
    let rows = x_start.len();
    let steps = 10;
    let z: Vec<Vec<f64>> =
        (0..=steps).map(|k| (0..rows).map(|r| ((k * 7 + r * 3) % 11) as f64 / 4.0 - 1.2).collect()).collect();
    let spacings = [Spacing::Trailing, Spacing::Leading { steps_offset: 1 }, Spacing::Leading { steps_offset: 0 }];
    let mut checked = 0;
    for base in [DiscreteVp::ddpm_linear(1000).unwrap(), DiscreteVp::squaredcos_cap_v2(1000, 0.999).unwrap()] {
        for (conv, end) in [
            (TimeConvention::Shifted, FinalStep::AlphaOne),
            (TimeConvention::Shifted, FinalStep::Tweedie),
            (TimeConvention::Endpoints, FinalStep::Tweedie),
        ] {
            let sde = base.clone().with_convention(conv);
            let score = Gauss1dScore::new(&sde, MU, S0);
            for spacing in spacings {
                let ts = sde.diffusers_timesteps(spacing, steps).unwrap();
                let grid = sde.diffusers_grid(spacing, steps, end).unwrap();
                let denoise = end == FinalStep::Tweedie;
                let solvers: Vec<(&str, BoxedSolver)> = vec![
                    ("ancestral", Box::new(Ancestral::new())),
                    ("ddim", Box::new(Ddim::new())),
                    ("ddim-eta1", Box::new(Ddim::with_eta(1.0).unwrap())),
                ];
                for (name, mut solver) in solvers {
                    let x = Array2::from_shape_vec((rows, 1), x_start.to_vec()).unwrap();
                    let mut noise = SeqNoise { z: z.clone(), draws: 0 };
                    let run = Sampler::new(&sde, &score).denoise(denoise).run(solver.as_mut(), x, &grid, &mut noise);
                    let got = run.unwrap().x;
                    for r in 0..rows {
                        let zr: Vec<f64> = z.iter().map(|zk| zk[r]).collect();
                        let abar = sde.alphas_cumprod();
                        let want = match name {
                            "ancestral" => ddpm_by_hand(abar, &ts, x_start[r], &zr),
                            "ddim" => ddim_by_hand(abar, &ts, 0.0, x_start[r], &zr),
                            _ => ddim_by_hand(abar, &ts, 1.0, x_start[r], &zr),
                        };
                        let g = got[[r, 0]];
                        assert!(
                            (g - want).abs() <= 1e-12 * want.abs().max(1.0),
                            "{name} on {} {conv:?} {spacing:?} {end:?}, row {r}: {g} vs {want}",
                            sde.name()
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 2 * 3 * 3 * 3 * rows);
}

/// Bad tables, counts and parameters are errors, never panics.
#[test]
fn bad_input_is_an_error() {
    let bad_tables: [&[f64]; 8] =
        [&[], &[0.5], &[0.9, 0.95, 0.5], &[0.9, 0.9], &[1.0, 0.5], &[0.9, 0.0], &[0.9, f64::NAN], &[0.9, -0.1]];
    for t in bad_tables {
        let e = DiscreteVp::from_alphas_cumprod(t).unwrap_err();
        assert!(matches!(e, Error::InvalidParameter { name: "alphas_cumprod", .. }), "{t:?}: {e}");
    }
    assert!(DiscreteVp::from_alphas_cumprod(&[1.5, 0.5]).is_err());
    let bad_betas: [&[f64]; 6] = [&[0.1], &[0.1, 0.0], &[0.1, 1.0], &[0.1, f64::NAN], &[0.1, -0.2], &[0.1, 1.5]];
    for b in bad_betas {
        assert!(DiscreteVp::from_betas(b).is_err(), "{b:?}");
    }
    assert!(DiscreteVp::linear(1, 1e-4, 0.02).is_err());
    assert!(DiscreteVp::linear(1000, 0.0, 0.02).is_err());
    assert!(DiscreteVp::linear(1000, 0.02, 1e-4).is_err());
    assert!(DiscreteVp::linear(1000, 1e-4, 1.0).is_err());
    assert!(DiscreteVp::linear(2_000_000, 1e-4, 0.02).is_err());
    assert!(DiscreteVp::scaled_linear(1000, f64::NAN, 0.012).is_err());
    assert!(DiscreteVp::squaredcos_cap_v2(1000, 1.0).is_err());
    assert!(DiscreteVp::squaredcos_cap_v2(0, 0.999).is_err());
    let msg = DiscreteVp::from_alphas_cumprod(&[0.9, 0.95]).unwrap_err().to_string();
    assert!(msg.contains("alphabar[0]") && msg.contains("decrease"), "{msg}");
    // Two entries are enough.
    let two = DiscreteVp::from_alphas_cumprod(&[0.9, 0.2]).unwrap();
    assert!((two.alpha(1.0).powi(2) - 0.2).abs() < 1e-15);
    assert!((two.alpha(0.5).powi(2) - 0.9).abs() < 1e-15);
}

// ---------------------------------------------------------------------------
// Exact output laws and orders (as tests/sdes.rs does for the continuous SDEs).
// ---------------------------------------------------------------------------

/// Samplers whose steps evaluate the drift `f(t)` and `g(t)` at a stage other than the step's
/// start: the piecewise-constant drift jumps at each of the N knots, so each step that crosses
/// or ends on a knot makes an O(h) local error and these methods are first order on a discrete
/// schedule, whatever their declared order (measured below on knot-aligned grids). The
/// exponential integrators (DDIM, DPM-Solver, ancestral, EDM Heun in sigma/a) see only
/// a, sigma and lambda, which are continuous, and keep their orders.
const DRIFT_STAGE: [&str; 2] = ["ode-heun", "ode-rk4"];

/// The registry's measured samplers (rows, declared orders and step counts).
fn measured_samplers() -> Vec<(&'static scoresde_solvers::SolverInfo, f64, &'static [usize])> {
    SOLVERS
        .iter()
        .filter(|s| s.is_sampler())
        .filter_map(|s| match (s.check, s.order.value()) {
            (OrderCheck::Measured { steps, .. }, Some(p)) => Some((s, p as f64, steps)),
            _ => None,
        })
        .collect()
}

/// Error `|dmean| + |dvar|` of the exact law of `info`'s sampler on data `N(mu, s0^2)` over `grid`
/// against `p_end`.
fn law_error(info: &scoresde_solvers::SolverInfo, sde: &DiscreteVp, grid: &TimeGrid, mu: f64, s0: f64) -> f64 {
    let exact = Gauss1d::marginal(sde, mu, s0, grid.end());
    let mut solver = info.build::<Array2<f64>>().unwrap();
    let (law, _) = scheme_law_1d(solver.as_mut(), sde, mu, s0, grid, false).unwrap();
    (law.mean - exact.mean).abs() + (law.var - exact.var).abs()
}

/// As tests/sdes.rs on the continuous SDEs: every measured sampler of the registry on the three
/// named 1000-step schedules (and `ddpm-linear` under `Endpoints`), log-SNR grids from 1 to eps
/// over the row's step counts: the exact law's error decreases strictly and its fitted order is at
/// least the declared one - 0.15 — except the [`DRIFT_STAGE`] methods (see there).
#[test]
fn samplers_converge_on_discrete_schedules() {
    let (mu, s0) = (-0.7, 0.6);
    let rows = measured_samplers();
    assert!(rows.len() >= 10, "{} rows", rows.len());
    let mut sdes = named();
    sdes.push(DiscreteVp::ddpm_linear(1000).unwrap().with_convention(TimeConvention::Endpoints));
    for sde in &sdes {
        for &(info, order, steps) in &rows {
            if DRIFT_STAGE.contains(&info.name) {
                continue;
            }
            let hs: Vec<f64> = steps.iter().map(|&n| 1.0 / n as f64).collect();
            let errs: Vec<f64> = steps
                .iter()
                .map(|&n| law_error(info, sde, &TimeGrid::log_snr(sde, 1.0, sde.t_eps(), n).unwrap(), mu, s0))
                .collect();
            for w in errs.windows(2) {
                assert!(w[1] < w[0], "{} on {} {:?}: {errs:?}", info.name, sde.name(), sde.convention());
            }
            let slope = loglog_slope(&hs, &errs);
            eprintln!("{} on {} ({:?}): order {slope:.3}", info.name, sde.name(), sde.convention());
            assert!(slope >= order.min(2.0) - ORDER_TOL, "{} on {}: order {slope}", info.name, sde.name());
        }
    }
}

/// On a coarse 16-step table (betas 0.01 .. 0.45) with uniform grids aligned with its knots
/// (15 k steps from 1 to t_0 = 1/16), every measured sampler converges strictly with at least its
/// declared order - 0.15, except that the [`DRIFT_STAGE`] methods are held to order 1: their last
/// stage, at a knot, takes the drift of the segment below it (the measured orders are 1.00).
#[test]
fn knot_aligned_grids_and_first_order_drift_stages() {
    let (mu, s0) = (-0.7, 0.6);
    let sde = DiscreteVp::linear(16, 0.01, 0.45).unwrap();
    let steps = [60usize, 120, 240, 480];
    let hs: Vec<f64> = steps.iter().map(|&n| 1.0 / n as f64).collect();
    let mut failures = Vec::new();
    for (info, order, _) in measured_samplers() {
        let errs: Vec<f64> = steps
            .iter()
            .map(|&n| law_error(info, &sde, &TimeGrid::uniform(1.0, sde.t_eps(), n).unwrap(), mu, s0))
            .collect();
        let slope = loglog_slope(&hs, &errs);
        eprintln!("{} on the 16-step table: order {slope:.3}, errors {errs:?}", info.name);
        let floor = if DRIFT_STAGE.contains(&info.name) { 1.0 } else { order.min(2.0) };
        // DPM-Solver++(3M) is still pre-asymptotic at these step counts (its error constant
        // is small): the local slopes rise towards 2 (measured 1.40, 1.63, 1.80), so it is
        // held to a rising local order of at least 1.5 overall instead.
        let pre_asymptotic = info.name == "dpm3m" && {
            let local: Vec<f64> = errs.windows(2).map(|w| (w[0] / w[1]).log2()).collect();
            local.windows(2).all(|l| l[1] > l[0]) && slope >= 1.5
        };
        if errs.windows(2).any(|w| w[1] >= w[0]) || (slope < floor - ORDER_TOL && !pre_asymptotic) {
            failures.push(format!("{}: order {slope}, errors {errs:?}", info.name));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Forward Euler–Maruyama from data `N(0.8, 0.3^2)`: the exact law of the scheme converges to the
/// closed-form marginal with its declared weak order ± 0.15, on the named schedules and the coarse
/// table, to t = 0.5 and t = 1 — to t = 0.99 on `ddpm-cosine`, whose last segment (beta capped at
/// 0.999) has `g^2 = -N ln(0.001) = 6908`, beyond EM's stability limit `h < 2/g^2` at these steps.
#[test]
fn forward_em_law_converges_on_discrete_schedules() {
    let (mu, s0) = (0.8, 0.3);
    let order = solver_info("forward-em").unwrap().order.value().unwrap() as f64;
    for sde in named().into_iter().chain([DiscreteVp::linear(16, 0.01, 0.45).unwrap()]) {
        let ends = if sde.name() == "ddpm-cosine" { [0.5, 0.99] } else { [0.5, 1.0] };
        for t_end in ends {
            let exact = Gauss1d::marginal(&sde, mu, s0, t_end);
            let (mut hs, mut errs) = (vec![], vec![]);
            for n in [256usize, 512, 1024, 2048] {
                let grid = TimeGrid::uniform(0.0, t_end, n).unwrap();
                let (law, _) = scheme_law_1d(&mut ForwardEulerMaruyama, &sde, mu, s0, &grid, false).unwrap();
                hs.push(t_end / n as f64);
                errs.push((law.mean - exact.mean).abs() + (law.var - exact.var).abs());
            }
            let slope = loglog_slope(&hs, &errs);
            assert!((slope - order).abs() <= ORDER_TOL, "{} to {t_end}: order {slope}, errors {errs:?}", sde.name());
        }
    }
}

/// DDPM's linear table against the continuous VP-SDE (0.1, 20) it is usually identified with:
/// at t = eps = 1e-3 (timestep 0 under `Shifted`) the discrete sigma is sqrt(beta_0) = 0.01, the
/// continuous one sqrt(1 - exp(-B(1e-3))) = 0.010485: 4.63% below. The gap is largest there and
/// shrinks over the first 100 timesteps (printed: 2.50% at t = 0.01, 0.77% at 0.05, 0.36% at 0.1,
/// the figures quoted in the README). Under `Endpoints` timestep 1 sits at t = 1/999, where the
/// discrete sigma is 41% above the continuous one: the `Shifted` convention is the one aligned with
/// the VP-SDE.
#[test]
fn discrete_linear_against_continuous_vp() {
    let d = DiscreteVp::ddpm_linear(1000).unwrap();
    let vp = VpSde::default();
    let b: f64 = 0.1 * 1e-3 + 0.5 * 19.9 * 1e-6;
    let want = 1.0 - 1e-2 / (-(-b).exp_m1()).sqrt();
    let gap = |t: f64| 1.0 - d.sigma(t) / vp.sigma(t);
    assert!((gap(1e-3) - want).abs() < 1e-12, "{} vs {want}", gap(1e-3));
    assert!((gap(1e-3) - 0.0463).abs() < 5e-5, "{}", gap(1e-3));
    let gaps: Vec<f64> = (0..1000).map(|i| gap(d.t_of_timestep(i).unwrap())).collect();
    let worst = gaps.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    assert_eq!(worst, gaps[0], "the largest gap is at timestep 0");
    for w in gaps[..100].windows(2) {
        assert!(w[1] < w[0], "{w:?}");
    }
    let lam_gap = (1..=1000).map(|i| (d.log_snr(i as f64 / 1000.0) - vp.log_snr(i as f64 / 1000.0)).abs());
    let lam_gap = lam_gap.fold(0.0, f64::max);
    let e = d.clone().with_convention(TimeConvention::Endpoints);
    let t1 = e.t_of_timestep(1).unwrap();
    let e_gap = e.sigma(t1) / vp.sigma(t1) - 1.0;
    assert!(e_gap > 0.4, "{e_gap}");
    eprintln!(
        "sigma gap (1 - discrete/continuous) at t = 1e-3: {:.3}% (the continuous sigma is {:.3}% above the \
         discrete); t = 0.01: {:.3}%, 0.05: {:.3}%, 0.1: {:.3}%, 0.2: {:.3}%; largest |lambda gap| {lam_gap:.4}; \
         Endpoints at timestep 1: discrete {:.1}% above",
        100.0 * gaps[0],
        100.0 * (vp.sigma(1e-3) / d.sigma(1e-3) - 1.0),
        100.0 * gaps[9],
        100.0 * gaps[49],
        100.0 * gaps[99],
        100.0 * gaps[199],
        100.0 * e_gap
    );
}

/// A grid ending at `t = 0` (`FinalStep::AlphaOne`, lambda = inf there): every sampler of the
/// registry either returns a finite sample or reports `Error::NonFinite` at that last step (the
/// multistep DPM-Solver++, whose correction divides by the last lambda step) — never a panic or
/// a silent NaN; those built on a and sigma alone take the step.
#[test]
fn every_sampler_on_a_grid_ending_at_clean_data() {
    let sde = DiscreteVp::ddpm_linear(1000).unwrap();
    let grid = sde.diffusers_grid(Spacing::Trailing, 10, FinalStep::AlphaOne).unwrap();
    let score = Gauss1dScore::new(&sde, MU, S0);
    for info in SOLVERS.iter().filter(|s| s.is_sampler()) {
        let mut solver = info.build::<Array2<f64>>().unwrap();
        let x = Array2::from_shape_vec((3, 1), vec![-1.0, 0.2, 1.5]).unwrap();
        let mut noise = GaussianNoise::new(3);
        match Sampler::new(&sde, &score).run(solver.as_mut(), x, &grid, &mut noise) {
            Ok(run) => assert!(run.x.iter().all(|v| v.is_finite()), "{}", info.name),
            Err(Error::NonFinite { step: 10, t: 0.0 }) => {
                assert!(!["ancestral", "ancestral-large", "ddim", "ddim-eta1", "dpm1"].contains(&info.name))
            }
            Err(e) => panic!("{}: {e}", info.name),
        }
    }
}
