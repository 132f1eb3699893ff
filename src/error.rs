//! The error type of the `scoresde` crate.
//!
//! Solver-core errors ([`scoresde_solvers::Error`]) and libtorch errors
//! ([`tch::TchError`]) convert into [`Error`] with `?`.

use std::path::{Path, PathBuf};

/// Everything that can go wrong in `scoresde` outside the solver core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error from the numerical core (`scoresde-solvers`).
    #[error(transparent)]
    Solver(#[from] scoresde_solvers::Error),
    /// Drawing or writing a figure failed.
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
    /// An error raised by libtorch through `tch`.
    #[error("libtorch: {0}")]
    Tch(#[from] tch::TchError),
    /// Reading or writing a file failed. The message names the path; the
    /// operating system's reason is the [`source`](std::error::Error::source)
    /// (printed once by error reporters that walk the chain, e.g. `{:#}` of anyhow).
    #[error("I/O error on {}", path.display())]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An argument (command-line option, configuration value, ...) is invalid.
    #[error("invalid argument `{name}` = {value:?}: {reason}")]
    InvalidArgument {
        /// The argument's name.
        name: String,
        /// The value given.
        value: String,
        /// What is wrong with it, or what is accepted.
        reason: String,
    },
    /// A checkpoint could not be used: not a scoresde checkpoint, truncated or
    /// corrupt, another format version, or tensors that do not fit its architecture.
    #[error("checkpoint {}: {reason}", path.display())]
    Checkpoint {
        /// The weights file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A TorchScript model could not be loaded or called, or returned an unusable
    /// output (see [`crate::torchscript`]).
    #[error("TorchScript model {}: {reason}", path.display())]
    Model {
        /// The module file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A data set or data file is unusable: not a `.npy` file, an unsupported
    /// element type, the wrong number of dimensions, no rows or columns, or
    /// NaN/infinite values.
    #[error("invalid data in {what}: {reason}")]
    Data {
        /// Which data: a file path, or a description such as "training data".
        what: String,
        /// What is wrong, and where (row/column) when it is about one value.
        reason: String,
    },
    /// A run folder is held by another process (an advisory lock, released
    /// when that process ends, however it ends).
    #[error("{} is in use by another scoresde process{}: wait for it to end, or use another folder", path.display(), pid_text(*pid))]
    Busy {
        /// The folder.
        path: PathBuf,
        /// The process holding it, when known.
        pid: Option<u32>,
    },
    /// A compute device was asked for that this machine or libtorch install cannot provide.
    #[error("device `{spec}` is not available: {reason}")]
    DeviceUnavailable {
        /// The device as asked for (`cuda`, `cuda:1`, ...).
        spec: String,
        /// Why it cannot be used.
        reason: String,
    },
}

fn pid_text(pid: Option<u32>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}

/// Result alias of the `scoresde` crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Shorthand for [`Error::Io`].
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), source }
    }

    /// Shorthand for [`Error::Data`].
    pub fn data(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Data { what: what.into(), reason: reason.into() }
    }

    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(name: impl Into<String>, value: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        Error::InvalidArgument { name: name.into(), value: value.to_string(), reason: reason.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_and_messages() {
        let e: Error = scoresde_solvers::Error::InvalidSteps { steps: 0, reason: "must be > 0" }.into();
        assert!(matches!(e, Error::Solver(_)));
        assert_eq!(e.to_string(), "invalid step count 0: must be > 0");

        let e = Error::io("/no/such/file", std::io::Error::from(std::io::ErrorKind::NotFound));
        // The reason is the source, not repeated in the message.
        assert_eq!(e.to_string(), "I/O error on /no/such/file");
        let reason = std::error::Error::source(&e).unwrap().to_string();
        assert!(!reason.is_empty() && !e.to_string().contains(&reason));

        let e = Error::data("x.npy", "value NaN at row 2, column 0");
        assert_eq!(e.to_string(), "invalid data in x.npy: value NaN at row 2, column 0");

        let e = Error::invalid("device", "tpu", "expected auto, cpu, cuda or cuda:N");
        assert_eq!(e.to_string(), "invalid argument `device` = \"tpu\": expected auto, cpu, cuda or cuda:N");
    }
}
