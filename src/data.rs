//! Data sets: 2-D toy sets generated in code, user data from `.npy` files,
//! per-dimension standardisation and train/held-out splits.
//!
//! Every data set is an `(n, d)` array of `f64`, one sample per row. All entry
//! points that take user data run [`validate`], so a NaN, an infinity or an
//! empty array is reported once, with where it is, as [`Error::Data`].
//!
//! ```
//! use scoresde::data::{Scaling, Toy};
//! let x = Toy::TwoMoons.sample(1000, 7).unwrap();
//! let scaling = Scaling::fit(x.view()).unwrap();
//! let z = scaling.apply(x.view()).unwrap();
//! let back = scaling.invert(z.view()).unwrap();
//! assert!((&back - &x).iter().all(|e| e.abs() < 1e-12));
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use ndarray::{Array1, Array2, Array3, ArrayBase, ArrayView2, Axis, Ix2};
use ndarray_npy::{ReadNpyError, ReadNpyExt, WritableElement, WriteNpyExt};
use rand::seq::SliceRandom;
use rand::{Rng as _, SeedableRng};
use rand_distr::StandardNormal;
use scoresde_solvers::score::GaussianMixture;
use scoresde_solvers::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The 2-D toy data sets, generated in code from a seed.
///
/// Scales follow the usual toy sets: every set lies roughly in `[-4, 4]^2`.
/// Noise is Gaussian and isotropic unless said otherwise. The moments quoted
/// are those of the law (what large samples converge to); the tests check them.
///
/// | name | law | mean | covariance |
/// |---|---|---|---|
/// | `eight-gaussians` | 8 equal-weight `N(m_k, 0.25^2 I)`, `m_k` evenly on the circle of radius 2, the first at `(2, 0)` | 0 | `(2 + 0.25^2) I` |
/// | `swiss-roll` | `(t cos t, t sin t) / 5 + N(0, 0.1^2 I)`, `t ~ U(1.5 pi, 4.5 pi)` | `(2/5, 2/(15 pi))` | `E\|x\|^2 = 0.39 pi^2 + 0.02` |
/// | `two-moons` | two half circles of radius 2, offset and interleaved, `+ N(0, 0.1^2 I)` | 0 | `[[3 + s^2, 1/2 - 4/pi], [., 4 (9/16 - 1/pi) + s^2]]`, `s = 0.1` |
/// | `checkerboard` | uniform on the 8 "black" unit squares of a 4x4 board on `[-2, 2]^2` | 0 | `[[4/3, 1/4], [1/4, 4/3]]` |
/// | `rings` | 4 circles of radii 0.75, 1.5, 2.25, 3 (picked with probability proportional to length) `+ N(0, 0.08^2 I)` | 0 | `(45/16 + 0.08^2) I` |
/// | `mixture` | the 3-component mixture of [`Toy::Mixture`] | see there | see there |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Toy {
    /// Eight isotropic Gaussians (standard deviation 0.25) with equal weights,
    /// centred evenly on the circle of radius 2, the first at `(2, 0)`.
    /// Exactly [`GaussianMixture::ring`]`(8, 2.0, 0.25)`; see [`Toy::mixture`].
    EightGaussians,
    /// A 2-D swiss roll: `t ~ U(1.5 pi, 4.5 pi)`, `x = (t cos t, t sin t) / 5 + N(0, 0.1^2 I)`,
    /// so the roll spans about `[-2.7, 2.9]^2`. Mean `(2/5, 2/(15 pi))`;
    /// `E|x|^2 = E[t^2] / 25 + 2 (0.1)^2 = 0.39 pi^2 + 0.02` (`E[t^2] = 9.75 pi^2`).
    SwissRoll,
    /// Two interleaved half circles of radius 2, centred on 0 (point symmetric):
    /// with `theta ~ U(0, pi)`, the upper moon is `(2 cos theta - 1, 2 sin theta - 1/2)`,
    /// the lower moon its negation, each picked with probability 1/2, plus
    /// `N(0, 0.1^2 I)` noise.
    TwoMoons,
    /// Uniform on the 8 unit squares `[i, i+1] x [j, j+1]`, `i, j in {-2, -1, 0, 1}`,
    /// with `i + j` even: a 4x4 checkerboard on `[-2, 2]^2`. Each marginal is
    /// uniform on `[-2, 2]`; the correlation is `3/16`.
    Checkerboard,
    /// Four concentric circles of radii 0.75, 1.5, 2.25 and 3, chosen with
    /// probability proportional to their radius (uniform along the total
    /// length), uniform angle, plus `N(0, 0.08^2 I)` noise.
    Rings,
    /// A Gaussian mixture with unequal weights and anisotropic, correlated
    /// covariances, whose score is known exactly ([`Toy::mixture`]):
    ///
    /// | k | weight | mean | covariance |
    /// |---|---|---|---|
    /// | 0 | 0.5 | `(-1.5, -0.5)` | `[[0.5, 0.3], [0.3, 0.4]]` |
    /// | 1 | 0.3 | `(1.5, -1.0)` | `[[0.2, -0.15], [-0.15, 0.6]]` |
    /// | 2 | 0.2 | `(0.0, 2.0)` | `[[0.8, 0.0], [0.0, 0.1]]` |
    Mixture,
}

/// Most samples [`Toy::sample`] draws at once (2^30 rows, 16 GiB), so an
/// absurd count is an error rather than an allocation failure.
pub const MAX_TOY_SAMPLES: usize = 1 << 30;
/// Standard deviation of each [`Toy::EightGaussians`] component.
const EIGHT_STD: f64 = 0.25;
/// Radius of the circle the [`Toy::EightGaussians`] means lie on.
const EIGHT_RADIUS: f64 = 2.0;
/// Noise of [`Toy::SwissRoll`].
const ROLL_NOISE: f64 = 0.1;
/// Noise of [`Toy::TwoMoons`].
const MOON_NOISE: f64 = 0.1;
/// Noise of [`Toy::Rings`].
const RING_NOISE: f64 = 0.08;
/// Radii of [`Toy::Rings`].
const RING_RADII: [f64; 4] = [0.75, 1.5, 2.25, 3.0];

impl Toy {
    /// Every toy set, in the order of the table above.
    pub const ALL: [Toy; 6] =
        [Toy::EightGaussians, Toy::SwissRoll, Toy::TwoMoons, Toy::Checkerboard, Toy::Rings, Toy::Mixture];

    /// The kebab-case name used on the command line (`eight-gaussians`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Toy::EightGaussians => "eight-gaussians",
            Toy::SwissRoll => "swiss-roll",
            Toy::TwoMoons => "two-moons",
            Toy::Checkerboard => "checkerboard",
            Toy::Rings => "rings",
            Toy::Mixture => "mixture",
        }
    }

    /// The comma-separated list of valid names.
    pub fn names() -> String {
        Toy::ALL.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
    }

    /// The toy set called `name` (case-insensitive; `_` and `-` are the same).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] listing the valid names.
    pub fn from_name(name: &str) -> Result<Self> {
        let key = name.trim().to_ascii_lowercase().replace('_', "-");
        Toy::ALL
            .into_iter()
            .find(|t| t.name() == key)
            .ok_or_else(|| Error::invalid("data", name, format!("unknown toy data set; valid names: {}", Toy::names())))
    }

    /// The exact law of the sets that are Gaussian mixtures
    /// ([`Toy::EightGaussians`], [`Toy::Mixture`]), `None` for the others.
    /// With [`scoresde_solvers::score::ExactScore`] it gives the exact score
    /// of every marginal `p_t`, to evaluate a learned score against.
    pub fn mixture(self) -> Option<GaussianMixture> {
        // The parameters are constants that `GaussianMixture::new` accepts (a
        // test checks that both sets return `Some`).
        self.law().ok().flatten()
    }

    fn law(self) -> Result<Option<GaussianMixture>> {
        Ok(match self {
            Toy::EightGaussians => Some(GaussianMixture::ring(8, EIGHT_RADIUS, EIGHT_STD)?),
            Toy::Mixture => {
                let means = ndarray::array![[-1.5, -0.5], [1.5, -1.0], [0.0, 2.0]];
                let covs = Array3::from_shape_vec(
                    (3, 2, 2),
                    vec![0.5, 0.3, 0.3, 0.4, 0.2, -0.15, -0.15, 0.6, 0.8, 0.0, 0.0, 0.1],
                )
                .map_err(|e| Error::invalid("mixture", "covariances", e.to_string()))?;
                Some(GaussianMixture::new(&[0.5, 0.3, 0.2], means.view(), covs.view())?)
            }
            _ => None,
        })
    }

    /// The exact labelled law of the sets with classes (class = component),
    /// `None` for the others: the oracle of class accuracy.
    pub fn labelled(self) -> Option<scoresde_solvers::LabelledMixture> {
        self.mixture().and_then(|m| scoresde_solvers::LabelledMixture::by_component(m).ok())
    }

    /// Number of natural classes: the components of the sets that are Gaussian
    /// mixtures (8 for [`Toy::EightGaussians`], 3 for [`Toy::Mixture`]), 0 for the others.
    pub fn n_classes(self) -> usize {
        self.mixture().map_or(0, |m| m.n_components())
    }

    /// `n` samples and the class of each (for the mixtures, the index of the
    /// component it was drawn from): the same rows as [`Toy::sample`] with the
    /// same `(n, seed)`.
    ///
    /// # Errors
    /// As [`Toy::sample`], and [`Error::InvalidArgument`] for a set without
    /// classes ([`Toy::n_classes`] = 0).
    pub fn sample_labelled(self, n: usize, seed: u64) -> Result<(Array2<f64>, Vec<usize>)> {
        let law = self.law()?.ok_or_else(|| {
            Error::invalid("data", self, "has no classes; labelled toy sets: eight-gaussians, mixture")
        })?;
        check_count(n)?;
        Ok(law.sample_with_components(n, &mut Rng::seed_from_u64(seed)))
    }

    /// `n` samples (shape `(n, 2)`), a deterministic function of `(n, seed)`;
    /// the first `k` rows of a draw of `n > k` are the draw of `k`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `n = 0` or `n >` [`MAX_TOY_SAMPLES`].
    pub fn sample(self, n: usize, seed: u64) -> Result<Array2<f64>> {
        check_count(n)?;
        let mut rng = Rng::seed_from_u64(seed);
        let point: fn(&mut Rng) -> (f64, f64, f64) = match self {
            Toy::EightGaussians | Toy::Mixture => {
                let law = self.law()?.ok_or_else(|| Error::invalid("data", self, "no mixture law"))?;
                return Ok(law.sample(n, &mut rng));
            }
            Toy::SwissRoll => swiss_roll_point,
            Toy::TwoMoons => two_moons_point,
            Toy::Checkerboard => checkerboard_point,
            Toy::Rings => rings_point,
        };
        let mut out = Array2::zeros((n, 2));
        for mut row in out.rows_mut() {
            let (x, y, noise) = point(&mut rng);
            row[0] = x + noise * rng.sample::<f64, _>(StandardNormal);
            row[1] = y + noise * rng.sample::<f64, _>(StandardNormal);
        }
        Ok(out)
    }
}

fn check_count(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::invalid("n", n, "need at least one sample"));
    }
    if n > MAX_TOY_SAMPLES {
        return Err(Error::invalid("n", n, format!("at most {MAX_TOY_SAMPLES} samples")));
    }
    Ok(())
}

// One noise-free point of each non-mixture toy set and its noise level.
const PI: f64 = std::f64::consts::PI;

fn swiss_roll_point(rng: &mut Rng) -> (f64, f64, f64) {
    let t = 1.5 * PI * (1.0 + 2.0 * rng.gen::<f64>());
    (t * t.cos() / 5.0, t * t.sin() / 5.0, ROLL_NOISE)
}

fn two_moons_point(rng: &mut Rng) -> (f64, f64, f64) {
    let theta = PI * rng.gen::<f64>();
    let sign = if rng.gen::<bool>() { 1.0 } else { -1.0 };
    (sign * (2.0 * theta.cos() - 1.0), sign * (2.0 * theta.sin() - 0.5), MOON_NOISE)
}

fn checkerboard_point(rng: &mut Rng) -> (f64, f64, f64) {
    // Column i in {-2, ..., 1}; then one of the 2 rows j with i + j even.
    let i = rng.gen_range(0..4i32) - 2;
    let j = 2 * rng.gen_range(0..2i32) - 2 + i.rem_euclid(2);
    (f64::from(i) + rng.gen::<f64>(), f64::from(j) + rng.gen::<f64>(), 0.0)
}

fn rings_point(rng: &mut Rng) -> (f64, f64, f64) {
    let total: f64 = RING_RADII.iter().sum();
    let mut u = rng.gen::<f64>() * total;
    let mut r = RING_RADII[RING_RADII.len() - 1];
    for radius in RING_RADII {
        if u < radius {
            r = radius;
            break;
        }
        u -= radius;
    }
    let phi = 2.0 * PI * rng.gen::<f64>();
    (r * phi.cos(), r * phi.sin(), RING_NOISE)
}

impl fmt::Display for Toy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Toy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Toy::from_name(s)
    }
}

/// Where training data comes from: a toy set generated in code, or a `.npy` file.
///
/// Parsed from a string (`"two-moons"`, `"data/x.npy"`): a toy name first,
/// then a path ending in `.npy` that must exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// A toy set, sampled with [`Toy::sample`].
    Toy(Toy),
    /// A 2-D `.npy` file (rows = samples), read with [`load_npy`].
    Npy(PathBuf),
}

impl DataSource {
    /// Parses `s`: a toy-set name, or the path of an existing `.npy` file.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the valid toy sets when `s` is neither;
    /// it says so when `s` is a path that does not exist or is not a `.npy` file.
    pub fn parse(s: &str) -> Result<Self> {
        if let Ok(t) = Toy::from_name(s) {
            return Ok(DataSource::Toy(t));
        }
        let path = Path::new(s);
        let is_npy = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("npy"));
        let expected = format!("expected a toy data set ({}) or the path of a .npy file", Toy::names());
        if is_npy {
            if path.is_file() {
                Ok(DataSource::Npy(path.to_path_buf()))
            } else {
                Err(Error::invalid("data", s, format!("no such .npy file; {expected}")))
            }
        } else if path.exists() {
            Err(Error::invalid("data", s, format!("only .npy files are read; {expected}")))
        } else {
            Err(Error::invalid("data", s, format!("unknown data set; {expected}")))
        }
    }

    /// The data: `n` samples of a toy set drawn with `seed`, or the whole
    /// `.npy` file (then `n` and `seed` are not used).
    ///
    /// # Errors
    /// As [`Toy::sample`] or [`load_npy`].
    pub fn load(&self, n: usize, seed: u64) -> Result<Array2<f64>> {
        match self {
            DataSource::Toy(t) => t.sample(n, seed),
            DataSource::Npy(p) => load_npy(p),
        }
    }

    /// The exact law when the source is a Gaussian-mixture toy set ([`Toy::mixture`]).
    pub fn mixture(&self) -> Option<GaussianMixture> {
        match self {
            DataSource::Toy(t) => t.mixture(),
            DataSource::Npy(_) => None,
        }
    }
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSource::Toy(t) => f.write_str(t.name()),
            DataSource::Npy(p) => write!(f, "{}", p.display()),
        }
    }
}

impl FromStr for DataSource {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        DataSource::parse(s)
    }
}

/// Checks that `data` (described as `what` in the error, e.g. a file path or
/// "training data") has at least one row and one column and only finite values.
///
/// # Errors
/// [`Error::Data`] saying which: the shape when empty, or the first
/// non-finite value in row-major order with its (0-based) row and column.
pub fn validate(data: ArrayView2<f64>, what: &str) -> Result<()> {
    let (rows, cols) = data.dim();
    if rows == 0 || cols == 0 {
        return Err(Error::data(
            what,
            format!("no data: shape ({rows}, {cols}); need at least one row (sample) and one column (dimension)"),
        ));
    }
    if let Some(((r, c), v)) = data.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(Error::data(what, format!("non-finite value {v} at row {r}, column {c} (0-based)")));
    }
    Ok(())
}

/// The SHA-256 (lower-case hex) of `data`'s shape and values (row-major,
/// little-endian `f64`): equal for equal data, whatever file or seed they
/// came from. Checkpoints store it to recognise their data on resume.
pub fn fingerprint(data: ArrayView2<f64>) -> String {
    use sha2::{Digest as _, Sha256};
    let mut h = Sha256::new();
    h.update(b"scoresde-f64-rows-v1");
    h.update((data.nrows() as u64).to_le_bytes());
    h.update((data.ncols() as u64).to_le_bytes());
    for v in data.iter() {
        h.update(v.to_le_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// The magic string every `.npy` file starts with.
const NPY_MAGIC: &[u8] = b"\x93NUMPY";

/// Reads a 2-D `.npy` file (rows = samples, columns = dimensions) of
/// `float64` or `float32` values (converted to `f64`), little- or big-endian,
/// in C or Fortran order, and [`validate`]s it.
///
/// # Errors
/// * [`Error::Io`] when the file cannot be read (e.g. it does not exist);
/// * [`Error::Data`] with the path when the file is empty (0 bytes), is not a
///   `.npy` file or is corrupt/truncated, holds another element type (the
///   message names it), is not 2-D (the message gives its rank), has no rows
///   or columns, or holds NaN/infinity (the message gives row, column, value).
pub fn load_npy(path: impl AsRef<Path>) -> Result<Array2<f64>> {
    let path = path.as_ref();
    let what = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.is_empty() {
        return Err(Error::data(&what, "the file is empty (0 bytes), not a .npy file"));
    }
    if !bytes.starts_with(NPY_MAGIC) {
        return Err(Error::data(&what, "not a .npy file (it does not start with the \\x93NUMPY magic string)"));
    }
    let data = match Array2::<f64>::read_npy(&bytes[..]) {
        Ok(a) => a,
        Err(ReadNpyError::WrongDescriptor(_)) => match Array2::<f32>::read_npy(&bytes[..]) {
            Ok(a) => a.mapv(f64::from),
            Err(e) => return Err(npy_error(&what, e)),
        },
        Err(e) => return Err(npy_error(&what, e)),
    };
    validate(data.view(), &what)?;
    Ok(data)
}

/// A clear message for an `ndarray-npy` read error.
fn npy_error(what: &str, e: ReadNpyError) -> Error {
    let reason = match e {
        ReadNpyError::WrongDescriptor(descr) => {
            format!("unsupported element type {descr}; expected float64 ('<f8') or float32 ('<f4')")
        }
        ReadNpyError::WrongNdim(_, got) => {
            let hint =
                if got == 1 { " (a 1-D array of n values is one dimension: save it with shape (n, 1))" } else { "" };
            format!("expected a 2-D array (rows = samples, columns = dimensions), got a {got}-D array{hint}")
        }
        ReadNpyError::ParseHeader(h) => format!("corrupt .npy header: {h}"),
        ReadNpyError::ParseData(d) => format!("corrupt .npy data: {d}"),
        ReadNpyError::MissingData => "truncated: the file holds fewer values than its header's shape says".into(),
        ReadNpyError::ExtraBytes(n) => format!("corrupt: {n} unexpected bytes after the data"),
        ReadNpyError::LengthOverflow => "corrupt: the header's shape overflows".into(),
        ReadNpyError::Io(io) => format!("cannot read the .npy contents: {io}"),
    };
    Error::data(what, reason)
}

/// Element types [`save_npy`] writes: `f32` and `f64`.
pub trait NpyFloat: WritableElement + sealed::Sealed {}
impl NpyFloat for f32 {}
impl NpyFloat for f64 {}
mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// Writes `data` as a `.npy` file (`float32` or `float64`, C order unless
/// `data` is laid out in Fortran order), creating missing parent folders.
///
/// The write is atomic: a temporary file in the destination folder, then a
/// rename, so a crash never leaves a partial file at `path`. Any values are
/// written, NaN included ([`load_npy`] refuses them on the way back).
///
/// # Errors
/// [`Error::Io`] when the folder cannot be created or the file cannot be
/// written; [`Error::InvalidArgument`] when `path` has no file name.
pub fn save_npy<A, S>(path: impl AsRef<Path>, data: &ArrayBase<S, Ix2>) -> Result<()>
where
    A: NpyFloat,
    S: ndarray::Data<Elem = A>,
{
    let path = path.as_ref();
    if path.file_name().is_none() {
        return Err(Error::invalid("path", path.display(), "not a file name"));
    }
    let mut bytes = Vec::new();
    data.write_npy(&mut bytes).map_err(|e| match e {
        ndarray_npy::WriteNpyError::Io(io) => Error::io(path, io),
        other => Error::data(path.display().to_string(), format!("cannot write as .npy: {other}")),
    })?;
    crate::fsutil::write_atomic(path, &bytes)
}

/// Per-dimension standardisation `z = (x - mean) / std`, fitted on data and
/// stored with a model (serde) so samples can be mapped back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scaling {
    /// Per-dimension mean.
    pub mean: Vec<f64>,
    /// Per-dimension scale, > 0.
    pub std: Vec<f64>,
}

impl Scaling {
    /// A column whose standard deviation is at most this times its largest
    /// absolute value (or this, for a column of zeros) counts as constant and
    /// gets scale 1, so it maps to 0 instead of dividing by zero.
    pub const DEGENERATE_REL_STD: f64 = 1e-12;

    /// The identity map in `d` dimensions (mean 0, scale 1).
    pub fn identity(d: usize) -> Self {
        Self { mean: vec![0.0; d], std: vec![1.0; d] }
    }

    /// Fits mean and (population) standard deviation of each column of `data`.
    /// A constant column gets scale 1 (see [`Scaling::DEGENERATE_REL_STD`]).
    ///
    /// # Errors
    /// As [`validate`].
    pub fn fit(data: ArrayView2<f64>) -> Result<Self> {
        validate(data, "data to fit the scaling on")?;
        let mut mean = Vec::with_capacity(data.ncols());
        let mut std = Vec::with_capacity(data.ncols());
        for col in data.axis_iter(Axis(1)) {
            let m = col.sum() / col.len() as f64;
            let var = col.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / col.len() as f64;
            let s = var.sqrt();
            let scale = col.iter().fold(0.0f64, |a, x| a.max(x.abs())).max(1.0);
            mean.push(m);
            std.push(if s > Self::DEGENERATE_REL_STD * scale { s } else { 1.0 });
        }
        Ok(Self { mean, std })
    }

    /// The dimension `d`.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Checks itself (it may come from a file) and the data's columns.
    fn check(&self, cols: usize) -> Result<()> {
        if self.std.len() != self.mean.len() {
            return Err(Error::invalid(
                "scaling",
                format!("{} means, {} scales", self.mean.len(), self.std.len()),
                "need one mean and one scale per dimension",
            ));
        }
        if let Some(s) = self.std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::invalid("scaling.std", s, "scales must be finite and > 0"));
        }
        if let Some(m) = self.mean.iter().find(|m| !m.is_finite()) {
            return Err(Error::invalid("scaling.mean", m, "means must be finite"));
        }
        if cols != self.dim() {
            return Err(Error::invalid(
                "data",
                format!("{cols} columns"),
                format!("the scaling was fitted on {} dimensions", self.dim()),
            ));
        }
        Ok(())
    }

    /// `(x - mean) / std`, row by row.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when the column count differs from
    /// [`Scaling::dim`] or the scaling itself is invalid (e.g. a scale <= 0).
    pub fn apply(&self, data: ArrayView2<f64>) -> Result<Array2<f64>> {
        self.check(data.ncols())?;
        let (m, s) = (Array1::from(self.mean.clone()), Array1::from(self.std.clone()));
        Ok((&data - &m) / &s)
    }

    /// `z * std + mean`, the inverse of [`Scaling::apply`].
    ///
    /// # Errors
    /// As [`Scaling::apply`].
    pub fn invert(&self, data: ArrayView2<f64>) -> Result<Array2<f64>> {
        self.check(data.ncols())?;
        let (m, s) = (Array1::from(self.mean.clone()), Array1::from(self.std.clone()));
        Ok(&data * &s + &m)
    }

    /// The law of `(X - mean) / std` for `X ~ law`: weights unchanged, means
    /// `(m_k - mean) / std`, covariances `D^-1 C_k D^-1` with `D = diag(std)`.
    ///
    /// # Errors
    /// As [`Scaling::apply`] (dimension of the mixture).
    pub fn apply_to_mixture(&self, law: &GaussianMixture) -> Result<GaussianMixture> {
        self.check(law.dim())?;
        let means = self.apply(law.means().view())?;
        let mut covs = law.covariances();
        for mut c in covs.outer_iter_mut() {
            for ((r, col), v) in c.indexed_iter_mut() {
                *v /= self.std[r] * self.std[col];
            }
        }
        let weights = law.weights().to_vec();
        Ok(GaussianMixture::new(&weights, means.view(), covs.view())?)
    }
}

/// Shuffles the rows of `data` with `seed` and splits off a held-out part of
/// `round(holdout_fraction * n)` rows (at least 1, and at least 1 row left to
/// train on). Returns `(train, held_out)`.
///
/// # Errors
/// [`Error::InvalidArgument`] when `holdout_fraction` is not in `(0, 1)`;
/// [`Error::Data`] when `data` has fewer than 2 rows or no columns.
pub fn split(data: ArrayView2<f64>, holdout_fraction: f64, seed: u64) -> Result<(Array2<f64>, Array2<f64>)> {
    let (t, h) = split_indices(data.nrows(), holdout_fraction, seed)?;
    if data.ncols() == 0 {
        return Err(Error::data("data to split", format!("shape ({}, 0): need at least 1 column", data.nrows())));
    }
    Ok((data.select(Axis(0), &t), data.select(Axis(0), &h)))
}

/// The row indices `(train, held_out)` that [`split`] uses for `n` rows, to
/// split labels (or anything else row-aligned) the same way.
///
/// # Errors
/// As [`split`].
pub fn split_indices(n: usize, holdout_fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(holdout_fraction > 0.0 && holdout_fraction < 1.0) {
        return Err(Error::invalid("holdout_fraction", holdout_fraction, "must be in (0, 1)"));
    }
    if n < 2 {
        return Err(Error::data("data to split", format!("{n} rows: need at least 2 rows and 1 column")));
    }
    let held = ((holdout_fraction * n as f64).round() as usize).clamp(1, n - 1);
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut Rng::seed_from_u64(seed));
    let t = idx.split_off(held);
    Ok((t, idx))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_list_the_valid_ones() {
        for t in Toy::ALL {
            assert_eq!(t.name().parse::<Toy>().unwrap(), t);
            assert_eq!(t.to_string(), t.name());
        }
        assert_eq!(Toy::from_name("Two_Moons").unwrap(), Toy::TwoMoons);
        let e = Toy::from_name("spirals").unwrap_err().to_string();
        assert!(e.contains("spirals") && e.contains("eight-gaussians") && e.contains("mixture"), "{e}");
    }

    #[test]
    fn serde_names_are_kebab_case() {
        assert_eq!(serde_json::to_string(&Toy::EightGaussians).unwrap(), "\"eight-gaussians\"");
        assert_eq!(serde_json::from_str::<Toy>("\"swiss-roll\"").unwrap(), Toy::SwissRoll);
    }

    #[test]
    fn fingerprint_sees_values_shape_and_order() {
        let x = Array2::from_shape_fn((3, 2), |(i, j)| (2 * i + j) as f64 / 3.0);
        let f = fingerprint(x.view());
        assert_eq!(f.len(), 64);
        assert_eq!(f, fingerprint(x.clone().view()));
        assert_eq!(f, fingerprint(x.clone().reversed_axes().t()), "the layout does not matter");
        let mut y = x.clone();
        y[[2, 1]] = f64::from_bits(y[[2, 1]].to_bits() + 1);
        assert_ne!(f, fingerprint(y.view()), "one ulp");
        assert_ne!(f, fingerprint(x.view().into_shape_with_order((2, 3)).unwrap()), "the shape");
        assert_ne!(f, fingerprint(x.slice(ndarray::s![..;-1, ..])), "the row order");
    }

    #[test]
    fn split_sizes() {
        let x = Array2::from_shape_fn((10, 2), |(i, j)| (2 * i + j) as f64);
        let (tr, ho) = split(x.view(), 0.25, 1).unwrap();
        assert_eq!((tr.nrows(), ho.nrows()), (7, 3));
        // Tiny fractions still hold out one row, large ones keep one to train on.
        assert_eq!(split(x.view(), 1e-6, 1).unwrap().1.nrows(), 1);
        assert_eq!(split(x.view(), 0.999, 1).unwrap().0.nrows(), 1);
        // A permutation: every row once.
        let mut firsts: Vec<f64> = tr.column(0).iter().chain(ho.column(0).iter()).copied().collect();
        firsts.sort_by(f64::total_cmp);
        assert_eq!(firsts, (0..10).map(|i| 2.0 * i as f64).collect::<Vec<_>>());
        for f in [0.0, 1.0, f64::NAN, -0.5] {
            assert!(matches!(split(x.view(), f, 0), Err(Error::InvalidArgument { .. })), "{f}");
        }
        assert!(matches!(split(x.slice(ndarray::s![..1, ..]), 0.5, 0), Err(Error::Data { .. })));
    }
}
