//! Model conventions: what a denoising network is fed and what it predicts, and the one
//! conversion of its output to the score `s(x, t) = grad_x log p_t(x)`.
//!
//! A network trained on the perturbation kernel `x_t = a(t) x_0 + sigma(t) eps` is asked
//! `net(c_in x_t, tau(t))` and predicts one of ([`Prediction`]):
//!
//! | prediction | output                 | score `s = c_x x + c_out out`                      |
//! |------------|------------------------|----------------------------------------------------|
//! | `eps`      | `eps` (Ho et al. 2020) | `-out / sigma`                                      |
//! | `x0`       | `x_0`                  | `(a out - x) / sigma^2`                             |
//! | `v`        | `a eps - sigma x_0` (Salimans & Ho 2022) | `-(x + (a/sigma) out) / (a^2 + sigma^2)` |
//! | `score`    | `s` itself             | `out`                                               |
//! | `flow`     | `a' x_0 + sigma' eps` (flow matching) | [`VelocityCoefs::score`]             |
//!
//! (`v`: from `x = a x_0 + sigma eps`, `v = a eps - sigma x_0` gives
//! `eps = (sigma x + a v)/(a^2 + sigma^2)` and `s = -eps/sigma`; for a VP process
//! `a^2 + sigma^2 = 1`.) Every row is linear in `x` and `out`, so the conversion is one
//! pair of coefficients `(c_x, c_out)` computed in `f64` on the host, whatever the state's
//! element type ([`Prediction::score_coefs`]), applied with [`State::axpby`].
//!
//! The time the network sees, `tau(t)` ([`TimeInput`]):
//!
//! * `t`: the continuous time itself (this crate's own networks, score_sde's continuous models);
//! * `timestep`: the model's timestep index of a discrete schedule, [`Sde::timestep_of_t`]
//!   (an integer at the knots, fractional in between as in DPM-Solver's discrete wrapper;
//!   diffusers' `UNet2DModel(x, timestep)`); an error for a continuous SDE;
//! * `sigma`: EDM's noise level `sigma(t)/a(t) = e^{-lambda(t)}` (Karras et al. 2022; the
//!   kernel's `sigma(t)` for a VE process, where `a = 1`);
//! * `c-noise`: EDM's `c_noise = ln(sigma/a) / 4` (Karras et al. 2022, Table 1).
//!
//! With `c_in` ([`ModelConvention::c_in`]) the network is fed `x / sqrt(a^2 + sigma^2)`:
//! EDM's `c_in = 1/sqrt(sigma_edm^2 + 1)` applied to `x/a`, i.e. `1/sqrt(sigma^2 + 1)` for a
//! VE process, and 1 for a VP one. The conversion to the score always uses the state `x`.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::interpolant::VelocityCoefs;
use crate::sde::Sde;
use crate::state::State;

/// What a network predicts. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Prediction {
    /// The noise `eps` of `x_t = a x_0 + sigma eps`.
    #[default]
    Eps,
    /// The clean sample `x_0`.
    X0,
    /// `v = a eps - sigma x_0`.
    V,
    /// The score itself.
    Score,
    /// The flow-matching velocity `a' x_0 + sigma' eps`.
    Flow,
}

/// The time value a network is fed. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum TimeInput {
    /// The continuous time `t`.
    #[default]
    T,
    /// The discrete schedule's timestep index [`Sde::timestep_of_t`].
    Timestep,
    /// EDM's noise level `sigma(t) / a(t)`.
    Sigma,
    /// EDM's `c_noise = ln(sigma(t) / a(t)) / 4`.
    CNoise,
}

/// A network's convention: what it predicts, which time value it takes, and whether its
/// input is scaled by `c_in`. See the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct ModelConvention {
    /// What the network outputs.
    pub prediction: Prediction,
    /// The time value it is fed.
    pub time_input: TimeInput,
    /// Feed `x / sqrt(a^2 + sigma^2)` rather than `x` (EDM's `c_in`).
    pub c_in: bool,
}

/// `(a, sigma)` of `sde` at `t`, after checking `t`.
fn kernel(sde: &dyn Sde, t: f64) -> Result<(f64, f64)> {
    sde.check_time(t)?;
    Ok((sde.alpha(t), sde.sigma(t)))
}

fn finite(what: &'static str, t: f64, v: f64, why: &str) -> Result<f64> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(Error::param("t", t, format!("{what} is not finite here ({v}): {why}")))
    }
}

impl Prediction {
    /// Every prediction, in CLI-name order.
    pub const ALL: [Prediction; 5] =
        [Prediction::Eps, Prediction::X0, Prediction::V, Prediction::Score, Prediction::Flow];

    /// The CLI name: `eps`, `x0`, `v`, `score` or `flow`.
    pub fn name(self) -> &'static str {
        match self {
            Prediction::Eps => "eps",
            Prediction::X0 => "x0",
            Prediction::V => "v",
            Prediction::Score => "score",
            Prediction::Flow => "flow",
        }
    }

    /// `(c_x, c_out)` with `s(x, t) = c_x x + c_out out` (the table of the
    /// [module docs](self)), in `f64`.
    ///
    /// # Errors
    /// [`Error::TimeOutOfRange`]; [`Error::InvalidParameter`] naming `t` where a coefficient
    /// is not finite (`sigma = 0`: the score of clean data is undefined; for `flow`, where
    /// [`VelocityCoefs::of`] is singular).
    pub fn score_coefs(self, sde: &dyn Sde, t: f64) -> Result<(f64, f64)> {
        let (a, sigma) = kernel(sde, t)?;
        let (cx, cout) = match self {
            Prediction::Score => return Ok((0.0, 1.0)),
            Prediction::Eps => (0.0, -1.0 / sigma),
            Prediction::X0 => {
                let v = sigma * sigma;
                (-1.0 / v, a / v)
            }
            Prediction::V => {
                let n = a * a + sigma * sigma;
                (-1.0 / n, -a / (sigma * n))
            }
            Prediction::Flow => VelocityCoefs::of(sde, t)?.score(sigma),
        };
        let why = "the score is undefined where sigma(t) = 0 (clean data)";
        Ok((finite("c_x", t, cx, why)?, finite("c_out", t, cout, why)?))
    }

    /// The score from the network output `out` at the state `x` (same shape), consuming
    /// `out`: `out` unchanged for `score`, `c_out out` for `eps` ([`State::scale`]), and
    /// `c_out out + c_x x` ([`State::axpby`]) otherwise.
    ///
    /// # Errors
    /// As [`Prediction::score_coefs`]; [`Error::ShapeMismatch`] when `out` and `x` differ.
    pub fn to_score<S: State>(self, sde: &dyn Sde, t: f64, mut out: S, x: &S) -> Result<S> {
        let (cx, cout) = self.score_coefs(sde, t)?;
        match self {
            Prediction::Score => {}
            Prediction::Eps => out.scale(cout),
            _ => out.axpby(cout, cx, x)?,
        }
        Ok(out)
    }
}

impl TimeInput {
    /// Every time input, in CLI-name order.
    pub const ALL: [TimeInput; 4] = [TimeInput::T, TimeInput::Timestep, TimeInput::Sigma, TimeInput::CNoise];

    /// The CLI name: `t`, `timestep`, `sigma` or `c-noise`.
    pub fn name(self) -> &'static str {
        match self {
            TimeInput::T => "t",
            TimeInput::Timestep => "timestep",
            TimeInput::Sigma => "sigma",
            TimeInput::CNoise => "c-noise",
        }
    }

    /// The value fed to the network at time `t`, in `f64`.
    ///
    /// # Errors
    /// [`Error::TimeOutOfRange`]; for `timestep`, [`Sde::timestep_of_t`]'s error on a
    /// continuous SDE; for `sigma` and `c-noise`, [`Error::InvalidParameter`] naming `t`
    /// where the value is not finite (`a = 0`, or `sigma = 0` for `c-noise`).
    pub fn value(self, sde: &dyn Sde, t: f64) -> Result<f64> {
        match self {
            TimeInput::T => {
                sde.check_time(t)?;
                Ok(t)
            }
            TimeInput::Timestep => sde.timestep_of_t(t),
            TimeInput::Sigma => {
                let (a, sigma) = kernel(sde, t)?;
                finite("sigma/a", t, sigma / a, "a(t) = 0")
            }
            TimeInput::CNoise => {
                let (a, sigma) = kernel(sde, t)?;
                finite("c_noise = ln(sigma/a)/4", t, (sigma / a).ln() / 4.0, "sigma(t) = 0 or a(t) = 0")
            }
        }
    }
}

impl ModelConvention {
    /// A convention with no input scaling.
    pub fn new(prediction: Prediction, time_input: TimeInput) -> Self {
        Self { prediction, time_input, c_in: false }
    }

    /// The same convention with EDM's input scaling on (or off).
    pub fn with_c_in(self, c_in: bool) -> Self {
        Self { c_in, ..self }
    }

    /// The time value fed to the network ([`TimeInput::value`]).
    ///
    /// # Errors
    /// As [`TimeInput::value`].
    pub fn time_value(&self, sde: &dyn Sde, t: f64) -> Result<f64> {
        self.time_input.value(sde, t)
    }

    /// The factor the state is multiplied by before the network sees it:
    /// `1/sqrt(a^2 + sigma^2)` with [`ModelConvention::c_in`], else 1.
    ///
    /// # Errors
    /// [`Error::TimeOutOfRange`].
    pub fn input_scale(&self, sde: &dyn Sde, t: f64) -> Result<f64> {
        let (a, sigma) = kernel(sde, t)?;
        Ok(if self.c_in { 1.0 / (a * a + sigma * sigma).sqrt() } else { 1.0 })
    }

    /// The score from the network output ([`Prediction::to_score`]).
    ///
    /// # Errors
    /// As [`Prediction::to_score`].
    pub fn to_score<S: State>(&self, sde: &dyn Sde, t: f64, out: S, x: &S) -> Result<S> {
        self.prediction.to_score(sde, t, out, x)
    }
}

fn unknown(what: &'static str, v: &str, known: &[&str]) -> Error {
    Error::param(what, v, format!("unknown; known: {}", known.join(", ")))
}

impl fmt::Display for Prediction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Prediction {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Prediction::ALL
            .into_iter()
            .find(|p| p.name() == s.trim())
            .ok_or_else(|| unknown("prediction", s, &Prediction::ALL.map(Prediction::name)))
    }
}

impl fmt::Display for TimeInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TimeInput {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        TimeInput::ALL
            .into_iter()
            .find(|p| p.name() == s.trim())
            .ok_or_else(|| unknown("time-input", s, &TimeInput::ALL.map(TimeInput::name)))
    }
}

/// `PREDICTION,TIME_INPUT[,c-in]`, e.g. `eps,timestep` or `x0,c-noise,c-in`.
impl fmt::Display for ModelConvention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.prediction, self.time_input)?;
        if self.c_in {
            f.write_str(",c-in")?;
        }
        Ok(())
    }
}

/// Parses [`ModelConvention`]'s `Display` form; the time input defaults to `t`.
impl FromStr for ModelConvention {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut parts = s.split(',');
        let prediction = parts.next().unwrap_or_default().parse()?;
        let mut out = ModelConvention::new(prediction, TimeInput::T);
        let mut timed = false;
        for part in parts {
            match part.trim() {
                "c-in" if !out.c_in => out.c_in = true,
                p if !timed && !out.c_in => {
                    out.time_input = p.parse()?;
                    timed = true;
                }
                p => {
                    return Err(Error::param(
                        "convention",
                        s,
                        format!("unexpected `{p}`: write PREDICTION[,TIME_INPUT][,c-in], e.g. eps,timestep"),
                    ))
                }
            }
        }
        Ok(out)
    }
}
