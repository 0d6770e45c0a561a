//! Image pull with a cold store: RemoveImage, make sure the layers are really gone, then
//! time PullImage.
//!
//! "Really gone" is checked two ways on the runtime's image store directory (when given):
//! no file or directory there is named after one of the image's layer digests (containerd's
//! content store and corral's blob store both name blobs by digest), and the store's size
//! is reported after every removal, so a runtime that keeps unpacked layers under other
//! names shows up as a store that does not shrink back. A runtime that keeps content after
//! RemoveImage is a finding, not a failure: it is recorded in the results.
//!
//! Run it before anything else pulls an image that shares layers with the benchmark image
//! (bench/three-layers:v1 shares its base with busybox:latest), or the shared layer stays.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::client::Cri;
use super::error::{BenchError, Result};
use super::results::{Group, LatencyRow, PullCheck};
use super::stats::Samples;

/// At most this many leftover paths are recorded.
const MAX_LEFTOVERS: usize = 20;

/// What to pull and where the runtime keeps images.
pub struct PullPlan {
    pub image: String,
    /// Digests (`sha256:...`) of the image's layers.
    pub layers: Vec<String>,
    pub store: Option<PathBuf>,
}

pub async fn cold_pulls(
    cri: &Cri,
    plan: &PullPlan,
    warmup: usize,
    iterations: usize,
) -> Result<(LatencyRow, PullCheck)> {
    let mut check = PullCheck {
        image: plan.image.clone(),
        layers: plan.layers.clone(),
        leftovers: Vec::new(),
        store_bytes_initial: plan.store.as_deref().map(store_bytes).transpose()?,
        store_bytes_after_remove: Vec::new(),
    };
    let hexes: Vec<&str> = plan.layers.iter().map(|d| d.split_once(':').map_or(d.as_str(), |(_, hex)| hex)).collect();
    let mut samples = Samples::default();
    for i in 0..warmup + iterations {
        cri.remove_image(&plan.image).await?;
        if cri.has_image(&plan.image).await? {
            return Err(BenchError::check("pull", format!("{} is still listed after RemoveImage", plan.image)));
        }
        if let Some(store) = &plan.store {
            check.store_bytes_after_remove.push(store_bytes(store)?);
            for found in named_after(store, &hexes)? {
                if check.leftovers.len() < MAX_LEFTOVERS && !check.leftovers.contains(&found) {
                    check.leftovers.push(found);
                }
            }
        }
        let t = Instant::now();
        cri.pull_image(&plan.image).await?;
        let d = t.elapsed();
        if i >= warmup {
            samples.push(d);
        }
    }
    let row =
        LatencyRow::new("pull_cold", format!("PullImage {} (3 layers, cold store)", plan.image), Group::Pull, samples);
    Ok((row, check))
}

/// Total size of the regular files under `dir`, not crossing into other file systems.
/// A hard-linked file counts once (busybox's applets are hundreds of links to one binary).
pub fn store_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut linked = std::collections::HashSet::new();
    walk(dir, &mut |_, meta| {
        if meta.is_file() && (meta.nlink() == 1 || linked.insert((meta.dev(), meta.ino()))) {
            total += meta.len();
        }
    })?;
    Ok(total)
}

/// Paths under `dir` whose file name contains one of `hexes`.
pub fn named_after(dir: &Path, hexes: &[&str]) -> Result<Vec<String>> {
    let mut found = Vec::new();
    walk(dir, &mut |path, _| {
        let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
        if hexes.iter().any(|h| !h.is_empty() && name.contains(h)) {
            found.push(path.display().to_string());
        }
    })?;
    Ok(found)
}

/// Calls `visit` for every entry under `root` (not `root` itself), without following
/// symlinks or leaving `root`'s file system. A missing `root` has no entries.
fn walk(root: &Path, visit: &mut dyn FnMut(&Path, &std::fs::Metadata)) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let root_meta = match std::fs::symlink_metadata(root) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BenchError::io("stat", root, e)),
    };
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // The runtime may remove a directory while we look (asynchronous GC).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(BenchError::io("listing", &dir, e)),
        };
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            visit(&path, &meta);
            if meta.is_dir() && meta.dev() == root_meta.dev() {
                stack.push(path);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_size_and_digest_named_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        std::fs::write(blobs.join("aaaa1111"), vec![0u8; 1000]).unwrap();
        std::fs::create_dir_all(dir.path().join("layers/bbbb2222/fs")).unwrap();
        std::fs::write(dir.path().join("layers/bbbb2222/fs/f"), vec![0u8; 24]).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("link")).unwrap();
        std::fs::hard_link(blobs.join("aaaa1111"), dir.path().join("layers/bbbb2222/fs/link")).unwrap();

        assert_eq!(store_bytes(dir.path()).unwrap(), 1024, "a hard link counts once");
        let mut found = named_after(dir.path(), &["aaaa1111", "bbbb2222", "cccc"]).unwrap();
        found.sort();
        assert_eq!(
            found,
            vec![
                blobs.join("aaaa1111").display().to_string(),
                dir.path().join("layers/bbbb2222").display().to_string()
            ]
        );
        assert!(named_after(dir.path(), &["dddd"]).unwrap().is_empty());
        assert_eq!(store_bytes(&dir.path().join("missing")).unwrap(), 0);
    }
}
