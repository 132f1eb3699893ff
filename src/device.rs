//! Choosing the compute device, and making CUDA visible to libtorch.
//!
//! rustc links with `--as-needed`, which drops `libtorch_cuda.so` from the
//! binary because no symbol of it is referenced directly. libtorch then never
//! registers its CUDA backend and `tch::Cuda::is_available()` is `false` even
//! on a GPU machine. [`init_cuda`] loads that library at run time when it is
//! present next to `libtorch_cpu.so`, so one binary runs on CPU with the small
//! CPU install and uses the GPU where the full install is present.
//! [`select`] calls it before deciding.

use std::path::PathBuf;
use std::sync::OnceLock;

use tch::{Cuda, Device};

use crate::error::{Error, Result};

/// What [`init_cuda`] found, computed once per process.
#[derive(Debug, Clone)]
enum CudaLib {
    /// `libtorch_cuda.so` was already mapped (linked with `--no-as-needed`, or loaded by someone else).
    AlreadyLoaded,
    /// Loaded by us from this path.
    Loaded(PathBuf),
    /// No `libtorch_cuda.so` next to libtorch (CPU-only libtorch, or not Linux).
    Absent,
    /// The file exists but could not be loaded (typically: CUDA libraries not installed).
    Failed { path: PathBuf, message: String },
}

static CUDA_LIB: OnceLock<CudaLib> = OnceLock::new();

/// Loads `libtorch_cuda.so` from libtorch's library folder, if that file exists,
/// so that libtorch can see CUDA devices. Returns whether the library is loaded.
///
/// The folder is the one `libtorch_cpu.so` was loaded from (which follows
/// `LD_LIBRARY_PATH` and the rpath), else `$LIBTORCH/lib` as seen at build
/// time, else `$LIBTORCH/lib` at run time. Safe to call any number of times
/// from any thread; the work is done once. Never panics. A `true` result does
/// not mean a GPU is present: check [`tch::Cuda::is_available`] for that.
pub fn init_cuda() -> bool {
    matches!(cuda_lib(), CudaLib::AlreadyLoaded | CudaLib::Loaded(_))
}

/// One line saying whether libtorch's CUDA library is loaded and, if not, why;
/// for logs and `--device` diagnostics. Calls [`init_cuda`].
pub fn cuda_report() -> String {
    match cuda_lib() {
        CudaLib::AlreadyLoaded => "libtorch_cuda.so linked in".to_string(),
        CudaLib::Loaded(path) => format!("loaded {}", path.display()),
        CudaLib::Absent => "no libtorch_cuda.so next to libtorch (CPU-only libtorch)".to_string(),
        CudaLib::Failed { path, message } => format!("{} present but not loadable: {message}", path.display()),
    }
}

fn cuda_lib() -> &'static CudaLib {
    CUDA_LIB.get_or_init(load_cuda_lib)
}

#[cfg(target_os = "linux")]
fn load_cuda_lib() -> CudaLib {
    const NAME: &str = "libtorch_cuda.so";
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mapped = |file: &str| -> Option<PathBuf> {
        // Fields before the path hold no '/'; the path may contain blanks.
        maps.lines()
            .filter_map(|line| line.find('/').map(|i| PathBuf::from(&line[i..])))
            .find(|p| p.file_name().is_some_and(|n| n == file))
    };
    if mapped(NAME).is_some() {
        return CudaLib::AlreadyLoaded;
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = mapped("libtorch_cpu.so").and_then(|p| p.parent().map(PathBuf::from)) {
        dirs.push(dir);
    }
    if let Some(dir) = option_env!("LIBTORCH") {
        dirs.push(PathBuf::from(dir).join("lib"));
    }
    if let Some(dir) = std::env::var_os("LIBTORCH") {
        dirs.push(PathBuf::from(dir).join("lib"));
    }
    let Some(path) = dirs.into_iter().map(|d| d.join(NAME)).find(|p| p.is_file()) else {
        return CudaLib::Absent;
    };
    match dlopen(&path) {
        Ok(()) => CudaLib::Loaded(path),
        Err(message) => CudaLib::Failed { path, message },
    }
}

#[cfg(not(target_os = "linux"))]
fn load_cuda_lib() -> CudaLib {
    CudaLib::Absent
}

/// `dlopen(path, RTLD_NOW | RTLD_GLOBAL)`; the handle is kept for the life of the process.
#[cfg(target_os = "linux")]
fn dlopen(path: &std::path::Path) -> std::result::Result<(), String> {
    use std::ffi::{CStr, CString};
    use std::os::unix::ffi::OsStrExt;

    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| "path contains a NUL byte".to_string())?;
    // SAFETY: `c_path` is a valid NUL-terminated string. dlopen runs the
    // library's static initialisers, which only register libtorch's CUDA
    // backend. dlerror returns null or a valid C string, copied at once.
    unsafe {
        let handle = libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        if handle.is_null() {
            let err = libc::dlerror();
            let message = if err.is_null() {
                "unknown dlopen error".to_string()
            } else {
                CStr::from_ptr(err).to_string_lossy().into_owned()
            };
            return Err(message);
        }
    }
    Ok(())
}

/// Parses a device spec and returns the device, after [`init_cuda`].
///
/// * `auto`: the first CUDA device if one is usable, else the CPU;
/// * `cpu`;
/// * `cuda` (same as `cuda:0`) or `cuda:N`: an error if that CUDA device is not usable.
///
/// Case and surrounding blanks are ignored.
///
/// ```
/// let device = scoresde::device::select("cpu").unwrap();
/// assert_eq!(device, tch::Device::Cpu);
/// assert!(scoresde::device::select("tpu").is_err());
/// ```
pub fn select(spec: &str) -> Result<Device> {
    let norm = spec.trim().to_ascii_lowercase();
    let index = match norm.as_str() {
        "cpu" => return Ok(Device::Cpu),
        "auto" => {
            init_cuda();
            return Ok(if Cuda::is_available() { Device::Cuda(0) } else { Device::Cpu });
        }
        "cuda" => 0,
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(n)) => n,
            _ => return Err(Error::invalid("device", spec, "expected `auto`, `cpu`, `cuda` or `cuda:N`")),
        },
    };
    init_cuda();
    let unavailable = |reason: String| Error::DeviceUnavailable { spec: spec.trim().to_string(), reason };
    if !Cuda::is_available() {
        let why = match cuda_lib() {
            CudaLib::Absent => "this libtorch has no CUDA support (no libtorch_cuda.so; scripts/setup installs the CPU-only set unless nvidia-smi is found)".to_string(),
            CudaLib::Failed { path, message } => {
                format!("{} could not be loaded ({message}), so the CUDA libraries of the full `torch` wheel are missing", path.display())
            }
            CudaLib::AlreadyLoaded | CudaLib::Loaded(_) => {
                "libtorch has CUDA support but sees no usable GPU (driver missing or no device)".to_string()
            }
        };
        return Err(unavailable(format!("CUDA is not available: {why}; use `cpu` or `auto`")));
    }
    let count = Cuda::device_count();
    if i64::try_from(index).map_or(true, |i| i >= count) {
        return Err(unavailable(format!("only {count} CUDA device(s) visible (indices 0..{count})")));
    }
    Ok(Device::Cuda(index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_is_always_available() {
        assert_eq!(select("cpu").unwrap(), Device::Cpu);
        assert_eq!(select(" CPU ").unwrap(), Device::Cpu);
    }

    #[test]
    fn bogus_specs_are_invalid_arguments() {
        for spec in ["bogus", "", "cuda:", "cuda:x", "cuda:-1", "gpu"] {
            match select(spec) {
                Err(Error::InvalidArgument { .. }) => {}
                other => panic!("select({spec:?}) gave {other:?}"),
            }
        }
    }

    #[test]
    fn auto_is_cpu_or_cuda() {
        let d = select("auto").unwrap();
        assert_eq!(d.is_cuda(), Cuda::is_available());
    }

    #[test]
    fn init_cuda_is_idempotent() {
        let a = init_cuda();
        assert_eq!(a, init_cuda());
        let report = cuda_report();
        assert!(!report.is_empty());
        eprintln!("init_cuda() = {a}: {report}");
    }

    #[test]
    fn cuda_errors_cleanly_without_gpu() {
        if Cuda::is_available() {
            assert_eq!(select("cuda").unwrap(), Device::Cuda(0));
            assert!(matches!(select("cuda:4096"), Err(Error::DeviceUnavailable { .. })));
            return;
        }
        for spec in ["cuda", "cuda:0", "CUDA:1"] {
            match select(spec) {
                Err(e @ Error::DeviceUnavailable { .. }) => {
                    let msg = e.to_string();
                    assert!(msg.contains("CUDA is not available"), "{msg}");
                    eprintln!("{msg}");
                }
                other => panic!("select({spec:?}) gave {other:?}"),
            }
        }
    }
}
