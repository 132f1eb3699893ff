//! The score network: an MLP over `[x, embed(t)]` with a sinusoidal or
//! random-Fourier time embedding; optionally also over a one-hot class label
//! (a conditional score for classifier-free guidance), or with class logits as
//! its output (a noise-conditional classifier for classifier guidance).
//!
//! All trainable parameters live in ONE flat f32 tensor; each layer's weight
//! and bias are views into it. The optimiser, gradient clipping and the EMA
//! then cost a handful of kernels per step whatever the depth (no per-layer
//! loop, no foreach kernels needed), and checkpoints still name every layer.

use rand::Rng as _;
use rand_distr::{StandardNormal, Uniform};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::solvers::Prediction;
use crate::unet::{UNet, UnetConfig};

/// The hidden-layer non-linearity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Activation {
    /// `x * sigmoid(x)` (the usual choice for score networks).
    #[default]
    Silu,
    /// `max(x, 0)`.
    Relu,
    /// Gaussian error linear unit.
    Gelu,
    /// `tanh(x)`.
    Tanh,
}

impl Activation {
    fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Activation::Silu => x.silu(),
            Activation::Relu => x.relu(),
            Activation::Gelu => x.gelu("none"),
            Activation::Tanh => x.tanh(),
        }
    }

    /// In place, for tensors outside any autograd graph (saves one
    /// allocation of the layer's output per layer).
    fn apply_(self, x: &mut Tensor) -> Result<()> {
        let _ = match self {
            Activation::Silu => x.f_silu_()?,
            Activation::Relu => x.f_relu_()?,
            Activation::Gelu => x.f_gelu_("none")?,
            Activation::Tanh => x.f_tanh_()?,
        };
        Ok(())
    }
}

/// How the time `t` enters the network: `[sin(w t), cos(w t)]` for a fixed
/// frequency vector `w` of length `dim / 2`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum TimeEmbedding {
    /// Transformer-style geometric frequencies `w_k = 1000 * 10000^(-k / (dim/2))`
    /// (Vaswani et al. 2017; the `1000` maps `t in [0, 1]` to DDPM's step index).
    Sinusoidal {
        /// Embedding width (even).
        dim: usize,
    },
    /// Gaussian random Fourier features `w_k = 2 pi N(0, scale^2)`, fixed at
    /// initialisation (Tancik et al. 2020; Song et al. 2021).
    Fourier {
        /// Embedding width (even).
        dim: usize,
        /// Standard deviation of the frequencies.
        scale: f64,
    },
}

impl Default for TimeEmbedding {
    fn default() -> Self {
        TimeEmbedding::Sinusoidal { dim: 32 }
    }
}

impl TimeEmbedding {
    /// The embedding width.
    pub fn dim(&self) -> usize {
        match *self {
            TimeEmbedding::Sinusoidal { dim } | TimeEmbedding::Fourier { dim, .. } => dim,
        }
    }
}

/// What the network's output means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Parameterization {
    /// The network predicts the noise `eps` in `x_t = a x_0 + sigma eps`; the
    /// score is `-eps_hat / sigma(t)` (Ho et al. 2020).
    #[default]
    Eps,
    /// The network predicts the score itself.
    Score,
    /// The network predicts the clean data `x_0` (Karras et al. 2022's
    /// denoiser): `eps_hat = (x_t - a x0_hat) / sigma`.
    X0,
    /// The network predicts the velocity `v = a eps - sigma x_0` (Salimans &
    /// Ho 2022): `eps_hat = (sigma x_t + a v_hat) / (a^2 + sigma^2)`.
    V,
    /// The network predicts the flow-matching velocity `v = dx_t/dt = a' x_0 + sigma' eps`
    /// (Lipman et al. 2023; `z - x_0` for rectified flow, Liu et al. 2023), trained by
    /// regressing it on that target. Not [`Parameterization::V`], which is
    /// `a eps - sigma x_0` and assumes `a^2 + sigma^2 = 1`. It converts to
    /// `x0_hat`, `eps_hat` and the score through
    /// [`crate::solvers::VelocityCoefs`], which needs `a'` and `sigma'`: not through
    /// [`Parameterization::eps_hat`].
    Flow,
}

impl Parameterization {
    /// The sampling-time convention of this output: the [`Prediction`] that
    /// [`crate::solvers::ModelConvention`] converts to the score (the one conversion
    /// native and TorchScript models share).
    pub fn prediction(self) -> Prediction {
        match self {
            Parameterization::Eps => Prediction::Eps,
            Parameterization::Score => Prediction::Score,
            Parameterization::X0 => Prediction::X0,
            Parameterization::V => Prediction::V,
            Parameterization::Flow => Prediction::Flow,
        }
    }

    /// The noise estimate `eps_hat` in `x_t = a x_0 + sigma eps` that the
    /// network output `out` at `x_t` stands for, given the perturbation
    /// kernel's `a(t)` and `sigma(t)` (scalars or tensors broadcasting
    /// against `out`): the one conversion training and sampling share. The
    /// score is then `-eps_hat / sigma`.
    ///
    /// # Errors
    /// libtorch errors (shapes that do not broadcast).
    pub fn eps_hat(self, out: Tensor, x_t: &Tensor, a: &Tensor, sigma: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Parameterization::Eps => out,
            Parameterization::Score => out.f_mul(sigma)?.f_neg()?,
            Parameterization::X0 => x_t.f_sub(&out.f_mul(a)?)?.f_div(sigma)?,
            Parameterization::V => {
                let norm = a.f_square()?.f_add(&sigma.f_square()?)?;
                x_t.f_mul(sigma)?.f_add(&out.f_mul(a)?)?.f_div(&norm)?
            }
            Parameterization::Flow => {
                return Err(Error::invalid(
                    "parameterization",
                    "flow",
                    "a flow velocity converts through VelocityCoefs (it needs a' and sigma'), not eps_hat",
                ))
            }
        })
    }
}

/// The network's architecture family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Arch {
    /// The MLP over `[x, embed(t), onehot(y)]`: [`NetConfig::width`],
    /// [`NetConfig::depth`], [`NetConfig::activation`] apply.
    #[default]
    Mlp,
    /// The convolutional U-Net of [`crate::unet`] for images of
    /// `dim = channels * height * width` pixels; the MLP's width, depth and
    /// activation are ignored (and not checked).
    Unet(UnetConfig),
}

/// What the network outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Head {
    /// A score (or noise) of width `dim`, read as [`NetConfig::parameterization`]
    /// says; conditioned on a class when [`NetConfig::classes`] `> 0`.
    #[default]
    Score,
    /// `classes` logits of `p(y | x_t, t)`: a noise-conditional classifier.
    Classifier,
}

/// The architecture: everything needed to rebuild the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetConfig {
    /// Data dimension (input and output width).
    pub dim: usize,
    /// Hidden width.
    pub width: usize,
    /// Number of hidden layers (>= 1).
    pub depth: usize,
    /// Hidden non-linearity.
    pub activation: Activation,
    /// Time embedding.
    pub embedding: TimeEmbedding,
    /// Output meaning.
    pub parameterization: Parameterization,
    /// Number of classes `C` (0: none). With [`Head::Score`] the input gains a
    /// one-hot label of width `C + 1`, whose last entry is the null label ∅
    /// (the unconditional score); with [`Head::Classifier`] the output is `C` logits.
    #[serde(default)]
    pub classes: usize,
    /// What the output is.
    #[serde(default)]
    pub head: Head,
    /// The architecture ([`Arch::Mlp`] in checkpoints written before there was a choice).
    #[serde(default)]
    pub arch: Arch,
}

impl NetConfig {
    /// A default MLP for `dim`-dimensional data: 3 hidden layers of 128, SiLU,
    /// 32-wide sinusoidal time embedding, eps-prediction.
    pub fn mlp(dim: usize) -> Self {
        Self {
            dim,
            width: 128,
            depth: 3,
            activation: Activation::Silu,
            embedding: TimeEmbedding::default(),
            parameterization: Parameterization::Eps,
            classes: 0,
            head: Head::Score,
            arch: Arch::Mlp,
        }
    }

    /// A U-Net score for images of `unet.channels x unet.height x unet.width`
    /// (`dim` is their product), 32-wide sinusoidal time embedding,
    /// eps-prediction. The MLP fields keep [`NetConfig::mlp`]'s values, unused.
    pub fn unet(unet: UnetConfig) -> Self {
        Self { arch: Arch::Unet(unet.clone()), ..Self::mlp(unet.dim()) }
    }

    /// The U-Net's configuration, when the architecture is a U-Net.
    pub fn unet_config(&self) -> Option<&UnetConfig> {
        match &self.arch {
            Arch::Unet(u) => Some(u),
            Arch::Mlp => None,
        }
    }

    /// The default MLP as a score conditioned on `classes` classes (for
    /// classifier-free guidance).
    pub fn conditional(dim: usize, classes: usize) -> Self {
        Self { classes, ..Self::mlp(dim) }
    }

    /// The default MLP as a noise-conditional classifier over `classes` classes.
    pub fn classifier(dim: usize, classes: usize) -> Self {
        Self { classes, head: Head::Classifier, ..Self::mlp(dim) }
    }

    /// Width of the one-hot label input: `classes + 1` for a conditional score, else 0.
    pub fn label_width(&self) -> usize {
        match self.head {
            Head::Score if self.classes > 0 => self.classes + 1,
            _ => 0,
        }
    }

    /// Output width: `dim` for a score, `classes` for a classifier.
    pub fn out_width(&self) -> usize {
        match self.head {
            Head::Score => self.dim,
            Head::Classifier => self.classes,
        }
    }

    /// Checks every size, before anything is allocated: each against its cap
    /// ([`NetConfig::MAX_DEPTH`], [`NetConfig::MAX_WIDTH`],
    /// [`NetConfig::MAX_EMBED_DIM`]) and the parameter count, computed with
    /// checked arithmetic, against [`NetConfig::MAX_PARAMS`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the size at fault (`depth`, `width`,
    /// `embedding dim`, `dim`, ...): a zero size, an odd or zero embedding
    /// width, a size over its cap, a non-finite or non-positive Fourier scale,
    /// or a network of more than [`NetConfig::MAX_PARAMS`] parameters (the
    /// message says which layers hold them).
    pub fn validate(&self) -> Result<()> {
        let positive = |name: &str, v: usize| {
            if v == 0 {
                Err(Error::invalid(name, v, "must be at least 1"))
            } else {
                Ok(())
            }
        };
        positive("dim", self.dim)?;
        if let Arch::Unet(u) = &self.arch {
            u.validate()?;
            if u.dim() != self.dim {
                return Err(Error::invalid(
                    "image shape",
                    format!("{}x{}x{}", u.channels, u.height, u.width),
                    format!("{} pixels, but the data have dim = {} values per sample", u.dim(), self.dim),
                ));
            }
        } else {
            positive("width", self.width)?;
            positive("depth", self.depth)?;
        }
        let e = self.embedding.dim();
        if e == 0 || e % 2 != 0 {
            return Err(Error::invalid("embedding dim", e, "must be even and at least 2"));
        }
        if self.head == Head::Classifier && self.classes < 2 {
            return Err(Error::invalid("classes", self.classes, "a classifier needs at least 2 classes"));
        }
        if let TimeEmbedding::Fourier { scale, .. } = self.embedding {
            if !(scale.is_finite() && scale > 0.0) {
                return Err(Error::invalid("fourier scale", scale, "must be finite and > 0"));
            }
        }
        let cap = |name: &str, v: usize, max: usize, what: &str| {
            if v > max {
                Err(Error::invalid(name, v, format!("at most {max} {what}")))
            } else {
                Ok(())
            }
        };
        cap("embedding dim", e, Self::MAX_EMBED_DIM, "time-embedding features")?;
        if let Arch::Unet(u) = &self.arch {
            cap("classes", self.classes, Self::MAX_WIDTH, "classes")?;
            let n = self.num_params();
            if n > Self::MAX_PARAMS {
                return Err(Error::invalid(
                    "base channels",
                    u.base,
                    format!("the U-Net would have {n} parameters; at most {}", Self::MAX_PARAMS),
                ));
            }
            return Ok(());
        }
        cap("depth", self.depth, Self::MAX_DEPTH, "hidden layers")?;
        cap("width", self.width, Self::MAX_WIDTH, "units per hidden layer")?;
        self.check_params()
    }

    /// Most hidden layers.
    pub const MAX_DEPTH: usize = 1024;
    /// Widest hidden layer.
    pub const MAX_WIDTH: usize = 1 << 20;
    /// Widest time embedding.
    pub const MAX_EMBED_DIM: usize = 1 << 16;
    /// Most trainable parameters (2^31: 8 GiB of f32 weights, and 5 such
    /// copies while training: weights, gradient, EMA, two Adam moments).
    pub const MAX_PARAMS: usize = 1 << 31;

    /// The parameter count by layer group `(input, hidden, output)`, `None`
    /// for a group that overflows.
    fn param_groups(&self) -> [Option<usize>; 3] {
        let w1 = self.width.checked_add(1);
        let fan_in = self.dim.checked_add(self.embedding.dim()).and_then(|f| f.checked_add(self.label_width()));
        let input = fan_in.and_then(|f| f.checked_add(1)).and_then(|f| f.checked_mul(self.width));
        let hidden =
            w1.and_then(|w1| w1.checked_mul(self.width)).and_then(|l| l.checked_mul(self.depth.saturating_sub(1)));
        let output = w1.and_then(|w1| w1.checked_mul(self.out_width()));
        [input, hidden, output]
    }

    /// The parameter count against [`NetConfig::MAX_PARAMS`], blaming the
    /// size that makes the largest group large.
    fn check_params(&self) -> Result<()> {
        let [input, hidden, output] = self.param_groups();
        let total = input.zip(hidden).zip(output).and_then(|((i, h), o)| i.checked_add(h)?.checked_add(o));
        if total.is_some_and(|n| n <= Self::MAX_PARAMS) {
            return Ok(());
        }
        let show = |g: Option<usize>| g.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string());
        let reason = format!(
            "the network would have {} parameters (input layer {}, {} more hidden layers {}, output layer {}); at most {}",
            show(total),
            show(input),
            self.depth.saturating_sub(1),
            show(hidden),
            show(output),
            Self::MAX_PARAMS
        );
        let size = |g: Option<usize>| g.unwrap_or(usize::MAX);
        // Under the depth cap, (depth - 1) x width^2 is only too large through the width.
        let (name, value) = if size(hidden) >= size(input).max(size(output)) {
            ("width", self.width)
        } else if size(input) >= size(output) {
            // The input layer is fan_in x width: blame the larger of the two.
            let e = self.embedding.dim();
            if e >= self.dim.max(self.width) {
                ("embedding dim", e)
            } else if self.dim >= self.width {
                ("dim", self.dim)
            } else {
                ("width", self.width)
            }
        } else if self.out_width() >= self.width {
            (if self.head == Head::Classifier { "classes" } else { "dim" }, self.out_width())
        } else {
            ("width", self.width)
        };
        Err(Error::invalid(name, value, reason))
    }

    /// `(fan_in, fan_out)` of every linear layer, input first.
    fn layers(&self) -> Vec<LayerShape> {
        let mut shapes = Vec::with_capacity(self.depth + 1);
        let mut fan_in = self.dim + self.embedding.dim() + self.label_width();
        for _ in 0..self.depth {
            shapes.push(LayerShape { fan_in, fan_out: self.width });
            fan_in = self.width;
        }
        shapes.push(LayerShape { fan_in, fan_out: self.out_width() });
        shapes
    }

    /// Number of trainable parameters of a valid configuration (see
    /// [`NetConfig::validate`]); saturates at `usize::MAX` instead of overflowing.
    pub fn num_params(&self) -> usize {
        if let Arch::Unet(u) = &self.arch {
            if u.validate().is_err() {
                return usize::MAX;
            }
            let net = UNet::new(u.clone(), self.embedding.dim(), self.classes, self.head == Head::Classifier);
            return usize::try_from(net.num_params()).unwrap_or(usize::MAX);
        }
        self.param_groups().iter().fold(0usize, |acc, g| acc.saturating_add(g.unwrap_or(usize::MAX)))
    }
}

#[derive(Debug, Clone, Copy)]
struct LayerShape {
    fan_in: usize,
    fan_out: usize,
}

/// Where one layer's weight and bias sit in the flat parameter vector.
#[derive(Debug, Clone, Copy)]
struct Slot {
    weight: i64,
    bias: i64,
    fan_in: i64,
    fan_out: i64,
}

/// The score network (or noise-conditional classifier): the MLP of the
/// [module docs](self), or the U-Net of [`crate::unet`] when
/// [`NetConfig::arch`] says so. Either way ONE flat parameter vector, so
/// training, EMA and checkpoints do not depend on the architecture.
#[derive(Debug)]
pub struct ScoreNet {
    config: NetConfig,
    /// The MLP's layers (empty for a U-Net).
    slots: Vec<Slot>,
    /// The U-Net's layout, when the architecture is a U-Net.
    unet: Option<UNet>,
    /// Embedding frequencies `w` (not trained), shape `[embedding.dim / 2]`.
    freqs: Tensor,
    /// The same frequencies on the host, for [`ScoreNet::forward_at`].
    freqs_host: Vec<f32>,
    device: Device,
}

impl ScoreNet {
    /// The layout for `config` on `device`, without parameters; see
    /// [`ScoreNet::init_params`].
    ///
    /// # Errors
    /// As [`NetConfig::validate`].
    pub fn new(config: NetConfig, device: Device, seed: u64) -> Result<Self> {
        config.validate()?;
        let mut slots = Vec::new();
        let mut offset = 0i64;
        let unet = config
            .unet_config()
            .map(|u| UNet::new(u.clone(), config.embedding.dim(), config.classes, config.head == Head::Classifier));
        for l in config.layers().into_iter().filter(|_| unet.is_none()) {
            let (fan_in, fan_out) = (l.fan_in as i64, l.fan_out as i64);
            slots.push(Slot { weight: offset, bias: offset + fan_in * fan_out, fan_in, fan_out });
            offset += fan_out * (fan_in + 1);
        }
        let half = (config.embedding.dim() / 2) as i64;
        let freqs = match config.embedding {
            TimeEmbedding::Sinusoidal { .. } => {
                let k = Tensor::arange(half, (Kind::Double, Device::Cpu));
                (k * (-(10_000f64.ln()) / half as f64)).exp() * 1000.0
            }
            TimeEmbedding::Fourier { scale, .. } => {
                let mut rng = crate::rng::rng(seed, crate::rng::FOURIER, 0);
                let w: Vec<f64> = (0..half).map(|_| rng.sample::<f64, _>(StandardNormal)).collect();
                Tensor::f_from_slice(&w)? * (2.0 * std::f64::consts::PI * scale)
            }
        };
        let freqs = freqs.to_kind(Kind::Float);
        let freqs_host = Vec::<f32>::try_from(&freqs)?;
        let freqs = freqs.to_device(device);
        Ok(Self { config, slots, unet, freqs, freqs_host, device })
    }

    /// The architecture.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// The device the network computes on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The fixed time-embedding frequencies (saved in checkpoints).
    pub fn freqs(&self) -> &Tensor {
        &self.freqs
    }

    /// Replaces the embedding frequencies (when loading a checkpoint).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the length is wrong.
    pub fn set_freqs(&mut self, freqs: &Tensor) -> Result<()> {
        if freqs.size() != self.freqs.size() {
            return Err(Error::invalid(
                "embedding frequencies",
                format!("{:?}", freqs.size()),
                format!("expected shape {:?}", self.freqs.size()),
            ));
        }
        let freqs = freqs.to_kind(Kind::Float);
        self.freqs_host = Vec::<f32>::try_from(&freqs.to_device(Device::Cpu).contiguous())?;
        self.freqs = freqs.to_device(self.device);
        Ok(())
    }

    /// A freshly initialised flat parameter vector on the network's device:
    /// every weight and bias `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` (PyTorch's
    /// `nn.Linear` default), drawn on the host from `seed` alone (libtorch's
    /// generator is not used), so the same on every device.
    ///
    /// # Errors
    /// libtorch errors (out of device memory).
    pub fn init_params(&self, seed: u64) -> Result<Tensor> {
        if let Some(u) = &self.unet {
            return u.init_params(seed, self.device);
        }
        let mut rng = crate::rng::rng(seed, crate::rng::INIT, 0);
        let mut values = Vec::with_capacity(self.num_params() as usize);
        for s in &self.slots {
            let bound = 1.0 / (s.fan_in as f32).sqrt();
            let uniform = Uniform::new(-bound, bound);
            values.extend((0..s.fan_out * (s.fan_in + 1)).map(|_| rng.sample(uniform)));
        }
        crate::rng::to_device(&values, &[self.num_params()], Kind::Float, self.device)
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> i64 {
        if let Some(u) = &self.unet {
            return u.num_params();
        }
        self.slots.last().map_or(0, |s| s.bias + s.fan_out)
    }

    /// Named views of a flat parameter vector, for checkpoints: for the MLP
    /// `layers.{i}.weight` (`[out, in]`) and `layers.{i}.bias` (`[out]`), for
    /// the U-Net the names of [`crate::unet`].
    pub fn named(&self, params: &Tensor) -> Vec<(String, Tensor)> {
        if let Some(u) = &self.unet {
            return u.named(params);
        }
        let mut out = Vec::with_capacity(2 * self.slots.len());
        for (i, s) in self.slots.iter().enumerate() {
            out.push((format!("layers.{i}.weight"), self.weight(params, s)));
            out.push((format!("layers.{i}.bias"), params.narrow(0, s.bias, s.fan_out)));
        }
        out
    }

    /// The inverse of [`ScoreNet::named`]: a flat vector from named tensors,
    /// looked up under `prefix`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the tensor that is missing or has the wrong shape.
    pub fn flatten_named(&self, find: impl Fn(&str) -> Option<Tensor>) -> Result<Tensor> {
        if let Some(u) = &self.unet {
            return u.flatten_named(find, self.device);
        }
        let mut parts = Vec::with_capacity(2 * self.slots.len());
        for (i, s) in self.slots.iter().enumerate() {
            for (name, shape) in [
                (format!("layers.{i}.weight"), vec![s.fan_out, s.fan_in]),
                (format!("layers.{i}.bias"), vec![s.fan_out]),
            ] {
                let t = find(&name).ok_or_else(|| Error::invalid("checkpoint tensor", &name, "missing"))?;
                if t.size() != shape {
                    return Err(Error::invalid(
                        "checkpoint tensor",
                        &name,
                        format!("has shape {:?}, the architecture needs {shape:?}", t.size()),
                    ));
                }
                parts.push(t.to_kind(Kind::Float).reshape([-1]));
            }
        }
        Ok(Tensor::cat(&parts, 0).to_device(self.device))
    }

    fn weight(&self, params: &Tensor, s: &Slot) -> Tensor {
        params.narrow(0, s.weight, s.fan_in * s.fan_out).view([s.fan_out, s.fan_in])
    }

    /// The time embedding `[sin(w t), cos(w t)]` of a `[batch]` tensor of times.
    fn embed(&self, t: &Tensor) -> Tensor {
        let arg = t.unsqueeze(1) * self.freqs.unsqueeze(0);
        Tensor::cat(&[arg.sin(), arg.cos()], 1)
    }

    /// The raw network output for a `[batch, dim]` input and `[batch]` times,
    /// with parameters `params` (gradients flow into `params` when it requires them).
    /// A conditional network sees the null label (its unconditional score);
    /// see [`ScoreNet::forward_labelled`].
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a wrong input shape or a parameter vector
    /// of the wrong length; libtorch errors (device mismatch).
    pub fn forward(&self, params: &Tensor, x: &Tensor, t: &Tensor) -> Result<Tensor> {
        self.forward_labelled(params, x, t, None)
    }

    /// As [`ScoreNet::forward`], for a conditional network with integer
    /// `labels` (`[batch]`, values in `0..=classes`, `classes` being the null
    /// label ∅); `None` gives every sample the null label.
    ///
    /// # Errors
    /// As [`ScoreNet::forward`], and [`Error::InvalidArgument`] for labels given
    /// to a network without label input, or labels of the wrong shape or range.
    pub fn forward_labelled(&self, params: &Tensor, x: &Tensor, t: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        self.forward_train(params, x, t, labels, None)
    }

    /// As [`ScoreNet::forward_labelled`], in training mode when
    /// `dropout_seed` is given: the U-Net's residual blocks then apply
    /// dropout ([`UnetConfig::dropout`]) with masks that depend only on the
    /// seed (see [`Trainer`](crate::train::Trainer)). The MLP has no dropout.
    ///
    /// # Errors
    /// As [`ScoreNet::forward_labelled`].
    pub fn forward_train(
        &self,
        params: &Tensor,
        x: &Tensor,
        t: &Tensor,
        labels: Option<&Tensor>,
        dropout_seed: Option<u64>,
    ) -> Result<Tensor> {
        let batch = self.check_input(params, x)?;
        if t.size() != [batch] {
            return Err(Error::invalid("times", format!("shape {:?}", t.size()), format!("expected [{batch}]")));
        }
        let labels = self.labels(batch, labels, x.device())?;
        if let Some(u) = &self.unet {
            return u.forward(params, x, &self.embed(t), labels.as_ref(), dropout_seed);
        }
        let mut inputs = vec![x.shallow_clone(), self.embed(t)];
        if let Some(y) = labels {
            inputs.push(y.f_one_hot(self.config.label_width() as i64)?.f_to_kind(x.kind())?);
        }
        let h = Tensor::f_cat(&inputs, 1)?;
        self.hidden(params, h, 0)
    }

    /// The labels a conditional score sees (int64 `[batch]`, `None` replaced
    /// by the null label `classes`); `None` for a network without labels.
    fn labels(&self, batch: i64, labels: Option<&Tensor>, device: Device) -> Result<Option<Tensor>> {
        let width = self.config.label_width() as i64;
        match labels {
            _ if width == 0 && labels.is_some() => {
                Err(Error::invalid("labels", "given", "the network takes no class labels"))
            }
            None if width > 0 => Ok(Some(Tensor::f_full([batch], width - 1, (Kind::Int64, device))?)),
            Some(y) => {
                if y.size() != [batch] {
                    return Err(Error::invalid(
                        "labels",
                        format!("shape {:?}", y.size()),
                        format!("expected [{batch}]"),
                    ));
                }
                let y = y.f_to_kind(Kind::Int64)?;
                if batch > 0 {
                    let (lo, hi) = (y.f_min()?.f_int64_value(&[])?, y.f_max()?.f_int64_value(&[])?);
                    if lo < 0 || hi >= width {
                        let bad = if lo < 0 { lo } else { hi };
                        return Err(Error::invalid(
                            "labels",
                            bad,
                            format!("must be in 0..={} ({} is the null label)", width - 1, width - 1),
                        ));
                    }
                }
                Ok(Some(y))
            }
            None => Ok(None),
        }
    }

    /// [`ScoreNet::forward`] with one time `t` for the whole batch, as in
    /// sampling: the same function, computed with fewer kernels. See
    /// [`ScoreNet::forward_at_class`].
    ///
    /// # Errors
    /// As [`ScoreNet::forward`].
    pub fn forward_at(&self, params: &Tensor, x: &Tensor, t: f64) -> Result<Tensor> {
        self.forward_at_class(params, x, t, None)
    }

    /// [`ScoreNet::forward_labelled`] with one time `t` and one label `class`
    /// (`None`: the null label) for the whole batch. The embedding `e(t)` is
    /// formed once (on the host in f32 for the CPU), and the first layer
    /// `b + W [x, e, onehot] = (b + W_e e + W_y[:, class]) + W_x x` folds time
    /// and label into the bias, so no `[batch, input width]` tensor is built.
    /// Activations are applied in place when no gradient is recorded.
    ///
    /// # Errors
    /// As [`ScoreNet::forward_labelled`]; a class out of range.
    pub fn forward_at_class(&self, params: &Tensor, x: &Tensor, t: f64, class: Option<usize>) -> Result<Tensor> {
        let batch = self.check_input(params, x)?;
        let width = self.config.label_width();
        match class {
            Some(_) if width == 0 => {
                return Err(Error::invalid("labels", "given", "the network takes no class labels"))
            }
            Some(c) if c + 1 >= width => {
                return Err(Error::invalid("class", c, format!("the network has {} classes", width - 1)));
            }
            _ => {}
        }
        if self.unet.is_some() {
            // Convolutions have no first layer to fold the time into: the general path.
            let times = Tensor::f_full([batch], t, (Kind::Float, x.device()))?;
            let labels = class.map(|c| Tensor::f_full([batch], c as i64, (Kind::Int64, x.device()))).transpose()?;
            return self.forward_labelled(params, x, &times, labels.as_ref());
        }
        let half = self.freqs_host.len();
        let emb = if self.device == Device::Cpu {
            let mut emb = vec![0f32; 2 * half];
            for (k, &w) in self.freqs_host.iter().enumerate() {
                let arg = t as f32 * w;
                emb[k] = arg.sin();
                emb[half + k] = arg.cos();
            }
            Tensor::f_from_slice(&emb)?
        } else {
            // On a GPU a host-to-device copy would wait for the queued kernels
            // every step; a few tiny kernels on the device do not.
            let arg = self.freqs.f_mul_scalar(f64::from(t as f32))?;
            Tensor::f_cat(&[arg.sin(), arg.cos()], 0)?
        };
        let s = &self.slots[0];
        let dim = self.config.dim as i64;
        let w = self.weight(params, s);
        let mut bias = params.narrow(0, s.bias, s.fan_out).f_addmv(&w.narrow(1, dim, 2 * half as i64), &emb)?;
        if width > 0 {
            let col = dim + 2 * half as i64 + class.unwrap_or(width - 1) as i64;
            bias = bias.f_add(&w.select(1, col))?;
        }
        let h = bias.f_addmm(x, &w.narrow(1, 0, dim).tr())?;
        self.activate_and_continue(params, h)
    }

    /// Checks shapes; returns the batch size.
    fn check_input(&self, params: &Tensor, x: &Tensor) -> Result<i64> {
        if params.size() != [self.num_params()] {
            return Err(Error::invalid(
                "parameters",
                format!("shape {:?}", params.size()),
                format!("expected [{}]", self.num_params()),
            ));
        }
        if let Some(u) = &self.unet {
            return u.batch_of(x);
        }
        let size = x.size();
        if size.len() != 2 || size[1] != self.config.dim as i64 {
            return Err(Error::invalid(
                "input",
                format!("shape {size:?}"),
                format!("the network takes [batch, {}]", self.config.dim),
            ));
        }
        if params.size() != [self.num_params()] {
            return Err(Error::invalid(
                "parameters",
                format!("shape {:?}", params.size()),
                format!("expected [{}]", self.num_params()),
            ));
        }
        Ok(size[0])
    }

    /// The output of the first layer (before its activation) -> the network output.
    fn activate_and_continue(&self, params: &Tensor, h: Tensor) -> Result<Tensor> {
        if self.slots.len() == 1 {
            return Ok(h);
        }
        let h = self.activate(h)?;
        self.hidden(params, h, 1)
    }

    fn activate(&self, mut h: Tensor) -> Result<Tensor> {
        if h.requires_grad() {
            Ok(self.config.activation.apply(&h))
        } else {
            self.config.activation.apply_(&mut h)?;
            Ok(h)
        }
    }

    /// Layers `first..` applied to the input `h` of layer `first`.
    fn hidden(&self, params: &Tensor, mut h: Tensor, first: usize) -> Result<Tensor> {
        let last = self.slots.len() - 1;
        for (i, s) in self.slots.iter().enumerate().skip(first) {
            let bias = params.narrow(0, s.bias, s.fan_out);
            h = bias.f_addmm(&h, &self.weight(params, s).tr())?;
            if i < last {
                h = self.activate(h)?;
            }
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(config: NetConfig) -> ScoreNet {
        ScoreNet::new(config, Device::Cpu, 0).unwrap()
    }

    #[test]
    fn layout_names_and_round_trip() {
        let config = NetConfig { width: 16, depth: 2, ..NetConfig::mlp(3) };
        let n = net(config.clone());
        // (3 + 32) * 16 + 16, 16 * 16 + 16, 16 * 3 + 3
        assert_eq!(n.num_params(), 35 * 16 + 16 + 16 * 16 + 16 + 16 * 3 + 3);
        assert_eq!(n.num_params() as usize, config.num_params());
        let p = n.init_params(1).unwrap();
        let named = n.named(&p);
        assert_eq!(named.len(), 6);
        assert_eq!(named[0].0, "layers.0.weight");
        assert_eq!(named[0].1.size(), [16, 35]);
        let back = n.flatten_named(|name| named.iter().find(|(k, _)| k == name).map(|(_, t)| t.copy())).unwrap();
        assert!(back.equal(&p));
        // Deterministic initialisation within PyTorch's bounds.
        assert!(n.init_params(1).unwrap().equal(&p));
        assert!(!n.init_params(2).unwrap().equal(&p));
        let w0 = &named[0].1;
        assert!(w0.abs().max().double_value(&[]) <= 1.0 / 35f64.sqrt());
        // A wrong shape is named.
        let err =
            n.flatten_named(|name| (name != "layers.1.bias").then(|| Tensor::zeros([1], (Kind::Float, Device::Cpu))));
        assert!(err.unwrap_err().to_string().contains("layers.0.weight"));
    }

    #[test]
    fn forward_shapes_and_errors() {
        for embedding in [TimeEmbedding::Sinusoidal { dim: 8 }, TimeEmbedding::Fourier { dim: 8, scale: 16.0 }] {
            for activation in [Activation::Silu, Activation::Relu, Activation::Gelu, Activation::Tanh] {
                let n = net(NetConfig { width: 8, depth: 2, activation, embedding, ..NetConfig::mlp(2) });
                let p = n.init_params(0).unwrap();
                let x = Tensor::randn([5, 2], (Kind::Float, Device::Cpu));
                let t = Tensor::full([5], 0.5, (Kind::Float, Device::Cpu));
                let y = n.forward(&p, &x, &t).unwrap();
                assert_eq!(y.size(), [5, 2]);
                assert!(y.isfinite().all().int64_value(&[]) == 1);
                assert!(n.forward(&p, &x.view([2, 5]), &t).is_err());
                assert!(n.forward(&p, &x, &t.narrow(0, 0, 4)).is_err());
                assert!(n.forward(&p.narrow(0, 0, 10), &x, &t).is_err());
            }
        }
    }

    #[test]
    fn forward_at_one_time_equals_forward() {
        for embedding in [TimeEmbedding::Sinusoidal { dim: 32 }, TimeEmbedding::Fourier { dim: 8, scale: 16.0 }] {
            for (depth, activation) in [(1, Activation::Silu), (3, Activation::Silu), (2, Activation::Gelu)] {
                let n = net(NetConfig { width: 16, depth, activation, embedding, ..NetConfig::mlp(3) });
                let p = n.init_params(4).unwrap();
                let x = Tensor::randn([7, 3], (Kind::Float, Device::Cpu));
                for t in [1e-3, 0.37, 1.0] {
                    let want = n.forward(&p, &x, &Tensor::full([7], t, (Kind::Float, Device::Cpu))).unwrap();
                    // With and without gradients recorded (in-place activations only without).
                    let got = tch::no_grad(|| n.forward_at(&p, &x, t)).unwrap();
                    assert!(got.allclose(&want, 1e-4, 1e-5, false), "t = {t}: {got} vs {want}");
                    let pg = p.copy().set_requires_grad(true);
                    let got = n.forward_at(&pg, &x, t).unwrap();
                    assert!(got.requires_grad());
                    assert!(got.detach().allclose(&want, 1e-4, 1e-5, false));
                }
                assert!(n.forward_at(&p, &x.view([3, 7]), 0.5).is_err());
                assert!(n.forward_at(&p.narrow(0, 0, 10), &x, 0.5).is_err());
            }
        }
    }

    #[test]
    fn forward_at_class_equals_forward_labelled() {
        let n = net(NetConfig { width: 8, depth: 2, ..NetConfig::conditional(2, 3) });
        let p = n.init_params(5).unwrap();
        let x = Tensor::randn([4, 2], (Kind::Float, Device::Cpu));
        let t = 0.37;
        let times = Tensor::full([4], t, (Kind::Float, Device::Cpu));
        for class in [None, Some(0), Some(2)] {
            let labels = class.map(|c| Tensor::full([4], c as i64, (Kind::Int64, Device::Cpu)));
            let want = n.forward_labelled(&p, &x, &times, labels.as_ref()).unwrap();
            let got = tch::no_grad(|| n.forward_at_class(&p, &x, t, class)).unwrap();
            assert!(got.allclose(&want, 1e-5, 1e-5, false), "class {class:?}");
        }
        assert!(n.forward_at_class(&p, &x, t, Some(3)).is_err(), "class 3 is the null label's slot");
        let plain = net(NetConfig { width: 8, depth: 2, ..NetConfig::mlp(2) });
        assert!(plain.forward_at_class(&plain.init_params(0).unwrap(), &x, t, Some(0)).is_err());
    }

    #[test]
    fn embedding_depends_on_time() {
        let n = net(NetConfig { width: 8, depth: 1, ..NetConfig::mlp(2) });
        let p = n.init_params(0).unwrap();
        let x = Tensor::zeros([2, 2], (Kind::Float, Device::Cpu));
        let t = Tensor::from_slice(&[0.1f32, 0.9]);
        let y = n.forward(&p, &x, &t).unwrap();
        assert!(!y.get(0).equal(&y.get(1)), "the output must change with t");
    }

    #[test]
    fn conditional_and_classifier_layouts() {
        let c = NetConfig { width: 8, depth: 1, ..NetConfig::conditional(2, 3) };
        assert_eq!((c.label_width(), c.out_width()), (4, 2));
        // (2 + 32 + 4) * 8 + 8, 8 * 2 + 2
        assert_eq!(c.num_params(), 38 * 8 + 8 + 8 * 2 + 2);
        let n = net(c);
        let p = n.init_params(0).unwrap();
        let x = Tensor::randn([4, 2], (Kind::Float, Device::Cpu));
        let t = Tensor::full([4], 0.5, (Kind::Float, Device::Cpu));
        let null = n.forward(&p, &x, &t).unwrap();
        let labels = Tensor::from_slice(&[3i64, 3, 3, 3]);
        assert!(n.forward_labelled(&p, &x, &t, Some(&labels)).unwrap().equal(&null), "None is the null label");
        let labelled = n.forward_labelled(&p, &x, &t, Some(&Tensor::from_slice(&[0i64, 1, 2, 0]))).unwrap();
        assert_eq!(labelled.size(), [4, 2]);
        assert!(!labelled.equal(&null));
        assert!(n.forward_labelled(&p, &x, &t, Some(&Tensor::from_slice(&[0i64, 1]))).is_err());
        assert!(n.forward_labelled(&p, &x, &t, Some(&Tensor::from_slice(&[0i64, 1, 2, 4]))).is_err());

        let k = NetConfig { width: 8, depth: 1, ..NetConfig::classifier(2, 5) };
        assert_eq!((k.label_width(), k.out_width()), (0, 5));
        let n = net(k);
        let p = n.init_params(0).unwrap();
        assert_eq!(n.forward(&p, &x, &t).unwrap().size(), [4, 5]);
        assert!(n.forward_labelled(&p, &x, &t, Some(&labels)).is_err(), "a classifier takes no labels");
    }

    #[test]
    fn invalid_configs_are_rejected() {
        for bad in [
            NetConfig { dim: 0, ..NetConfig::mlp(2) },
            NetConfig { width: 0, ..NetConfig::mlp(2) },
            NetConfig { depth: 0, ..NetConfig::mlp(2) },
            NetConfig { embedding: TimeEmbedding::Sinusoidal { dim: 7 }, ..NetConfig::mlp(2) },
            NetConfig { embedding: TimeEmbedding::Fourier { dim: 8, scale: f64::NAN }, ..NetConfig::mlp(2) },
        ] {
            assert!(ScoreNet::new(bad, Device::Cpu, 0).is_err());
        }
    }
}
