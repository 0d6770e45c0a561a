//! Tests of the image store against a real registry (Debian's `docker-registry`, started per
//! test on a free loopback port) with images built here, byte by byte.

pub mod registry;
pub mod tarball;

mod auth;
mod crash;
mod malicious;
mod pull;
mod remove;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::json;

use self::registry::{Pushed, Pusher, TestLayer, TestRegistry};
use self::tarball::Tarball;
use super::ImageStore;
use super::registry::AuthConfig;
use crate::config::ImagesConfig;

/// Store settings for tests: short progress timeout so a hang fails fast.
pub fn test_config() -> ImagesConfig {
    ImagesConfig { pull_progress_timeout_secs: 30, ..ImagesConfig::default() }
}

pub fn open_store(dir: &Path) -> ImageStore {
    ImageStore::open(&dir.join("images"), &test_config()).unwrap()
}

pub fn anonymous() -> AuthConfig {
    AuthConfig::default()
}

/// The busybox binary, as a realistic big file in test layers.
pub fn busybox() -> Vec<u8> {
    std::fs::read("/bin/busybox").expect("/bin/busybox (apt-get install busybox-static)")
}

/// A one-layer busybox image with `sh` as command, pushed as `repo:tag`.
pub async fn push_busybox(registry: &TestRegistry, repo: &str, tag: &str) -> Pushed {
    let tar = Tarball::new()
        .dir("bin", 0o755)
        .file("bin/busybox", 0o755, &busybox())
        .hardlink("bin/sh", "bin/busybox")
        .finish();
    Pusher::new(registry)
        .image(repo, tag, &[TestLayer::gzip(tar)], json!({"Cmd": ["sh"], "Env": ["PATH=/bin"]}), "amd64", false)
        .await
}

/// Every file in the store's blobs directory has the digest it is named by.
pub fn assert_blobs_verified(store_dir: &Path) {
    for entry in std::fs::read_dir(store_dir.join("blobs/sha256")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let actual = super::digest::Digest::of(&std::fs::read(&path).unwrap());
        assert_eq!(actual.hex(), name, "corrupt blob {}", path.display());
    }
}

/// No temporaries anywhere in the store.
pub fn assert_no_temporaries(store_dir: &Path) {
    for sub in ["ingest", "snapshots", "records", "trash"] {
        let dir = store_dir.join(sub);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with(".tmp-"), "leftover temporary {}/{name}", dir.display());
        }
    }
    assert_eq!(std::fs::read_dir(store_dir.join("ingest")).unwrap().count(), 0);
}

pub fn inode(path: &Path) -> u64 {
    std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).ino()
}
