//! Layer snapshots: one directory per layer, named by the layer's chain id, holding exactly
//! that layer's files (whiteouts in overlayfs form). A container's rootfs is an overlay of
//! these directories (top layer first) plus its own upper/work dirs, so nothing is copied.
//!
//! A snapshot is unpacked into `snapshots/.tmp-…` and renamed to `snapshots/<chain hex>` only
//! after the whole layer was written, checked against its diff id and synced to disk: a
//! directory with a chain-id name is always complete.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::digest::Digest;
use super::error::{IoContext, Result};
use super::fsutil;

/// The `snapshots/` directory.
#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
}

impl Snapshots {
    /// Opens (creating) `dir` and deletes half-unpacked layers left by a crash.
    ///
    /// The directory is 0700: layers hold whatever the image holds, setuid-root binaries
    /// included, and host users must not be able to reach them (only root mounts them).
    pub fn open(dir: PathBuf) -> Result<Snapshots> {
        fs::create_dir_all(&dir).ctx("creating", &dir)?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).ctx("chmod 0700", &dir)?;
        let removed = fsutil::remove_temporaries(&dir)?;
        if removed > 0 {
            tracing::info!(removed, "deleted interrupted layer unpacks");
        }
        Ok(Snapshots { dir })
    }

    /// The layer directory of `chain_id` (the overlay lower dir).
    pub fn path(&self, chain_id: &Digest) -> PathBuf {
        self.dir.join(chain_id.hex())
    }

    /// Whether the layer is unpacked.
    pub fn has(&self, chain_id: &Digest) -> bool {
        self.path(chain_id).is_dir()
    }

    /// An empty temporary directory to unpack `chain_id` into.
    pub fn prepare(&self, chain_id: &Digest) -> Result<PendingSnapshot> {
        let tmp = fsutil::temp_path(&self.dir, chain_id.hex());
        fs::create_dir(&tmp).ctx("creating", &tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755)).ctx("chmod", &tmp)?;
        Ok(PendingSnapshot { tmp, dest: self.path(chain_id), done: false })
    }

    /// Every committed snapshot (for garbage collection).
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).ctx("reading", &self.dir)? {
            let entry = entry.ctx("reading", &self.dir)?;
            if let Ok(d) = Digest::parse(&format!("sha256:{}", entry.file_name().to_string_lossy())) {
                out.push(d);
            }
        }
        Ok(out)
    }
}

/// A layer being unpacked; its directory is deleted on drop unless committed.
pub struct PendingSnapshot {
    tmp: PathBuf,
    dest: PathBuf,
    done: bool,
}

impl PendingSnapshot {
    /// Where to unpack.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Syncs the layer's filesystem and renames the directory into place. If another pull
    /// committed the same layer meanwhile, that copy wins and this one is discarded.
    pub fn commit(mut self) -> Result<()> {
        let dir = fs::File::open(&self.tmp).ctx("opening", &self.tmp)?;
        // One syncfs instead of an fsync per file: after a power loss a committed layer must
        // not be missing file data.
        rustix::fs::syncfs(&dir).ctx("syncfs", &self.tmp)?;
        match fs::rename(&self.tmp, &self.dest) {
            Ok(()) => {}
            Err(_) if self.dest.is_dir() => {
                tracing::debug!(layer = %self.dest.display(), "layer committed concurrently; discarding duplicate");
                return Ok(()); // drop removes ours
            }
            Err(e) => return Err(e).ctx("committing layer", &self.dest),
        }
        self.done = true;
        fsutil::fsync_dir(self.dest.parent().unwrap_or(Path::new("/")))
    }
}

impl Drop for PendingSnapshot {
    fn drop(&mut self) {
        if !self.done
            && let Err(e) = fsutil::remove_any(&self.tmp)
        {
            tracing::warn!("discarding unfinished layer: {e}");
        }
    }
}
