//! The image record: what `ListImages`/`ImageStatus` report and what `CreateContainer` needs.
//! One JSON file per image under `records/`, written atomically, loaded at start-up.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::digest::{Digest, ImageId};
use super::error::{IoContext, Result};
use super::fsutil;
use super::oci::RunConfig;

/// A pulled image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// The config digest (`sha256:…`), as containerd and Docker report it.
    pub id: ImageId,
    /// `registry/repository:tag` names pointing at this image.
    pub repo_tags: Vec<String>,
    /// `registry/repository@sha256:…` of the manifest (or index) it was pulled by.
    pub repo_digests: Vec<String>,
    /// Bytes of the image's content as stored in the registry (manifests, config, compressed layers).
    pub size: u64,
    /// What to run, from the image config.
    pub config: ImageConfig,
    /// Layers, bottom first.
    pub layers: Vec<Layer>,
    /// Manifest and index blobs this image was pulled through (kept in the content store).
    pub manifests: Vec<Digest>,
    /// Unix seconds of the pull.
    pub pulled_at: i64,
    /// Kept by kubelet's image garbage collector (the pause image); from the config, not stored.
    #[serde(skip)]
    pub pinned: bool,
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    /// Digest of the (compressed) blob.
    pub digest: Digest,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Snapshot key: the chain id of this layer and all below it.
    pub chain_id: Digest,
    /// Compressed size.
    pub size: u64,
    pub media_type: String,
}

/// The parts of the image config a container is built from. Missing values are empty.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ImageConfig {
    pub user: String,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    /// `80/tcp`-style keys.
    pub exposed_ports: Vec<String>,
    /// Paths declared as volumes.
    pub volumes: Vec<String>,
    pub stop_signal: String,
    pub labels: BTreeMap<String, String>,
}

impl From<RunConfig> for ImageConfig {
    fn from(c: RunConfig) -> ImageConfig {
        ImageConfig {
            user: c.user.unwrap_or_default(),
            env: c.env.unwrap_or_default(),
            entrypoint: c.entrypoint.unwrap_or_default(),
            cmd: c.cmd.unwrap_or_default(),
            working_dir: c.working_dir.unwrap_or_default(),
            exposed_ports: c.exposed_ports.unwrap_or_default().into_keys().collect(),
            volumes: c.volumes.unwrap_or_default().into_keys().collect(),
            stop_signal: c.stop_signal.unwrap_or_default(),
            labels: c.labels.unwrap_or_default(),
        }
    }
}

impl Image {
    /// The image user as CRI reports it: a numeric user (`1000`, `1000:1000`) is a uid, anything
    /// else a user name; no user is neither (the same rule as containerd's `getUserFromImage`).
    pub fn uid_and_username(&self) -> (Option<i64>, String) {
        let user = self.config.user.split(':').next().unwrap_or("");
        if user.is_empty() {
            return (None, String::new());
        }
        match user.parse::<i64>() {
            Ok(uid) => (Some(uid), String::new()),
            Err(_) => (None, user.to_owned()),
        }
    }

    /// Every blob this image needs.
    pub fn blobs(&self) -> impl Iterator<Item = &Digest> {
        self.manifests.iter().chain(std::iter::once(&self.id)).chain(self.layers.iter().map(|l| &l.digest))
    }
}

/// The `records/` directory.
#[derive(Debug, Clone)]
pub struct Records {
    dir: PathBuf,
}

impl Records {
    /// Opens (creating) `dir` and deletes half-written records.
    pub fn open(dir: PathBuf) -> Result<Records> {
        fs::create_dir_all(&dir).ctx("creating", &dir)?;
        fsutil::remove_temporaries(&dir)?;
        Ok(Records { dir })
    }

    fn path(&self, id: &ImageId) -> PathBuf {
        self.dir.join(format!("{}.json", id.hex()))
    }

    /// Every readable record. An unreadable one is logged and moved aside, never fatal: one bad
    /// file must not keep the daemon from starting.
    pub fn load_all(&self) -> Result<Vec<Image>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).ctx("reading", &self.dir)? {
            let path = entry.ctx("reading", &self.dir)?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match fs::read(&path).map_err(|e| e.to_string()).and_then(|b| parse_record(&b)) {
                Ok(image) => out.push(image),
                Err(e) => {
                    tracing::error!(record = %path.display(), "unreadable image record, moving it aside: {e}");
                    let _ = fs::rename(&path, path.with_extension("corrupt"));
                }
            }
        }
        Ok(out)
    }

    /// Writes `image`'s record atomically.
    pub fn save(&self, image: &Image) -> Result<()> {
        let path = self.path(&image.id);
        let json = serde_json::to_vec_pretty(image)
            .map_err(|e| super::error::ImageError::io("encoding record", &path, std::io::Error::other(e)))?;
        fsutil::write_atomic(&path, &json)
    }

    /// Deletes `id`'s record (durably).
    pub fn delete(&self, id: &ImageId) -> Result<()> {
        let path = self.path(id);
        fsutil::remove_any(&path)?;
        fsutil::fsync_dir(&self.dir)
    }

    #[cfg(test)]
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

fn parse_record(bytes: &[u8]) -> std::result::Result<Image, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(user: &str) -> Image {
        Image {
            id: Digest::of(b"config"),
            repo_tags: vec!["docker.io/library/busybox:latest".into()],
            repo_digests: vec![],
            size: 1,
            config: ImageConfig { user: user.into(), ..ImageConfig::default() },
            layers: vec![],
            manifests: vec![],
            pulled_at: 0,
            pinned: false,
        }
    }

    #[test]
    fn user_maps_to_uid_or_username() {
        assert_eq!(image("").uid_and_username(), (None, String::new()));
        assert_eq!(image("1000").uid_and_username(), (Some(1000), String::new()));
        assert_eq!(image("1000:50").uid_and_username(), (Some(1000), String::new()));
        assert_eq!(image("nobody").uid_and_username(), (None, "nobody".into()));
        assert_eq!(image("www:www").uid_and_username(), (None, "www".into()));
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let records = Records::open(dir.path().join("records")).unwrap();
        let img = image("1000");
        records.save(&img).unwrap();
        fs::write(records.dir().join("broken.json"), b"{not json").unwrap();
        let loaded = records.load_all().unwrap();
        assert_eq!(loaded, vec![img.clone()]);
        assert!(records.dir().join("broken.corrupt").exists());
        records.delete(&img.id).unwrap();
        assert!(records.load_all().unwrap().is_empty());
    }
}
