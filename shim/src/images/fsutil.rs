//! Crash-safe file helpers shared by the content store, snapshots and records.
//!
//! The rule everywhere in the store: write under a temporary name, fsync, rename into place,
//! fsync the directory. A crash at any point leaves either the old state or the new one, and
//! temporaries are recognizable by name so `ImageStore::open` can delete them.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{IoContext, Result};

/// Prefix of every temporary name in the store; nothing else starts with it.
pub const TEMP_PREFIX: &str = ".tmp-";

/// A fresh temporary path in `dir`, unique within this process and across restarts.
pub fn temp_path(dir: &Path, hint: &str) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!("{TEMP_PREFIX}{hint}-{}-{n}", std::process::id()))
}

/// Makes a rename or unlink in `dir` durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).ctx("fsync directory", dir)
}

/// Writes `bytes` to `path` atomically (temp + fsync + rename + fsync dir).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("/"));
    let tmp = temp_path(dir, "write");
    let written = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e).ctx("writing", &tmp);
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e).ctx("renaming into place", path);
    }
    fsync_dir(dir)
}

/// Deletes every temporary (see [`TEMP_PREFIX`]) directly inside `dir`: leftovers of a crash.
pub fn remove_temporaries(dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for entry in fs::read_dir(dir).ctx("reading", dir)? {
        let entry = entry.ctx("reading", dir)?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            remove_any(&entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Removes a file or a whole tree; a missing path is fine.
pub fn remove_any(path: &Path) -> Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).ctx("removing", path),
        _ => Ok(()),
    }
}
