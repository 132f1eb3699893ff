//! Data sets: 2-D toy sets generated in code, the image sets `mnist` and
//! `digits` ([`ImageSet`]), user data and labels from `.npy` files,
//! per-dimension standardisation or pixel-range scaling, and train/held-out splits.
//!
//! Every data set is an `(n, d)` array of `f64`, one sample per row; images
//! are flattened row-major, and their per-sample shape `[C, H, W]` travels
//! beside the rows in a [`Dataset`]. All entry points that take user data run
//! [`validate`], so a NaN, an infinity or an empty array is reported once,
//! with where it is, as [`Error::Data`].
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

use ndarray::{Array1, Array2, Array3, ArrayBase, ArrayD, ArrayView2, Axis, Ix2};
use ndarray_npy::{ReadNpyError, ReadNpyExt, WritableElement, WriteNpyExt};
use rand::seq::SliceRandom;
use rand::{Rng as _, SeedableRng};
use rand_distr::StandardNormal;
use scoresde_solvers::score::GaussianMixture;
use scoresde_solvers::Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

mod images;
pub use images::{ImageSet, DATA_DIR_ENV};

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

/// Where training data comes from: a toy set generated in code, an image set
/// the set-up fetched, or a `.npy` file.
///
/// Parsed from a string (`"two-moons"`, `"mnist"`, `"data/x.npy"`): a toy
/// name first, then an image-set name, then a path ending in `.npy` that must exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// A toy set, sampled with [`Toy::sample`].
    Toy(Toy),
    /// An image set, read with [`ImageSet::load`].
    Images(ImageSet),
    /// A `.npy` file of rows `[n, d]` or images `[n, H, W]` / `[n, C, H, W]`,
    /// read with [`load_npy_data`].
    Npy(PathBuf),
}

impl DataSource {
    /// Parses `s`: a toy-set name, an image-set name, or the path of an existing `.npy` file.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the valid data sets when `s` is neither;
    /// it says so when `s` is a path that does not exist or is not a `.npy` file.
    pub fn parse(s: &str) -> Result<Self> {
        if let Ok(t) = Toy::from_name(s) {
            return Ok(DataSource::Toy(t));
        }
        if let Some(i) = ImageSet::from_name(s) {
            return Ok(DataSource::Images(i));
        }
        let path = Path::new(s);
        let is_npy = path.extension().and_then(|e| e.to_str()).is_some_and(|e| e.eq_ignore_ascii_case("npy"));
        let expected = format!(
            "expected a toy data set ({}), an image set ({}) or the path of a .npy file",
            Toy::names(),
            ImageSet::names()
        );
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

    /// The data's rows: `n` samples of a toy set drawn with `seed`, or the
    /// whole image set or `.npy` file (then `n` and `seed` are not used).
    ///
    /// # Errors
    /// As [`DataSource::load_dataset`].
    pub fn load(&self, n: usize, seed: u64) -> Result<Array2<f64>> {
        Ok(self.load_dataset(n, seed, None)?.x)
    }

    /// The data with their per-sample shape, labels when the source has them
    /// and how to scale them: `n` samples of a toy set drawn with `seed` (the
    /// same rows as [`DataSource::load`]; labelled for the sets with classes),
    /// the whole image set (labelled 0..=9), or the whole `.npy` file,
    /// labelled by the `.npy` file `labels` when given ([`load_labels`]).
    ///
    /// # Errors
    /// As [`Toy::sample`], [`ImageSet::load`], [`load_npy_data`] and
    /// [`load_labels`]; [`Error::InvalidArgument`] (`labels`) when `labels` is
    /// given for a toy or image set, which carry their own classes.
    pub fn load_dataset(&self, n: usize, seed: u64, labels: Option<&Path>) -> Result<Dataset> {
        if let (Some(l), DataSource::Toy(_) | DataSource::Images(_)) = (labels, self) {
            let own = match self {
                DataSource::Toy(t) if t.n_classes() == 0 => "",
                _ => " with its own classes",
            };
            return Err(Error::invalid(
                "labels",
                l.display(),
                format!("labels from a file are for .npy data only; --data {self} is a built-in set{own}"),
            ));
        }
        match self {
            DataSource::Toy(t) => {
                let (x, labels) = if t.n_classes() > 0 {
                    let (x, y) = t.sample_labelled(n, seed)?;
                    (x, Some(y))
                } else {
                    (t.sample(n, seed)?, None)
                };
                Ok(Dataset { shape: vec![x.ncols()], x, classes: t.n_classes(), labels, pixel_range: None })
            }
            DataSource::Images(i) => {
                let (x, y) = i.load()?;
                Ok(Dataset {
                    x,
                    shape: i.shape().to_vec(),
                    labels: Some(y),
                    classes: ImageSet::CLASSES,
                    pixel_range: Some((0.0, i.max_value())),
                })
            }
            DataSource::Npy(p) => {
                let mut data = load_npy_data(p)?;
                if let Some(l) = labels {
                    let (y, classes) = load_labels(l, data.x.nrows())?;
                    data.labels = Some(y);
                    data.classes = classes;
                }
                Ok(data)
            }
        }
    }

    /// The exact law when the source is a Gaussian-mixture toy set ([`Toy::mixture`]).
    pub fn mixture(&self) -> Option<GaussianMixture> {
        match self {
            DataSource::Toy(t) => t.mixture(),
            DataSource::Images(_) | DataSource::Npy(_) => None,
        }
    }
}

impl fmt::Display for DataSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataSource::Toy(t) => f.write_str(t.name()),
            DataSource::Images(i) => f.write_str(i.name()),
            DataSource::Npy(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A data set in memory: its rows, the shape of one sample, its labels and
/// the value range images are scaled by.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The samples, one per row (`[n, D]`); images flattened row-major
    /// (channel, then row, then column).
    pub x: Array2<f64>,
    /// The shape of one sample, whose product is `D`: `[C, H, W]` for images,
    /// `[D]` for tabular data (`[2]` for the toy sets).
    pub shape: Vec<usize>,
    /// The class of each row, in `0..classes`, when the source has labels.
    pub labels: Option<Vec<usize>>,
    /// The number of classes: 10 for the image sets, the components of a
    /// labelled toy set, largest label + 1 for a labels file; 0 without labels.
    pub classes: usize,
    /// `(min, max)` of the values when the data are images: they are scaled
    /// from it to `[-1, 1]` ([`Scaling::from_range`]). `None` for tabular
    /// data, which are standardised per column ([`Scaling::fit`]).
    pub pixel_range: Option<(f64, f64)>,
}

impl Dataset {
    /// The scaling of training rows `train` of this data set: from the pixel
    /// range to `[-1, 1]` for images, per-column standardisation otherwise.
    ///
    /// # Errors
    /// As [`Scaling::from_range`] or [`Scaling::fit`].
    pub fn scaling(&self, train: ArrayView2<f64>) -> Result<Scaling> {
        match self.pixel_range {
            Some((lo, hi)) => {
                validate(train, "data to fit the scaling on")?;
                Scaling::from_range(lo, hi, train.ncols())
            }
            None => Scaling::fit(train),
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
    hex(&h.finalize())
}

/// The SHA-256 of `bytes`, lower-case hex (as `sha256sum` prints it).
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest as _, Sha256};
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
    let bytes = read_npy_bytes(path, &what)?;
    parse_npy(&bytes, &what)
}

/// The bytes of the `.npy` file `path` (`what` in errors), after checking
/// that it is one and that its header's shape fits in it.
fn read_npy_bytes(path: &Path, what: &str) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.is_empty() {
        return Err(Error::data(what, "the file is empty (0 bytes), not a .npy file"));
    }
    if !bytes.starts_with(NPY_MAGIC) {
        return Err(Error::data(what, "not a .npy file (it does not start with the \\x93NUMPY magic string)"));
    }
    if let Some(h) = NpyHeader::parse(&bytes) {
        h.check_len(bytes.len() as u64, what)?;
    }
    Ok(bytes)
}

/// The array of a `.npy` file of element type `A` in memory, any rank;
/// `None` when the file holds another element type.
fn read_npy_as<A: ndarray_npy::ReadableElement>(bytes: &[u8], what: &str) -> Result<Option<ArrayD<A>>> {
    match ArrayD::<A>::read_npy(bytes) {
        Ok(a) => Ok(Some(a)),
        Err(ReadNpyError::WrongDescriptor(_)) => Ok(None),
        Err(e) => Err(npy_error(what, e)),
    }
}

/// The element type descriptor of a `.npy` file, for error messages.
fn npy_descr(bytes: &[u8]) -> String {
    NpyHeader::parse(bytes).and_then(|h| h.descr).unwrap_or_else(|| "(unreadable)".into())
}

/// Reads a 1-D `.npy` file of `float64` or `float32` values (converted to `f64`), such as a
/// diffusion schedule's betas or `alphas_cumprod` (`numpy.save("abar.npy", alphas_cumprod)`).
/// Values are returned as stored; NaN is left to the caller's validation, which names the index.
///
/// # Errors
/// As [`load_npy`], except that the array must be 1-D (the message gives the rank and shape).
pub fn load_npy_vector(path: impl AsRef<Path>) -> Result<Vec<f64>> {
    let path = path.as_ref();
    let what = path.display().to_string();
    let bytes = read_npy_bytes(path, &what)?;
    let a = if let Some(a) = read_npy_as::<f64>(&bytes, &what)? {
        a
    } else if let Some(a) = read_npy_as::<f32>(&bytes, &what)? {
        a.mapv(f64::from)
    } else {
        return Err(Error::data(
            &what,
            format!("unsupported element type {}; expected float64 ('<f8') or float32 ('<f4')", npy_descr(&bytes)),
        ));
    };
    if a.ndim() != 1 {
        return Err(Error::data(
            &what,
            format!("expected a 1-D array (a schedule table); got a {}-D array of shape {:?}", a.ndim(), a.shape()),
        ));
    }
    Ok(a.iter().copied().collect())
}

/// Reads a data `.npy` file: rows `[n, d]` (tabular, `float64`/`float32`;
/// `uint8` counts as pixels), or images `[n, H, W]` (one channel) or
/// `[n, C, H, W]` of `uint8`, `float32` or `float64`, flattened row-major to
/// `[n, C*H*W]` with the shape `[C, H, W]` recorded. Little- or big-endian,
/// C or Fortran order. The [`Dataset::pixel_range`] is `(0, 255)` for
/// `uint8`, the data's overall `(min, max)` for float images, and `None`
/// for float rows (standardised per column). No labels.
///
/// # Errors
/// As [`load_npy`], except that ranks 2 to 4 and `uint8` are accepted: the
/// message gives a 1-D or 5-D array's rank, and another element type's descriptor.
pub fn load_npy_data(path: impl AsRef<Path>) -> Result<Dataset> {
    let path = path.as_ref();
    let what = path.display().to_string();
    let bytes = read_npy_bytes(path, &what)?;
    let (a, pixels) = if let Some(a) = read_npy_as::<f64>(&bytes, &what)? {
        (a, false)
    } else if let Some(a) = read_npy_as::<f32>(&bytes, &what)? {
        (a.mapv(f64::from), false)
    } else if let Some(a) = read_npy_as::<u8>(&bytes, &what)? {
        (a.mapv(f64::from), true)
    } else {
        return Err(Error::data(
            &what,
            format!(
                "unsupported element type {}; expected float64 ('<f8'), float32 ('<f4') or uint8 ('|u1')",
                npy_descr(&bytes)
            ),
        ));
    };
    let dims = a.shape().to_vec();
    let shape = match dims.as_slice() {
        [_, d] => vec![*d],
        [_, h, w] => vec![1, *h, *w],
        [_, c, h, w] => vec![*c, *h, *w],
        _ => {
            let (got, hint) = (dims.len(), rank_hint(dims.len()));
            return Err(Error::data(
                &what,
                format!("expected a 2-D array [n, d] (rows = samples), or images [n, H, W] or [n, C, H, W]; got a {got}-D array of shape {dims:?}{hint}"),
            ));
        }
    };
    let (n, d) = (dims[0], shape.iter().product::<usize>());
    let x = a
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((n, d))
        .map_err(|e| Error::data(&what, format!("cannot flatten shape {dims:?}: {e}")))?;
    validate(x.view(), &what)?;
    let pixel_range = if pixels {
        Some((0.0, f64::from(u8::MAX)))
    } else if dims.len() > 2 {
        Some(x.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v))))
    } else {
        None
    };
    Ok(Dataset { x, shape, labels: None, classes: 0, pixel_range })
}

/// Most classes a labels file may define (labels `0..MAX_CLASSES`).
pub const MAX_CLASSES: usize = 10_000;

/// Reads the labels of `rows` rows of data from a `.npy` file: shape `[n]`
/// or `[n, 1]`, integers (`int64`, `int32`, `uint8`) or floats with integral
/// values, each in `0..K` where `K - 1` is the largest label and `K <=`
/// [`MAX_CLASSES`]. Returns the labels and `K`.
///
/// # Errors
/// [`Error::Data`] naming the file when it is not a readable `.npy` file,
/// holds another element type or rank, has another count than `rows`, or
/// holds a label that is negative, not an integer or too large (the message
/// gives its index and value); [`Error::Io`] when it cannot be read.
pub fn load_labels(path: impl AsRef<Path>, rows: usize) -> Result<(Vec<usize>, usize)> {
    let path = path.as_ref();
    let what = path.display().to_string();
    let bytes = read_npy_bytes(path, &what)?;
    let values: ArrayD<f64> = if let Some(a) = read_npy_as::<i64>(&bytes, &what)? {
        a.mapv(|v| v as f64)
    } else if let Some(a) = read_npy_as::<i32>(&bytes, &what)? {
        a.mapv(f64::from)
    } else if let Some(a) = read_npy_as::<u8>(&bytes, &what)? {
        a.mapv(f64::from)
    } else if let Some(a) = read_npy_as::<f64>(&bytes, &what)? {
        a
    } else if let Some(a) = read_npy_as::<f32>(&bytes, &what)? {
        a.mapv(f64::from)
    } else {
        return Err(Error::data(
            &what,
            format!(
                "unsupported element type {} for labels; expected integers (int64, int32, uint8) or integral floats",
                npy_descr(&bytes)
            ),
        ));
    };
    let dims = values.shape().to_vec();
    if !matches!(dims.as_slice(), [_] | [_, 1]) {
        return Err(Error::data(&what, format!("labels must be a 1-D array [n] (or [n, 1]); got shape {dims:?}")));
    }
    if dims[0] != rows {
        return Err(Error::data(
            &what,
            format!("{} labels for {rows} rows of data: need exactly one label per row", dims[0]),
        ));
    }
    let mut labels = Vec::with_capacity(rows);
    for (i, &v) in values.iter().enumerate() {
        let bad = |why: &str| {
            Error::data(&what, format!("label {v} at index {i} {why}; labels are classes 0..K-1 (K <= {MAX_CLASSES})"))
        };
        if !(v.is_finite() && v.fract() == 0.0) {
            return Err(bad("is not an integer"));
        }
        if v < 0.0 {
            return Err(bad("is negative"));
        }
        if v >= MAX_CLASSES as f64 {
            return Err(bad("is out of range"));
        }
        labels.push(v as usize);
    }
    let classes = labels.iter().max().map_or(0, |m| m + 1);
    Ok((labels, classes))
}

/// The array of a whole `.npy` file in memory, [`validate`]d.
fn parse_npy(bytes: &[u8], what: &str) -> Result<Array2<f64>> {
    let data = match Array2::<f64>::read_npy(bytes) {
        Ok(a) => a,
        Err(ReadNpyError::WrongDescriptor(_)) => match Array2::<f32>::read_npy(bytes) {
            Ok(a) => a.mapv(f64::from),
            Err(e) => return Err(npy_error(what, e)),
        },
        Err(e) => return Err(npy_error(what, e)),
    };
    validate(data.view(), what)?;
    Ok(data)
}

/// The first `max_rows` rows of a 2-D `.npy` file and its total number of
/// rows, reading only those rows from disk when the file is in C order (a
/// Fortran-order file is read whole). For figures and metrics of sample files
/// too large to hold.
///
/// # Errors
/// As [`load_npy`] (the finiteness check covers the rows read).
pub fn load_npy_head(path: impl AsRef<Path>, max_rows: usize) -> Result<(Array2<f64>, usize)> {
    use std::io::{Read as _, Seek as _};
    let path = path.as_ref();
    let what = path.display().to_string();
    let whole = || -> Result<(Array2<f64>, usize)> {
        let x = load_npy(path)?;
        let rows = x.nrows();
        Ok((x.slice_move(ndarray::s![..rows.min(max_rows), ..]), rows))
    };
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    // The magic, version and length fields, then the header itself.
    let mut head = vec![0u8; 12];
    if file.read_exact(&mut head).is_err() || !head.starts_with(NPY_MAGIC) {
        return whole();
    }
    let header_len = match head[6] {
        1 => 10 + u16::from_le_bytes([head[8], head[9]]) as usize,
        2 | 3 => 12 + u32::from_le_bytes([head[8], head[9], head[10], head[11]]) as usize,
        _ => return whole(),
    };
    if header_len as u64 > len {
        return whole();
    }
    head.resize(header_len, 0);
    file.read_exact(&mut head[12.min(header_len)..]).map_err(|e| Error::io(path, e))?;
    let Some(h) = NpyHeader::parse(&head) else { return whole() };
    let (Some(item), Some(descr), [rows, cols]) = (h.item, h.descr.as_deref(), h.shape.as_slice()) else {
        return whole();
    };
    if h.fortran || *rows <= max_rows as u64 {
        return whole();
    }
    h.check_len(len, &what)?;
    let keep = (max_rows as u64).saturating_mul(*cols).saturating_mul(item);
    let dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({max_rows}, {cols})}}");
    let total = (10 + dict.len() + 1).div_ceil(64) * 64;
    let mut bytes = Vec::with_capacity(total + keep as usize);
    bytes.extend_from_slice(NPY_MAGIC);
    bytes.extend_from_slice(&[1, 0]);
    bytes.extend_from_slice(&u16::try_from(total - 10).unwrap_or(u16::MAX).to_le_bytes());
    bytes.extend_from_slice(dict.as_bytes());
    bytes.resize(total - 1, b' ');
    bytes.push(b'\n');
    file.seek(std::io::SeekFrom::Start(h.data_start as u64)).map_err(|e| Error::io(path, e))?;
    file.take(keep).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    let x = parse_npy(&bytes, &what)?;
    Ok((x, usize::try_from(*rows).unwrap_or(usize::MAX)))
}

/// What a `.npy` header announces, read without allocating anything the
/// size of the data: the shape, the element size when the type descriptor
/// names one (`'<f8'`: 8), and where the data starts.
struct NpyHeader {
    shape: Vec<u64>,
    item: Option<u64>,
    /// The type descriptor when it is a plain string (`<f8`).
    descr: Option<String>,
    fortran: bool,
    data_start: usize,
}

impl NpyHeader {
    /// The header of `bytes`; `None` when it cannot be read (`ndarray-npy`
    /// then says what is wrong with it).
    fn parse(bytes: &[u8]) -> Option<Self> {
        let version = *bytes.get(NPY_MAGIC.len())?;
        let (len, start): (usize, usize) = match version {
            1 => (u16::from_le_bytes(bytes.get(8..10)?.try_into().ok()?) as usize, 10),
            2 | 3 => (u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize, 12),
            _ => return None,
        };
        let data_start = start.checked_add(len)?;
        let text = std::str::from_utf8(bytes.get(start..data_start)?).ok()?;
        let after = |key: &str| text.find(&format!("'{key}'")).map(|i| &text[i + key.len() + 2..]);
        let shape = after("shape")?;
        let (open, close) = (shape.find('(')?, shape.find(')')?);
        let shape = shape
            .get(open + 1..close)?
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(|d| d.parse::<u64>().ok())
            .collect::<Option<Vec<u64>>>()?;
        let descr = after("descr").and_then(|d| {
            let d = d.trim_start_matches([':', ' ']).strip_prefix('\'')?;
            Some(d[..d.find('\'')?].to_string())
        });
        // The size is the descriptor's trailing digits: '<f8', '|u1', ...
        let item = descr.as_deref().and_then(|d| {
            let digits = d.trim_start_matches(|c: char| !c.is_ascii_digit());
            digits.parse::<u64>().ok().filter(|&s| s > 0)
        });
        let fortran = after("fortran_order").is_some_and(|f| f.trim_start_matches([':', ' ']).starts_with("True"));
        Some(Self { shape, item, descr, fortran, data_start })
    }

    /// Checks the shape against a file of `file_len` bytes, so that a header
    /// claiming more data than the file holds is an error rather than an
    /// allocation of that size.
    fn check_len(&self, file_len: u64, what: &str) -> Result<()> {
        let shape = format!("({})", self.shape.iter().map(u64::to_string).collect::<Vec<_>>().join(", "));
        // An unknown element type is at least one byte.
        let need = self.shape.iter().try_fold(self.item.unwrap_or(1), |acc, &d| acc.checked_mul(d));
        let have = file_len.saturating_sub(self.data_start as u64);
        match need {
            None => Err(Error::data(what, format!("corrupt: the header's shape {shape} overflows"))),
            Some(need) if need > have => Err(Error::data(
                what,
                format!(
                    "truncated: the header's shape {shape} needs {need} bytes of data but the file holds {have} after its header"
                ),
            )),
            Some(_) => Ok(()),
        }
    }
}

/// What to do about a data file of rank `rank` when it is 1 (else nothing).
fn rank_hint(rank: usize) -> &'static str {
    if rank == 1 {
        " (a 1-D array of n values is one dimension: save it with shape (n, 1))"
    } else {
        ""
    }
}

/// A clear message for an `ndarray-npy` read error.
fn npy_error(what: &str, e: ReadNpyError) -> Error {
    let reason = match e {
        ReadNpyError::WrongDescriptor(descr) => {
            format!("unsupported element type {descr}; expected float64 ('<f8') or float32 ('<f4')")
        }
        ReadNpyError::WrongNdim(_, got) => {
            let hint = rank_hint(got);
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

/// Size in bytes of the `float64` `.npy` file of `rows` x `cols` that
/// [`NpyWriter`] writes (header included); `None` when it overflows.
pub fn npy_file_bytes(rows: u64, cols: usize) -> Option<u64> {
    let header = npy_header_bytes(rows, cols).len() as u64;
    rows.checked_mul(cols as u64)?.checked_mul(8)?.checked_add(header)
}

/// The version 1.0 header of a C-order `float64` array of shape `(rows, cols)`,
/// padded with spaces to a multiple of 64 bytes, byte for byte as [`save_npy`] writes it.
fn npy_header_bytes(rows: u64, cols: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': ({rows}, {cols})}}");
    // magic (6) + version (2) + length (2) + dict + padding + newline
    let total = (10 + dict.len() + 1).div_ceil(64) * 64;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(NPY_MAGIC);
    out.extend_from_slice(&[1, 0]);
    // The dict of two integers is far below the 64 KiB a version 1.0 header allows.
    out.extend_from_slice(&((total - 10) as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out.resize(total - 1, b' ');
    out.push(b'\n');
    out
}

/// Writes a `float64` `.npy` file of a shape known in advance, block of rows
/// by block of rows, in memory bounded by one block: the header with the final
/// shape first, then each [`NpyWriter::append`]ed block.
///
/// Everything goes to a temporary file beside the target, renamed into place by
/// [`NpyWriter::finish`] once every row is written: a run that fails or is
/// stopped halfway leaves no file (and no partial one) under the final name,
/// and an older file there untouched. Dropping the writer before `finish`
/// removes the temporary file.
///
/// ```
/// use scoresde::data::{load_npy, NpyWriter};
/// let path = std::env::temp_dir().join(format!("npywriter-doc-{}.npy", std::process::id()));
/// let mut w = NpyWriter::create(&path, 3, 2)?;
/// w.append(ndarray::array![[1.0, 2.0], [3.0, 4.0]].view())?;
/// w.append(ndarray::array![[5.0, 6.0]].view())?;
/// w.finish()?;
/// assert_eq!(load_npy(&path)?, ndarray::array![[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]);
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), scoresde::Error>(())
/// ```
#[derive(Debug)]
pub struct NpyWriter {
    path: PathBuf,
    tmp: PathBuf,
    file: Option<std::io::BufWriter<std::fs::File>>,
    rows: u64,
    cols: usize,
    written: u64,
}

impl NpyWriter {
    /// Starts the file of `rows` x `cols` values at `path`, creating missing
    /// parent folders.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no rows or columns or a path without a
    /// file name; [`Error::Io`] when the folder or the temporary file cannot be made.
    pub fn create(path: impl AsRef<Path>, rows: u64, cols: usize) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if path.file_name().is_none() {
            return Err(Error::invalid("path", path.display(), "not a file name"));
        }
        if rows == 0 || cols == 0 {
            return Err(Error::invalid("shape", format!("({rows}, {cols})"), "need at least one row and one column"));
        }
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let tmp = crate::fsutil::temp_path(&path);
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let mut w = Self { path, tmp, file: Some(std::io::BufWriter::new(file)), rows, cols, written: 0 };
        w.write(&npy_header_bytes(rows, cols))?;
        Ok(w)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        use std::io::Write as _;
        let file =
            self.file.as_mut().ok_or_else(|| Error::data(self.path.display().to_string(), "already finished"))?;
        file.write_all(bytes).map_err(|e| Error::io(&self.tmp, e))
    }

    /// Rows appended so far.
    pub fn rows_written(&self) -> u64 {
        self.written
    }

    /// Appends a block of rows.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a block of another width or one that
    /// goes past the announced row count; [`Error::Io`] for the write.
    pub fn append(&mut self, block: ArrayView2<f64>) -> Result<()> {
        if block.ncols() != self.cols {
            return Err(Error::invalid(
                "block",
                format!("{} columns", block.ncols()),
                format!("{} has {} columns", self.path.display(), self.cols),
            ));
        }
        let end = self.written + block.nrows() as u64;
        if end > self.rows {
            return Err(Error::invalid(
                "block",
                format!("{} rows", block.nrows()),
                format!("{} holds {} rows and {} are written", self.path.display(), self.rows, self.written),
            ));
        }
        let bytes: Vec<u8> = block.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.write(&bytes)?;
        self.written = end;
        Ok(())
    }

    /// Flushes the file to disk and renames it into place.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when fewer rows were appended than announced
    /// (the temporary file is removed); [`Error::Io`] for the flush or the rename.
    pub fn finish(mut self) -> Result<PathBuf> {
        if self.written != self.rows {
            return Err(Error::invalid(
                "rows",
                self.written,
                format!("{} announces {} rows", self.path.display(), self.rows),
            ));
        }
        let file = self.file.take().ok_or_else(|| Error::data(self.path.display().to_string(), "already finished"))?;
        let file = file.into_inner().map_err(|e| Error::io(&self.tmp, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.tmp, e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(self.path.clone())
    }
}

impl Drop for NpyWriter {
    fn drop(&mut self) {
        // Not finished (or the rename failed): the temporary file goes.
        if self.tmp.exists() {
            self.file = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Per-column `min` and `max` of a data set, kept with a model (serde) to
/// tell how far its samples stray from the data; see [`RangeReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataRange {
    /// Per-column minimum.
    pub min: Vec<f64>,
    /// Per-column maximum.
    pub max: Vec<f64>,
}

impl DataRange {
    /// The per-column range of `data`.
    ///
    /// # Errors
    /// As [`validate`].
    pub fn fit(data: ArrayView2<f64>) -> Result<Self> {
        validate(data, "data to take the range of")?;
        let col = |f: fn(f64, f64) -> f64, init: f64| -> Vec<f64> {
            data.axis_iter(Axis(1)).map(|c| c.iter().copied().fold(init, f)).collect()
        };
        Ok(Self { min: col(f64::min, f64::INFINITY), max: col(f64::max, f64::NEG_INFINITY) })
    }

    /// The dimension.
    pub fn dim(&self) -> usize {
        self.min.len()
    }

    /// Checks itself (it may come from a file): one finite `min <= max` per column.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] saying what is wrong.
    pub fn check(&self) -> Result<()> {
        if self.min.len() != self.max.len() {
            return Err(Error::invalid(
                "range",
                format!("{} minima, {} maxima", self.min.len(), self.max.len()),
                "need one minimum and one maximum per column",
            ));
        }
        if let Some(j) = (0..self.dim()).find(|&j| !(self.min[j].is_finite() && self.min[j] <= self.max[j])) {
            return Err(Error::invalid(
                "range",
                format!("[{}, {}]", self.min[j], self.max[j]),
                format!("column {j}: need finite min <= max"),
            ));
        }
        Ok(())
    }

    /// Centre and half-width of column `j`; a constant column gets a tiny
    /// positive half-width, so any other value counts as outside.
    fn centre_half(&self, j: usize) -> (f64, f64) {
        let c = 0.5 * (self.min[j] + self.max[j]);
        let h = 0.5 * (self.max[j] - self.min[j]);
        (c, h.max(1e-12 * c.abs().max(1.0)))
    }
}

/// How many rows of a (possibly streamed) sample fall outside a [`DataRange`],
/// and how far: a value's *factor* is its distance from its column's centre
/// in units of the column's half-width, so `1` is the edge of the data and
/// `10` is ten times as far out.
///
/// ```
/// use scoresde::data::{DataRange, RangeReport};
/// let range = DataRange { min: vec![-1.0, 0.0], max: vec![1.0, 2.0] };
/// let mut report = RangeReport::new(range);
/// report.add(ndarray::array![[0.5, 1.0], [3.0, 1.0], [0.0, -9.0]].view())?;
/// assert_eq!((report.rows(), report.outside()), (3, 2));
/// assert_eq!(report.max_factor(), 10.0); // -9 is 10 half-widths below the centre 1
/// # Ok::<(), scoresde::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct RangeReport {
    range: DataRange,
    rows: u64,
    outside: u64,
    /// The largest factor seen and its column.
    worst: (f64, usize),
}

impl RangeReport {
    /// An empty report against `range`.
    pub fn new(range: DataRange) -> Self {
        Self { range, rows: 0, outside: 0, worst: (0.0, 0) }
    }

    /// Counts the rows of `x`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `x` has another number of columns than the range.
    pub fn add(&mut self, x: ArrayView2<f64>) -> Result<()> {
        if x.ncols() != self.range.dim() {
            return Err(Error::invalid(
                "samples",
                format!("{} columns", x.ncols()),
                format!("the data range has {} columns", self.range.dim()),
            ));
        }
        let ch: Vec<(f64, f64)> = (0..self.range.dim()).map(|j| self.range.centre_half(j)).collect();
        for row in x.rows() {
            let mut row_worst = (0.0f64, 0usize);
            for (j, (&v, &(c, h))) in row.iter().zip(&ch).enumerate() {
                // NaN counts as infinitely far.
                let f = if v.is_nan() { f64::INFINITY } else { (v - c).abs() / h };
                if f > row_worst.0 {
                    row_worst = (f, j);
                }
            }
            if row_worst.0 > 1.0 {
                self.outside += 1;
            }
            if row_worst.0 > self.worst.0 {
                self.worst = row_worst;
            }
        }
        self.rows += x.nrows() as u64;
        Ok(())
    }

    /// Rows counted.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Rows with some value outside the range.
    pub fn outside(&self) -> u64 {
        self.outside
    }

    /// The largest factor of any value (`<= 1` when every row is inside).
    pub fn max_factor(&self) -> f64 {
        self.worst.0
    }

    /// The column of the largest factor.
    pub fn worst_column(&self) -> usize {
        self.worst.1
    }

    /// The range counted against.
    pub fn range(&self) -> &DataRange {
        &self.range
    }
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

    /// The map of values in `[lo, hi]` onto `[-1, 1]` in each of `d`
    /// dimensions: mean `(lo + hi) / 2`, scale `(hi - lo) / 2` (scale 1 when
    /// `hi = lo`, so a constant maps to 0). Images are scaled this way by
    /// their pixel range (`0..=255` maps `0` to `-1` and `255` to `1` exactly).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `lo` or `hi` is not finite or `lo > hi`.
    pub fn from_range(lo: f64, hi: f64, d: usize) -> Result<Self> {
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(Error::invalid("range", format!("[{lo}, {hi}]"), "need finite min <= max"));
        }
        let half = 0.5 * hi - 0.5 * lo;
        let std = if half > 0.0 { half } else { 1.0 };
        Ok(Self { mean: vec![0.5 * lo + 0.5 * hi; d], std: vec![std; d] })
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

/// Fewest training rows `scoresde train` accepts: below this a network
/// memorises its few points and the scaling is fitted on next to nothing.
pub const MIN_TRAIN_ROWS: usize = 10;
/// Fewest held-out rows `scoresde train` accepts (sample metrics such as the
/// unbiased MMD need two).
pub const MIN_HELDOUT_ROWS: usize = 2;

/// The sizes `(train, held_out)` of the [`split`] of `n` rows.
///
/// # Errors
/// As [`split`].
pub fn split_sizes(n: usize, holdout_fraction: f64) -> Result<(usize, usize)> {
    if !(holdout_fraction > 0.0 && holdout_fraction < 1.0) {
        return Err(Error::invalid("holdout_fraction", holdout_fraction, "must be in (0, 1)"));
    }
    if n < 2 {
        return Err(Error::data("data to split", format!("{n} rows: need at least 2 rows and 1 column")));
    }
    let held = ((holdout_fraction * n as f64).round() as usize).clamp(1, n - 1);
    Ok((n - held, held))
}

/// The row indices `(train, held_out)` that [`split`] uses for `n` rows, to
/// split labels (or anything else row-aligned) the same way.
///
/// # Errors
/// As [`split`].
pub fn split_indices(n: usize, holdout_fraction: f64, seed: u64) -> Result<(Vec<usize>, Vec<usize>)> {
    let (_, held) = split_sizes(n, holdout_fraction)?;
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
