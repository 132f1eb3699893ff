//! Every registry sampler on an image-shaped tensor state `[B, 1, 4, 4]`: the
//! `tch::Tensor` backend's reductions (per-sample norms of the Langevin/PC
//! step sizes, the Dormand–Prince error norm) run over all non-batch axes, so
//! a run on `[B, 1, 4, 4]` is the run on the flattened `[B, 16]` state — the
//! same numbers, bit for bit, under the same noise — and agrees with the
//! ndarray backend on `[B, 16]` with the exact score of the same Gaussian data.
//! (The ndarray runs' laws are checked against closed forms in `reverse.rs`,
//! `ode.rs` and `langevin.rs`.) Runs with `--features tch`.
#![cfg(feature = "tch")]

use ndarray::{Array1, Array2, Ix2};
use scoresde_solvers::prelude::*;
use scoresde_solvers::SAMPLERS;
use tch::{Device, Kind, Tensor};

/// Data `x_0 ~ N(MU, S^2 I)` elementwise.
const MU: f64 = 0.7;
const S: f64 = 0.4;

/// The exact score of the data's marginal at `t`, elementwise and so
/// shape-agnostic: `-(x - a(t) MU) / (a(t)^2 S^2 + sigma(t)^2)`.
struct ElementwiseGaussian(VpSde);

impl Score<Tensor> for ElementwiseGaussian {
    fn score(&self, x: &Tensor, t: f64) -> scoresde_solvers::Result<Tensor> {
        let (a, sigma) = (self.0.alpha(t), self.0.sigma(t));
        Ok((x - a * MU) * (-1.0 / (a * a * S * S + sigma * sigma)))
    }
}

fn to_array(t: &Tensor) -> Array2<f64> {
    let n = t.size()[0];
    let a: ndarray::ArrayD<f64> = (&t.reshape([n, -1]).to_kind(Kind::Double)).try_into().expect("tensor -> ndarray");
    a.into_dimensionality::<Ix2>().expect("2-D")
}

#[test]
fn every_sampler_runs_unchanged_on_image_shaped_tensors() {
    let (b, d) = (256usize, 16usize);
    let sde = VpSde::default();
    let score = ElementwiseGaussian(sde);
    let data = GaussianMixture::gaussian(Array1::from_elem(d, MU).view(), (Array2::eye(d) * (S * S)).view()).unwrap();
    let exact = ExactScore::new(data, sde);
    let grid = TimeGrid::reverse(&sde, 20).unwrap();
    let like = Tensor::zeros([b as i64, 1, 4, 4], (Kind::Double, Device::Cpu));
    for &name in SAMPLERS {
        let run = |x: Tensor, seed: u64| {
            let mut solver = by_name::<Tensor>(name).unwrap();
            let mut noise = GaussianNoise::new(seed);
            let x = prior_sample(&sde, &x, &mut noise);
            Sampler::new(&sde, &score).run(solver.as_mut(), x, &grid, &mut noise).unwrap()
        };
        let image = run(like.copy(), 5);
        assert_eq!(image.x.size(), [b as i64, 1, 4, 4], "{name}: the state keeps its shape");
        assert_eq!(image.x.kind(), Kind::Double);
        assert!(image.x.isfinite().all().int64_value(&[]) == 1, "{name}");
        let flat = run(like.reshape([b as i64, d as i64]), 5);
        assert!(image.x.reshape([b as i64, d as i64]).equal(&flat.x), "{name}: [B, 1, 4, 4] and [B, 16] runs differ");
        assert_eq!((image.steps, image.score_evals), (flat.steps, flat.score_evals), "{name}");
        // The ndarray backend, the mixture oracle's score, the same draws.
        let mut solver = by_name::<Array2<f64>>(name).unwrap();
        let mut noise = GaussianNoise::new(5);
        let x0 = prior_sample(&sde, &Array2::<f64>::zeros((b, d)), &mut noise);
        let nd = Sampler::new(&sde, &exact).run(solver.as_mut(), x0, &grid, &mut noise).unwrap();
        let err = (&to_array(&image.x) - &nd.x).iter().fold(0.0f64, |m, v| m.max(v.abs()));
        // Two f64 evaluations of one closed form: rounding only, grown over 20 steps.
        assert!(err < 1e-9, "{name}: tensor [B, 1, 4, 4] and ndarray [B, 16] runs differ by {err}");
        // Another seed (another prior sample) gives another run: the agreement is not vacuous.
        assert!(!run(like.copy(), 6).x.equal(&image.x), "{name}");
    }
}
