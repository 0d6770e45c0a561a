//! [`ImageStore`]: the image records in memory, resolution of names and ids, removal and
//! garbage collection. Pulling is in `pull.rs`.
//!
//! On disk (under `<root>/images/`): `blobs/sha256/<hex>` (content store), `snapshots/<chain
//! hex>/` (unpacked layers), `records/<id hex>.json` (one per image), `ingest/` and `trash/`
//! (temporaries). An image counts as present only through its record, which is written last,
//! after all of its blobs and layers were committed.
//!
//! Pulls and garbage collection run concurrently. A pull *leases* every blob and layer before
//! it checks whether it is there, and keeps the leases until its record is in memory; garbage
//! collection, under the same lock, only takes what no record references and no pull leases.
//! So a pull never sees a blob vanish under it, and a removal never keeps garbage.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use super::content::ContentStore;
use super::digest::{Digest, ImageId};
use super::error::{ImageError, IoContext, Result};
use super::fs_usage::{self, Usage};
use super::fsutil;
use super::image::{Image, ImageConfig, Records};
use super::reference::Reference;
use super::registry::Registry;
use super::snapshots::Snapshots;
use crate::config::ImagesConfig;

/// The image store. Shared by all RPCs (`Arc<ImageStore>`); every method takes `&self`.
pub struct ImageStore {
    pub(super) dir: PathBuf,
    pub(super) config: ImagesConfig,
    pub(super) content: ContentStore,
    pub(super) snapshots: Snapshots,
    records: Records,
    pub(super) registry: Registry,
    images: RwLock<HashMap<ImageId, Image>>,
    /// Names (`repo:tag` or `repo@digest`) of images kubelet must never garbage-collect.
    pinned: HashSet<String>,
    /// Content keys (`blob:…`, `snap:…`) held by running pulls, with a count per key.
    leases: Mutex<HashMap<String, usize>>,
    /// One async lock per key being downloaded or unpacked, so concurrent pulls of the same
    /// content share one download.
    inflight: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

/// Locks a std mutex; a panic elsewhere while holding it leaves data that is still
/// consistent (every critical section is a few map operations), so poisoning is ignored.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

pub(super) fn blob_key(d: &Digest) -> String {
    format!("blob:{d}")
}

pub(super) fn snapshot_key(d: &Digest) -> String {
    format!("snap:{d}")
}

impl ImageStore {
    /// Opens the store in `dir` (creating it), deletes what a crash left half-done, loads the
    /// records and drops those whose content is missing.
    pub fn open(dir: &Path, config: &ImagesConfig) -> Result<ImageStore> {
        fs::create_dir_all(dir).ctx("creating", dir)?;
        let trash = dir.join("trash");
        fsutil::remove_any(&trash)?;
        fs::create_dir_all(&trash).ctx("creating", &trash)?;
        let content = ContentStore::open(dir)?;
        let snapshots = Snapshots::open(dir.join("snapshots"))?;
        let records = Records::open(dir.join("records"))?;
        let registry = Registry::new(config)?;
        let pinned = config
            .pinned_images
            .iter()
            .filter_map(|name| match Reference::parse(name) {
                Ok(r) => r.repo_tag().or_else(|| r.digest.as_ref().map(|d| r.repo_digest(d))),
                Err(e) => {
                    tracing::warn!("ignoring pinned image: {e}");
                    None
                }
            })
            .collect();
        let store = ImageStore {
            dir: dir.to_owned(),
            config: config.clone(),
            content,
            snapshots,
            records,
            registry,
            images: RwLock::new(HashMap::new()),
            pinned,
            leases: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
        };
        store.load()?;
        let freed = store.collect_garbage()?;
        tracing::info!(images = read(&store.images).len(), freed, dir = %dir.display(), "image store open");
        Ok(store)
    }

    fn load(&self) -> Result<()> {
        let mut loaded = self.records.load_all()?;
        // Newest first, so a tag recorded twice (crash between two record writes) stays with
        // the image pulled last.
        loaded.sort_by_key(|i| std::cmp::Reverse(i.pulled_at));
        let mut images = write(&self.images);
        let mut tags_seen = HashSet::new();
        for mut image in loaded {
            let missing_blob = image.blobs().find(|d| !self.content.path(d).is_file()).cloned();
            let missing_layer =
                image.layers.iter().find(|l| !self.snapshots.has(&l.chain_id)).map(|l| l.chain_id.clone());
            if let Some(missing) = missing_blob.or(missing_layer) {
                tracing::warn!(image = %image.id, %missing, "image content is missing; forgetting the image");
                self.records.delete(&image.id)?;
                continue;
            }
            image.repo_tags.retain(|t| tags_seen.insert(t.clone()));
            image.pinned = self.is_pinned(&image);
            images.insert(image.id.clone(), image);
        }
        Ok(())
    }

    fn is_pinned(&self, image: &Image) -> bool {
        image.repo_tags.iter().chain(&image.repo_digests).any(|name| self.pinned.contains(name))
    }

    /// The store's directory (`<root>/images`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Finds an image by id (`sha256:<hex>` or the bare hex), by name (`busybox`,
    /// `repo:tag`, `repo@sha256:…`, normalized like a pull), or by a unique id prefix.
    pub fn resolve(&self, reference_or_id: &str) -> Option<Image> {
        let images = read(&self.images);
        let s = reference_or_id.trim();
        let hex = s.strip_prefix("sha256:").unwrap_or(s).to_ascii_lowercase();
        let is_hex = !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex && hex.len() == 64 {
            return Digest::parse(&format!("sha256:{hex}")).ok().and_then(|id| images.get(&id).cloned());
        }
        if let Ok(r) = Reference::parse(s) {
            let found = match (&r.digest, r.repo_tag()) {
                (Some(d), _) => {
                    let name = r.repo_digest(d);
                    images.values().find(|i| i.repo_digests.contains(&name))
                }
                (None, Some(tag)) => images.values().find(|i| i.repo_tags.contains(&tag)),
                (None, None) => None,
            };
            if let Some(image) = found {
                return Some(image.clone());
            }
        }
        if is_hex {
            let mut matches = images.values().filter(|i| i.id.hex().starts_with(&hex));
            if let (Some(one), None) = (matches.next(), matches.next()) {
                return Some(one.clone());
            }
        }
        None
    }

    /// All images, or the one `filter` resolves to (CRI's `ListImages` filter).
    pub fn list(&self, filter: Option<&str>) -> Vec<Image> {
        if let Some(f) = filter.filter(|f| !f.is_empty()) {
            return self.resolve(f).into_iter().collect();
        }
        let mut all: Vec<Image> = read(&self.images).values().cloned().collect();
        all.sort_by(|a, b| a.repo_tags.first().cmp(&b.repo_tags.first()).then(a.id.cmp(&b.id)));
        all
    }

    /// The image's layer directories for an overlay `lowerdir=` list: top layer first.
    /// Empty for an unknown image.
    #[allow(dead_code, reason = "used by CreateContainer (containers issue)")]
    pub fn rootfs_layers(&self, id: &ImageId) -> Vec<PathBuf> {
        read(&self.images)
            .get(id)
            .map(|image| image.layers.iter().rev().map(|l| self.snapshots.path(&l.chain_id)).collect())
            .unwrap_or_default()
    }

    /// What the image says to run (entrypoint, cmd, env, user, ...).
    #[allow(dead_code, reason = "used by CreateContainer (containers issue)")]
    pub fn config(&self, id: &ImageId) -> Option<ImageConfig> {
        read(&self.images).get(id).map(|image| image.config.clone())
    }

    /// Removes the image `reference_or_id` resolves to, with all its tags, then frees the
    /// content no other image uses. `Ok(None)` if there is no such image (CRI: idempotent).
    /// Fails with [`ImageError::InUse`] when `in_use` says a container uses it.
    pub fn remove(&self, reference_or_id: &str, in_use: impl Fn(&ImageId) -> bool) -> Result<Option<ImageId>> {
        let Some(image) = self.resolve(reference_or_id) else { return Ok(None) };
        if in_use(&image.id) {
            return Err(ImageError::InUse { image: image.repo_tags.first().cloned().unwrap_or(image.id.to_string()) });
        }
        {
            let mut images = write(&self.images);
            if images.remove(&image.id).is_none() {
                return Ok(None); // removed concurrently
            }
            if let Err(e) = self.records.delete(&image.id) {
                images.insert(image.id.clone(), image);
                return Err(e);
            }
        }
        tracing::info!(image = %image.id, tags = ?image.repo_tags, "image removed");
        self.collect_garbage()?;
        Ok(Some(image.id))
    }

    /// Bytes and inodes used by the store.
    pub fn fs_usage(&self) -> Result<Usage> {
        fs_usage::measure(&self.dir).ctx("measuring", &self.dir)
    }

    /// Makes `image` known (after a pull): merges it with an existing record of the same id,
    /// takes its tags away from other images (a tag names one image), persists, and publishes.
    pub(super) fn commit(&self, mut image: Image) -> Result<()> {
        let mut images = write(&self.images);
        if let Some(old) = images.get(&image.id) {
            for tag in &old.repo_tags {
                if !image.repo_tags.contains(tag) {
                    image.repo_tags.push(tag.clone());
                }
            }
            for digest in &old.repo_digests {
                if !image.repo_digests.contains(digest) {
                    image.repo_digests.push(digest.clone());
                }
            }
        }
        let mut retagged = Vec::new();
        for other in images.values_mut().filter(|o| o.id != image.id) {
            let before = other.repo_tags.len();
            other.repo_tags.retain(|t| !image.repo_tags.contains(t));
            if other.repo_tags.len() != before {
                other.pinned = self.is_pinned(other);
                retagged.push(other.clone());
            }
        }
        self.records.save(&image)?;
        for other in &retagged {
            self.records.save(other)?;
        }
        image.pinned = self.is_pinned(&image);
        images.insert(image.id.clone(), image);
        Ok(())
    }

    /// Takes a lease on `key` for the lifetime of the returned set (see the module docs).
    pub(super) fn leases(&self) -> Leases<'_> {
        Leases { store: self, held: Mutex::new(Vec::new()) }
    }

    /// Waits until no other pull is downloading or unpacking `key`, then holds it.
    pub(super) async fn exclusive(&self, key: String) -> tokio::sync::OwnedMutexGuard<()> {
        let mutex = {
            let mut map = lock(&self.inflight);
            map.retain(|_, weak| weak.strong_count() > 0);
            match map.get(&key).and_then(Weak::upgrade) {
                Some(m) => m,
                None => {
                    let m = Arc::new(tokio::sync::Mutex::new(()));
                    map.insert(key, Arc::downgrade(&m));
                    m
                }
            }
        };
        mutex.lock_owned().await
    }

    /// Deletes blobs and layers that no image references and no pull leases. Returns how many.
    fn collect_garbage(&self) -> Result<usize> {
        let trash = self.dir.join("trash");
        let doomed = {
            let images = read(&self.images);
            let leases = lock(&self.leases);
            let mut keep: HashSet<String> = leases.keys().cloned().collect();
            for image in images.values() {
                keep.extend(image.blobs().map(blob_key));
                keep.extend(image.layers.iter().map(|l| snapshot_key(&l.chain_id)));
            }
            let mut doomed = Vec::new();
            let blobs = self.content.list()?.into_iter().map(|d| (blob_key(&d), self.content.path(&d)));
            let layers = self.snapshots.list()?.into_iter().map(|d| (snapshot_key(&d), self.snapshots.path(&d)));
            for (key, path) in blobs.chain(layers) {
                if keep.contains(&key) {
                    continue;
                }
                // A rename is instant, so the lock is held only briefly; the slow delete is after.
                let target = fsutil::temp_path(&trash, "gc");
                fs::rename(&path, &target).ctx("moving to trash", &path)?;
                doomed.push(target);
            }
            doomed
        };
        for path in &doomed {
            fsutil::remove_any(path)?;
        }
        if !doomed.is_empty() {
            tracing::info!(freed = doomed.len(), "deleted unused blobs and layers");
        }
        Ok(doomed.len())
    }
}

/// Leases held by one pull; released on drop.
pub(super) struct Leases<'a> {
    store: &'a ImageStore,
    held: Mutex<Vec<String>>,
}

impl Leases<'_> {
    pub fn add(&self, key: String) {
        *lock(&self.store.leases).entry(key.clone()).or_insert(0) += 1;
        lock(&self.held).push(key);
    }
}

impl Drop for Leases<'_> {
    fn drop(&mut self) {
        let mut leases = lock(&self.store.leases);
        for key in lock(&self.held).drain(..) {
            if let Some(count) = leases.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    leases.remove(&key);
                }
            }
        }
    }
}
