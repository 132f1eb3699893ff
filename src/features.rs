//! A small convolutional classifier of clean images, whose penultimate
//! features stand in for Inception v3's in the Fréchet distance: the
//! "classifier FID" of [`crate::image_metrics`], computable without
//! downloading any weights.
//!
//! Architecture ([`FeatureConfig`]): each data row (`C*H*W` values) is viewed
//! as a `[C, H, W]` image; 3x3 convolutions (padding 1) with ReLU, every one
//! after the first followed by 2x2 max pooling (`conv: [32, 64, 64]` by
//! default: `28x28 -> 14x14 -> 7x7`, `8x8 -> 4x4 -> 2x2`), flattened, a fully
//! connected layer of `features` (128) units with ReLU — the features — and a
//! linear layer to `K` logits. Trained by cross-entropy with Adam on the
//! training split of a labelled image set ([`train`]).
//!
//! As in [`crate::net`], all weights live in ONE flat f32 tensor; each layer's
//! weight and bias are views into it, named `layers.{i}.weight` /
//! `layers.{i}.bias` in checkpoints. Pixels are standardised by one global
//! mean and scale ([`PixelScaling`]), not per pixel: border pixels of digits
//! are constant. Checkpoints ([`save`], [`load`]) are `NAME.safetensors`
//! (weights, and the [`FeatureMeta`] JSON in the header under
//! `scoresde-features`) plus the `NAME.json` sidecar, both written atomically.

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayView2, Axis};
use rand::Rng as _;
use rand_distr::Uniform;
use safetensors::tensor::Dtype;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::checkpoint::{corrupt, f32_values, read_safetensors, write_safetensors};
use crate::data::DataRange;
use crate::error::{Error, Result};

/// Version of the feature-classifier checkpoint layout this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The safetensors header metadata key holding [`FeatureMeta`].
const META_KEY: &str = "scoresde-features";

/// Rows per forward pass when embedding a data set.
const EMBED_BATCH: usize = 256;

/// The architecture of a [`FeatureClassifier`]; see the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureConfig {
    /// Shape `[C, H, W]` of one image; a data row holds its `C*H*W` values in
    /// that (row-major) order.
    pub shape: Vec<usize>,
    /// Number of classes `K`.
    pub classes: usize,
    /// Output channels of each 3x3 convolution; every one after the first is
    /// followed by 2x2 max pooling.
    pub conv: Vec<usize>,
    /// Width of the penultimate layer: the feature dimension.
    pub features: usize,
}

impl FeatureConfig {
    /// Most classes.
    pub const MAX_CLASSES: usize = 1 << 16;
    /// Most convolutions.
    pub const MAX_CONV: usize = 8;
    /// Most channels of a convolution, units of the feature layer, image side and channels.
    pub const MAX_WIDTH: usize = 1 << 14;
    /// Most trainable parameters (2^28: 1 GiB of f32 weights).
    pub const MAX_PARAMS: usize = 1 << 28;

    /// The default network for images of `shape` (`[C, H, W]`) in `classes`
    /// classes: convolutions of 32, 64, 64 channels and 128 features.
    pub fn new(shape: &[usize], classes: usize) -> Self {
        Self { shape: shape.to_vec(), classes, conv: vec![32, 64, 64], features: 128 }
    }

    /// Values per image, `C*H*W` (saturating).
    pub fn dim(&self) -> usize {
        self.shape.iter().fold(1usize, |a, &v| a.saturating_mul(v))
    }

    /// Number of 2x2 poolings.
    fn pools(&self) -> u32 {
        self.conv.len().saturating_sub(1) as u32
    }

    /// `(fan_out, fan_in, kernel side)` of every layer, input first.
    fn layers(&self) -> Vec<(usize, usize, usize)> {
        let mut out = Vec::with_capacity(self.conv.len() + 2);
        // Missing entries (an invalid shape) count as 1, so this never panics.
        let side = |i: usize| self.shape.get(i).copied().unwrap_or(1);
        let mut c = side(0);
        for &w in &self.conv {
            out.push((w, c, 3));
            c = w;
        }
        let pools = self.pools().min(usize::BITS - 1);
        let (h, w) = (side(1) >> pools, side(2) >> pools);
        out.push((self.features, c.saturating_mul(h).saturating_mul(w), 1));
        out.push((self.classes, self.features, 1));
        out
    }

    /// Checks every size before anything is allocated.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the size at fault: a shape that is not
    /// `[C, H, W]` with every entry >= 1, an image too small for the poolings
    /// (each side must be at least `2^(convolutions - 1)`), fewer than 2 or
    /// more than [`FeatureConfig::MAX_CLASSES`] classes, no convolution or
    /// more than [`FeatureConfig::MAX_CONV`], a zero or oversized width, or
    /// more than [`FeatureConfig::MAX_PARAMS`] parameters.
    pub fn validate(&self) -> Result<()> {
        let shape = format!("{:?}", self.shape);
        if self.shape.len() != 3 || self.shape.iter().any(|&v| v == 0 || v > Self::MAX_WIDTH) {
            return Err(Error::invalid(
                "image shape",
                shape,
                format!("expected [channels, height, width], each in 1..={}", Self::MAX_WIDTH),
            ));
        }
        if !(2..=Self::MAX_CLASSES).contains(&self.classes) {
            return Err(Error::invalid("classes", self.classes, format!("need 2..={} classes", Self::MAX_CLASSES)));
        }
        if self.conv.is_empty() || self.conv.len() > Self::MAX_CONV {
            return Err(Error::invalid(
                "convolutions",
                format!("{:?}", self.conv),
                format!("need 1..={} convolutions", Self::MAX_CONV),
            ));
        }
        if let Some(w) = self.conv.iter().chain([&self.features]).find(|&&w| w == 0 || w > Self::MAX_WIDTH) {
            return Err(Error::invalid(
                "width",
                w,
                format!("channels and features must be in 1..={}", Self::MAX_WIDTH),
            ));
        }
        let side = 1usize << self.pools();
        if self.shape[1] < side || self.shape[2] < side {
            return Err(Error::invalid(
                "image shape",
                shape,
                format!(
                    "{} poolings of 2x2 need images of at least {side}x{side}; use fewer convolutions",
                    self.pools()
                ),
            ));
        }
        let params = self.num_params();
        if params > Self::MAX_PARAMS {
            return Err(Error::invalid(
                "image shape",
                shape,
                format!("the classifier would have {params} parameters; at most {}", Self::MAX_PARAMS),
            ));
        }
        Ok(())
    }

    /// Trainable parameters (saturating; for a shape that is not `[C, H, W]`
    /// the missing sides count as 1).
    pub fn num_params(&self) -> usize {
        self.layers().iter().fold(0usize, |acc, &(o, i, k)| {
            acc.saturating_add(o.saturating_mul(i.saturating_mul(k * k).saturating_add(1)))
        })
    }
}

/// One global standardisation of pixel values, `(x - mean) / std`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PixelScaling {
    /// Mean of every value of the training images.
    pub mean: f64,
    /// Their (population) standard deviation, > 0 (1 for constant images).
    pub std: f64,
}

impl PixelScaling {
    /// Mean and scale of all values of `x`.
    ///
    /// # Errors
    /// As [`crate::data::validate`] (empty, non-finite).
    pub fn fit(x: ArrayView2<f64>) -> Result<Self> {
        crate::data::validate(x, "images to fit the pixel scaling on")?;
        let n = x.len() as f64;
        let mean = x.sum() / n;
        let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let top = x.iter().fold(1.0f64, |a, v| a.max(v.abs()));
        let std = if var.sqrt() > 1e-12 * top { var.sqrt() } else { 1.0 };
        Ok(Self { mean, std })
    }

    fn check(&self) -> Result<()> {
        if !(self.mean.is_finite() && self.std.is_finite() && self.std > 0.0) {
            return Err(Error::invalid(
                "pixel scaling",
                format!("mean {}, std {}", self.mean, self.std),
                "need a finite mean and a finite std > 0",
            ));
        }
        Ok(())
    }
}

/// Optimisation settings of [`train`]. `Default` gives the CLI's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureTrainConfig {
    /// Adam steps.
    pub steps: u64,
    /// Images per step (lowered to the number of training images when larger).
    pub batch_size: usize,
    /// Adam learning rate (constant).
    pub lr: f64,
    /// Clip the global gradient norm to this (0: no clipping).
    pub grad_clip: f64,
    /// Seed of the initialisation and the batches.
    pub seed: u64,
}

impl Default for FeatureTrainConfig {
    fn default() -> Self {
        Self { steps: 2000, batch_size: 128, lr: 1e-3, grad_clip: 1.0, seed: 0 }
    }
}

impl FeatureTrainConfig {
    /// Checks every value.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the bad value.
    pub fn validate(&self) -> Result<()> {
        crate::train::validate_optimiser(self.steps, self.batch_size, self.lr, self.grad_clip)
    }
}

/// What a feature-classifier checkpoint records besides the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureMeta {
    /// [`FORMAT_VERSION`] of the writer.
    pub format: u32,
    /// Architecture (with the image shape).
    pub net: FeatureConfig,
    /// Training settings.
    pub train: FeatureTrainConfig,
    /// Pixel standardisation the network sees.
    pub scaling: PixelScaling,
    /// The data set (name or path) and the labels' path.
    pub source: String,
    /// Training rows.
    pub train_rows: usize,
    /// [`crate::data::fingerprint`] of the training rows.
    pub train_sha256: String,
    /// Held-out rows the accuracy was measured on.
    pub heldout_rows: usize,
    /// [`crate::data::fingerprint`] of the held-out rows (to tell whether a
    /// score model's held-out images are the ones this classifier never saw).
    pub heldout_sha256: String,
    /// Accuracy on the held-out rows.
    pub heldout_accuracy: f64,
    /// Per-pixel range of the training rows.
    pub range: DataRange,
    /// `(step, mean training loss)` log.
    pub losses: Vec<(u64, f64)>,
}

/// Where one layer's weight and bias sit in the flat parameter vector.
#[derive(Debug, Clone)]
struct Slot {
    weight: i64,
    bias: i64,
    /// `[out, in, 3, 3]` for a convolution, `[out, in]` for a linear layer.
    shape: Vec<i64>,
}

impl Slot {
    fn numel(&self) -> i64 {
        self.shape.iter().product()
    }
}

/// The penultimate features and the logits of a batch of images.
#[derive(Debug, Clone)]
pub struct Embedding {
    /// `[n, features]`, after the ReLU: what the Fréchet distance compares.
    pub features: Array2<f64>,
    /// `[n, K]` class logits.
    pub logits: Array2<f64>,
}

/// The convolutional image classifier; see the [module docs](self).
#[derive(Debug)]
pub struct FeatureClassifier {
    config: FeatureConfig,
    scaling: PixelScaling,
    slots: Vec<Slot>,
    /// Flat f32 parameters on `device`.
    params: Tensor,
    device: Device,
}

fn layout(config: &FeatureConfig) -> Vec<Slot> {
    let n_conv = config.conv.len();
    let mut offset = 0i64;
    config
        .layers()
        .iter()
        .enumerate()
        .map(|(i, &(o, fan_in, k))| {
            let shape = if i < n_conv {
                vec![o as i64, fan_in as i64, k as i64, k as i64]
            } else {
                vec![o as i64, fan_in as i64]
            };
            let weight = offset;
            let bias = weight + shape.iter().product::<i64>();
            offset = bias + o as i64;
            Slot { weight, bias, shape }
        })
        .collect()
}

impl FeatureClassifier {
    /// A freshly initialised classifier: every weight and bias
    /// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))` with `fan_in = in * k * k`
    /// (PyTorch's default for `Conv2d` and `Linear`), drawn on the host from `seed`.
    ///
    /// # Errors
    /// As [`FeatureConfig::validate`]; an invalid scaling; libtorch errors.
    pub fn init(config: FeatureConfig, scaling: PixelScaling, seed: u64, device: Device) -> Result<Self> {
        config.validate()?;
        let slots = layout(&config);
        let mut rng = crate::rng::rng(seed, crate::rng::INIT, 0);
        let mut values = Vec::with_capacity(config.num_params());
        for s in &slots {
            let fan_in: i64 = s.shape[1..].iter().product();
            let bound = 1.0 / (fan_in as f32).sqrt();
            let uniform = Uniform::new(-bound, bound);
            values.extend((0..s.numel() + s.shape[0]).map(|_| rng.sample(uniform)));
        }
        let params = crate::rng::to_device(&values, &[values.len() as i64], Kind::Float, device)?;
        Self::new(config, scaling, params, device)
    }

    /// A classifier with the given flat parameters (copied to `device` as f32, detached).
    ///
    /// # Errors
    /// As [`FeatureConfig::validate`]; [`Error::InvalidArgument`] for a
    /// parameter vector of the wrong length or an invalid scaling.
    pub fn new(config: FeatureConfig, scaling: PixelScaling, params: Tensor, device: Device) -> Result<Self> {
        config.validate()?;
        scaling.check()?;
        let n = config.num_params() as i64;
        if params.size() != [n] {
            return Err(Error::invalid(
                "parameters",
                format!("shape {:?}", params.size()),
                format!("the classifier has {n} parameters"),
            ));
        }
        let params = params.f_detach()?.f_to_kind(Kind::Float)?.f_to_device(device)?;
        Ok(Self { slots: layout(&config), config, scaling, params, device })
    }

    /// The architecture.
    pub fn config(&self) -> &FeatureConfig {
        &self.config
    }

    /// The pixel standardisation applied to every input.
    pub fn scaling(&self) -> PixelScaling {
        self.scaling
    }

    /// The flat f32 parameters.
    pub fn params(&self) -> &Tensor {
        &self.params
    }

    /// The device it computes on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Named views of the parameters: `layers.{i}.weight`, `layers.{i}.bias`.
    fn named(&self, params: &Tensor) -> Vec<(String, Tensor)> {
        let mut out = Vec::with_capacity(2 * self.slots.len());
        for (i, s) in self.slots.iter().enumerate() {
            out.push((format!("layers.{i}.weight"), params.narrow(0, s.weight, s.numel()).view(s.shape.as_slice())));
            out.push((format!("layers.{i}.bias"), params.narrow(0, s.bias, s.shape[0])));
        }
        out
    }

    /// `(features, logits)` of a `[B, C*H*W]` tensor already standardised,
    /// with parameters `params` (gradients flow into them when they require them).
    fn forward(&self, params: &Tensor, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let s = &self.config.shape;
        let batch = x.size()[0];
        let mut h = x.f_view([batch, s[0] as i64, s[1] as i64, s[2] as i64])?;
        let n_conv = self.config.conv.len();
        for (i, slot) in self.slots.iter().take(n_conv).enumerate() {
            let w = params.f_narrow(0, slot.weight, slot.numel())?.f_view(slot.shape.as_slice())?;
            let b = params.f_narrow(0, slot.bias, slot.shape[0])?;
            h = h.f_conv2d(&w, Some(&b), [1, 1], [1, 1], [1, 1], 1)?.f_relu()?;
            if i > 0 {
                h = h.f_max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)?;
            }
        }
        let mut h = h.f_flatten(1, -1)?;
        let mut features = None;
        for (i, slot) in self.slots.iter().enumerate().skip(n_conv) {
            let w = params.f_narrow(0, slot.weight, slot.numel())?.f_view(slot.shape.as_slice())?;
            let b = params.f_narrow(0, slot.bias, slot.shape[0])?;
            h = b.f_addmm(&h, &w.f_tr()?)?;
            if i == n_conv {
                h = h.f_relu()?;
                features = Some(h.shallow_clone());
            }
        }
        let features = features.ok_or_else(|| Error::invalid("classifier", "no feature layer", "corrupt layout"))?;
        Ok((features, h))
    }

    /// Checks `x` and returns it standardised, as an f32 tensor on the device.
    fn input(&self, x: ArrayView2<f64>) -> Result<Tensor> {
        let d = self.config.dim();
        if x.ncols() != d {
            return Err(Error::invalid(
                "images",
                format!("{} columns", x.ncols()),
                format!("the feature classifier takes images of shape {:?} ({d} values per row)", self.config.shape),
            ));
        }
        if let Some(((i, j), v)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::data("images", format!("non-finite value {v} at row {i}, column {j}")));
        }
        let PixelScaling { mean, std } = self.scaling;
        let values: Vec<f32> = x.iter().map(|&v| ((v - mean) / std) as f32).collect();
        crate::rng::to_device(&values, &[x.nrows() as i64, d as i64], Kind::Float, self.device)
    }

    /// The penultimate features and logits of the rows of `x` (data
    /// coordinates, `C*H*W` columns), in batches, without gradients.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for another number of columns, [`Error::Data`]
    /// for NaN or infinity; libtorch errors.
    pub fn embed(&self, x: ArrayView2<f64>) -> Result<Embedding> {
        let (mut feats, mut logits) = (Vec::new(), Vec::new());
        for chunk in x.axis_chunks_iter(Axis(0), EMBED_BATCH) {
            let t = self.input(chunk)?;
            let (f, l) = tch::no_grad(|| self.forward(&self.params, &t))?;
            feats.push(crate::model::tensor_to_array(&f)?);
            logits.push(crate::model::tensor_to_array(&l)?);
        }
        let cat = |parts: Vec<Array2<f64>>, width: usize| -> Result<Array2<f64>> {
            if parts.is_empty() {
                return Ok(Array2::zeros((0, width)));
            }
            let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
            ndarray::concatenate(Axis(0), &views).map_err(|e| Error::invalid("embedding", "batches", e.to_string()))
        };
        Ok(Embedding { features: cat(feats, self.config.features)?, logits: cat(logits, self.config.classes)? })
    }

    /// The most likely class of each row of `x`.
    ///
    /// # Errors
    /// As [`FeatureClassifier::embed`].
    pub fn predict(&self, x: ArrayView2<f64>) -> Result<Vec<usize>> {
        Ok(argmax_rows(self.embed(x)?.logits.view()))
    }

    /// The share of rows of `x` whose prediction is their label.
    ///
    /// # Errors
    /// As [`FeatureClassifier::embed`]; [`Error::InvalidArgument`] when the
    /// label count differs from the row count or there are no rows.
    pub fn accuracy(&self, x: ArrayView2<f64>, labels: &[usize]) -> Result<f64> {
        if labels.len() != x.nrows() || labels.is_empty() {
            return Err(Error::invalid(
                "labels",
                labels.len(),
                format!("need one label per image ({} images, at least 1)", x.nrows()),
            ));
        }
        let hits = self.predict(x)?.iter().zip(labels).filter(|(p, y)| p == y).count();
        Ok(hits as f64 / labels.len() as f64)
    }
}

/// The index of the largest value of each row (the first on ties).
pub fn argmax_rows(logits: ArrayView2<f64>) -> Vec<usize> {
    logits
        .rows()
        .into_iter()
        .map(|r| r.iter().enumerate().fold((0, f64::NEG_INFINITY), |b, (j, &v)| if v > b.1 { (j, v) } else { b }).0)
        .collect()
}

/// What [`train`] returns.
#[derive(Debug)]
pub struct Trained {
    /// The classifier at the last step.
    pub classifier: FeatureClassifier,
    /// `(step, mean loss since the previous entry)`.
    pub losses: Vec<(u64, f64)>,
}

/// Logs the mean loss every this many steps.
const LOG_EVERY: u64 = 50;

/// Trains a [`FeatureClassifier`] of architecture `config` on the rows of `x`
/// (data coordinates) with classes `labels`, by cross-entropy with Adam
/// ([`crate::train`]'s update, constant learning rate, gradient clipping).
/// The pixel scaling is fitted on `x`. Batches are drawn with replacement
/// from `(seed, step)` alone; the same inputs give the same classifier.
/// `progress(step, loss)` is called after every step, with the mean loss
/// when the step closes a logging window of 50.
///
/// # Errors
/// Invalid configurations ([`FeatureConfig::validate`],
/// [`FeatureTrainConfig::validate`]); [`Error::InvalidArgument`] for another
/// number of columns than `config.dim()`, a label count that differs from the
/// row count, or a label `>= config.classes`; [`Error::Data`] for empty or
/// non-finite rows; a diverged (non-finite) loss; libtorch errors.
pub fn train(
    x: ArrayView2<f64>,
    labels: &[usize],
    config: FeatureConfig,
    settings: &FeatureTrainConfig,
    device: Device,
    mut progress: impl FnMut(u64, Option<f64>),
) -> Result<Trained> {
    config.validate()?;
    settings.validate()?;
    crate::data::validate(x, "training images")?;
    if x.ncols() != config.dim() {
        return Err(Error::invalid(
            "images",
            format!("{} columns", x.ncols()),
            format!("image shape {:?} has {} values per row", config.shape, config.dim()),
        ));
    }
    if labels.len() != x.nrows() {
        return Err(Error::invalid("labels", labels.len(), format!("need one label per image ({})", x.nrows())));
    }
    if let Some((i, y)) = labels.iter().enumerate().find(|(_, y)| **y >= config.classes) {
        return Err(Error::invalid("labels", y, format!("label of row {i} is not in 0..{}", config.classes)));
    }
    let scaling = PixelScaling::fit(x)?;
    let model = FeatureClassifier::init(config, scaling, settings.seed, device)?;
    let data = model.input(x)?;
    let y: Vec<i64> = labels.iter().map(|&v| v as i64).collect();
    let y = crate::rng::to_device(&y, &[y.len() as i64], Kind::Int64, device)?;
    let mut params = model.params.f_detach()?.copy().set_requires_grad(true);
    let (mut m, mut v) = (params.f_zeros_like()?, params.f_zeros_like()?);
    let rows = x.nrows();
    let batch = settings.batch_size.min(rows);
    let mut losses = Vec::new();
    let mut loss_sum = Tensor::f_zeros([], (Kind::Float, device))?;
    let mut count = 0u64;
    for step in 0..settings.steps {
        let mut rng = crate::rng::rng(settings.seed, crate::rng::BATCH, step);
        let idx: Vec<i64> = (0..batch).map(|_| rng.gen_range(0..rows as i64)).collect();
        let idx = crate::rng::to_device(&idx, &[batch as i64], Kind::Int64, device)?;
        let (_, logits) = model.forward(&params, &data.f_index_select(0, &idx)?)?;
        let loss = logits.f_log_softmax(-1, Kind::Float)?.f_nll_loss(
            &y.f_index_select(0, &idx)?,
            None::<Tensor>,
            tch::Reduction::Mean,
            -100,
        )?;
        loss.f_backward()?;
        tch::no_grad(|| crate::train::adam_update(&mut params, &mut m, &mut v, step, settings.lr, settings.grad_clip))?;
        let _ = loss_sum.f_add_(&loss.f_detach()?)?;
        count += 1;
        let done = step + 1;
        let logged = if done % LOG_EVERY == 0 || done == settings.steps {
            let mean = loss_sum.f_double_value(&[])? / count as f64;
            let _ = loss_sum.f_zero_()?;
            count = 0;
            if !mean.is_finite() {
                return Err(Error::invalid("loss", mean, format!("training diverged by step {done}; lower --lr")));
            }
            losses.push((done, mean));
            Some(mean)
        } else {
            None
        };
        progress(done, logged);
    }
    let classifier = FeatureClassifier { params: params.f_detach()?, ..model };
    Ok(Trained { classifier, losses })
}

/// The weights and sidecar paths of a feature checkpoint given as `DIR`
/// (meaning `DIR/features`), `NAME`, `NAME.safetensors` or `NAME.json`.
pub fn paths(spec: &Path) -> (PathBuf, PathBuf) {
    crate::checkpoint::paths_named(spec, "features")
}

/// Saves `classifier` with `meta` at `spec` (see [`paths`]): the weights
/// file first (complete on its own), then the sidecar, each atomically.
/// Returns the weights path.
///
/// # Errors
/// [`Error::Checkpoint`] for non-finite weights or a `meta` whose
/// architecture or scaling is not the classifier's; [`Error::Io`] for the writes.
pub fn save(spec: &Path, classifier: &FeatureClassifier, meta: &FeatureMeta) -> Result<PathBuf> {
    let (weights_path, sidecar_path) = paths(spec);
    if meta.net != classifier.config || meta.scaling != classifier.scaling {
        return Err(corrupt(&weights_path, "the metadata's architecture or scaling is not the classifier's"));
    }
    if classifier.params.f_isfinite()?.f_all()?.f_int64_value(&[])? == 0 {
        return Err(corrupt(&weights_path, "refusing to save non-finite weights"));
    }
    let json = serde_json::to_string_pretty(meta).map_err(|e| corrupt(&sidecar_path, e))?;
    write_safetensors(&weights_path, &sidecar_path, &classifier.named(&classifier.params), META_KEY, &json)?;
    Ok(weights_path)
}

/// Loads a feature classifier onto `device`, bit for bit as saved.
///
/// # Errors
/// [`Error::Io`] for a missing file; [`Error::Checkpoint`] for a file that is
/// not a feature-classifier checkpoint (a score model's says so), truncated
/// or corrupt, of another format version, with an invalid architecture or
/// scaling, or with tensors that are missing, of the wrong shape or not finite.
pub fn load(spec: &Path, device: Device) -> Result<(FeatureClassifier, FeatureMeta)> {
    let (path, _) = paths(spec);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let (st, metadata) = read_safetensors(&path, &bytes)?;
    let metadata = metadata.as_ref();
    let Some(json) = metadata.and_then(|m| m.get(META_KEY)) else {
        let reason = if metadata.is_some_and(|m| m.contains_key("scoresde")) {
            "a score-model checkpoint, not a feature classifier: pass the folder written by `scoresde train-features`"
        } else {
            "no feature-classifier metadata: not written by `scoresde train-features`"
        };
        return Err(corrupt(&path, reason));
    };
    let meta: FeatureMeta =
        serde_json::from_str(json).map_err(|e| corrupt(&path, format!("unreadable metadata: {e}")))?;
    if meta.format != FORMAT_VERSION {
        return Err(corrupt(&path, format!("format version {} (this build reads {FORMAT_VERSION})", meta.format)));
    }
    meta.net.validate().map_err(|e| corrupt(&path, e))?;
    meta.scaling.check().map_err(|e| corrupt(&path, e))?;
    meta.range.check().map_err(|e| corrupt(&path, e))?;
    if meta.range.dim() != meta.net.dim() {
        return Err(corrupt(&path, "the data range does not match the image shape"));
    }
    let slots = layout(&meta.net);
    let mut parts = Vec::with_capacity(2 * slots.len());
    for (i, s) in slots.iter().enumerate() {
        for (name, shape) in
            [(format!("layers.{i}.weight"), s.shape.clone()), (format!("layers.{i}.bias"), vec![s.shape[0]])]
        {
            let view = st.tensor(&name).map_err(|_| corrupt(&path, format!("missing tensor {name}")))?;
            let got: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            if view.dtype() != Dtype::F32 || got != shape {
                return Err(corrupt(
                    &path,
                    format!("tensor {name} is {:?} {got:?}; the architecture needs F32 {shape:?}", view.dtype()),
                ));
            }
            parts.extend(f32_values(view.data()));
        }
    }
    if let Some(i) = parts.iter().position(|v| !v.is_finite()) {
        return Err(corrupt(&path, format!("non-finite weight (flat index {i})")));
    }
    let params = Tensor::f_from_slice(&parts)?;
    let classifier =
        FeatureClassifier::new(meta.net.clone(), meta.scaling, params, device).map_err(|e| corrupt(&path, e))?;
    Ok((classifier, meta))
}

/// Classes of [`shapes`].
pub const SHAPES_CLASSES: usize = 4;

/// A small labelled image set for tests and examples: `n` single-channel
/// `side x side` images (`side >= 6`), rows of `side^2` values, of
/// [`SHAPES_CLASSES`] shapes drawn at random positions — 0 a horizontal bar
/// (two rows), 1 a vertical bar (two columns), 2 a hollow square, 3 a
/// diagonal band — with value 1 on the shape and 0 elsewhere, plus Gaussian
/// noise of standard deviation `noise`. Row `i` has class `i % 4`.
///
/// # Errors
/// [`Error::InvalidArgument`] for `n == 0`, `side < 6` or `side > 256`, or
/// a noise level that is not finite and >= 0.
pub fn shapes(n: usize, side: usize, noise: f64, seed: u64) -> Result<(Array2<f64>, Vec<usize>)> {
    use rand_distr::StandardNormal;
    if n == 0 {
        return Err(Error::invalid("n", n, "must be at least 1"));
    }
    if !(6..=256).contains(&side) {
        return Err(Error::invalid("side", side, "must be in 6..=256"));
    }
    if !(noise.is_finite() && noise >= 0.0) {
        return Err(Error::invalid("noise", noise, "must be finite and >= 0"));
    }
    let mut rng = crate::rng::rng(seed, crate::rng::BATCH, 0);
    let labels: Vec<usize> = (0..n).map(|i| i % SHAPES_CLASSES).collect();
    let mut x = Array2::<f64>::zeros((n, side * side));
    for (mut row, &y) in x.rows_mut().into_iter().zip(&labels) {
        let at = |r: usize, c: usize| r * side + c;
        match y {
            0 | 1 => {
                let p = rng.gen_range(1..side - 2);
                for k in 0..side {
                    for q in [p, p + 1] {
                        let i = if y == 0 { at(q, k) } else { at(k, q) };
                        row[i] = 1.0;
                    }
                }
            }
            2 => {
                let len = rng.gen_range(4..=side - 2);
                let (r0, c0) = (rng.gen_range(0..=side - len), rng.gen_range(0..=side - len));
                for k in 0..len {
                    for i in [at(r0, c0 + k), at(r0 + len - 1, c0 + k), at(r0 + k, c0), at(r0 + k, c0 + len - 1)] {
                        row[i] = 1.0;
                    }
                }
            }
            _ => {
                let off = rng.gen_range(-1i64..=1);
                for r in 0..side {
                    for c in 0..side {
                        if c as i64 - r as i64 == off {
                            row[at(r, c)] = 1.0;
                        }
                    }
                }
            }
        }
        for v in row.iter_mut() {
            *v += noise * rng.sample::<f64, _>(StandardNormal);
        }
    }
    Ok((x, labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_and_shapes() {
        for (shape, want_flat) in [([1usize, 8, 8], 64 * 2 * 2), ([1, 28, 28], 64 * 7 * 7), ([3, 9, 7], 64 * 2)] {
            let c = FeatureConfig::new(&shape, 4);
            c.validate().unwrap();
            let layers = c.layers();
            assert_eq!(layers[3], (128, want_flat, 1), "{shape:?}");
            let k = FeatureClassifier::init(c.clone(), PixelScaling { mean: 0.0, std: 1.0 }, 0, Device::Cpu).unwrap();
            assert_eq!(k.params().size(), [c.num_params() as i64]);
            let x = Array2::from_shape_fn((5, c.dim()), |(i, j)| ((i * 7 + j) % 11) as f64);
            let e = k.embed(x.view()).unwrap();
            assert_eq!(e.features.dim(), (5, 128));
            assert_eq!(e.logits.dim(), (5, 4));
            assert!(e.features.iter().all(|v| *v >= 0.0), "features are after a ReLU");
            assert!(k.embed(Array2::zeros((2, c.dim() + 1)).view()).is_err());
        }
        // 1x8x8 with the default convolutions:
        // 32 * (1 * 9 + 1) + 64 * (32 * 9 + 1) + 64 * (64 * 9 + 1) + 128 * (256 + 1) + 4 * (128 + 1)
        let want = 320 + 64 * 289 + 64 * 577 + 128 * 257 + 4 * 129;
        assert_eq!(FeatureConfig::new(&[1, 8, 8], 4).num_params(), want);
    }

    #[test]
    fn invalid_configs_are_named() {
        let bad = [
            (FeatureConfig::new(&[8, 8], 4), "image shape"),
            (FeatureConfig::new(&[1, 0, 8], 4), "image shape"),
            (FeatureConfig::new(&[1, 3, 8], 4), "at least 4x4"),
            (FeatureConfig::new(&[1, 8, 8], 1), "classes"),
            (FeatureConfig { conv: vec![], ..FeatureConfig::new(&[1, 8, 8], 4) }, "convolutions"),
            (FeatureConfig { features: 0, ..FeatureConfig::new(&[1, 8, 8], 4) }, "width"),
        ];
        for (c, want) in bad {
            let _ = c.num_params(); // no panic, whatever the shape
            let e = c.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{c:?}: {e}");
        }
    }

    #[test]
    fn argmax_and_scaling() {
        let l = ndarray::array![[0.0, 2.0, 1.0], [5.0, 5.0, -1.0]];
        assert_eq!(argmax_rows(l.view()), vec![1, 0]);
        let s = PixelScaling::fit(ndarray::array![[0.0, 2.0], [0.0, 2.0]].view()).unwrap();
        assert_eq!(s, PixelScaling { mean: 1.0, std: 1.0 });
        let s = PixelScaling::fit(ndarray::array![[3.0, 3.0]].view()).unwrap();
        assert_eq!(s, PixelScaling { mean: 3.0, std: 1.0 }, "constant images get scale 1");
        assert!(PixelScaling::fit(ndarray::array![[f64::NAN]].view()).is_err());
    }

    /// Images and their labels.
    type Labelled = (Array2<f64>, Vec<usize>);

    /// The synthetic shapes, split into training and held-out rows.
    fn shape_split(n_train: usize, n_held: usize, seed: u64) -> (Labelled, Labelled) {
        let (x, y) = shapes(n_train + n_held, 8, 0.3, seed).unwrap();
        let split = |a: usize, b: usize| (x.slice(ndarray::s![a..b, ..]).to_owned(), y[a..b].to_vec());
        (split(0, n_train), split(n_train, n_train + n_held))
    }

    fn tiny_settings() -> FeatureTrainConfig {
        FeatureTrainConfig { steps: 200, batch_size: 64, lr: 2e-3, grad_clip: 1.0, seed: 1 }
    }

    #[test]
    fn learns_the_shapes() {
        tch::set_num_threads(1);
        // 800 training and 400 held-out 8x8 images of 4 shapes (noise sd 0.3),
        // 200 Adam steps of 64. A classifier that gets a share p right scores
        // p +- sqrt(p (1 - p) / 400) on the held-out rows: 0.95 is 8 sd below
        // a true 0.99 (sd 0.005), and chance is 0.25. Measured: 1.0.
        let ((x, y), (xh, yh)) = shape_split(800, 400, 5);
        let config = FeatureConfig::new(&[1, 8, 8], SHAPES_CLASSES);
        let mut calls = 0;
        let t = train(x.view(), &y, config.clone(), &tiny_settings(), Device::Cpu, |_, _| calls += 1).unwrap();
        assert_eq!(calls, 200);
        assert_eq!(t.losses.len(), 4);
        let acc = t.classifier.accuracy(xh.view(), &yh).unwrap();
        eprintln!("feature classifier: held-out accuracy {acc} on 400 shapes");
        assert!(acc >= 0.95, "held-out accuracy {acc}");
        let (first, last) = (t.losses[0].1, t.losses[3].1);
        assert!(last < 0.5 * first, "loss {first} -> {last}");
        // Deterministic: the same inputs give the same weights.
        let again = train(x.view(), &y, config, &tiny_settings(), Device::Cpu, |_, _| {}).unwrap();
        assert!(again.classifier.params().equal(t.classifier.params()));
    }

    fn meta_for(k: &FeatureClassifier, x: &Array2<f64>) -> FeatureMeta {
        FeatureMeta {
            format: FORMAT_VERSION,
            net: k.config().clone(),
            train: tiny_settings(),
            scaling: k.scaling(),
            source: "shapes".into(),
            train_rows: x.nrows(),
            train_sha256: crate::data::fingerprint(x.view()),
            heldout_rows: 0,
            heldout_sha256: String::new(),
            heldout_accuracy: 0.5,
            range: DataRange::fit(x.view()).unwrap(),
            losses: vec![(1, 0.25)],
        }
    }

    #[test]
    fn checkpoint_round_trip_is_bit_identical() {
        let dir = std::env::temp_dir().join(format!("scoresde-features-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ((x, _), _) = shape_split(40, 0, 2);
        let scaling = PixelScaling::fit(x.view()).unwrap();
        let k = FeatureClassifier::init(FeatureConfig::new(&[1, 8, 8], 4), scaling, 9, Device::Cpu).unwrap();
        let meta = meta_for(&k, &x);
        let written = save(&dir, &k, &meta).unwrap();
        assert_eq!(written, dir.join("features.safetensors"));
        assert!(dir.join("features.json").is_file());
        let (back, back_meta) = load(&dir, Device::Cpu).unwrap();
        assert_eq!(back_meta, meta);
        let bits = |t: &Tensor| Vec::<f32>::try_from(t).unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(back.params()), bits(k.params()));
        assert_eq!(back.embed(x.view()).unwrap().features, k.embed(x.view()).unwrap().features);
        // The other spellings of the same checkpoint.
        assert!(load(&dir.join("features.json"), Device::Cpu).is_ok());
        assert!(load(&dir.join("features"), Device::Cpu).is_ok());
        // A meta that does not describe the classifier is refused.
        let other = FeatureMeta { net: FeatureConfig::new(&[1, 8, 8], 3), ..meta.clone() };
        assert!(save(&dir, &k, &other).is_err());
        // Damaged files: clear errors.
        let st = dir.join("features.safetensors");
        let whole = std::fs::read(&st).unwrap();
        std::fs::write(&st, &whole[..whole.len() / 2]).unwrap();
        let e = load(&dir, Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("truncated or corrupt"), "{e}");
        std::fs::write(&st, b"").unwrap();
        assert!(load(&dir, Device::Cpu).is_err());
        std::fs::remove_file(&st).unwrap();
        assert!(matches!(load(&dir, Device::Cpu), Err(Error::Io { .. })));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bad_training_input_is_named() {
        let ((x, y), _) = shape_split(20, 0, 3);
        let c = FeatureConfig::new(&[1, 8, 8], 4);
        let run = |x: &Array2<f64>, y: &[usize], c: &FeatureConfig| {
            train(x.view(), y, c.clone(), &FeatureTrainConfig { steps: 1, ..tiny_settings() }, Device::Cpu, |_, _| {})
                .map(|_| ())
                .unwrap_err()
                .to_string()
        };
        assert!(run(&x, &y[..19], &c).contains("one label per image (20)"));
        let mut y5 = y.clone();
        y5[7] = 4;
        assert!(run(&x, &y5, &c).contains("label of row 7 is not in 0..4"));
        assert!(run(&x, &y, &FeatureConfig::new(&[1, 9, 9], 4)).contains("81 values per row"));
        let mut nan = x.clone();
        nan[[2, 3]] = f64::NAN;
        assert!(run(&nan, &y, &c).contains("row 2, column 3"));
    }

    #[test]
    fn shapes_are_labelled_and_seeded() {
        let (x, y) = shapes(8, 8, 0.0, 4).unwrap();
        assert_eq!(x.dim(), (8, 64));
        assert_eq!(y, vec![0, 1, 2, 3, 0, 1, 2, 3]);
        // Noise-free bars have 16 lit pixels, the diagonal band 8.
        assert_eq!(x.row(0).sum(), 16.0);
        assert_eq!(x.row(1).sum(), 16.0);
        assert!([7.0, 8.0].contains(&x.row(3).sum()));
        assert_eq!(shapes(8, 8, 0.3, 4).unwrap().0, shapes(8, 8, 0.3, 4).unwrap().0);
        assert!(shapes(0, 8, 0.3, 4).is_err() && shapes(8, 5, 0.3, 4).is_err() && shapes(8, 8, f64::NAN, 4).is_err());
    }
}
