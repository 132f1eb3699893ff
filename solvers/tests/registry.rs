//! The registry's declarations against the solvers it builds: names are unique and each
//! built solver reports its row's name and direction; deterministic rows draw no noise and
//! stochastic ones do; `SAMPLERS` is the reverse-time rows; parameterised names resolve to
//! the row that declares them. (Orders and score evaluations per step are checked in
//! `ode.rs` and `sdes.rs`, the README table in `readme.rs`.)

use std::collections::HashSet;

use ndarray::Array2;
use scoresde_solvers::prelude::*;
use scoresde_solvers::{solver_info, Direction, SolverKind, SAMPLERS, SOLVERS};

/// A noise source that counts its draws.
struct Counting {
    inner: GaussianNoise,
    draws: usize,
}

impl Noise<Array2<f64>> for Counting {
    fn step_normal(&mut self, t: f64, t_next: f64, like: &Array2<f64>) -> scoresde_solvers::Result<Array2<f64>> {
        self.draws += 1;
        self.inner.step_normal(t, t_next, like)
    }
    fn normal(&mut self, like: &Array2<f64>) -> Array2<f64> {
        self.draws += 1;
        self.inner.normal(like)
    }
}

#[test]
fn names_are_unique_and_samplers_are_the_reverse_rows() {
    let mut seen = HashSet::new();
    for s in SOLVERS {
        assert!(seen.insert(s.name), "{} twice", s.name);
        assert!(!s.name.contains(':'), "{}: `:` starts a parameter", s.name);
        if let Some(p) = s.param {
            assert!(seen.insert(p.prefix) || p.prefix == s.name, "{}: prefix {} taken", s.name, p.prefix);
        }
    }
    let reverse: Vec<&str> = SOLVERS.iter().filter(|s| s.is_sampler()).map(|s| s.name).collect();
    assert_eq!(SAMPLERS, reverse.as_slice());
}

#[test]
fn built_solvers_match_their_rows() {
    let sde = VpSde::default();
    let score = ExactScore::new(GaussianMixture::ring(4, 2.0, 0.3).unwrap(), sde);
    for info in SOLVERS {
        let mut solver = info.build::<Array2<f64>>().unwrap();
        assert_eq!(solver.name(), info.name);
        assert_eq!(solver.direction(), info.direction, "{}", info.name);
        assert_eq!(solver_info(info.name).unwrap().name, info.name);
        let grid = match info.direction {
            Direction::Reverse => TimeGrid::reverse(&sde, 6).unwrap(),
            Direction::Forward => TimeGrid::uniform(0.0, 1.0, 6).unwrap(),
        };
        let mut noise = Counting { inner: GaussianNoise::new(3), draws: 0 };
        let x = Array2::from_shape_fn((16, 2), |(i, j)| (i as f64 - 8.0) / 4.0 + j as f64 * 0.1);
        Sampler::new(&sde, &score).run(&mut solver, x, &grid, &mut noise).unwrap();
        match info.kind {
            SolverKind::Deterministic => assert_eq!(noise.draws, 0, "{} is declared deterministic", info.name),
            SolverKind::Stochastic => assert!(noise.draws > 0, "{} is declared stochastic", info.name),
        }
    }
}

#[test]
fn parameterised_names_resolve_to_their_rows() {
    assert_eq!(solver_info("ddim-eta:0.5").unwrap().name, "ddim-eta1");
    assert_eq!(solver_info("ode-dopri5:1e-4:1e-6").unwrap().name, "ode-dopri5");
    assert!(by_name::<Array2<f64>>("ode-dopri5:1e-4:1e-6").is_ok());
    assert_eq!(solver_info("unipc:3").unwrap().name, "unipc");
    assert_eq!(solver_info("unipc-bh1:1,lower-order-final").unwrap().name, "unipc-bh1");
    assert_eq!(solver_info("dpm3m:lower-order-final,threshold").unwrap().name, "dpm3m");
    for bad in ["ddim-eta", "dpm4m", "ode-euler:2", "forward-em:1", "dpm3m:3"] {
        assert!(by_name::<Array2<f64>>(bad).is_err(), "{bad}");
    }
    assert!(solver_info("nope").is_err());
}
