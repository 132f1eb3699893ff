//! A trained model: network + weights + the SDE it was trained for.
//!
//! [`NeuralScore`] is a [`Score`] usable by every integrator, and for a
//! conditional network a [`ConditionalScore`] (classifier-free guidance);
//! [`NeuralClassifier`] is a noise-conditional classifier whose input
//! gradient, by autograd, is a [`ClassifierGradient`] (classifier guidance).

use std::marker::PhantomData;

use ndarray::{Array2, Ix2};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::net::{Head, ScoreNet};
use crate::solvers::{check_class, ClassifierGradient, ConditionalScore, FlowSde, Score, Sde, VpSde};

/// The forward process, as stored in checkpoints (older checkpoints hold a `vp` one).
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
    /// Rectified flow ([`FlowSde`]): the interpolant `x_t = (1 - t) x0 + t z` on
    /// `[0, t_max]`, `t_max < 1`.
    Flow {
        /// End of the time range (default [`crate::solvers::interpolant::FLOW_T_MAX`]).
        t_max: f64,
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
            SdeSpec::Flow { t_max } => Box::new(FlowSde::with_t_max(t_max)?),
        })
    }

    /// The process's name: `vp` or `flow`.
    pub fn name(&self) -> &'static str {
        match self {
            SdeSpec::Vp { .. } => "vp",
            SdeSpec::Flow { .. } => "flow",
        }
    }
}

/// Which output a [`FrozenNet`] reads: [`ScoreHead`] or [`ClassifierHead`].
pub trait FrozenHead: sealed::Sealed {
    /// The network head this reading needs.
    const HEAD: Head;
    /// The name of the frozen type (for `Debug`).
    const NAME: &'static str;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ScoreHead {}
    impl Sealed for super::ClassifierHead {}
}

/// A [`FrozenNet`] read as a score: [`NeuralScore`].
#[derive(Debug)]
pub enum ScoreHead {}

/// A [`FrozenNet`] read as a classifier: [`NeuralClassifier`].
#[derive(Debug)]
pub enum ClassifierHead {}

impl FrozenHead for ScoreHead {
    const HEAD: Head = Head::Score;
    const NAME: &'static str = "NeuralScore";
}

impl FrozenHead for ClassifierHead {
    const HEAD: Head = Head::Classifier;
    const NAME: &'static str = "NeuralClassifier";
}

/// A network with fixed weights, for inference: the parameters detached, f32
/// and on the network's device, the SDE it was trained for, and a forward
/// pass without gradients. `H` says how the output is read:
/// [`NeuralScore`] and [`NeuralClassifier`] are this one type.
pub struct FrozenNet<H: FrozenHead> {
    net: ScoreNet,
    params: Tensor,
    sde: Box<dyn Sde>,
    head: PhantomData<fn() -> H>,
}

/// A score network with fixed weights: `s(x, t)` for `[batch, dim]` f32
/// tensors on the network's device, evaluated without gradients; for a
/// conditional network also a [`ConditionalScore`].
///
/// Also a [`Score`] for `Array2<f64>` (copied to the device and back), for
/// host-side evaluation against closed forms.
pub type NeuralScore = FrozenNet<ScoreHead>;

/// A noise-conditional classifier `p_phi(y | x_t, t)` with fixed weights (a
/// [`Head::Classifier`] network): class probabilities, predictions, and the
/// input gradient `grad_x log p_phi(y | x_t, t)` by autograd for classifier
/// guidance (a [`ClassifierGradient`] on tensors and on `Array2<f64>`).
pub type NeuralClassifier = FrozenNet<ClassifierHead>;

impl<H: FrozenHead> std::fmt::Debug for FrozenNet<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct(H::NAME).field("net", self.net.config()).field("sde", &self.sde.name()).finish()
    }
}

impl<H: FrozenHead> FrozenNet<H> {
    /// Wraps a network and its (typically EMA) parameters, for the SDE `sde`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `params` does not fit the network, or
    /// the network's head is not `H`'s (a classifier is not a score model and
    /// the other way round).
    pub fn new(net: ScoreNet, params: Tensor, sde: Box<dyn Sde>) -> Result<Self> {
        match (net.config().head, H::HEAD) {
            (Head::Classifier, Head::Score) => {
                return Err(Error::invalid("network", "classifier", "a classifier is not a score model"))
            }
            (Head::Score, Head::Classifier) => {
                return Err(Error::invalid("network", "score", "not a classifier (NetConfig::head is Score)"))
            }
            _ => {}
        }
        if params.size() != [net.num_params()] {
            return Err(Error::invalid(
                "parameters",
                format!("shape {:?}", params.size()),
                format!("the network has {} parameters", net.num_params()),
            ));
        }
        let params = params.f_detach()?.f_to_kind(Kind::Float)?.f_to_device(net.device())?;
        Ok(Self { net, params, sde, head: PhantomData })
    }

    /// The network.
    pub fn net(&self) -> &ScoreNet {
        &self.net
    }

    /// The fixed parameters (f32, on the network's device).
    pub fn params(&self) -> &Tensor {
        &self.params
    }

    /// The SDE the network was trained for.
    pub fn sde(&self) -> &dyn Sde {
        self.sde.as_ref()
    }

    /// The device it computes on.
    pub fn device(&self) -> Device {
        self.net.device()
    }

    /// Number of classes (for a score, the classes it is conditioned on; 0:
    /// an unconditional model).
    pub fn n_classes(&self) -> usize {
        self.net.config().classes
    }

    /// Checks `t`, and returns `x` as f32 on the network's device (no copy
    /// when it already is).
    fn input(&self, x: &Tensor, t: f64) -> Result<Tensor> {
        self.sde.check_time(t)?;
        let device = self.device();
        let x = if x.device() == device { x.shallow_clone() } else { x.f_to_device(device)? };
        Ok(if x.kind() == Kind::Float { x } else { x.f_to_kind(Kind::Float)? })
    }

    /// A `[batch]` tensor of the time `t` on the network's device, for the batch `x`.
    fn times(&self, x: &Tensor, t: f64) -> Result<Tensor> {
        let batch = x.size().first().copied().unwrap_or(0);
        Ok(Tensor::f_full([batch], t, (Kind::Float, self.device()))?)
    }

    /// The raw network output at `x` and `t` (noise or score, or logits),
    /// without gradients.
    ///
    /// # Errors
    /// A time outside the SDE's range, a wrong input shape, libtorch errors.
    pub fn forward(&self, x: &Tensor, t: f64) -> Result<Tensor> {
        let x = self.input(x, t)?;
        let times = self.times(&x, t)?;
        tch::no_grad(|| self.net.forward(&self.params, &x, &times))
    }
}

impl NeuralScore {
    /// The score at `class` (`None`: unconditional; for a conditional
    /// network, its null label).
    fn score_tensor(&self, x: &Tensor, t: f64, class: Option<usize>) -> Result<Tensor> {
        let x = self.input(x, t)?;
        if let Some(c) = class {
            check_class(c, self.n_classes())?;
        }
        // A fresh output tensor outside any graph: the adapter scales it in place.
        let out = tch::no_grad(|| self.net.forward_at_class(&self.params, &x, t, class))?;
        let prediction = self.net.config().parameterization.prediction();
        Ok(tch::no_grad(|| prediction.to_score(self.sde.as_ref(), t, out, &x))?)
    }
}

fn score_failure(t: f64, e: impl std::fmt::Display) -> crate::solvers::Error {
    crate::solvers::Error::Score { t, reason: e.to_string() }
}

/// A root-crate error as a solver error: solver errors (a bad class or time)
/// pass through, the rest become [`crate::solvers::Error::Score`].
fn to_solver_error(t: f64, e: Error) -> crate::solvers::Error {
    match e {
        Error::Solver(e) => e,
        e => score_failure(t, e),
    }
}

impl Score<Tensor> for NeuralScore {
    fn score(&self, x: &Tensor, t: f64) -> crate::solvers::Result<Tensor> {
        self.score_cond(x, t, None)
    }
}

impl Score<Array2<f64>> for NeuralScore {
    fn score(&self, x: &Array2<f64>, t: f64) -> crate::solvers::Result<Array2<f64>> {
        self.score_cond(x, t, None)
    }
}

impl ConditionalScore<Tensor> for NeuralScore {
    fn score_cond(&self, x: &Tensor, t: f64, class: Option<usize>) -> crate::solvers::Result<Tensor> {
        self.score_tensor(x, t, class).map(|s| s.to_kind(x.kind())).map_err(|e| to_solver_error(t, e))
    }

    fn n_classes(&self) -> usize {
        NeuralScore::n_classes(self)
    }
}

impl ConditionalScore<Array2<f64>> for NeuralScore {
    fn score_cond(&self, x: &Array2<f64>, t: f64, class: Option<usize>) -> crate::solvers::Result<Array2<f64>> {
        let xt = array_to_tensor(x).map_err(|e| score_failure(t, e))?;
        let s = self.score_cond(&xt, t, class)?;
        tensor_to_array(&s).map_err(|e| score_failure(t, e))
    }

    fn n_classes(&self) -> usize {
        NeuralScore::n_classes(self)
    }
}

impl NeuralClassifier {
    /// `ln p_phi(y | x, t)`, shape `[batch, classes]`, without gradients.
    ///
    /// # Errors
    /// A time outside the SDE's range, a wrong input shape, libtorch errors.
    pub fn log_probs(&self, x: &Tensor, t: f64) -> Result<Tensor> {
        Ok(self.forward(x, t)?.f_log_softmax(-1, Kind::Float)?)
    }

    /// The most probable class of each row of `x` at time `t`.
    ///
    /// # Errors
    /// As [`NeuralClassifier::log_probs`].
    pub fn predict(&self, x: &Array2<f64>, t: f64) -> Result<Vec<usize>> {
        let best = self.log_probs(&array_to_tensor(x)?, t)?.f_argmax(-1, false)?.f_to_device(Device::Cpu)?;
        Ok(Vec::<i64>::try_from(best)?.into_iter().map(|c| c as usize).collect())
    }

    /// The fraction of rows of `x` whose predicted class at time `t` is their label.
    ///
    /// # Errors
    /// As [`NeuralClassifier::log_probs`], and [`Error::InvalidArgument`] when
    /// there is not one label per row.
    pub fn accuracy(&self, x: &Array2<f64>, labels: &[usize], t: f64) -> Result<f64> {
        if labels.len() != x.nrows() {
            return Err(Error::invalid("labels", labels.len(), format!("need one per row ({})", x.nrows())));
        }
        let predicted = self.predict(x, t)?;
        let hits = predicted.iter().zip(labels).filter(|(p, y)| p == y).count();
        Ok(hits as f64 / labels.len().max(1) as f64)
    }

    /// `grad_x log p_phi(class | x, t)` by autograd (with gradients on even
    /// inside `tch::no_grad`; the weights get none), shaped and typed like `x`.
    fn grad_tensor(&self, x: &Tensor, t: f64, class: usize) -> Result<Tensor> {
        check_class(class, self.n_classes())?;
        let xd = self.input(x, t)?.f_detach()?.set_requires_grad(true);
        let times = self.times(&xd, t)?;
        let grad = tch::with_grad(|| -> Result<Tensor> {
            let logits = self.net.forward(&self.params, &xd, &times)?;
            // The samples are independent, so the gradient of the sum is
            // each sample's own gradient.
            let log_p = logits.f_log_softmax(-1, Kind::Float)?.f_select(1, class as i64)?.f_sum(Kind::Float)?;
            let mut grads = Tensor::f_run_backward(&[log_p], &[&xd], false, false)?;
            grads.pop().ok_or_else(|| Error::invalid("classifier", "gradient", "autograd returned nothing"))
        })?;
        Ok(grad.f_to_kind(x.kind())?.f_to_device(x.device())?)
    }
}

impl ClassifierGradient<Tensor> for NeuralClassifier {
    fn grad_log_prob(&self, x: &Tensor, t: f64, class: usize) -> crate::solvers::Result<Tensor> {
        self.grad_tensor(x, t, class).map_err(|e| to_solver_error(t, e))
    }

    fn n_classes(&self) -> usize {
        NeuralClassifier::n_classes(self)
    }
}

impl ClassifierGradient<Array2<f64>> for NeuralClassifier {
    fn grad_log_prob(&self, x: &Array2<f64>, t: f64, class: usize) -> crate::solvers::Result<Array2<f64>> {
        let xt = array_to_tensor(x).map_err(|e| score_failure(t, e))?;
        let g = self.grad_log_prob(&xt, t, class)?;
        tensor_to_array(&g).map_err(|e| score_failure(t, e))
    }

    fn n_classes(&self) -> usize {
        NeuralClassifier::n_classes(self)
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
    use crate::net::{NetConfig, Parameterization};
    use crate::solvers::VelocityCoefs;

    #[test]
    fn eps_network_score_is_minus_eps_over_sigma() {
        let net = ScoreNet::new(NetConfig { width: 8, depth: 1, ..NetConfig::mlp(2) }, Device::Cpu, 0).unwrap();
        let params = net.init_params(3).unwrap();
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

    /// The sampling adapter (`ModelConvention`, f64 coefficients) agrees with the training
    /// conversion `Parameterization::eps_hat` (f32 tensors) for every parameterization it
    /// covers, and with `VelocityCoefs` for a flow network: to f32 rounding, 1e-5 relative
    /// to the largest term.
    #[test]
    fn adapter_agrees_with_the_training_conversion() {
        let sde = SdeSpec::default().build().unwrap();
        let flow = SdeSpec::Flow { t_max: crate::solvers::interpolant::FLOW_T_MAX }.build().unwrap();
        for p in [Parameterization::Eps, Parameterization::Score, Parameterization::X0, Parameterization::V] {
            for t in [0.3, 0.9] {
                let config = NetConfig { width: 8, depth: 1, parameterization: p, ..NetConfig::mlp(2) };
                let net = ScoreNet::new(config, Device::Cpu, 0).unwrap();
                let params = net.init_params(3).unwrap();
                let x = Tensor::randn([16, 2], (Kind::Float, Device::Cpu));
                let raw = net.forward(&params, &x, &Tensor::full([16], t, (Kind::Float, Device::Cpu))).unwrap();
                let (a, sigma) = (sde.alpha(t), sde.sigma(t));
                let (at, st) = (Tensor::from(a as f32), Tensor::from(sigma as f32));
                let want = p.eps_hat(raw, &x, &at, &st).unwrap() * (-1.0 / sigma);
                let score = NeuralScore::new(net, params, SdeSpec::default().build().unwrap()).unwrap();
                let got = Score::<Tensor>::score(&score, &x, t).unwrap();
                let scale = want.abs().max().double_value(&[]) + x.abs().max().double_value(&[]) / (sigma * sigma);
                let err = (&got - &want).abs().max().double_value(&[]);
                assert!(err <= 1e-5 * scale, "{p:?} t = {t}: {err:.3e} (scale {scale:.3e})");
            }
        }
        let config = NetConfig { width: 8, depth: 1, parameterization: Parameterization::Flow, ..NetConfig::mlp(2) };
        let net = ScoreNet::new(config, Device::Cpu, 0).unwrap();
        let params = net.init_params(3).unwrap();
        let x = Tensor::randn([16, 2], (Kind::Float, Device::Cpu));
        let t = 0.4;
        let v = net.forward(&params, &x, &Tensor::full([16], t, (Kind::Float, Device::Cpu))).unwrap();
        let (sx, sv) = VelocityCoefs::of(flow.as_ref(), t).unwrap().score(flow.sigma(t));
        let want = &v * sv + &x * sx;
        let score = NeuralScore::new(net, params, flow).unwrap();
        let got = Score::<Tensor>::score(&score, &x, t).unwrap();
        assert!(got.allclose(&want, 1e-5, 1e-6, false));
    }
}
