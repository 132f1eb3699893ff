//! Checkpoints: `NAME.safetensors` (weights) and `NAME.json` (the sidecar).
//!
//! The safetensors file holds the network weights (`model.layers.{i}.weight`,
//! `model.layers.{i}.bias`), their EMA (`ema.…`), Adam's moments
//! (`adam.m`, `adam.v`, flat) and the time-embedding frequencies
//! (`embedding.freqs`). Its header metadata key `scoresde` holds the same JSON
//! as the sidecar: architecture, SDE, training settings, step, data scaling
//! and the loss log. The file is therefore complete on its own and written in
//! one atomic rename. The architecture's `classes` and `head` say whether the
//! network is a class-conditional score or a classifier (checkpoints written
//! before they existed read as unconditional scores). The sidecar is the human-readable copy (written second,
//! and ignored when loading, so a crash between the two writes loses nothing).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::data::{DataRange, Scaling};
use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::model::{NeuralClassifier, NeuralScore, SdeSpec};
use crate::net::{NetConfig, ScoreNet};
use crate::train::{TrainConfig, TrainState, Trainer};

/// Version of the checkpoint layout this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

const META_KEY: &str = "scoresde";

/// Where the training data came from, which rows they are and how they were
/// standardised (`x_model = (x - mean) / std` per dimension).
///
/// The JSON holds every `f64` in its shortest exact form and is parsed back
/// correctly rounded, so the scaling reads back bit for bit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    /// A data-set name or a file path.
    pub source: String,
    /// Training rows.
    pub rows: usize,
    /// Per-dimension mean subtracted before training.
    pub mean: Vec<f64>,
    /// Per-dimension scale divided out before training.
    pub std: Vec<f64>,
    /// [`crate::data::fingerprint`] of the training rows (absent in
    /// checkpoints written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Per-dimension min and max of the training rows, to tell how far
    /// samples stray from the data (absent from checkpoints written before it existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<DataRange>,
    /// The shape of one sample, whose product is the dimension: `[C, H, W]`
    /// for images, `[dim]` for tabular data ([`crate::data::Dataset::shape`]).
    /// Empty in JSON written before it existed; [`load`] reads that as `[dim]`.
    #[serde(default)]
    pub shape: Vec<usize>,
}

impl DataInfo {
    /// The description of training rows `train` from `source`, standardised
    /// by `scaling`, with the flat sample shape `[columns]` (see [`DataInfo::with_shape`]).
    ///
    /// # Errors
    /// As [`DataRange::fit`] (non-finite or empty rows).
    pub fn new(source: impl Into<String>, train: ndarray::ArrayView2<f64>, scaling: &Scaling) -> Result<Self> {
        Ok(Self {
            source: source.into(),
            rows: train.nrows(),
            mean: scaling.mean.clone(),
            std: scaling.std.clone(),
            sha256: Some(crate::data::fingerprint(train)),
            range: Some(DataRange::fit(train)?),
            shape: vec![train.ncols()],
        })
    }

    /// The description of training rows `train` of `data` (from `source`),
    /// scaled by `scaling`: [`DataInfo::new`] with the data's sample shape,
    /// and for images the pixel range as every column's range (so that a
    /// sample is "outside the data" when it leaves the pixel range, not when
    /// it puts ink where no training image has any).
    ///
    /// # Errors
    /// As [`DataInfo::new`] and [`DataInfo::with_shape`].
    pub fn of_dataset(
        source: impl Into<String>,
        data: &crate::data::Dataset,
        train: ndarray::ArrayView2<f64>,
        scaling: &Scaling,
    ) -> Result<Self> {
        let mut info = Self::new(source, train, scaling)?.with_shape(data.shape.clone())?;
        if let Some((lo, hi)) = data.pixel_range {
            let d = train.ncols();
            info.range = Some(DataRange { min: vec![lo; d], max: vec![hi; d] });
        }
        Ok(info)
    }

    /// The same with the sample shape `shape` (e.g. `[1, 28, 28]`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the product of `shape` is not the
    /// dimension (the scaling's length) or `shape` is empty.
    pub fn with_shape(mut self, shape: Vec<usize>) -> Result<Self> {
        if shape.is_empty() || shape.iter().product::<usize>() != self.mean.len() {
            return Err(Error::invalid(
                "shape",
                format!("{shape:?}"),
                format!("the product must be the data dimension {}", self.mean.len()),
            ));
        }
        self.shape = shape;
        Ok(self)
    }

    /// Whether `self` and `other` describe the same training rows of the same
    /// sample shape: by their hashes when both have one, else (an older checkpoint) by row count,
    /// exact scaling and the ranges when both record one. The source's name
    /// does not matter (a moved file is the same data).
    pub fn same_data(&self, other: &DataInfo) -> bool {
        // An empty shape (JSON from before it existed) is the flat one.
        let shapes = self.shape.is_empty() || other.shape.is_empty() || self.shape == other.shape;
        shapes
            && match (&self.sha256, &other.sha256) {
                (Some(a), Some(b)) => a == b,
                _ => {
                    let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    let ranges = match (&self.range, &other.range) {
                        (Some(a), Some(b)) => a == b,
                        _ => true,
                    };
                    self.rows == other.rows
                        && bits(&self.mean) == bits(&other.mean)
                        && bits(&self.std) == bits(&other.std)
                        && ranges
                }
            }
    }
}

/// The sidecar: everything needed to rebuild the model and go on training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// [`FORMAT_VERSION`] of the writer.
    pub format: u32,
    /// Architecture.
    pub net: NetConfig,
    /// Forward process (`vp` or `flow`; a sidecar without it reads as the default VP-SDE).
    #[serde(default)]
    pub sde: SdeSpec,
    /// Training settings.
    pub train: TrainConfig,
    /// Steps taken.
    pub step: u64,
    /// Data source and scaling.
    pub data: DataInfo,
    /// `(step, mean loss)` log.
    pub losses: Vec<(u64, f64)>,
}

/// A loaded checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    /// The sidecar contents.
    pub meta: Meta,
    /// The network (on the device asked for), with its embedding frequencies.
    pub net: ScoreNet,
    /// Weights, EMA, optimiser state, step and loss log.
    pub state: TrainState,
}

/// The weights and sidecar paths of a checkpoint given as `DIR` (meaning
/// `DIR/model`), `NAME`, `NAME.safetensors` or `NAME.json`.
pub fn paths(spec: &Path) -> (PathBuf, PathBuf) {
    paths_named(spec, "model")
}

/// As [`paths`], with `DIR` meaning `DIR/default_name`: shared by the
/// checkpoints of every kind a run folder holds.
pub(crate) fn paths_named(spec: &Path, default_name: &str) -> (PathBuf, PathBuf) {
    let stem = if spec.is_dir() {
        spec.join(default_name)
    } else {
        match spec.extension().and_then(|e| e.to_str()) {
            Some("safetensors") | Some("json") => spec.with_extension(""),
            _ => spec.to_path_buf(),
        }
    };
    (stem.with_extension("safetensors"), stem.with_extension("json"))
}

pub(crate) fn corrupt(path: &Path, reason: impl std::fmt::Display) -> Error {
    Error::Checkpoint { path: path.to_path_buf(), reason: reason.to_string() }
}

fn to_bytes(t: &Tensor) -> Result<(Vec<usize>, Vec<u8>)> {
    let t = t.f_detach()?.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous()?;
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let values = Vec::<f32>::try_from(t.f_reshape([-1])?)?;
    Ok((shape, values.iter().flat_map(|v| v.to_le_bytes()).collect()))
}

/// Writes the `named` tensors as F32 to `weights_path` with the sidecar
/// `json` stored under the metadata key `key`, then the same `json` to
/// `sidecar_path`: the weights file first (complete on its own), each
/// atomically. Shared by score-model and feature-classifier checkpoints.
///
/// # Errors
/// [`Error::Checkpoint`] when safetensors refuses the tensors, [`Error::Io`]
/// for the writes.
pub(crate) fn write_safetensors(
    weights_path: &Path,
    sidecar_path: &Path,
    named: &[(String, Tensor)],
    key: &str,
    json: &str,
) -> Result<()> {
    let buffers: Vec<(String, Vec<usize>, Vec<u8>)> = named
        .iter()
        .map(|(k, t)| to_bytes(t).map(|(shape, bytes)| (k.clone(), shape, bytes)))
        .collect::<Result<_>>()?;
    let views: Vec<(String, TensorView<'_>)> = buffers
        .iter()
        .map(|(k, shape, bytes)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
                .map_err(|e| corrupt(weights_path, format!("{e:?}")))
        })
        .collect::<Result<_>>()?;
    let metadata = Some(HashMap::from([(key.to_string(), json.to_string())]));
    let bytes =
        safetensors::tensor::serialize(views, &metadata).map_err(|e| corrupt(weights_path, format!("{e:?}")))?;
    write_atomic(weights_path, &bytes)?;
    write_atomic(sidecar_path, json.as_bytes())
}

/// The tensors of the safetensors file `path` whose contents are `bytes`,
/// and its metadata (the sidecar JSON under its key).
///
/// # Errors
/// [`Error::Checkpoint`] for a file that is not readable as safetensors.
pub(crate) fn read_safetensors<'a>(
    path: &Path,
    bytes: &'a [u8],
) -> Result<(SafeTensors<'a>, Option<HashMap<String, String>>)> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| {
        corrupt(path, format!("not a readable safetensors file ({e:?}); the file is truncated or corrupt"))
    })?;
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(path, format!("{e:?}")))?;
    Ok((st, header.metadata().clone()))
}

/// Little-endian F32 bytes as values.
pub(crate) fn f32_values(data: &[u8]) -> Vec<f32> {
    data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

/// Saves `trainer`'s full state as a checkpoint at `spec` (see [`paths`]).
/// Returns the weights path. Refuses to write non-finite weights, so a
/// diverged run never overwrites a good checkpoint.
///
/// # Errors
/// [`Error::Checkpoint`] for non-finite weights, [`Error::Io`] for the writes.
pub fn save(spec: &Path, trainer: &Trainer, data: &DataInfo) -> Result<PathBuf> {
    let (weights_path, sidecar_path) = paths(spec);
    let state = trainer.state();
    for (name, t) in [("weights", &state.params), ("EMA weights", &state.ema)] {
        if t.f_isfinite()?.f_all()?.f_int64_value(&[])? == 0 {
            return Err(corrupt(&weights_path, format!("refusing to save non-finite {name}")));
        }
    }
    let meta = Meta {
        format: FORMAT_VERSION,
        net: trainer.net().config().clone(),
        sde: trainer.sde_spec(),
        train: trainer.config().clone(),
        step: state.step,
        data: data.clone(),
        losses: state.losses.clone(),
    };
    let json = serde_json::to_string_pretty(&meta).map_err(|e| corrupt(&sidecar_path, e))?;
    let mut named: Vec<(String, Tensor)> = Vec::new();
    for (prefix, flat) in [("model", &state.params), ("ema", &state.ema)] {
        named.extend(trainer.net().named(flat).into_iter().map(|(k, t)| (format!("{prefix}.{k}"), t)));
    }
    named.push(("adam.m".into(), state.adam_m.shallow_clone()));
    named.push(("adam.v".into(), state.adam_v.shallow_clone()));
    named.push(("embedding.freqs".into(), trainer.net().freqs().shallow_clone()));
    write_safetensors(&weights_path, &sidecar_path, &named, META_KEY, &json)?;
    Ok(weights_path)
}

/// Loads a checkpoint onto `device`.
///
/// # Errors
/// [`Error::Io`] for a missing file; [`Error::Checkpoint`] for a file that is
/// not a scoresde checkpoint, is truncated or corrupt, was written by another
/// format version, or whose tensors do not match its architecture.
pub fn load(spec: &Path, device: Device) -> Result<Checkpoint> {
    let (path, _) = paths(spec);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let (st, metadata) = read_safetensors(&path, &bytes)?;
    let json = metadata
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| corrupt(&path, "no scoresde metadata: not a checkpoint written by scoresde"))?;
    let mut meta: Meta = serde_json::from_str(json).map_err(|e| corrupt(&path, format!("unreadable metadata: {e}")))?;
    if meta.format != FORMAT_VERSION {
        return Err(corrupt(&path, format!("format version {} (this build reads {FORMAT_VERSION})", meta.format)));
    }
    meta.net.validate().map_err(|e| corrupt(&path, e))?;
    if meta.data.mean.len() != meta.net.dim || meta.data.std.len() != meta.net.dim {
        return Err(corrupt(&path, "data scaling does not match the network's dimension"));
    }
    if meta.data.shape.is_empty() {
        meta.data.shape = vec![meta.net.dim];
    }
    if meta.data.shape.iter().product::<usize>() != meta.net.dim {
        return Err(corrupt(
            &path,
            format!("data shape {:?} does not match the network's dimension {}", meta.data.shape, meta.net.dim),
        ));
    }
    if let Some(range) = &meta.data.range {
        range.check().map_err(|e| corrupt(&path, e))?;
        if range.dim() != meta.net.dim {
            return Err(corrupt(&path, "data range does not match the network's dimension"));
        }
    }
    let tensor = |name: &str| -> Option<Tensor> {
        let view = st.tensor(name).ok()?;
        if view.dtype() != Dtype::F32 {
            return None;
        }
        let values = f32_values(view.data());
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        Tensor::f_from_slice(&values).ok()?.f_reshape(shape).ok()
    };
    let mut net = ScoreNet::new(meta.net.clone(), device, meta.train.seed).map_err(|e| corrupt(&path, e))?;
    let freqs = tensor("embedding.freqs").ok_or_else(|| corrupt(&path, "missing tensor embedding.freqs"))?;
    net.set_freqs(&freqs).map_err(|e| corrupt(&path, e))?;
    let flat = |prefix: &str| {
        net.flatten_named(|k| tensor(&format!("{prefix}.{k}"))).map_err(|e| corrupt(&path, format!("{prefix}: {e}")))
    };
    let (params, ema) = (flat("model")?, flat("ema")?);
    let n = net.num_params();
    let moment = |name: &str| -> Result<Tensor> {
        let t = tensor(name).ok_or_else(|| corrupt(&path, format!("missing or non-f32 tensor {name}")))?;
        if t.size() != [n] {
            return Err(corrupt(&path, format!("{name} has shape {:?}, expected [{n}]", t.size())));
        }
        Ok(t.to_device(device))
    };
    let (adam_m, adam_v) = (moment("adam.m")?, moment("adam.v")?);
    for (name, t) in [("weights", &params), ("EMA weights", &ema), ("adam.m", &adam_m), ("adam.v", &adam_v)] {
        if t.f_isfinite()?.f_all()?.f_int64_value(&[])? == 0 {
            return Err(corrupt(&path, format!("non-finite values in {name}")));
        }
    }
    let state = TrainState { params, ema, adam_m, adam_v, step: meta.step, losses: meta.losses.clone() };
    Ok(Checkpoint { meta, net, state })
}

impl Checkpoint {
    /// The EMA weights as a score model.
    ///
    /// # Errors
    /// An SDE that cannot be built; [`Error::InvalidArgument`] for a classifier checkpoint.
    pub fn ema_score(self) -> Result<NeuralScore> {
        NeuralScore::new(self.net, self.state.ema, self.meta.sde.build()?)
    }

    /// The EMA weights as a noise-conditional classifier.
    ///
    /// # Errors
    /// An SDE that cannot be built; [`Error::InvalidArgument`] for a score checkpoint.
    pub fn ema_classifier(self) -> Result<NeuralClassifier> {
        NeuralClassifier::new(self.net, self.state.ema, self.meta.sde.build()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Numbers with 17 significant digits, as means and scales of real data.
    fn awkward(n: usize) -> Vec<f64> {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                (state >> 11) as f64 / (1u64 << 53) as f64 * 7.3 - 1.1
            })
            .collect()
    }

    #[test]
    fn data_info_reads_back_bit_for_bit() {
        let info = DataInfo {
            source: "x.npy".into(),
            rows: 3,
            mean: awkward(500),
            std: awkward(500).iter().map(|v| v.abs() + 1e-3).collect(),
            sha256: Some("ab".repeat(32)),
            range: None,
            shape: vec![500],
        };
        for json in [serde_json::to_string(&info).unwrap(), serde_json::to_string_pretty(&info).unwrap()] {
            let back: DataInfo = serde_json::from_str(&json).unwrap();
            for (a, b) in info.mean.iter().chain(&info.std).zip(back.mean.iter().chain(&back.std)) {
                assert_eq!(a.to_bits(), b.to_bits(), "{a:e} read back as {b:e}");
            }
            assert!(back.same_data(&info));
        }
    }

    #[test]
    fn shape_is_checked_and_defaults_to_flat_in_old_json() {
        let x = ndarray::Array2::from_shape_vec((2, 4), awkward(8)).unwrap();
        let info = DataInfo::new("a", x.view(), &Scaling::fit(x.view()).unwrap()).unwrap();
        assert_eq!(info.shape, vec![4]);
        let img = info.clone().with_shape(vec![1, 2, 2]).unwrap();
        assert_eq!(img.shape, vec![1, 2, 2]);
        assert!(!img.same_data(&info), "same rows, another sample shape");
        let data = crate::data::Dataset {
            x: x.clone(),
            shape: vec![1, 2, 2],
            labels: None,
            classes: 0,
            pixel_range: Some((-2.0, 9.0)),
        };
        let of = DataInfo::of_dataset("a", &data, x.view(), &Scaling::fit(x.view()).unwrap()).unwrap();
        assert_eq!(of.shape, vec![1, 2, 2]);
        assert_eq!(of.range, Some(DataRange { min: vec![-2.0; 4], max: vec![9.0; 4] }));
        for bad in [vec![], vec![1, 2, 3], vec![0, 4]] {
            assert!(info.clone().with_shape(bad.clone()).is_err(), "{bad:?}");
        }
        let mut json: serde_json::Value = serde_json::to_value(&img).unwrap();
        json.as_object_mut().unwrap().remove("shape");
        let old: DataInfo = serde_json::from_value(json).unwrap();
        assert!(old.shape.is_empty() && old.same_data(&img) && img.same_data(&old));
    }

    #[test]
    fn same_data_by_hash_else_by_exact_scaling() {
        let x = ndarray::Array2::from_shape_vec((3, 2), awkward(6)).unwrap();
        let scaling = Scaling::fit(x.view()).unwrap();
        let a = DataInfo::new("a.npy", x.view(), &scaling).unwrap();
        assert!(a.same_data(&DataInfo::new("moved/a.npy", x.view(), &scaling).unwrap()));
        let mut y = x.clone();
        y[[0, 0]] += 1e-9;
        assert!(!a.same_data(&DataInfo::new("a.npy", y.view(), &scaling).unwrap()), "other rows, same scaling");
        // A checkpoint written before the hash: the row count and scaling decide.
        let old: DataInfo =
            serde_json::from_str(&serde_json::to_string(&DataInfo { sha256: None, ..a.clone() }).unwrap()).unwrap();
        assert_eq!(old.sha256, None);
        assert!(old.same_data(&a) && a.same_data(&old));
        let mut shifted = old.clone();
        shifted.mean[1] = f64::from_bits(shifted.mean[1].to_bits() + 1);
        assert!(!shifted.same_data(&a));
    }
}
