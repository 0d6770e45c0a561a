//! Bytes and inodes used by a directory tree, for `ImageFsInfo` and writable-layer stats.
//!
//! kubelet's image garbage collector and eviction manager act on these numbers, so they
//! are measured, not estimated: allocated blocks (`st_blocks * 512`, what `du` shows) and
//! one inode per distinct (device, inode) pair, so hard links are counted once.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Disk use of one tree.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Allocated bytes.
    pub bytes: u64,
    /// Distinct inodes, the root directory included.
    pub inodes: u64,
}

/// Walks `root` without following symlinks or crossing into other filesystems.
///
/// A missing `root` uses nothing. Entries that vanish during the walk (a pull or a removal
/// running at the same time) are skipped rather than failing the whole measurement.
pub fn measure(root: &Path) -> io::Result<Usage> {
    let top = match std::fs::symlink_metadata(root) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Usage::default()),
        Err(e) => return Err(e),
    };
    let mut seen = HashSet::new();
    let mut usage = Usage::default();
    count(&top, &mut seen, &mut usage);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("reading {}: {e}", dir.display()))),
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.dev() != top.dev() {
                continue; // a mount inside the store (e.g. a container rootfs) is not image data
            }
            count(&meta, &mut seen, &mut usage);
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(usage)
}

fn count(meta: &std::fs::Metadata, seen: &mut HashSet<(u64, u64)>, usage: &mut Usage) {
    if seen.insert((meta.dev(), meta.ino())) {
        usage.inodes += 1;
        usage.bytes += meta.blocks() * 512;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_blocks_and_inodes_once_per_hard_link() {
        let dir = tempfile::tempdir().unwrap();
        let empty = measure(dir.path()).unwrap();
        assert_eq!(empty.inodes, 1);

        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a"), vec![7u8; 100_000]).unwrap();
        std::fs::hard_link(dir.path().join("sub/a"), dir.path().join("b")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();

        let usage = measure(dir.path()).unwrap();
        // root, sub, the file (two names, one inode), the symlink
        assert_eq!(usage.inodes, 4);
        assert!(usage.bytes >= 100_000, "{usage:?}");
        assert!(usage.bytes < 100_000 + 64 * 1024, "a hard link must not double the bytes: {usage:?}");
    }

    #[test]
    fn missing_dir_uses_nothing() {
        assert_eq!(measure(Path::new("/nonexistent/corral-test")).unwrap(), Usage::default());
    }
}
