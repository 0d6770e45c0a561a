//! `ImageStore::pull`: manifest → (index → platform manifest) → config → layers in parallel
//! (download, verify, unpack) → record.
//!
//! Content already in the store is not fetched again, and concurrent pulls that need the same
//! blob or layer wait for the one pull doing it (`ImageStore::exclusive`) instead of doing it
//! twice. A layer is unpacked on a blocking thread as soon as its download is verified.

use std::time::Instant;

use futures_util::{StreamExt, TryStreamExt};

use super::digest::{Digest, ImageId};
use super::error::{ImageError, Result};
use super::image::{Image, ImageConfig, Layer};
use super::oci::{self, ConfigFile, Manifest, ManifestKind, media};
use super::reference::Reference;
use super::registry::{AuthConfig, Session};
use super::store::{ImageStore, Leases, blob_key, snapshot_key};
use super::unpack;

impl ImageStore {
    /// Pulls `reference` (any form `Reference::parse` accepts) with `auth`, and returns the
    /// image id (the config digest; CRI's `PullImageResponse.image_ref`).
    pub async fn pull(&self, reference: &str, auth: &AuthConfig) -> Result<ImageId> {
        let started = Instant::now();
        let reference = Reference::parse(reference)?;
        let session = self.registry.session(&reference, auth)?;
        let leases = self.leases();

        let (manifest, manifests, top_digest) = self.fetch_manifest(&session, &leases).await?;
        let config = self.fetch_config(&session, &leases, &manifest).await?;
        let layers = layer_list(&reference, &manifest, &config)?;

        let parallel = self.config.max_concurrent_downloads.max(1);
        let jobs: Vec<_> = layers.iter().map(|layer| self.ensure_layer(&session, &leases, layer)).collect();
        futures_util::stream::iter(jobs).buffer_unordered(parallel).try_collect::<Vec<()>>().await?;

        let id = manifest.config.digest.clone();
        let size = manifests.iter().map(|(_, len)| *len).sum::<u64>()
            + manifest.config.size
            + layers.iter().map(|l| l.size).sum::<u64>();
        let image = Image {
            id: id.clone(),
            repo_tags: reference.repo_tag().into_iter().collect(),
            repo_digests: vec![reference.repo_digest(&top_digest)],
            size,
            config: ImageConfig::from(config.config.unwrap_or_default()),
            layers,
            manifests: manifests.into_iter().map(|(d, _)| d).collect(),
            pulled_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            pinned: false,
        };
        self.commit(image)?;
        drop(leases); // only now: the record references everything
        tracing::info!(reference = %reference, image = %id, elapsed_ms = started.elapsed().as_millis() as u64, "image pulled");
        Ok(id)
    }

    /// The image manifest for the host platform, the manifest blobs walked to get it (with
    /// sizes), and the digest the reference resolved to (the index's, for a multi-arch image).
    async fn fetch_manifest(
        &self,
        session: &Session<'_>,
        leases: &Leases<'_>,
    ) -> Result<(Manifest, Vec<(Digest, u64)>, Digest)> {
        let reference = session.reference();
        let what = format!("manifest of {reference}");
        let top = session.manifest(&reference.manifest_reference()).await?;
        let top_digest = Digest::of(&top.bytes);
        if let Some(pinned) = &reference.digest
            && *pinned != top_digest
        {
            return Err(ImageError::Verification { what, reason: format!("content has digest {top_digest}") });
        }
        if let Some(claimed) = top.digest_header.as_deref().and_then(|h| Digest::parse(h).ok())
            && claimed != top_digest
        {
            return Err(ImageError::Verification {
                what,
                reason: format!("registry says {claimed} but the content has digest {top_digest}"),
            });
        }
        let mut blobs = vec![(top_digest.clone(), top.bytes)];
        let manifest = match ManifestKind::parse(&blobs[0].1, top.content_type.as_deref(), &what)? {
            ManifestKind::Image(m) => m,
            ManifestKind::Index(index) => {
                let (os, arch) = oci::host_platform();
                let Some(entry) = index.select(os, arch) else {
                    let available: Vec<String> = index
                        .manifests
                        .iter()
                        .filter_map(|d| d.platform.as_ref().map(|p| format!("{}/{}", p.os, p.architecture)))
                        .collect();
                    return Err(ImageError::Unsupported(format!(
                        "{reference}: no {os}/{arch} image in the index (it has: {})",
                        available.join(", ")
                    )));
                };
                let child = session.manifest(entry.digest.as_str()).await?;
                let child_what = format!("{os}/{arch} manifest {} of {reference}", entry.digest);
                if Digest::of(&child.bytes) != entry.digest {
                    return Err(ImageError::Verification {
                        what: child_what,
                        reason: format!("content has digest {}", Digest::of(&child.bytes)),
                    });
                }
                let parsed = ManifestKind::parse(&child.bytes, child.content_type.as_deref(), &child_what)?;
                blobs.push((entry.digest.clone(), child.bytes));
                match parsed {
                    ManifestKind::Image(m) => m,
                    ManifestKind::Index(_) => {
                        return Err(ImageError::Unsupported(format!("{child_what}: an index inside an index")));
                    }
                }
            }
        };
        for (digest, bytes) in &blobs {
            leases.add(blob_key(digest));
            self.content.write(digest, bytes)?;
        }
        let sizes = blobs.into_iter().map(|(d, b)| (d, b.len() as u64)).collect();
        Ok((manifest, sizes, top_digest))
    }

    async fn fetch_config(
        &self,
        session: &Session<'_>,
        leases: &Leases<'_>,
        manifest: &Manifest,
    ) -> Result<ConfigFile> {
        let desc = &manifest.config;
        if !matches!(desc.media_type.as_str(), "" | media::OCI_CONFIG | media::DOCKER_CONFIG) {
            return Err(ImageError::Unsupported(format!(
                "{}: not a container image (config media type {:?})",
                session.reference(),
                desc.media_type
            )));
        }
        leases.add(blob_key(&desc.digest));
        self.download(session, &desc.digest, desc.size, "config").await?;
        let bytes = self.content.read(&desc.digest)?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::Verification {
            what: format!("image config {}", desc.digest),
            reason: format!("not a valid image config: {e}"),
        })
    }

    /// Makes sure `layer` is in the content store and unpacked.
    async fn ensure_layer(&self, session: &Session<'_>, leases: &Leases<'_>, layer: &Layer) -> Result<()> {
        leases.add(blob_key(&layer.digest));
        leases.add(snapshot_key(&layer.chain_id));
        self.download(session, &layer.digest, layer.size, "layer").await?;
        if self.snapshots.has(&layer.chain_id) {
            return Ok(());
        }
        let guard = self.exclusive(snapshot_key(&layer.chain_id)).await;
        if self.snapshots.has(&layer.chain_id) {
            return Ok(()); // another pull unpacked it while this one waited
        }
        let pending = self.snapshots.prepare(&layer.chain_id)?;
        let blob = self.content.path(&layer.digest);
        let (digest, diff_id) = (layer.digest.clone(), layer.diff_id.clone());
        let started = Instant::now();
        // The guard and the pending snapshot move into the blocking task: if the pull is
        // cancelled, the unpack still finishes (or fails) and cleans up by itself.
        let stats = tokio::task::spawn_blocking(move || {
            let _guard = guard;
            let stats = unpack::unpack_layer(&blob, pending.path(), &digest, &diff_id)?;
            pending.commit()?;
            Ok::<_, ImageError>(stats)
        })
        .await
        .map_err(|e| ImageError::BadLayer {
            layer: layer.digest.to_string(),
            reason: format!("unpack task failed: {e}"),
        })??;
        tracing::debug!(layer = %layer.digest, entries = stats.entries, bytes = stats.bytes,
            compression = ?stats.compression, elapsed_ms = started.elapsed().as_millis() as u64, "layer unpacked");
        Ok(())
    }

    /// Downloads blob `digest` into the content store unless it is there; one download per
    /// blob at a time across all pulls.
    async fn download(&self, session: &Session<'_>, digest: &Digest, size: u64, what: &str) -> Result<()> {
        if self.content.has(digest, size) {
            return Ok(());
        }
        let _guard = self.exclusive(blob_key(digest)).await;
        if self.content.has(digest, size) {
            return Ok(()); // another pull fetched it while this one waited
        }
        let started = Instant::now();
        let mut resp = session.blob(digest).await?;
        let mut ingest = self.content.ingest(digest, size)?;
        let step = format!("downloading {what} {digest}");
        while let Some(chunk) = session.chunk(&mut resp, &step).await? {
            ingest.write(&chunk)?;
        }
        ingest.commit()?;
        tracing::debug!(%digest, size, elapsed_ms = started.elapsed().as_millis() as u64, "{what} downloaded");
        Ok(())
    }
}

/// The layers of `manifest` with their diff and chain ids from `config`.
fn layer_list(reference: &Reference, manifest: &Manifest, config: &ConfigFile) -> Result<Vec<Layer>> {
    let diff_ids = &config.rootfs.diff_ids;
    if diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::Verification {
            what: format!("image config of {reference}"),
            reason: format!("{} diff ids for {} layers", diff_ids.len(), manifest.layers.len()),
        });
    }
    if !config.os.is_empty() && config.os != "linux" {
        return Err(ImageError::Unsupported(format!("{reference} is a {} image; corral runs linux images", config.os)));
    }
    let (_, host_arch) = oci::host_platform();
    if !config.architecture.is_empty() && config.architecture != host_arch {
        tracing::warn!(reference = %reference, arch = %config.architecture, "image is built for another architecture");
    }
    let chain_ids = Digest::chain_ids(diff_ids);
    Ok(manifest
        .layers
        .iter()
        .zip(diff_ids.iter().zip(chain_ids))
        .map(|(desc, (diff_id, chain_id))| Layer {
            digest: desc.digest.clone(),
            diff_id: diff_id.clone(),
            chain_id,
            size: desc.size,
            media_type: desc.media_type.clone(),
        })
        .collect())
}
