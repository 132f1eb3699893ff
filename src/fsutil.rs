//! Crash-safe file writes: a temporary file in the destination folder, flushed
//! to disk, then renamed over the target. A crash or Ctrl-C at any moment
//! leaves either the old file or the new one, never a torn mix (and at most a
//! stray temporary, which [`lock_folder`] removes the next time).
//!
//! One writer per folder: [`lock_folder`] takes an advisory lock (`flock`)
//! that the operating system releases when the process ends, however it ends,
//! so a killed run never blocks the next one.

use std::fs::File;
use std::io::{Read as _, Seek as _, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::error::{Error, Result};

/// A temporary path beside `path`, unique per process and call:
/// `.NAME.PID-K.tmp`.
pub fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let k = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "file".into());
    path.with_file_name(format!(".{name}.{}-{k}.tmp", std::process::id()))
}

/// Writes `bytes` to `path` atomically, creating missing parent folders.
///
/// # Errors
/// [`Error::Io`] naming the path that failed; the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let tmp = temp_path(path);
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    let result = written
        .map_err(|e| Error::io(&tmp, e))
        .and_then(|()| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// The process id in a name [`temp_path`] makes (`.NAME.PID-K.tmp`).
fn temp_owner(file_name: &str) -> Option<u32> {
    let inner = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (_, tail) = inner.rsplit_once('.')?;
    let (pid, k) = tail.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(pid) && digits(k)).then(|| pid.parse().ok()).flatten()
}

/// The lock file [`lock_folder`] takes inside the folder.
pub const LOCK_FILE: &str = ".scoresde.lock";

/// An exclusive hold on a folder, released when dropped or when the process
/// ends (see [`lock_folder`]).
#[derive(Debug)]
pub struct FolderLock {
    path: PathBuf,
    _file: File,
}

impl FolderLock {
    /// The folder held.
    pub fn folder(&self) -> &Path {
        &self.path
    }
}

/// Takes the exclusive advisory lock of folder `dir` (creating it), without
/// waiting, then removes the temporaries that interrupted writes of other
/// processes left there ([`write_atomic`]'s `.NAME.PID-K.tmp`): while the
/// lock is held no other cooperating process writes into `dir`. The lock
/// file `dir/.scoresde.lock` holds the owner's process id, for the message
/// another process gets. A process must not lock the same folder twice.
///
/// # Errors
/// [`Error::Busy`] when another process holds the folder; [`Error::Io`] when
/// the folder or its lock file cannot be created.
pub fn lock_folder(dir: &Path) -> Result<FolderLock> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match fs4::FileExt::try_lock(&file) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let pid = file.read_to_string(&mut text).ok().and_then(|_| text.trim().parse().ok());
            return Err(Error::Busy { path: dir.to_path_buf(), pid });
        }
        Err(fs4::TryLockError::Error(e)) => return Err(Error::io(&path, e)),
    }
    let written = (|| {
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())
    })();
    written.map_err(|e| Error::io(&path, e))?;
    remove_stale_temps(dir)?;
    Ok(FolderLock { path: dir.to_path_buf(), _file: file })
}

/// Removes the [`write_atomic`] temporaries in `dir` that other processes
/// left (call it only while holding the folder's lock).
fn remove_stale_temps(dir: &Path) -> Result<()> {
    let me = std::process::id();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        let owner = path.file_name().and_then(|n| n.to_str()).and_then(temp_owner);
        if owner.is_some_and(|pid| pid != me) && path.is_file() {
            std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }
    Ok(())
}

/// Bytes free to this user on the file system holding `dir` (or its nearest
/// existing ancestor); `None` where that cannot be found out.
pub fn free_bytes(dir: &Path) -> Option<u64> {
    let existing = dir.ancestors().find(|d| d.exists()).filter(|d| !d.as_os_str().is_empty());
    let dir = existing.unwrap_or_else(|| Path::new("."));
    free_bytes_at(dir)
}

#[cfg(unix)]
fn free_bytes_at(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a NUL-terminated path and `st` points to writable memory
    // the size of a `statvfs`, which the call fills on success (return 0).
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialised `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::useless_conversion)] // the field types differ between platforms
    let (avail, frsize) = (u64::from(st.f_bavail), u64::from(st.f_frsize));
    avail.checked_mul(frsize)
}

#[cfg(not(unix))]
fn free_bytes_at(_dir: &Path) -> Option<u64> {
    None
}

/// Physical memory this process may use, in bytes: the machine's total, or
/// the cgroup's limit when lower; `None` where that cannot be found out
/// (outside Linux).
pub fn memory_bytes() -> Option<u64> {
    let total = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        kib.checked_mul(1024)
    })?;
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|s| s.trim().parse::<u64>().ok());
    Some(cgroup.map_or(total, |c| c.min(total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replaces_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("scoresde-fsutil-{}", std::process::id()));
        let path = dir.join("sub/file.bin");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "only the target remains");
        // A folder where the file should go is an error naming the path.
        let err = write_atomic(&dir.join("sub"), b"x").unwrap_err();
        assert!(err.to_string().contains("sub"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn temporary_names_are_recognised() {
        let t = temp_path(Path::new("/x/model.safetensors"));
        let name = t.file_name().unwrap().to_str().unwrap();
        assert_eq!(temp_owner(name), Some(std::process::id()));
        assert_eq!(temp_owner(".model.safetensors.123-4.tmp"), Some(123));
        for other in ["model.safetensors", ".scoresde.lock", ".a.b-4.tmp", ".a.12-.tmp", "a.12-3.tmp", ".a.12-3.tmpx"] {
            assert_eq!(temp_owner(other), None, "{other}");
        }
    }

    #[test]
    fn lock_is_exclusive_released_on_drop_and_clears_stale_temporaries() {
        let dir = std::env::temp_dir().join(format!("scoresde-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let stale = dir.join(".model.safetensors.4000000000-0.tmp");
        let keep = dir.join("model.safetensors");
        std::fs::write(&stale, b"half").unwrap();
        std::fs::write(&keep, b"whole").unwrap();
        let lock = lock_folder(&dir).unwrap();
        assert!(!stale.exists(), "a stale temporary is removed");
        assert_eq!(std::fs::read(&keep).unwrap(), b"whole");
        assert_eq!(lock.folder(), dir.as_path());
        // flock locks belong to the open file, so a second open in this
        // process conflicts just as another process would.
        let err = lock_folder(&dir).unwrap_err();
        assert!(matches!(&err, Error::Busy { pid: Some(p), .. } if *p == std::process::id()), "{err:?}");
        assert!(err.to_string().contains(&dir.display().to_string()), "{err}");
        drop(lock);
        drop(lock_folder(&dir).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
