//! The content store: blobs (manifests, configs, compressed layers) by digest.
//!
//! `blobs/sha256/<hex>` exists only for content whose size and sha256 were checked while it was
//! written: downloads go to `ingest/.tmp-…`, are verified, fsynced and renamed into place. A
//! crash mid-download leaves only a temporary, which `ImageStore::open` deletes, so a half blob
//! can never count as present.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::digest::Digest;
use super::error::{ImageError, IoContext, Result};
use super::fsutil;

/// Blobs under `<images>/blobs/sha256`.
#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Opens (creating) the store under `dir` and deletes interrupted downloads.
    pub fn open(dir: &Path) -> Result<ContentStore> {
        let store = ContentStore { blobs: dir.join("blobs/sha256"), ingest: dir.join("ingest") };
        for d in [&store.blobs, &store.ingest] {
            fs::create_dir_all(d).ctx("creating", d)?;
        }
        let removed = fsutil::remove_temporaries(&store.ingest)?;
        if removed > 0 {
            tracing::info!(removed, "deleted interrupted downloads");
        }
        Ok(store)
    }

    /// Where the blob `digest` lives once committed.
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// Whether a committed blob of this digest and size exists.
    pub fn has(&self, digest: &Digest, size: u64) -> bool {
        fs::metadata(self.path(digest)).is_ok_and(|m| m.is_file() && m.len() == size)
    }

    /// Reads a committed blob, checking its digest again (used for small JSON documents only).
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.path(digest);
        let bytes = fs::read(&path).ctx("reading blob", &path)?;
        let actual = Digest::of(&bytes);
        if &actual != digest {
            return Err(ImageError::Verification {
                what: format!("stored blob {}", path.display()),
                reason: format!("has digest {actual}"),
            });
        }
        Ok(bytes)
    }

    /// Stores `bytes` as `digest` after checking they match.
    pub fn write(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        if self.has(digest, bytes.len() as u64) {
            return Ok(());
        }
        let mut ingest = self.ingest(digest, bytes.len() as u64)?;
        ingest.write(bytes)?;
        ingest.commit()
    }

    /// Starts writing the blob `digest` of `size` bytes.
    pub fn ingest(&self, digest: &Digest, size: u64) -> Result<Ingest> {
        let tmp = fsutil::temp_path(&self.ingest, digest.hex());
        let file = File::create(&tmp).ctx("creating", &tmp)?;
        Ok(Ingest {
            file,
            tmp,
            dest: self.path(digest),
            hasher: Sha256::new(),
            written: 0,
            expected: digest.clone(),
            size,
            committed: false,
        })
    }

    /// Every committed blob (for garbage collection).
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.blobs).ctx("reading", &self.blobs)? {
            let entry = entry.ctx("reading", &self.blobs)?;
            if let Ok(d) = Digest::parse(&format!("sha256:{}", entry.file_name().to_string_lossy())) {
                out.push(d);
            }
        }
        Ok(out)
    }
}

/// A blob being written; deleted on drop unless [`Ingest::commit`] succeeded.
pub struct Ingest {
    file: File,
    tmp: PathBuf,
    dest: PathBuf,
    hasher: Sha256,
    written: u64,
    expected: Digest,
    size: u64,
    committed: bool,
}

impl Ingest {
    /// Appends `chunk`; refuses to go past the announced size, so a lying registry cannot fill
    /// the disk.
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        if self.written + chunk.len() as u64 > self.size {
            return Err(ImageError::Verification {
                what: self.expected.to_string(),
                reason: format!("registry sent more than the {} bytes the manifest announced", self.size),
            });
        }
        self.file.write_all(chunk).ctx("writing", &self.tmp)?;
        self.hasher.update(chunk);
        self.written += chunk.len() as u64;
        Ok(())
    }

    /// Verifies size and digest, then makes the blob durable and visible.
    pub fn commit(mut self) -> Result<()> {
        if self.written != self.size {
            return Err(ImageError::Verification {
                what: self.expected.to_string(),
                reason: format!("got {} bytes, expected {}", self.written, self.size),
            });
        }
        let actual = Digest::from_hasher(std::mem::take(&mut self.hasher));
        if actual != self.expected {
            return Err(ImageError::Verification {
                what: self.expected.to_string(),
                reason: format!("content has digest {actual}"),
            });
        }
        self.file.sync_all().ctx("fsync", &self.tmp)?;
        fs::rename(&self.tmp, &self.dest).ctx("committing blob", &self.dest)?;
        self.committed = true;
        fsutil::fsync_dir(self.dest.parent().unwrap_or(Path::new("/")))
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_verified_content_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let data = b"hello layer";
        let d = Digest::of(data);

        let mut w = store.ingest(&d, data.len() as u64).unwrap();
        w.write(b"hello").unwrap();
        assert!(w.commit().unwrap_err().to_string().contains("got 5 bytes"));
        assert!(!store.has(&d, data.len() as u64));

        let mut w = store.ingest(&d, data.len() as u64).unwrap();
        assert!(w.write(b"hello layer and more").is_err(), "overlong content is cut off");
        drop(w);

        let wrong = Digest::of(b"other");
        let mut w = store.ingest(&wrong, data.len() as u64).unwrap();
        w.write(data).unwrap();
        assert!(w.commit().unwrap_err().to_string().contains("content has digest"));
        assert!(!store.path(&wrong).exists());

        store.write(&d, data).unwrap();
        assert!(store.has(&d, data.len() as u64));
        assert_eq!(store.read(&d).unwrap(), data);
        assert_eq!(store.list().unwrap(), vec![d]);
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0, "no temporaries left");
    }

    #[test]
    fn open_deletes_interrupted_downloads() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let d = Digest::of(b"x");
        let mut w = store.ingest(&d, 1).unwrap();
        w.write(b"x").unwrap();
        std::mem::forget(w); // as if the process died here
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 1);
        ContentStore::open(dir.path()).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("ingest")).unwrap().count(), 0);
        assert!(!store.has(&d, 1));
    }
}
