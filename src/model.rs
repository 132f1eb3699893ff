//! A trained score model: network + weights + the SDE it was trained for,
//! usable as a [`Score`] by every integrator.

use ndarray::{Array2, Ix2};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::net::{Parameterization, ScoreNet};
use crate::solvers::{Score, Sde, VpSde};

/// The forward SDE, as stored in checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SdeSpec {
    /// [`VpSde`] with linear `beta(t)`.
    Vp {
        /// `beta(0)`.
        beta_min: f64,
        /// `beta(1)`.
        beta_max: f64,
    },
}

impl Default for SdeSpec {
    fn default() -> Self {
        SdeSpec::Vp { beta_min: 0.1, beta_max: 20.0 }
    }
}

impl SdeSpec {
    /// The SDE itself.
    ///
    /// # Errors
    /// Invalid coefficients.
    pub fn build(&self) -> Result<Box<dyn Sde>> {
        Ok(match *self {
            SdeSpec::Vp { beta_min, beta_max } => Box::new(VpSde::new(beta_min, beta_max)?),
        })
    }
}

/// A score network with fixed weights: `s(x, t)` for `[batch, dim]` f32
/// tensors on the network's device, evaluated without gradients.
///
/// Also a [`Score`] for `Array2<f64>` (copied to the device and back), for
/// host-side evaluation against closed forms.
pub struct NeuralScore {
    net: ScoreNet,
    params: Tensor,
    sde: Box<dyn Sde>,
}

impl std::fmt::Debug for NeuralScore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NeuralScore").field("net", self.net.config()).field("sde", &self.sde.name()).finish()
    }
}

impl NeuralScore {
    /// Wraps a network and its (typically EMA) parameters, for the SDE `sde`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `params` does not fit the network.
    pub fn new(net: ScoreNet, params: Tensor, sde: Box<dyn Sde>) -> Result<Self> {
        if params.size() != [net.num_params()] {
            return Err(Error::invalid(
                "parameters",
                format!("shape {:?}", params.size()),
                format!("the network has {} parameters", net.num_params()),
            ));
        }
        let params = params.detach().to_kind(Kind::Float).to_device(net.device());
        Ok(Self { net, params, sde })
    }

    /// The network.
    pub fn net(&self) -> &ScoreNet {
        &self.net
    }

    /// The SDE the network was trained for.
    pub fn sde(&self) -> &dyn Sde {
        self.sde.as_ref()
    }

    /// The device it computes on.
    pub fn device(&self) -> Device {
        self.net.device()
    }

    fn score_tensor(&self, x: &Tensor, t: f64) -> Result<Tensor> {
        self.sde.check_time(t)?;
        let x = if x.device() == self.device() { x.shallow_clone() } else { x.to_device(self.device()) };
        let x = if x.kind() == Kind::Float { x } else { x.to_kind(Kind::Float) };
        // A fresh output tensor outside any graph: scale it in place.
        let mut out = tch::no_grad(|| self.net.forward_at(&self.params, &x, t))?;
        if self.net.config().parameterization == Parameterization::Eps {
            let _ = out.f_mul_scalar_(-1.0 / self.sde.sigma(t))?;
        }
        Ok(out)
    }
}

fn score_error(t: f64, e: impl std::fmt::Display) -> crate::solvers::Error {
    crate::solvers::Error::Score { t, reason: e.to_string() }
}

impl Score<Tensor> for NeuralScore {
    fn score(&self, x: &Tensor, t: f64) -> crate::solvers::Result<Tensor> {
        match self.score_tensor(x, t) {
            Ok(s) => Ok(s.to_kind(x.kind())),
            Err(Error::Solver(e)) => Err(e),
            Err(e) => Err(score_error(t, e)),
        }
    }
}

impl Score<Array2<f64>> for NeuralScore {
    fn score(&self, x: &Array2<f64>, t: f64) -> crate::solvers::Result<Array2<f64>> {
        let xt = array_to_tensor(x).map_err(|e| score_error(t, e))?;
        let s = Score::<Tensor>::score(self, &xt, t)?;
        tensor_to_array(&s).map_err(|e| score_error(t, e))
    }
}

/// A `[n, d]` f32 tensor on the CPU from an f64 array.
///
/// # Errors
/// libtorch errors (out of memory).
pub fn array_to_tensor(a: &Array2<f64>) -> Result<Tensor> {
    let data: Vec<f32> = a.iter().map(|&v| v as f32).collect();
    let (n, d) = a.dim();
    Ok(Tensor::f_from_slice(&data)?.f_reshape([n as i64, d as i64])?)
}

/// An f64 array from a 2-D tensor on any device.
///
/// # Errors
/// [`Error::InvalidArgument`] when the tensor is not 2-D; libtorch errors.
pub fn tensor_to_array(t: &Tensor) -> Result<Array2<f64>> {
    if t.dim() != 2 {
        return Err(Error::invalid("tensor", format!("shape {:?}", t.size()), "expected 2-D [n, d]"));
    }
    let host = t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Double)?.f_contiguous()?;
    let a: ndarray::ArrayD<f64> = (&host).try_into()?;
    a.into_dimensionality::<Ix2>().map_err(|e| Error::invalid("tensor", format!("{:?}", t.size()), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::NetConfig;

    #[test]
    fn eps_network_score_is_minus_eps_over_sigma() {
        let net = ScoreNet::new(NetConfig { width: 8, depth: 1, ..NetConfig::mlp(2) }, Device::Cpu, 0).unwrap();
        let params = net.init_params(3);
        let x = Tensor::randn([4, 2], (Kind::Float, Device::Cpu));
        let t = 0.3;
        let raw = net.forward(&params, &x, &Tensor::full([4], t, (Kind::Float, Device::Cpu))).unwrap();
        let sde = SdeSpec::default().build().unwrap();
        let sigma = sde.sigma(t);
        let score = NeuralScore::new(net, params, sde).unwrap();
        let s = Score::<Tensor>::score(&score, &x, t).unwrap();
        let want = raw * (-1.0 / sigma);
        assert!(s.allclose(&want, 1e-6, 1e-6, false));
        // The ndarray path gives the same numbers.
        let xa = tensor_to_array(&x).unwrap();
        let sa = Score::<Array2<f64>>::score(&score, &xa, t).unwrap();
        assert!((sa - tensor_to_array(&s).unwrap()).iter().all(|v| v.abs() < 1e-6));
        // Out-of-range times and wrong shapes are errors, not panics.
        assert!(Score::<Tensor>::score(&score, &x, 1.5).is_err());
        assert!(Score::<Tensor>::score(&score, &x.view([2, 4]), t).is_err());
    }
}
