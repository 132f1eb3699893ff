//! Discrete DDPM schedules from files: a table of betas or of `alphas_cumprod` in a 1-D
//! `.npy` file (`numpy.save`) or a JSON array of numbers, made into a
//! [`DiscreteVp`](crate::solvers::DiscreteVp) (see [`crate::solvers::discrete`] for the
//! schedule, its time conventions and diffusers' grids).
//!
//! From a diffusers scheduler, `numpy.save("abar.npy", scheduler.alphas_cumprod.double().numpy())`
//! or `json.dump(scheduler.alphas_cumprod.tolist(), f)` gives the float32 table diffusers
//! samples with, bit for bit.

use std::path::Path;

use crate::data::load_npy_vector;
use crate::error::{Error, Result};
use crate::solvers::DiscreteVp;

/// What a schedule file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum TableKind {
    /// `beta_i`, `i = 0 .. N-1`.
    Betas,
    /// `alphabar_i = prod_{j <= i} (1 - beta_j)` (diffusers' `alphas_cumprod`).
    AlphasCumprod,
}

/// The numbers of a schedule file: `.npy` (1-D, float64 or float32) or `.json` (an array of
/// numbers), chosen by the extension.
///
/// # Errors
/// [`Error::Io`] when the file cannot be read; [`Error::Data`] naming the file for another
/// extension, a `.npy` file that is not 1-D floats, or JSON that is not an array of numbers.
pub fn load_table(path: impl AsRef<Path>) -> Result<Vec<f64>> {
    let path = path.as_ref();
    let what = path.display().to_string();
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("npy") => load_npy_vector(path),
        Some("json") => {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            serde_json::from_str::<Vec<f64>>(&text)
                .map_err(|e| Error::data(&what, format!("expected a JSON array of numbers (a schedule table): {e}")))
        }
        _ => Err(Error::data(&what, "a schedule table must be a .npy or .json file")),
    }
}

/// A [`DiscreteVp`] from a schedule file holding `kind`.
///
/// # Errors
/// As [`load_table`]; [`Error::Solver`] when the table is not a schedule (fewer than 2 entries,
/// values outside `(0, 1)` or NaN, `alphas_cumprod` not strictly decreasing; the message gives the index).
pub fn load_schedule(path: impl AsRef<Path>, kind: TableKind) -> Result<DiscreteVp> {
    let table = load_table(path)?;
    Ok(match kind {
        TableKind::Betas => DiscreteVp::from_betas(&table)?,
        TableKind::AlphasCumprod => DiscreteVp::from_alphas_cumprod(&table)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::solvers::Sde;
    use ndarray::Array1;
    use ndarray_npy::WriteNpyExt;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("scoresde-schedule-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn npy_and_json_tables_load_and_bad_files_are_errors() {
        let betas = [1e-4, 0.01, 0.02, 0.2];
        let npy = temp("betas.npy");
        Array1::from(betas.to_vec()).write_npy(std::fs::File::create(&npy).unwrap()).unwrap();
        let f32_npy = temp("abar32.npy");
        let abar32: Vec<f32> = [0.9f32, 0.5, 0.1].to_vec();
        Array1::from(abar32.clone()).write_npy(std::fs::File::create(&f32_npy).unwrap()).unwrap();
        let json = temp("abar.json");
        std::fs::write(&json, "[0.9, 0.5, 0.1]").unwrap();

        let s = load_schedule(&npy, TableKind::Betas).unwrap();
        assert_eq!(s.len(), 4);
        assert!((s.alpha(1.0).powi(2) - betas.iter().map(|b| 1.0 - b).product::<f64>()).abs() < 1e-15);
        let a = load_schedule(&json, TableKind::AlphasCumprod).unwrap();
        assert_eq!(a.alphas_cumprod(), &[0.9, 0.5, 0.1]);
        let b = load_schedule(&f32_npy, TableKind::AlphasCumprod).unwrap();
        assert_eq!(b.alphas_cumprod()[1], f64::from(0.5f32));

        // Bad files: a 2-D array, a table that is no schedule, JSON of another shape, another extension.
        let two_d = temp("two_d.npy");
        ndarray::Array2::<f64>::zeros((2, 2)).write_npy(std::fs::File::create(&two_d).unwrap()).unwrap();
        let e = load_table(&two_d).unwrap_err().to_string();
        assert!(e.contains("1-D"), "{e}");
        assert!(matches!(load_schedule(&npy, TableKind::AlphasCumprod), Err(Error::Solver(_))));
        let bad_json = temp("bad.json");
        std::fs::write(&bad_json, "{\"betas\": [0.1]}").unwrap();
        assert!(matches!(load_table(&bad_json), Err(Error::Data { .. })));
        std::fs::write(&bad_json, "[0.9, NaN]").unwrap();
        assert!(load_schedule(&bad_json, TableKind::AlphasCumprod).is_err());
        assert!(matches!(load_table(temp("x.txt")), Err(Error::Data { .. })));
        assert!(matches!(load_table(temp("missing.npy")), Err(Error::Io { .. })));
    }
}
