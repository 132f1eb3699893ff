//! Denoising score matching (Vincent 2011; Song et al. 2021, eq. 7).
//!
//! Each step draws a batch `x_0` from the data, times `t ~ U(t_min, T)` (`T = 1`, or
//! the process's `t_max`: `1 - 1e-3` for rectified flow) and
//! noise `eps ~ N(0, I)`, forms `x_t = a(t) x_0 + sigma(t) eps`, and minimises
//!
//! `L = mean_i w(t_i) mean_d (sigma(t_i) s_theta(x_t, t_i) + eps)^2`,
//!
//! i.e. `lambda(t) |s_theta - grad log p(x_t | x_0)|^2` with `lambda = w sigma^2`.
//! [`Weighting::Eps`] (`w = 1`, `lambda = sigma^2`) is the eps-prediction loss of
//! Ho et al. 2020; [`Weighting::Likelihood`] (`w = g^2 / sigma^2`,
//! `lambda = g^2`) makes the loss an upper bound on the negative
//! log-likelihood (Song et al. 2021, "Maximum likelihood training").
//!
//! A flow-velocity network ([`Parameterization::Flow`], `scoresde train --process flow`)
//! regresses the velocity instead (Lipman et al. 2023; Liu et al. 2023):
//! `L = mean_i w(t_i) mean_d (v_theta(x_t, t_i) - (a' x_0 + sigma' eps))^2`, for rectified
//! flow `(v_theta - (eps - x_0))^2`, with `w = 1` ([`Weighting::Eps`]) or the likelihood
//! weight carried over from the eps form ([`Weighting::Likelihood`]).
//!
//! A conditional network ([`NetConfig::classes`] `> 0`) is trained the same
//! way on labelled data, each label replaced by the null label with
//! probability [`TrainConfig::label_dropout`], so one network learns both
//! `s(x, t, y)` and `s(x, t, ∅)` (Ho & Salimans 2022). A classifier
//! ([`Head::Classifier`]) is trained by cross-entropy of its logits at the
//! noised `x_t` against the labels, `t ~ U(t_min, 1)` as above
//! (Dhariwal & Nichol 2021, §4).
//!
//! Adam (Kingma & Ba 2015) with linear warm-up and global-norm gradient
//! clipping; an exponential moving average of the weights is kept for
//! sampling. Every random draw of step `k` (with the U-Net's dropout masks,
//! [`crate::rng`]) is a function of `(seed, k)` only,
//! so a run resumed from a checkpoint equals an uninterrupted one (on the CPU,
//! bit for bit).

use std::sync::atomic::{AtomicBool, Ordering};

use rand::Rng as _;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::model::{FrozenHead, FrozenNet, NeuralClassifier, NeuralScore, SdeSpec};
use crate::net::{Head, NetConfig, Parameterization, ScoreNet};
use crate::solvers::Sde;

/// The weighting `w(t)` of the eps-form loss; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Weighting {
    /// `lambda(t) = sigma(t)^2`: the eps loss.
    #[default]
    Eps,
    /// `lambda(t) = g(t)^2`: likelihood weighting (high variance near `t_min`).
    Likelihood,
}

/// Optimisation settings. `Default` gives the values the CLI uses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Total optimisation steps.
    pub steps: u64,
    /// Samples per step.
    pub batch_size: usize,
    /// Peak Adam learning rate.
    pub lr: f64,
    /// Linear warm-up length in steps (0: none).
    pub warmup: u64,
    /// Clip the global gradient norm to this (0: no clipping).
    pub grad_clip: f64,
    /// EMA decay (0: the EMA is the current weights).
    pub ema_decay: f64,
    /// Loss weighting.
    pub weighting: Weighting,
    /// Smallest training time; `t ~ U(t_min, T)`.
    pub t_min: f64,
    /// Seed of every random draw (initialisation, batches, times, noise).
    pub seed: u64,
    /// Probability of replacing a label by the null label when training a
    /// conditional score (classifier-free guidance); unused otherwise.
    #[serde(default = "default_label_dropout")]
    pub label_dropout: f64,
}

fn default_label_dropout() -> f64 {
    0.1
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 4000,
            batch_size: 512,
            lr: 2e-3,
            warmup: 100,
            grad_clip: 1.0,
            ema_decay: 0.999,
            weighting: Weighting::Eps,
            t_min: 1e-5,
            seed: 0,
            label_dropout: default_label_dropout(),
        }
    }
}

impl TrainConfig {
    /// Checks every value.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        validate_optimiser(self.steps, self.batch_size, self.lr, self.grad_clip)?;
        if !(0.0..1.0).contains(&self.ema_decay) {
            return Err(Error::invalid("ema decay", self.ema_decay, "must be in [0, 1)"));
        }
        if !(self.t_min > 0.0 && self.t_min < 1.0) {
            return Err(Error::invalid("t_min", self.t_min, "must be in (0, 1)"));
        }
        if !(0.0..=1.0).contains(&self.label_dropout) {
            return Err(Error::invalid("label dropout", self.label_dropout, "must be in [0, 1]"));
        }
        Ok(())
    }
}

/// Checks the optimisation settings every trainer shares (the score model's
/// [`TrainConfig`] and the feature classifier's): at least one step and one
/// row per batch, a finite positive learning rate, a finite non-negative
/// gradient clip.
///
/// # Errors
/// [`Error::InvalidArgument`] naming the bad value.
pub(crate) fn validate_optimiser(steps: u64, batch_size: usize, lr: f64, grad_clip: f64) -> Result<()> {
    if steps == 0 {
        return Err(Error::invalid("steps", steps, "must be at least 1"));
    }
    if batch_size == 0 {
        return Err(Error::invalid("batch size", batch_size, "must be at least 1"));
    }
    if !(lr.is_finite() && lr > 0.0) {
        return Err(Error::invalid("lr", lr, "must be finite and > 0"));
    }
    if !(grad_clip.is_finite() && grad_clip >= 0.0) {
        return Err(Error::invalid("grad clip", grad_clip, "must be finite and >= 0"));
    }
    Ok(())
}

/// Rough peak bytes of one training step of `net` on batches of `batch` rows
/// (f32): eight copies of the parameters (weights, gradient, EMA, two Adam
/// moments and the update's temporaries) plus, per row, the step's draws, the
/// noised inputs, the time embedding, and each layer's output and activation
/// with their gradients (for a U-Net, [`crate::unet::UnetConfig::activation_floats`] twice). Saturates instead of overflowing.
pub fn step_bytes(net: &NetConfig, batch: usize) -> u64 {
    let params = (net.num_params() as u64).saturating_mul(8 * 4);
    let n = |v: usize| v as u64;
    let layers = match net.unet_config() {
        // Activations and their gradients.
        Some(u) => u.activation_floats().saturating_mul(2),
        None => n(net.depth).saturating_mul(n(net.width).saturating_mul(4)),
    };
    let per_row = [
        (n(net.dim).saturating_add(6)).saturating_mul(2), // host draws and their device copy, the row index
        n(net.dim).saturating_mul(5),                     // x0, eps, x_t, output, residual
        n(net.embedding.dim()).saturating_mul(3),
        n(net.label_width()).saturating_mul(2),
        layers,
        n(net.out_width()).saturating_mul(2),
    ]
    .iter()
    .fold(0u64, |acc, &f| acc.saturating_add(f))
    .saturating_mul(4);
    params.saturating_add(per_row.saturating_mul(batch as u64))
}

/// Refuses a training step that would not fit in half of the machine's memory
/// (on the CPU, where running out means being killed by the system rather
/// than an error; a CUDA allocator reports running out as an error).
fn check_step_memory(net: &NetConfig, batch: usize, device: Device) -> Result<()> {
    if device != Device::Cpu {
        return Ok(());
    }
    let Some(memory) = crate::fsutil::memory_bytes() else { return Ok(()) };
    let budget = memory / 2;
    let need = step_bytes(net, batch);
    if need <= budget {
        return Ok(());
    }
    let gb = |b: u64| b as f64 / 1e9;
    let fixed = step_bytes(net, 0);
    if fixed > budget {
        // The size that sets the parameter count.
        let (name, value) = match net.unet_config() {
            Some(u) => ("base channels", u.base),
            None => ("width", net.width),
        };
        return Err(Error::invalid(
            name,
            value,
            format!(
                "training {} parameters needs about {:.1} GB, more than half of this machine's {:.1} GB of memory: use a smaller network",
                net.num_params(),
                gb(fixed),
                gb(memory)
            ),
        ));
    }
    let per_row = step_bytes(net, 1).saturating_sub(fixed).max(1);
    Err(Error::invalid(
        "batch size",
        batch,
        format!(
            "a training step would need about {:.1} GB ({per_row} bytes per row), more than half of this machine's {:.1} GB of memory: at most about {} rows fit",
            gb(need),
            gb(memory),
            (budget - fixed) / per_row
        ),
    ))
}

const ADAM_BETA1: f64 = 0.9;
const ADAM_BETA2: f64 = 0.999;
const ADAM_EPS: f64 = 1e-8;

/// One Adam step (Kingma & Ba 2015, with bias correction) of the flat
/// parameters `params` from their accumulated gradient, which is then
/// zeroed: the gradient's global norm is first clipped to `clip` (0: no
/// clipping), then `m`, `v` and `params` are updated in place for step
/// `step` (0-based) at learning rate `lr`. Call it under `tch::no_grad`.
///
/// # Errors
/// libtorch errors.
pub(crate) fn adam_update(
    params: &mut Tensor,
    m: &mut Tensor,
    v: &mut Tensor,
    step: u64,
    lr: f64,
    clip: f64,
) -> Result<()> {
    let k = i32::try_from(step.saturating_add(1)).unwrap_or(i32::MAX);
    let (bc1, bc2) = (1.0 - ADAM_BETA1.powi(k), 1.0 - ADAM_BETA2.powi(k));
    let mut g = params.grad();
    if clip > 0.0 {
        // g *= min(1, clip / (|g| + 1e-6)), without a host sync.
        let factor = (g.norm() + 1e-6).reciprocal().f_mul_scalar(clip)?.clamp_max(1.0);
        let _ = g.f_mul_(&factor)?;
    }
    let _ = m.f_lerp_(&g, 1.0 - ADAM_BETA1)?;
    let _ = v.f_mul_scalar_(ADAM_BETA2)?;
    let _ = v.f_add_(&(g.square() * (1.0 - ADAM_BETA2)))?;
    let denom = (&*v * (1.0 / bc2)).sqrt() + ADAM_EPS;
    let update = (&*m * (lr / bc1)) / denom;
    let _ = params.f_sub_(&update)?;
    let _ = g.f_zero_()?;
    Ok(())
}

/// Everything that changes during training: weights, EMA, Adam moments,
/// step count and the loss log. This is what a checkpoint stores.
#[derive(Debug)]
pub struct TrainState {
    /// Flat parameters (requires grad).
    pub params: Tensor,
    /// EMA of the parameters.
    pub ema: Tensor,
    /// Adam first moment.
    pub adam_m: Tensor,
    /// Adam second moment.
    pub adam_v: Tensor,
    /// Steps taken.
    pub step: u64,
    /// `(step, mean loss since the previous entry)`.
    pub losses: Vec<(u64, f64)>,
}

/// How a call of [`Trainer::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Reached the configured number of steps.
    Finished,
    /// The stop flag was raised (Ctrl-C); the state is consistent and can be saved.
    Interrupted,
}

/// What [`Trainer::run`] tells its progress callback.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Steps taken so far.
    pub step: u64,
    /// Total steps of the run.
    pub total: u64,
    /// Mean loss over the last logging window, when this step closed one.
    pub loss: Option<f64>,
}

/// DSM training of a [`ScoreNet`] on an in-memory data set (on the device);
/// cross-entropy training when the network is a classifier.
pub struct Trainer {
    net: ScoreNet,
    sde_spec: SdeSpec,
    sde: Box<dyn Sde>,
    config: TrainConfig,
    data: Tensor,
    /// Class of each data row (`[n]`, int64, on the device), for conditional
    /// scores and classifiers.
    labels: Option<Tensor>,
    state: TrainState,
    /// Sum of the losses since the last log entry, on the device (no host sync per step).
    loss_sum: Tensor,
    loss_count: u64,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("net", self.net.config())
            .field("sde", &self.sde_spec)
            .field("config", &self.config)
            .field("step", &self.state.step)
            .finish()
    }
}

/// The random draws of one training step, on the device.
struct Draws {
    /// `[7, batch]`: rows `t`, `a(t)`, `sigma(t)`, `w(t)`, a `U(0, 1)` draw
    /// per sample (for label dropout), `a'(t)` and `sigma'(t)` (for the flow velocity).
    coef: Tensor,
    /// `[batch, dim]` standard normals.
    eps: Tensor,
    /// `[batch]` data row indices (int64).
    idx: Tensor,
}

impl Trainer {
    /// A new run: the network initialised from `config.seed`, the data
    /// (`[n, dim]`, already scaled, finite) moved to `device` once.
    ///
    /// # Errors
    /// Invalid configurations, data of the wrong width, empty or non-finite data.
    pub fn new(
        net: NetConfig,
        sde: SdeSpec,
        config: TrainConfig,
        data: &ndarray::Array2<f64>,
        device: Device,
    ) -> Result<Self> {
        let net = ScoreNet::new(net, device, config.seed)?;
        check_step_memory(net.config(), config.batch_size, device)?;
        let params = net.init_params(config.seed)?;
        let zeros = params.zeros_like();
        let state =
            TrainState { ema: params.copy(), adam_m: zeros.copy(), adam_v: zeros, params, step: 0, losses: Vec::new() };
        Self::with_state(net, sde, config, data, state)
    }

    /// A run continuing from `state` (a loaded checkpoint).
    ///
    /// # Errors
    /// As [`Trainer::new`], and [`Error::InvalidArgument`] when the state's
    /// tensors do not fit the network.
    pub fn with_state(
        net: ScoreNet,
        sde_spec: SdeSpec,
        config: TrainConfig,
        data: &ndarray::Array2<f64>,
        state: TrainState,
    ) -> Result<Self> {
        config.validate()?;
        check_step_memory(net.config(), config.batch_size, net.device())?;
        let dim = net.config().dim;
        if data.ncols() != dim {
            return Err(Error::invalid(
                "data",
                format!("{} columns", data.ncols()),
                format!("the network takes {dim}"),
            ));
        }
        if data.nrows() == 0 {
            return Err(Error::invalid("data", "0 rows", "need at least one sample"));
        }
        if let Some(((i, j), v)) = data.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::invalid("data", v, format!("non-finite value at row {i}, column {j}")));
        }
        let n = net.num_params();
        for (name, t) in
            [("params", &state.params), ("ema", &state.ema), ("adam_m", &state.adam_m), ("adam_v", &state.adam_v)]
        {
            if t.size() != [n] {
                return Err(Error::invalid(
                    name,
                    format!("shape {:?}", t.size()),
                    format!("the network has {n} parameters"),
                ));
            }
        }
        let device = net.device();
        let to_dev = |t: &Tensor| t.detach().to_kind(Kind::Float).to_device(device);
        let state = TrainState {
            params: to_dev(&state.params).set_requires_grad(true),
            ema: to_dev(&state.ema),
            adam_m: to_dev(&state.adam_m),
            adam_v: to_dev(&state.adam_v),
            ..state
        };
        let data = crate::model::array_to_tensor(data)?.to_device(device);
        let sde = sde_spec.build()?;
        if config.t_min >= sde.t_max() {
            return Err(Error::invalid(
                "t_min",
                config.t_min,
                format!("must be below the {} process's t_max = {}", sde.name(), sde.t_max()),
            ));
        }
        Ok(Self {
            net,
            sde_spec,
            sde,
            config,
            data,
            labels: None,
            state,
            loss_sum: Tensor::zeros([], (Kind::Float, device)),
            loss_count: 0,
        })
    }

    /// Attaches the class of each data row (`labels[i]` of row `i`, in
    /// `0..classes`); needed by conditional scores and classifiers.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the network takes no classes, when there
    /// is not one label per row, or for a label out of range.
    pub fn with_labels(mut self, labels: &[usize]) -> Result<Self> {
        let classes = self.net.config().classes;
        if classes == 0 {
            return Err(Error::invalid("labels", "given", "the network has no classes (NetConfig::classes = 0)"));
        }
        let rows = self.data.size()[0] as usize;
        if labels.len() != rows {
            return Err(Error::invalid("labels", labels.len(), format!("need one label per data row ({rows})")));
        }
        if let Some((i, y)) = labels.iter().enumerate().find(|(_, y)| **y >= classes) {
            return Err(Error::invalid("labels", y, format!("label of row {i} is not in 0..{classes}")));
        }
        let y: Vec<i64> = labels.iter().map(|&y| y as i64).collect();
        self.labels = Some(Tensor::f_from_slice(&y)?.f_to_device(self.net.device())?);
        Ok(self)
    }

    /// The network.
    pub fn net(&self) -> &ScoreNet {
        &self.net
    }

    /// The SDE.
    pub fn sde_spec(&self) -> SdeSpec {
        self.sde_spec
    }

    /// The settings.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The training state (weights, EMA, optimiser, step, losses).
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// The rows of a sample's coefficients at time `t`, computed in f64 and rounded to
    /// f32: `t`, `a(t)`, `sigma(t)`, `w(t)`, 1 (the label-dropout uniform's row, drawn
    /// in [`Trainer::draws`]), `a'(t)`, `sigma'(t)`.
    fn coefs(&self, t: f64) -> Result<[f32; 7]> {
        let sigma = self.sde.sigma(t);
        let flow = self.net.config().parameterization == Parameterization::Flow;
        let w = match self.config.weighting {
            Weighting::Eps => 1.0,
            // The eps-form likelihood weight g^2/sigma^2, moved to the velocity residual
            // (eps - eps_hat = eps_v (v - v_hat)).
            Weighting::Likelihood if flow => {
                let eps_v = crate::solvers::VelocityCoefs::of(self.sde.as_ref(), t)?.eps_v;
                self.sde.diffusion(t).powi(2) / (sigma * sigma) * eps_v * eps_v
            }
            Weighting::Likelihood => self.sde.diffusion(t).powi(2) / (sigma * sigma),
        };
        Ok([
            t as f32,
            self.sde.alpha(t) as f32,
            sigma as f32,
            w as f32,
            1.0,
            self.sde.alpha_dot(t) as f32,
            self.sde.sigma_dot(t) as f32,
        ])
    }

    /// The random draws of step `step`, made on the host from `(seed, step)`
    /// alone (see [`crate::rng`]) and copied to the device: the times and
    /// their coefficients from one stream, the batch rows, noise and label
    /// dropout from another. Two copies per step (f32 and int64).
    fn draws(&self, step: u64) -> Result<Draws> {
        let b = self.config.batch_size;
        let dim = self.net.config().dim;
        let rows = self.data.size()[0];
        let device = self.net.device();
        let mut rng = crate::rng::rng(self.config.seed, crate::rng::TIMES, step);
        let mut values = vec![0f32; (7 + dim) * b];
        for i in 0..b {
            let t = rng.gen_range(self.config.t_min..self.sde.t_max());
            for (row, v) in self.coefs(t)?.into_iter().enumerate() {
                values[row * b + i] = v;
            }
        }
        let mut rng = crate::rng::rng(self.config.seed, crate::rng::BATCH, step);
        let idx: Vec<i64> = (0..b).map(|_| rng.gen_range(0..rows)).collect();
        for v in &mut values[4 * b..5 * b] {
            *v = rng.gen();
        }
        for v in &mut values[7 * b..] {
            *v = rng.sample(StandardNormal);
        }
        let flat = crate::rng::to_device(&values, &[values.len() as i64], Kind::Float, device)?;
        let (b, dim) = (b as i64, dim as i64);
        Ok(Draws {
            coef: flat.f_narrow(0, 0, 7 * b)?.f_view([7, b])?,
            eps: flat.f_narrow(0, 7 * b, b * dim)?.f_view([b, dim])?,
            idx: crate::rng::to_device(&idx, &[b], Kind::Int64, device)?,
        })
    }

    /// The loss of step `step` at the current parameters (a scalar tensor with
    /// a graph): DSM, or cross-entropy for a classifier.
    fn loss(&self, step: u64) -> Result<Tensor> {
        let config = self.net.config();
        let labels = match (&self.labels, config.classes) {
            (_, 0) => None,
            (Some(y), _) => Some(y),
            (None, c) => {
                return Err(Error::invalid(
                    "labels",
                    "none",
                    format!("the network has {c} classes: train it on labelled data (Trainer::with_labels)"),
                ))
            }
        };
        let Draws { coef, eps, idx } = self.draws(step)?;
        let dropout = crate::rng::mix(self.config.seed, crate::rng::DROPOUT, step);
        let b = self.config.batch_size as i64;
        let device = self.net.device();
        let x0 = self.data.f_index_select(0, &idx)?;
        let y = labels.map(|l| l.f_index_select(0, &idx)).transpose()?;
        let y = match y {
            // Label dropout (conditional scores): the null label (index `classes`) with probability p.
            Some(y) if config.head == Head::Score => {
                let drop = coef.get(4).f_lt(self.config.label_dropout)?;
                let null = Tensor::f_full([b], config.classes as i64, (Kind::Int64, device))?;
                Some(null.f_where_self(&drop, &y)?)
            }
            y => y,
        };
        self.batch_loss(&x0, &coef, eps, y, Some(dropout))
    }

    /// The loss on rows `x0` with the draws `coef` (rows `t`, `a`, `sigma`,
    /// `w`), noise `eps` and labels `y` (after label dropout).
    fn batch_loss(
        &self,
        x0: &Tensor,
        coef: &Tensor,
        eps: Tensor,
        y: Option<Tensor>,
        dropout: Option<u64>,
    ) -> Result<Tensor> {
        let config = self.net.config();
        let (t, a, sigma, w) = (coef.get(0), coef.get(1).unsqueeze(1), coef.get(2).unsqueeze(1), coef.get(3));
        let xt = x0 * &a + &eps * &sigma;
        if config.head == Head::Classifier {
            let y = y.ok_or_else(|| Error::invalid("labels", "none", "a classifier needs labels"))?;
            let logits = self.net.forward_train(&self.state.params, &xt, &t, None, dropout)?;
            return Ok(logits.f_log_softmax(-1, Kind::Float)?.f_nll_loss(
                &y,
                None::<Tensor>,
                tch::Reduction::Mean,
                -100,
            )?);
        }
        let out = self.net.forward_train(&self.state.params, &xt, &t, y.as_ref(), dropout)?;
        let r = match config.parameterization {
            // The flow-matching loss: the velocity v = a' x0 + sigma' eps (rectified flow:
            // eps - x0) minus its prediction (Lipman et al. 2023; Liu et al. 2023).
            Parameterization::Flow => {
                let (da, ds) = (coef.get(5).unsqueeze(1), coef.get(6).unsqueeze(1));
                x0 * da + eps * ds - out
            }
            // r = eps - eps_hat = sigma * s_theta + eps, the residual of the eps-form loss.
            p => eps - p.eps_hat(out, &xt, &a, &sigma)?,
        };
        let per_sample = r.square().f_mean_dim([1i64].as_slice(), false, Kind::Float)?;
        Ok((per_sample * w).mean(Kind::Float))
    }

    /// One optimisation step. Returns the loss as a device scalar (reading it
    /// forces a device sync; [`Trainer::run`] reads it only when logging).
    ///
    /// # Errors
    /// libtorch errors.
    pub fn step(&mut self) -> Result<Tensor> {
        let loss = self.loss(self.state.step)?;
        self.update(loss)
    }

    /// One optimisation step on a batch given explicitly instead of drawn:
    /// rows `x0` (`[b, dim]`), times `t` (`b` values in `(0, t_max]`), noise `eps`
    /// (`[b, dim]`) and, for a conditional score or a classifier, `labels`
    /// (int64 `[b]`, used as given: no label dropout). No dropout in the
    /// U-Net. Everything else (loss, weighting, clipping, Adam, warm-up, EMA,
    /// step count) is [`Trainer::step`]'s: for checking other implementations
    /// of the same step against this one.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for shapes that do not fit or times outside
    /// `(0, 1]`; libtorch errors.
    pub fn step_on(&mut self, x0: &Tensor, t: &[f64], eps: &Tensor, labels: Option<&Tensor>) -> Result<Tensor> {
        let (b, dim) = (t.len() as i64, self.net.config().dim as i64);
        for (name, x) in [("x0", x0), ("eps", eps)] {
            if x.size() != [b, dim] {
                return Err(Error::invalid(name, format!("shape {:?}", x.size()), format!("expected [{b}, {dim}]")));
            }
        }
        let t_max = self.sde.t_max();
        if let Some(bad) = t.iter().find(|t| !(**t > 0.0 && **t <= t_max)) {
            return Err(Error::invalid("t", bad, format!("times must be in (0, {t_max}]")));
        }
        let mut values = vec![1f32; 7 * t.len()];
        for (i, &ti) in t.iter().enumerate() {
            for (row, v) in self.coefs(ti)?.into_iter().enumerate() {
                values[row * t.len() + i] = v;
            }
        }
        let device = self.net.device();
        let coef = crate::rng::to_device(&values, &[7, b], Kind::Float, device)?;
        let to_dev = |x: &Tensor| x.f_to_kind(Kind::Float)?.f_to_device(device);
        let labels = labels.map(|y| y.f_to_kind(Kind::Int64)?.f_to_device(device)).transpose()?;
        let loss = self.batch_loss(&to_dev(x0)?, &coef, to_dev(eps)?, labels, None)?;
        self.update(loss)
    }

    /// Backpropagates `loss` and takes the optimiser step (warm-up, clipping,
    /// Adam, EMA) of the current step.
    fn update(&mut self, loss: Tensor) -> Result<Tensor> {
        let step = self.state.step;
        loss.f_backward()?;
        let c = &self.config;
        let lr = if c.warmup > 0 { c.lr * ((step + 1) as f64 / c.warmup as f64).min(1.0) } else { c.lr };
        let ema_decay = c.ema_decay.min((1.0 + step as f64) / (10.0 + step as f64));
        let clip = c.grad_clip;
        let st = &mut self.state;
        tch::no_grad(|| -> Result<()> {
            adam_update(&mut st.params, &mut st.adam_m, &mut st.adam_v, step, lr, clip)?;
            let _ = st.ema.f_lerp_(&st.params, 1.0 - ema_decay)?;
            Ok(())
        })?;
        st.step += 1;
        let loss = loss.detach();
        let _ = self.loss_sum.f_add_(&loss)?;
        self.loss_count += 1;
        Ok(loss)
    }

    /// Closes the current logging window: appends its mean loss to the log.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the loss is NaN or infinite (training diverged).
    fn log_loss(&mut self) -> Result<Option<f64>> {
        if self.loss_count == 0 {
            return Ok(None);
        }
        let mean = self.loss_sum.f_double_value(&[])? / self.loss_count as f64;
        let _ = self.loss_sum.f_zero_()?;
        self.loss_count = 0;
        if !mean.is_finite() {
            return Err(Error::invalid(
                "loss",
                mean,
                format!("training diverged by step {}; lower --lr or keep gradient clipping on", self.state.step),
            ));
        }
        self.state.losses.push((self.state.step, mean));
        Ok(Some(mean))
    }

    /// Trains until `config.steps` steps are taken or `stop` is raised,
    /// logging the mean loss every `log_every` steps and calling `checkpoint`
    /// every `save_every` steps (0: never) and when stopping early.
    ///
    /// # Errors
    /// libtorch errors, a diverged loss, and whatever `checkpoint` returns.
    pub fn run(
        &mut self,
        log_every: u64,
        save_every: u64,
        stop: &AtomicBool,
        mut progress: impl FnMut(Progress),
        mut checkpoint: impl FnMut(&Self) -> Result<()>,
    ) -> Result<Outcome> {
        let total = self.config.steps;
        let log_every = log_every.max(1);
        while self.state.step < total {
            if stop.load(Ordering::Relaxed) {
                self.log_loss()?;
                checkpoint(self)?;
                return Ok(Outcome::Interrupted);
            }
            let _ = self.step()?;
            let step = self.state.step;
            let loss = if step % log_every == 0 || step == total { self.log_loss()? } else { None };
            progress(Progress { step, total, loss });
            if save_every > 0 && step % save_every == 0 && step < total {
                checkpoint(self)?;
            }
        }
        self.log_loss()?;
        checkpoint(self)?;
        Ok(Outcome::Finished)
    }

    /// The EMA weights as a score model (a copy; training can go on).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the network is a classifier; libtorch errors.
    pub fn ema_score(&self) -> Result<NeuralScore> {
        self.ema()
    }

    /// The EMA weights as a classifier (a copy; training can go on).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the network is not a classifier; libtorch errors.
    pub fn ema_classifier(&self) -> Result<NeuralClassifier> {
        self.ema()
    }

    /// The EMA weights in a copy of the network, frozen.
    fn ema<H: FrozenHead>(&self) -> Result<FrozenNet<H>> {
        let mut net = ScoreNet::new(self.net.config().clone(), self.net.device(), self.config.seed)?;
        net.set_freqs(self.net.freqs())?;
        FrozenNet::new(net, self.state.ema.copy(), self.sde_spec.build()?)
    }

    /// Sets the total step count (to train a resumed run further).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `steps` is zero.
    pub fn set_total_steps(&mut self, steps: u64) -> Result<()> {
        if steps == 0 {
            return Err(Error::invalid("steps", steps, "must be at least 1"));
        }
        self.config.steps = steps;
        Ok(())
    }
}
