//! The model-convention adapter ([`ModelConvention`]) against closed forms: fed the exact
//! network output of Gaussian-mixture data (eps, x0, v, the score, the flow velocity, each
//! written out here from the exact score), it returns the exact score; the time values it
//! feeds are the closed forms (the integer timestep at a discrete schedule's knots).

use ndarray::Array2;
use rand::SeedableRng;
use scoresde_solvers::prelude::*;
use scoresde_solvers::{
    discrete_by_name, DiscreteVp, FlowSde, ModelConvention, Prediction, Rng, SubVpSde, TimeConvention, TimeInput,
    VeSde, VpSde,
};

fn sdes() -> Vec<Box<dyn Sde>> {
    vec![
        Box::new(VpSde::default()),
        Box::new(SubVpSde::default()),
        Box::new(VeSde::default()),
        Box::new(FlowSde::default()),
        Box::new(discrete_by_name("ddpm-linear:1000").unwrap()),
        Box::new(discrete_by_name("ddpm-cosine:1000").unwrap().with_convention(TimeConvention::Endpoints)),
    ]
}

/// The network output of `prediction` for the exact score `s` at `x`: `eps = -sigma s`,
/// `x0 = (x + sigma^2 s)/a` (Tweedie), `v = a eps - sigma x0`, the velocity
/// `a' x0 + sigma' eps`.
fn exact_output(prediction: Prediction, sde: &dyn Sde, t: f64, x: &Array2<f64>, s: &Array2<f64>) -> Array2<f64> {
    let (a, sigma) = (sde.alpha(t), sde.sigma(t));
    let eps = s * -sigma;
    let x0 = (x + &(s * (sigma * sigma))) / a;
    match prediction {
        Prediction::Eps => eps,
        Prediction::X0 => x0,
        Prediction::V => &eps * a - &x0 * sigma,
        Prediction::Score => s.clone(),
        Prediction::Flow => &x0 * sde.alpha_dot(t) + &eps * sde.sigma_dot(t),
    }
}

fn max_abs(a: &Array2<f64>) -> f64 {
    a.iter().fold(0.0f64, |m, v| m.max(v.abs()))
}

/// Every prediction, on six SDEs and ten times each: the adapter's score equals the exact
/// one. The round trip rounds twice in f64; `x0` and `v` cancel `x` against `a x0` (and
/// `x0 = (x + sigma^2 s)/a` grows like `1/a`), so the bound is 64 ulps of the largest term
/// the conversion adds, `|s| + |x|/sigma^2 + |x|/(a sigma)`.
#[test]
fn every_prediction_converts_the_exact_output_to_the_exact_score() {
    let data = GaussianMixture::ring(6, 2.0, 0.2).unwrap();
    let mut rng = Rng::seed_from_u64(3);
    for sde in sdes() {
        let (lo, hi) = (sde.t_eps().max(0.02), sde.t_max());
        for k in 0..10 {
            let t = lo + (hi - lo) * k as f64 / 9.0;
            let (a, sigma) = (sde.alpha(t), sde.sigma(t));
            let x = data.perturbed(a, sigma).sample(64, &mut rng);
            let s = data.score_at(&x, a, sigma).unwrap();
            let scale = max_abs(&s) + max_abs(&x) / (sigma * sigma) + max_abs(&x) / (a * sigma);
            for p in Prediction::ALL {
                let out = exact_output(p, sde.as_ref(), t, &x, &s);
                let got = ModelConvention::new(p, TimeInput::T).to_score(sde.as_ref(), t, out, &x).unwrap();
                let err = max_abs(&(&got - &s));
                assert!(
                    err <= 64.0 * f64::EPSILON * scale,
                    "{} {p} t = {t}: error {err:.3e} (scale {scale:.3e})",
                    sde.name()
                );
            }
        }
    }
}

/// On an f32 state the coefficients stay f64 and only the state rounds: the f32 conversion
/// equals the f64 one to f32 precision.
#[test]
fn f32_states_convert_with_f64_coefficients() {
    let sde = discrete_by_name("ddpm-linear:1000").unwrap();
    let data = GaussianMixture::ring(4, 1.0, 0.3).unwrap();
    let mut rng = Rng::seed_from_u64(5);
    let t = sde.t_of_timestep(500).unwrap();
    let (a, sigma) = (sde.alpha(t), sde.sigma(t));
    let x = data.perturbed(a, sigma).sample(32, &mut rng);
    let s = data.score_at(&x, a, sigma).unwrap();
    for p in Prediction::ALL {
        let out = exact_output(p, &sde, t, &x, &s);
        let conv = ModelConvention::new(p, TimeInput::Timestep);
        let got = conv.to_score(&sde, t, out.mapv(|v| v as f32), &x.mapv(|v| v as f32)).unwrap();
        let err = max_abs(&(got.mapv(f64::from) - &s));
        let scale = max_abs(&s) + max_abs(&x) / (sigma * sigma);
        assert!(err <= 8.0 * f32::EPSILON as f64 * scale, "{p}: {err:.3e}");
    }
}

/// At timestep `i`'s knot the timestep input is exactly `i` in both conventions; between
/// knots it is `t N - 1` or `t (N - 1)`; `t = 0` is timestep -1 under `Shifted`.
#[test]
fn timestep_input_is_the_index_at_the_knots() {
    let conv = ModelConvention::new(Prediction::Eps, TimeInput::Timestep);
    for base in ["ddpm-linear:1000", "ddpm-scaled-linear:50", "ddpm-cosine:7"] {
        for c in [TimeConvention::Shifted, TimeConvention::Endpoints] {
            let sde: DiscreteVp = discrete_by_name(base).unwrap().with_convention(c);
            let n = sde.len();
            for i in (0..n).step_by((n / 20).max(1)).chain([n - 1]) {
                let t = sde.t_of_timestep(i).unwrap();
                assert_eq!(conv.time_value(&sde, t).unwrap(), i as f64, "{base} {c:?} i = {i}");
            }
            let t = 0.37;
            let want = match c {
                TimeConvention::Shifted => t * n as f64 - 1.0,
                TimeConvention::Endpoints => t * (n - 1) as f64,
            };
            let got = conv.time_value(&sde, t).unwrap();
            assert!((got - want).abs() <= 4.0 * f64::EPSILON * want.abs(), "{got} vs {want}");
        }
    }
    let sde = discrete_by_name("ddpm-linear:1000").unwrap();
    assert_eq!(conv.time_value(&sde, 0.0).unwrap(), -1.0);
    assert!(conv.time_value(&sde, 1.5).is_err());
}

/// A continuous SDE has no timesteps: a clear error naming the time input.
#[test]
fn timestep_input_on_a_continuous_sde_is_an_error() {
    let conv = ModelConvention::new(Prediction::Eps, TimeInput::Timestep);
    let e = conv.time_value(&VpSde::default(), 0.5).unwrap_err().to_string();
    assert!(e.contains("time-input") && e.contains("continuous"), "{e}");
}

/// `sigma` is `sigma/a` (the kernel's sigma for VE), `c-noise` `ln(sigma/a)/4`, `t` is `t`;
/// `c_in` is `1/sqrt(1 + sigma^2)` for VE and 1 for VP.
#[test]
fn time_values_and_input_scale_are_the_closed_forms() {
    let ve = VeSde::default();
    let vp = VpSde::default();
    for t in [0.01, 0.3, 1.0] {
        let c = |ti| ModelConvention::new(Prediction::X0, ti);
        assert_eq!(c(TimeInput::T).time_value(&ve, t).unwrap(), t);
        assert_eq!(c(TimeInput::Sigma).time_value(&ve, t).unwrap(), ve.sigma(t));
        assert_eq!(c(TimeInput::CNoise).time_value(&ve, t).unwrap(), ve.sigma(t).ln() / 4.0);
        let ratio = vp.sigma(t) / vp.alpha(t);
        assert_eq!(c(TimeInput::Sigma).time_value(&vp, t).unwrap(), ratio);
        assert_eq!(c(TimeInput::CNoise).time_value(&vp, t).unwrap(), ratio.ln() / 4.0);
        let edm = c(TimeInput::Sigma).with_c_in(true);
        let want = 1.0 / (ve.sigma(t).powi(2) + 1.0).sqrt();
        assert!((edm.input_scale(&ve, t).unwrap() - want).abs() <= 4.0 * f64::EPSILON * want);
        assert!((edm.input_scale(&vp, t).unwrap() - 1.0).abs() <= 4.0 * f64::EPSILON);
        assert_eq!(c(TimeInput::Sigma).input_scale(&ve, t).unwrap(), 1.0);
    }
    // Clean data: sigma = 0 has no c_noise and no eps-, x0- or v-score.
    let sde = discrete_by_name("ddpm-linear:1000").unwrap();
    assert!(TimeInput::CNoise.value(&sde, 0.0).is_err());
    let x = Array2::<f64>::zeros((2, 2));
    for p in [Prediction::Eps, Prediction::X0, Prediction::V] {
        let e = p.to_score(&sde, 0.0, x.clone(), &x).unwrap_err().to_string();
        assert!(e.contains("sigma(t) = 0"), "{p}: {e}");
    }
    // Out-of-range times and mismatched shapes are errors.
    assert!(Prediction::Eps.to_score(&vp, 1.5, x.clone(), &x).is_err());
    assert!(Prediction::X0.to_score(&vp, 0.5, x.clone(), &Array2::zeros((3, 2))).is_err());
}

/// The CLI names parse and print back; unknown names list the known ones.
#[test]
fn names_round_trip() {
    for p in Prediction::ALL {
        assert_eq!(p.to_string().parse::<Prediction>().unwrap(), p);
        for ti in TimeInput::ALL {
            assert_eq!(ti.to_string().parse::<TimeInput>().unwrap(), ti);
            for c_in in [false, true] {
                let c = ModelConvention::new(p, ti).with_c_in(c_in);
                assert_eq!(c.to_string().parse::<ModelConvention>().unwrap(), c);
            }
        }
    }
    assert_eq!("v".parse::<ModelConvention>().unwrap(), ModelConvention::new(Prediction::V, TimeInput::T));
    let e = "epsilon".parse::<Prediction>().unwrap_err().to_string();
    assert!(e.contains("eps, x0, v, score, flow"), "{e}");
    let e = "step".parse::<TimeInput>().unwrap_err().to_string();
    assert!(e.contains("t, timestep, sigma, c-noise"), "{e}");
    for bad in ["eps,t,t", "eps,c-in,t", "eps,t,c-in,c-in", ""] {
        assert!(bad.parse::<ModelConvention>().is_err(), "{bad}");
    }
}
