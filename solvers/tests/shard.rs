//! Shard-invariant sampling: with [`RowNoise`], sample `i`'s prior draw and
//! step noise depend on `(seed, i, draw)` only, so a run split into pieces of
//! any sizes (batches of one process, shards on several processes or
//! machines) gives the rows of the whole run bit for bit, for SDE samplers
//! (reverse-em, ancestral), ODE samplers (ode-heun) and multistep ones
//! (dpm2m, whose history is per batch), on `[B, D]` and image-shaped
//! `[B, C, H, W]` states; and with `--features tch`, the same numbers on
//! `tch::Tensor` states as on ndarray arrays.

use ndarray::{concatenate, Array, Array2, Array4, Axis, Dimension, RemoveAxis};
use scoresde_solvers::prelude::*;

const SAMPLERS: [&str; 4] = ["reverse-em", "ancestral", "ode-heun", "dpm2m"];

/// The exact bit patterns.
fn bits<D: Dimension>(x: &Array<f64, D>) -> Vec<u64> {
    x.iter().map(|v| v.to_bits()).collect()
}

/// Rows `rows` of the run seeded `seed` on the 8-Gaussians ring, in one batch,
/// with the final denoising step.
fn run_rows(name: &str, seed: u64, rows: std::ops::Range<u64>, steps: usize) -> Array2<f64> {
    let sde = VpSde::default();
    let score = ExactScore::new(GaussianMixture::ring(8, 2.0, 0.1).unwrap(), sde);
    let grid = TimeGrid::reverse(&sde, steps).unwrap();
    let mut noise = RowNoise::new(seed, rows.clone());
    let like = Array2::<f64>::zeros(((rows.end - rows.start) as usize, 2));
    let x = prior_sample(&sde, &like, &mut noise);
    let mut solver = by_name::<Array2<f64>>(name).unwrap();
    Sampler::new(&sde, &score).denoise(true).run(&mut solver, x, &grid, &mut noise).unwrap().x
}

/// The run of `n` rows in pieces that start at `cuts` (and 0), concatenated.
fn in_pieces(name: &str, seed: u64, n: u64, cuts: &[u64], steps: usize) -> Array2<f64> {
    let mut starts = vec![0];
    starts.extend_from_slice(cuts);
    starts.push(n);
    let pieces: Vec<Array2<f64>> = starts.windows(2).map(|w| run_rows(name, seed, w[0]..w[1], steps)).collect();
    let views: Vec<_> = pieces.iter().map(|p| p.view()).collect();
    concatenate(Axis(0), &views).unwrap()
}

#[test]
fn pieces_of_any_sizes_give_the_whole_run_bit_for_bit() {
    let (n, steps) = (37u64, 8);
    for name in SAMPLERS {
        let whole = run_rows(name, 3, 0..n, steps);
        assert!(whole.iter().all(|v| v.is_finite()), "{name}");
        // Two shards of contiguous blocks; batches of 5 (a ragged last one); single rows.
        for cuts in [vec![19], (5..n).step_by(5).collect::<Vec<_>>(), vec![1, 2, 36]] {
            let split = in_pieces(name, 3, n, &cuts, steps);
            assert_eq!(bits(&split), bits(&whole), "{name}: pieces starting at {cuts:?} differ from the whole run");
        }
        // The seed does matter, and so does the row index: rows 1..n shifted down are not rows 0..n-1.
        let other = run_rows(name, 4, 0..n, steps);
        assert_ne!(bits(&other), bits(&whole), "{name}");
        let shifted = run_rows(name, 3, 1..n + 1, steps);
        assert_ne!(bits(&shifted), bits(&whole), "{name}");
    }
}

/// The exact score of data `x_0 ~ N(MU, S^2 I)` elementwise, for any array shape.
struct ElementwiseGaussian(VpSde);
const MU: f64 = 0.7;
const S: f64 = 0.4;

impl<D: Dimension + RemoveAxis + 'static> Score<Array<f64, D>> for ElementwiseGaussian {
    fn score(&self, x: &Array<f64, D>, t: f64) -> scoresde_solvers::Result<Array<f64, D>> {
        let (a, sigma) = (self.0.alpha(t), self.0.sigma(t));
        let v = a * a * S * S + sigma * sigma;
        Ok(x.mapv(|x| -(x - a * MU) / v))
    }
}

fn run_images(name: &str, seed: u64, rows: std::ops::Range<u64>) -> Array4<f64> {
    let sde = VpSde::default();
    let score = ElementwiseGaussian(sde);
    let grid = TimeGrid::reverse(&sde, 6).unwrap();
    let mut noise = RowNoise::new(seed, rows.clone());
    let like = Array4::<f64>::zeros(((rows.end - rows.start) as usize, 2, 3, 3));
    let x = prior_sample(&sde, &like, &mut noise);
    let mut solver = by_name::<Array4<f64>>(name).unwrap();
    Sampler::new(&sde, &score).denoise(true).run(&mut solver, x, &grid, &mut noise).unwrap().x
}

#[test]
fn image_shaped_states_split_bit_for_bit_too() {
    for name in SAMPLERS {
        let whole = run_images(name, 9, 0..11);
        let (a, b) = (run_images(name, 9, 0..4), run_images(name, 9, 4..11));
        let split = concatenate(Axis(0), &[a.view(), b.view()]).unwrap();
        assert_eq!(bits(&split), bits(&whole), "{name}");
        // Row i of an image state draws what row i of the flat [B, 18] state draws.
        let mut flat_noise = RowNoise::new(9, 0..11);
        let mut image_noise = RowNoise::new(9, 0..11);
        let flat = Noise::normal(&mut flat_noise, &Array2::<f64>::zeros((11, 18)));
        let image = Noise::normal(&mut image_noise, &Array4::<f64>::zeros((11, 2, 3, 3)));
        assert_eq!(bits(&flat), bits(&image.into_shape_with_order((11, 18)).unwrap()));
    }
}

#[test]
fn row_noise_is_a_function_of_seed_row_and_draw() {
    let like = |rows: usize| Array2::<f64>::zeros((rows, 3));
    // The prior draw then two step draws, for rows 0..10 at once and as 0..4, 4..10.
    let draws = |rows: std::ops::Range<u64>| -> Vec<Array2<f64>> {
        let mut noise = RowNoise::new(7, rows.clone());
        let n = (rows.end - rows.start) as usize;
        let mut out = vec![Noise::normal(&mut noise, &like(n))];
        for _ in 0..2 {
            out.push(noise.step_normal(1.0, 0.5, &like(n)).unwrap());
        }
        assert_eq!(noise.draws(), 3);
        out
    };
    let whole = draws(0..10);
    let (a, b) = (draws(0..4), draws(4..10));
    for k in 0..3 {
        assert_eq!(bits(&whole[k]), bits(&concatenate(Axis(0), &[a[k].view(), b[k].view()]).unwrap()), "draw {k}");
    }
    assert_ne!(bits(&whole[0]), bits(&whole[1]), "successive draws differ");
    // The times of a step do not enter: only the counter does.
    let mut x = RowNoise::new(7, 0..10);
    let _ = Noise::normal(&mut x, &like(10));
    assert_eq!(bits(&x.step_normal(0.3, 0.2, &like(10)).unwrap()), bits(&whole[1]));
    // Another seed, other numbers; a shape that does not fit the rows is an
    // error (and NaNs where no error can be returned).
    let mut other = RowNoise::new(8, 0..10);
    assert_ne!(bits(&Noise::normal(&mut other, &like(10))), bits(&whole[0]));
    let e = other.step_normal(1.0, 0.5, &like(9)).unwrap_err();
    assert!(e.to_string().contains("per-row normals"), "{e}");
    assert!(Noise::normal(&mut other, &like(9)).iter().all(|v| v.is_nan()));
}

#[test]
fn row_noise_is_standard_normal_and_independent_across_rows_and_draws() {
    // 4000 rows x 5 values, two draws: moments within K sd of N(0, 1).
    let (rows, d) = (4000usize, 5usize);
    let mut noise = RowNoise::new(1, 0..rows as u64);
    let z0 = Noise::normal(&mut noise, &Array2::<f64>::zeros((rows, d)));
    let z1 = Noise::normal(&mut noise, &Array2::<f64>::zeros((rows, d)));
    let m = (rows * d) as f64;
    let k = 5.0;
    let mean = z0.sum() / m;
    assert!(mean.abs() < k / m.sqrt(), "{mean}");
    let var = z0.mapv(|v| v * v).sum() / m;
    assert!((var - 1.0).abs() < k * (2.0 / m).sqrt(), "{var}");
    // Draws k = 0 and 1 of a row, and neighbouring rows of one draw, are uncorrelated.
    let across_draws = (&z0 * &z1).sum() / m;
    assert!(across_draws.abs() < k / m.sqrt(), "{across_draws}");
    let (up, down) = (z0.slice(ndarray::s![1.., ..]), z0.slice(ndarray::s![..-1, ..]));
    let across_rows = (&up * &down).sum() / (((rows - 1) * d) as f64);
    assert!(across_rows.abs() < k / (((rows - 1) * d) as f64).sqrt(), "{across_rows}");
}

/// The tensor backend draws what the ndarray backend draws, per row, so a
/// run's samples are the same numbers on either (and on any device: the
/// draws are made on the host).
#[cfg(feature = "tch")]
#[test]
fn tensor_states_draw_the_ndarray_numbers() {
    use tch::{Device, Kind, Tensor};
    for (kind, single) in [(Kind::Double, false), (Kind::Float, true)] {
        let mut t = RowNoise::new(5, 3..9);
        let mut a = RowNoise::new(5, 3..9);
        for _ in 0..2 {
            let z = Noise::normal(&mut t, &Tensor::zeros([6, 1, 2, 2], (kind, Device::Cpu)));
            assert_eq!(z.kind(), kind);
            let host: Vec<f64> = Vec::<f64>::try_from(z.reshape([-1]).to_kind(Kind::Double)).unwrap();
            let want: Vec<f64> = if single {
                Noise::normal(&mut a, &Array2::<f32>::zeros((6, 4))).iter().map(|&v| f64::from(v)).collect()
            } else {
                Noise::normal(&mut a, &Array2::<f64>::zeros((6, 4))).iter().copied().collect()
            };
            assert_eq!(
                host.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                want.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
        let e = t.step_normal(1.0, 0.5, &Tensor::zeros([5, 4], (kind, Device::Cpu))).unwrap_err();
        assert!(e.to_string().contains("per-row normals"), "{e}");
    }
}
