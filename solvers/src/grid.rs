//! Time grids. Step sizes always come from the grid itself (`h = t_i - t_{i+1}`),
//! never from `1 / N`.

use crate::error::{Error, Result};
use crate::sde::Sde;

/// The grid names [`TimeGrid::by_name`] knows.
pub const GRIDS: &[&str] = &["uniform", "quadratic", "log-snr", "karras"];

/// A strictly monotone sequence of at least two finite times.
///
/// Decreasing grids drive reverse-time samplers (from `T` down to `eps`),
/// increasing ones the forward SDE.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeGrid {
    times: Vec<f64>,
}

/// The most steps a grid may have: ten million (80 MB of times), far past
/// any useful discretisation, so that a mistyped count is an error rather
/// than an allocation the size of the machine's memory.
pub const MAX_STEPS: usize = 10_000_000;

fn check_steps(steps: usize) -> Result<()> {
    if steps == 0 {
        Err(Error::InvalidSteps { steps, reason: "need at least one step" })
    } else if steps > MAX_STEPS {
        Err(Error::InvalidSteps { steps, reason: "at most 10,000,000 steps (MAX_STEPS)" })
    } else {
        Ok(())
    }
}

fn check_ends(t_start: f64, t_end: f64) -> Result<()> {
    if !t_start.is_finite() || !t_end.is_finite() || t_start == t_end {
        return Err(Error::InvalidGrid {
            reason: format!("end points must be finite and distinct (got {t_start} and {t_end})"),
        });
    }
    Ok(())
}

impl TimeGrid {
    /// A grid from explicit times.
    ///
    /// # Errors
    /// [`Error::InvalidGrid`] for fewer than two times, a non-finite time, or
    /// times that are not strictly monotone.
    pub fn new(times: Vec<f64>) -> Result<Self> {
        if times.len() < 2 {
            return Err(Error::InvalidGrid { reason: format!("need at least 2 times, got {}", times.len()) });
        }
        if let Some(t) = times.iter().find(|t| !t.is_finite()) {
            return Err(Error::InvalidGrid { reason: format!("non-finite time {t}") });
        }
        let increasing = times[1] > times[0];
        for (i, w) in times.windows(2).enumerate() {
            let ok = if increasing { w[1] > w[0] } else { w[1] < w[0] };
            if !ok {
                return Err(Error::InvalidGrid {
                    reason: format!("times must be strictly monotone; t[{i}] = {} then t[{}] = {}", w[0], i + 1, w[1]),
                });
            }
        }
        Ok(Self { times })
    }

    /// `steps` equal steps from `t_start` to `t_end` (either direction).
    ///
    /// # Errors
    /// [`Error::InvalidSteps`] for zero steps, [`Error::InvalidGrid`] for bad end points.
    pub fn uniform(t_start: f64, t_end: f64, steps: usize) -> Result<Self> {
        Self::warped(t_start, t_end, steps, |u| u)
    }

    /// Steps uniform in `sqrt`-time from the end: `t = t_end + (t_start - t_end) u^2`,
    /// dense near `t_end` (DDIM's "quadratic" schedule, Song et al. 2021a).
    ///
    /// # Errors
    /// As [`TimeGrid::uniform`].
    pub fn quadratic(t_start: f64, t_end: f64, steps: usize) -> Result<Self> {
        check_steps(steps)?;
        check_ends(t_start, t_end)?;
        let n = steps as f64;
        let mut times: Vec<f64> =
            (0..=steps).map(|i| t_end + (t_start - t_end) * (1.0 - i as f64 / n).powi(2)).collect();
        times[0] = t_start;
        times[steps] = t_end;
        Self::new(times)
    }

    /// Steps uniform in log-SNR `lambda(t)` between the end points (Lu et al. 2022).
    ///
    /// # Errors
    /// As [`TimeGrid::uniform`], or end points outside the SDE's range.
    pub fn log_snr(sde: &dyn Sde, t_start: f64, t_end: f64, steps: usize) -> Result<Self> {
        check_ends(t_start, t_end)?;
        sde.check_time(t_start)?;
        sde.check_time(t_end)?;
        let (l0, l1) = (sde.log_snr(t_start), sde.log_snr(t_end));
        Self::from_levels(sde, t_start, t_end, steps, |u| l0 + (l1 - l0) * u)
    }

    /// Karras et al. (2022) schedule: uniform in `sigma^(1/rho)` for the noise
    /// level `sigma(t) / a(t) = exp(-lambda)`; `rho = 7` is their choice.
    ///
    /// # Errors
    /// As [`TimeGrid::log_snr`], or `rho <= 0`.
    pub fn karras(sde: &dyn Sde, t_start: f64, t_end: f64, steps: usize, rho: f64) -> Result<Self> {
        if !(rho > 0.0 && rho.is_finite()) {
            return Err(Error::param("rho", rho, "must be finite and > 0"));
        }
        check_ends(t_start, t_end)?;
        sde.check_time(t_start)?;
        sde.check_time(t_end)?;
        let (s0, s1) = ((-sde.log_snr(t_start) / rho).exp(), (-sde.log_snr(t_end) / rho).exp());
        Self::from_levels(sde, t_start, t_end, steps, |u| -rho * (s0 + (s1 - s0) * u).ln())
    }

    /// A grid by name (see [`GRIDS`]): `uniform`, `quadratic`, `log-snr`, or
    /// `karras` (rho = 7), from `t_start` to `t_end` in `steps` steps.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for an unknown name, else as the constructor named.
    pub fn by_name(name: &str, sde: &dyn Sde, t_start: f64, t_end: f64, steps: usize) -> Result<Self> {
        match name {
            "uniform" => Self::uniform(t_start, t_end, steps),
            "quadratic" => Self::quadratic(t_start, t_end, steps),
            "log-snr" | "logsnr" => Self::log_snr(sde, t_start, t_end, steps),
            "karras" => Self::karras(sde, t_start, t_end, steps, 7.0),
            _ => Err(Error::param("grid", name, format!("unknown time grid; known: {}", GRIDS.join(", ")))),
        }
    }

    /// The default reverse-time grid of an SDE: `steps` uniform steps from `T` to `eps`.
    ///
    /// # Errors
    /// [`Error::InvalidSteps`] for zero steps.
    pub fn reverse(sde: &dyn Sde, steps: usize) -> Result<Self> {
        Self::uniform(sde.t_max(), sde.t_eps(), steps)
    }

    fn warped(t_start: f64, t_end: f64, steps: usize, warp: impl Fn(f64) -> f64) -> Result<Self> {
        check_steps(steps)?;
        check_ends(t_start, t_end)?;
        let n = steps as f64;
        let mut times: Vec<f64> = (0..=steps).map(|i| t_start + (t_end - t_start) * warp(i as f64 / n)).collect();
        times[steps] = t_end;
        Self::new(times)
    }

    fn from_levels(sde: &dyn Sde, t_start: f64, t_end: f64, steps: usize, lambda: impl Fn(f64) -> f64) -> Result<Self> {
        check_steps(steps)?;
        let n = steps as f64;
        let mut times = Vec::with_capacity(steps + 1);
        times.push(t_start);
        for i in 1..steps {
            times.push(sde.t_of_log_snr(lambda(i as f64 / n))?);
        }
        times.push(t_end);
        Self::new(times)
    }

    /// The times, first to last.
    pub fn times(&self) -> &[f64] {
        &self.times
    }

    /// Number of steps (one less than the number of times).
    pub fn steps(&self) -> usize {
        self.times.len() - 1
    }

    /// True when the grid runs backwards in time.
    pub fn is_decreasing(&self) -> bool {
        self.times[1] < self.times[0]
    }

    /// First time.
    pub fn start(&self) -> f64 {
        self.times[0]
    }

    /// Last time.
    pub fn end(&self) -> f64 {
        self.times[self.times.len() - 1]
    }

    /// Checks every time lies in the SDE's range.
    ///
    /// # Errors
    /// [`Error::TimeOutOfRange`] naming the first offending time.
    pub fn check_within(&self, sde: &dyn Sde) -> Result<()> {
        self.times.iter().try_for_each(|t| sde.check_time(*t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sde::VpSde;

    #[test]
    fn grids_are_validated() {
        assert!(TimeGrid::uniform(1.0, 0.0, 0).is_err());
        assert!(TimeGrid::uniform(1.0, 0.0, MAX_STEPS + 1).is_err(), "refused before allocating");
        assert_eq!(TimeGrid::uniform(1.0, 0.0, MAX_STEPS).unwrap().steps(), MAX_STEPS);
        assert!(TimeGrid::uniform(1.0, 1.0, 4).is_err());
        assert!(TimeGrid::uniform(f64::NAN, 0.0, 4).is_err());
        assert!(TimeGrid::new(vec![]).is_err());
        assert!(TimeGrid::new(vec![1.0]).is_err());
        assert!(TimeGrid::new(vec![1.0, 0.5, 0.7]).is_err());
        assert!(TimeGrid::new(vec![0.0, 0.5, 0.5]).is_err());
        let g = TimeGrid::uniform(1.0, 1e-3, 10).unwrap();
        assert_eq!(g.steps(), 10);
        assert!(g.is_decreasing());
        assert_eq!(g.end(), 1e-3);
        assert!(TimeGrid::uniform(1.0, -1.0, 4).unwrap().check_within(&VpSde::default()).is_err());
    }

    #[test]
    fn log_snr_and_karras_grids_are_monotone_and_hit_ends() {
        let sde = VpSde::default();
        for g in [
            TimeGrid::log_snr(&sde, 1.0, 1e-3, 20).unwrap(),
            TimeGrid::karras(&sde, 1.0, 1e-3, 20, 7.0).unwrap(),
            TimeGrid::quadratic(1.0, 1e-3, 20).unwrap(),
        ] {
            assert_eq!(g.start(), 1.0);
            assert_eq!(g.end(), 1e-3);
            assert_eq!(g.steps(), 20);
        }
        let g = TimeGrid::log_snr(&sde, 1.0, 1e-3, 8).unwrap();
        let l: Vec<f64> = g.times().iter().map(|t| sde.log_snr(*t)).collect();
        let d0 = l[1] - l[0];
        for w in l.windows(2) {
            approx::assert_relative_eq!(w[1] - w[0], d0, max_relative = 1e-8);
        }
    }
}
