//! Bring your PyTorch model: a TorchScript module (`torch.jit.trace(...).save(path)` or
//! `torch.jit.script`) as a score, usable by every integrator, guidance wrapper and the
//! likelihood.
//!
//! # The module's contract
//!
//! [`TorchScriptScore`] calls the module's `forward` under `no_grad`, in eval mode, as
//!
//! * `forward(x, t)` for an unconditional model, or
//! * `forward(x, t, class_labels)` for a class-conditional one ([`TorchScriptScore::with_classes`]),
//!
//! where `x` is the batch `[B, ...]` (the state, reshaped to `[B, C, H, W]` with
//! [`TorchScriptScore::with_sample_shape`], times `c_in` when the convention asks for it)
//! in the module's dtype ([`TorchScriptScore::with_dtype`]; by default the dtype of its
//! floating-point parameters, float32 when it has none), `t` a `[B]` float32 tensor holding
//! the convention's time value ([`crate::solvers::TimeInput`]: `t`, the discrete schedule's timestep, EDM's
//! `sigma` or `c_noise`), and `class_labels` a `[B]` int64 tensor (the class, or the null
//! label, by default `n_classes`, for the unconditional score that classifier-free
//! guidance needs). It returns one floating-point tensor shaped like `x`, read as the
//! convention's [`crate::solvers::Prediction`] and turned into the score by [`ModelConvention`] (the
//! conversion the native networks use too) with coefficients in f64. The score comes back
//! in the state's dtype; the conversion runs in float32 (float64 for a float64 state).
//!
//! A diffusers `UNet2DModel` wraps as `lambda x, t: unet(x, t).sample`, traced; with the
//! `ddpm-linear:1000` schedule, `Prediction::Eps` and `TimeInput::Timestep` it is the
//! model diffusers' DDPM/DDIM pipelines sample.
//!
//! ```no_run
//! use scoresde::solvers::{discrete_by_name, ModelConvention, Prediction, TimeInput};
//! use scoresde::torchscript::TorchScriptScore;
//! let sde = Box::new(discrete_by_name("ddpm-linear:1000")?);
//! let convention = ModelConvention::new(Prediction::Eps, TimeInput::Timestep);
//! let score = TorchScriptScore::load("unet.pt", sde, convention, tch::Device::Cpu)?
//!     .with_sample_shape(&[3, 32, 32])?
//!     .with_dtype(tch::Kind::Half);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Errors
//!
//! Every failure is an [`Error`], never a panic: a missing file ([`Error::Io`]); a file that
//! is not TorchScript, a `forward` that does not take these arguments (the message gives
//! the signature expected and libtorch's reason), an output of another shape or a
//! non-floating dtype ([`Error::Model`]); NaN or infinite outputs
//! ([`Error::Model`] naming `t` and the time value). Through the [`Score`] traits they
//! arrive as [`crate::solvers::Error::Score`] with the time.

use std::path::{Path, PathBuf};

use ndarray::Array2;
use tch::{CModule, Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::model::{array_to_tensor, tensor_to_array};
use crate::solvers::{check_class, ConditionalScore, ModelConvention, Score, Sde, State};

/// A TorchScript module as a score. See the [module docs](self).
#[derive(Debug)]
pub struct TorchScriptScore {
    module: CModule,
    path: PathBuf,
    sde: Box<dyn Sde>,
    convention: ModelConvention,
    device: Device,
    kind: Kind,
    classes: usize,
    null_label: Option<i64>,
    sample_shape: Option<Vec<i64>>,
}

/// The first lines of a libtorch error (its C++ stack trace left out).
fn brief(e: &tch::TchError) -> String {
    let text = e.to_string();
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).take(4).collect();
    let joined = lines.join(" ");
    let out = joined.strip_prefix("Internal torch error:").unwrap_or(&joined).trim();
    match out.find("Exception raised from") {
        Some(i) => out[..i].trim().to_string(),
        None => out.to_string(),
    }
}

impl TorchScriptScore {
    /// Loads the module at `path` onto `device` (in eval mode) as the score of `sde` read
    /// with `convention`.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; [`Error::Model`] when it is not a
    /// TorchScript module or has no `forward`.
    pub fn load(
        path: impl AsRef<Path>,
        sde: Box<dyn Sde>,
        convention: ModelConvention,
        device: Device,
    ) -> Result<TorchScriptScore> {
        let path = path.as_ref().to_path_buf();
        std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let model_error = |reason: String| Error::Model { path: path.clone(), reason };
        let mut module = CModule::load_on_device(&path, device).map_err(|e| {
            model_error(format!(
                "not a TorchScript module (save one with torch.jit.trace(model, inputs).save(path) or torch.jit.script): {}",
                brief(&e)
            ))
        })?;
        module.f_set_eval().map_err(|e| model_error(format!("cannot switch to eval mode: {}", brief(&e))))?;
        let kind = module
            .named_parameters()
            .ok()
            .and_then(|ps| ps.iter().find(|(_, p)| p.is_floating_point()).map(|(_, p)| p.kind()))
            .unwrap_or(Kind::Float);
        Ok(TorchScriptScore {
            module,
            path,
            sde,
            convention,
            device,
            kind,
            classes: 0,
            null_label: None,
            sample_shape: None,
        })
    }

    /// A class-conditional model of `n` classes: `forward(x, t, class_labels)`, with
    /// `n` as the null label (the unconditional score) unless
    /// [`TorchScriptScore::with_null_label`] says otherwise. `n = 0`: unconditional.
    pub fn with_classes(mut self, n: usize) -> Self {
        self.classes = n;
        self.null_label = (n > 0).then_some(n as i64);
        self
    }

    /// The label fed for the unconditional score of a conditional model (`None`: the
    /// model has none, and asking for the unconditional score is an error).
    pub fn with_null_label(mut self, label: Option<i64>) -> Self {
        self.null_label = label;
        self
    }

    /// The dtype the module computes in: its input `x` is cast to it (float32, float16,
    /// bfloat16, float64). The default is the dtype of the module's floating-point
    /// parameters, float32 when it has none.
    pub fn with_dtype(mut self, kind: Kind) -> Self {
        self.kind = kind;
        self
    }

    /// The shape of one sample as the module takes it (e.g. `[C, H, W]`): a state of shape
    /// `[B, C*H*W]` is reshaped to `[B, C, H, W]` for the call and the output flattened back.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty shape or a zero or too large dimension.
    pub fn with_sample_shape(mut self, shape: &[usize]) -> Result<Self> {
        let numel = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d).filter(|_| d > 0));
        if shape.is_empty() || !numel.is_some_and(|n| n <= i64::MAX as usize) {
            return Err(Error::invalid("shape", format!("{shape:?}"), "need positive dimensions, e.g. 3,32,32"));
        }
        self.sample_shape = Some(shape.iter().map(|&d| d as i64).collect());
        Ok(self)
    }

    /// The file the module came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The SDE (schedule) the model is read under.
    pub fn sde(&self) -> &dyn Sde {
        self.sde.as_ref()
    }

    /// The convention the output is read with.
    pub fn convention(&self) -> ModelConvention {
        self.convention
    }

    /// The device the module computes on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The module's dtype.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Number of classes (0: unconditional).
    pub fn n_classes(&self) -> usize {
        self.classes
    }

    /// Elements of one sample with [`TorchScriptScore::with_sample_shape`].
    pub fn sample_numel(&self) -> Option<usize> {
        self.sample_shape.as_ref().map(|s| s.iter().product::<i64>() as usize)
    }

    fn error(&self, reason: impl Into<String>) -> Error {
        Error::Model { path: self.path.clone(), reason: reason.into() }
    }

    /// The signature the module must have, for error messages.
    fn signature(&self, x: &[i64]) -> String {
        let labels = if self.classes > 0 { ", class_labels: int64[B]" } else { "" };
        format!("forward(x: {:?}{x:?}, t: float32[B]{labels}) -> a tensor shaped like x", self.kind)
    }

    /// Calls the module on a zero batch of `batch` samples of `sample` elements at the
    /// start of the schedule (`t = T`), so that a wrong signature or output is reported
    /// before a run starts.
    ///
    /// # Errors
    /// As [`TorchScriptScore::score_tensor`].
    pub fn probe(&self, dim: usize) -> Result<()> {
        let x = Tensor::f_zeros([1, dim as i64], (Kind::Float, self.device))?;
        let class = if self.classes > 0 && self.null_label.is_none() { Some(0) } else { None };
        self.score_tensor(&x, self.sde.t_max(), class).map(|_| ())
    }

    /// The raw module output at `x` (any shape `[B, ...]`) and time `t`, shaped like the
    /// module's input, in the module's dtype, without gradients.
    ///
    /// # Errors
    /// A time outside the schedule, a time input the schedule cannot give, a batch that
    /// does not fit the sample shape, a failing call or an unusable output ([`Error::Model`]).
    pub fn forward(&self, x: &Tensor, t: f64, class: Option<usize>) -> Result<Tensor> {
        self.sde.check_time(t)?;
        let tau = self.convention.time_value(self.sde.as_ref(), t)?;
        let scale = self.convention.input_scale(self.sde.as_ref(), t)?;
        let batch = x.size().first().copied().unwrap_or(0);
        let mut xin = x.f_to_device(self.device)?.f_to_kind(self.kind)?;
        if let Some(shape) = &self.sample_shape {
            let per: i64 = x.size().iter().skip(1).product();
            if per != shape.iter().product::<i64>() {
                return Err(Error::invalid(
                    "state",
                    format!("shape {:?}", x.size()),
                    format!("samples of {per} elements do not fit the sample shape {shape:?}"),
                ));
            }
            xin = xin.f_reshape([&[batch], shape.as_slice()].concat())?;
        }
        if scale != 1.0 {
            xin = xin.f_mul_scalar(scale)?;
        }
        let times = Tensor::f_full([batch], tau, (Kind::Float, self.device))?;
        let mut inputs = vec![xin, times];
        if self.classes > 0 {
            let label = match class {
                Some(c) => {
                    check_class(c, self.classes)?;
                    c as i64
                }
                None => self.null_label.ok_or_else(|| {
                    Error::invalid("class", "none", "the model has no null label: it gives class scores only")
                })?,
            };
            inputs.push(Tensor::f_full([batch], label, (Kind::Int64, self.device))?);
        } else if let Some(c) = class {
            check_class(c, 0)?;
        }
        let in_shape = inputs[0].size();
        let out = tch::no_grad(|| self.module.forward_ts(&inputs)).map_err(|e| {
            self.error(format!(
                "calling the module failed; a score module must be {}: {}",
                self.signature(&in_shape[1..]),
                brief(&e)
            ))
        })?;
        if !out.is_floating_point() {
            return Err(self.error(format!(
                "the output has dtype {:?}; expected a floating-point tensor shaped like x ({})",
                out.kind(),
                self.signature(&in_shape[1..])
            )));
        }
        if out.size() != in_shape {
            return Err(self.error(format!(
                "the output has shape {:?}; expected the input's shape {in_shape:?} ({})",
                out.size(),
                self.signature(&in_shape[1..])
            )));
        }
        if !out.all_finite() {
            return Err(self.error(format!(
                "the output holds NaN or infinite values at t = {t} ({} = {tau})",
                self.convention.time_input
            )));
        }
        Ok(out)
    }

    /// The score at `x` (the state: any floating dtype, any device) and `t`, for `class`
    /// (`None`: unconditional), shaped like `x`, in `x`'s dtype and on `x`'s device.
    ///
    /// # Errors
    /// As [`TorchScriptScore::forward`]; the adapter's errors ([`crate::solvers::Prediction::score_coefs`]).
    pub fn score_tensor(&self, x: &Tensor, t: f64, class: Option<usize>) -> Result<Tensor> {
        let out = self.forward(x, t, class)?;
        // The conversion in float32 (float64 for a float64 state): half-precision
        // states would cancel x against a x0 in 8 or 11 bits.
        let work = if x.kind() == Kind::Double { Kind::Double } else { Kind::Float };
        let out = out.f_reshape(x.size())?.f_to_kind(work)?.f_to_device(x.device())?;
        let xw = x.f_to_kind(work)?;
        let s = tch::no_grad(|| self.convention.to_score(self.sde.as_ref(), t, out, &xw))?;
        Ok(s.f_to_kind(x.kind())?)
    }
}

/// A root-crate error as a solver error: solver errors pass through, the rest become
/// [`crate::solvers::Error::Score`] at `t`.
fn to_solver_error(t: f64, e: Error) -> crate::solvers::Error {
    match e {
        Error::Solver(e) => e,
        e => crate::solvers::Error::Score { t, reason: e.to_string() },
    }
}

impl Score<Tensor> for TorchScriptScore {
    fn score(&self, x: &Tensor, t: f64) -> crate::solvers::Result<Tensor> {
        self.score_cond(x, t, None)
    }
}

impl ConditionalScore<Tensor> for TorchScriptScore {
    fn score_cond(&self, x: &Tensor, t: f64, class: Option<usize>) -> crate::solvers::Result<Tensor> {
        self.score_tensor(x, t, class).map_err(|e| to_solver_error(t, e))
    }

    fn n_classes(&self) -> usize {
        self.classes
    }
}

impl Score<Array2<f64>> for TorchScriptScore {
    fn score(&self, x: &Array2<f64>, t: f64) -> crate::solvers::Result<Array2<f64>> {
        self.score_cond(x, t, None)
    }
}

impl ConditionalScore<Array2<f64>> for TorchScriptScore {
    /// Through an f32 tensor on the module's device (as [`crate::model::NeuralScore`]).
    fn score_cond(&self, x: &Array2<f64>, t: f64, class: Option<usize>) -> crate::solvers::Result<Array2<f64>> {
        let run = || -> Result<Array2<f64>> {
            let xt = array_to_tensor(x)?.f_to_device(self.device)?;
            tensor_to_array(&self.score_tensor(&xt, t, class)?)
        };
        run().map_err(|e| to_solver_error(t, e))
    }

    fn n_classes(&self) -> usize {
        self.classes
    }
}
