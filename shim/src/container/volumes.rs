//! The image's `VOLUME`s: each one not covered by a CRI mount becomes a fresh directory in the
//! container's state, seeded with what the image has at that path (owner, mode and content),
//! and is bind-mounted there. This is Docker's behaviour, which containerd copies: without the
//! seeding, an image that declares `VOLUME /var/lib/postgresql/data` owned by its database
//! user would get an empty root-owned directory its process cannot write to.
//!
//! The directories live under the caller's `volumes_dir` (removed with the container), named
//! `<n>_<path with / as _>` so they are unique and still readable in a listing.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use corral_cri::v1;
use tracing::debug;

use super::SpecError;
use super::layers::{LayeredFs, Node};
use super::mounts::{clean_path, in_cri_mounts};

/// An image volume: where it appears in the container and its directory on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub container_path: String,
    pub dir: PathBuf,
}

impl Volume {
    /// The volume as a CRI mount (read-write, private).
    pub fn to_mount(&self) -> v1::Mount {
        v1::Mount {
            container_path: self.container_path.clone(),
            host_path: self.dir.to_string_lossy().into_owned(),
            ..Default::default()
        }
    }
}

/// Decides the volumes (nothing is created yet): every image `VOLUME` not covered by a CRI
/// mount, in path order.
pub fn plan(volumes: &[String], cri_mounts: &[v1::Mount], volumes_dir: &Path) -> Vec<Volume> {
    let mut dests: Vec<String> = volumes.iter().map(|v| clean_path(&format!("/{v}"))).collect();
    dests.sort();
    dests.dedup();
    dests
        .into_iter()
        .filter(|d| !in_cri_mounts(d, cri_mounts))
        .enumerate()
        .map(|(n, dest)| Volume {
            dir: volumes_dir.join(format!("{n}{}", dest.replace('/', "_"))),
            container_path: dest,
        })
        .collect()
}

/// Creates the volume directories, seeded from the image. Called last, once the whole spec
/// is known to be valid, so a rejected request leaves nothing behind.
pub fn create(volumes: &[Volume], image: &LayeredFs) -> Result<(), SpecError> {
    volumes.iter().try_for_each(|v| create_seeded(&v.dir, &v.container_path, image))
}

/// Makes `dir` a copy of the image's directory `dest` (or an empty 0755 directory when the
/// image has none). An existing `dir` is left as it is: it was seeded by an earlier attempt.
fn create_seeded(dir: &Path, dest: &str, image: &LayeredFs) -> Result<(), SpecError> {
    if dir.exists() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(|e| SpecError::io("creating volume directory", dir, e))?;
    let source = image.resolve(dest).map_err(|e| SpecError::io("reading the image's", dest, e))?;
    match source {
        Some(node) if node.is_dir() => {
            copy_tree(image, &node, dir).map_err(|e| SpecError::io("seeding volume", dir, e))
        }
        other => {
            if other.is_some() {
                debug!(volume = dest, "image VOLUME path is not a directory in the image; the volume starts empty");
            }
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
                .map_err(|e| SpecError::io("creating volume directory", dir, e))
        }
    }
}

/// Copies the content of image directory `node` into host directory `dest`, keeping owners and
/// modes. Device nodes, FIFOs and sockets are skipped: they have no place in a volume.
fn copy_tree(image: &LayeredFs, node: &Node, dest: &Path) -> io::Result<()> {
    for (name, child) in image.read_dir(node)? {
        let target = dest.join(&name);
        let file_type = child.meta.file_type();
        if file_type.is_dir() {
            fs::create_dir(&target)?;
            copy_tree(image, &child, &target)?;
        } else if file_type.is_file() {
            fs::copy(&child.host_path, &target)?;
        } else if file_type.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&child.host_path)?, &target)?;
            std::os::unix::fs::lchown(&target, Some(child.meta.uid()), Some(child.meta.gid()))?;
            continue;
        } else {
            debug!(path = %child.host_path.display(), "skipping special file in image volume");
            continue;
        }
        copy_owner_and_mode(&child.meta, &target)?;
    }
    copy_owner_and_mode(&node.meta, dest)
}

fn copy_owner_and_mode(meta: &fs::Metadata, target: &Path) -> io::Result<()> {
    std::os::unix::fs::chown(target, Some(meta.uid()), Some(meta.gid()))?;
    // After chown: chown clears setuid/setgid bits, which must survive the copy.
    fs::set_permissions(target, fs::Permissions::from_mode(meta.mode() & 0o7777))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::testutil::Layers;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn volumes_are_seeded_from_the_image() {
        let layers = Layers::new(2);
        layers.file(1, "var/lib/db/base.conf", "lower");
        layers.file(1, "var/lib/db/old", "deleted above");
        layers.file(0, "var/lib/db/.wh.old", "");
        layers.file(0, "var/lib/db/sub/top.conf", "upper");
        layers.symlink(0, "var/lib/db/link", "base.conf");
        // The top layer's copy of the directory is the one overlayfs shows: its owner and mode count.
        let db = layers.path(0, "var/lib/db");
        std::os::unix::fs::chown(&db, Some(999), Some(998)).unwrap();
        fs::set_permissions(&db, fs::Permissions::from_mode(0o700)).unwrap();
        fs::set_permissions(layers.path(1, "var/lib/db/base.conf"), fs::Permissions::from_mode(0o640)).unwrap();
        let state = tempfile::tempdir().unwrap();

        let volumes = ["/var/lib/db".to_string(), "cache".to_string(), "/data/".to_string(), "/var/lib/db".to_string()];
        let cri = [v1::Mount { container_path: "/data".into(), host_path: "/srv".into(), ..Default::default() }];
        let planned = plan(&volumes, &cri, state.path());
        let got: Vec<(&str, PathBuf)> = planned
            .iter()
            .map(|v| (v.container_path.as_str(), v.dir.strip_prefix(state.path()).unwrap().to_path_buf()))
            .collect();
        assert_eq!(got, [("/cache", PathBuf::from("0_cache")), ("/var/lib/db", PathBuf::from("1_var_lib_db"))]);
        assert_eq!(fs::read_dir(state.path()).unwrap().count(), 0, "planning creates nothing");
        let mount = planned[1].to_mount();
        assert!(!mount.readonly && mount.propagation == 0);
        create(&planned, &LayeredFs::new(layers.paths())).unwrap();

        let vol = state.path().join("1_var_lib_db");
        let meta = fs::metadata(&vol).unwrap();
        assert_eq!((meta.uid(), meta.gid(), meta.mode() & 0o7777), (999, 998, 0o700));
        assert_eq!(fs::read_to_string(vol.join("base.conf")).unwrap(), "lower");
        assert_eq!(fs::metadata(vol.join("base.conf")).unwrap().mode() & 0o777, 0o640);
        assert_eq!(fs::read_to_string(vol.join("sub/top.conf")).unwrap(), "upper");
        assert_eq!(fs::read_link(vol.join("link")).unwrap(), Path::new("base.conf"));
        assert!(!vol.join("old").exists(), "whited-out files are not copied");
        assert!(!vol.join(".wh.old").exists());
        let empty = state.path().join("0_cache");
        assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
        assert_eq!(fs::metadata(&empty).unwrap().mode() & 0o777, 0o755);

        // A second build (same container) keeps what is there.
        fs::write(vol.join("written-by-app"), "x").unwrap();
        create(&planned, &LayeredFs::new(layers.paths())).unwrap();
        assert!(vol.join("written-by-app").exists());
    }
}
