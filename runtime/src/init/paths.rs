//! Resolving container paths inside the rootfs without escaping it.
//!
//! Mount destinations come from the spec but are resolved in a rootfs the image controls: a
//! symlink `/etc -> /` or `../../..` must not send a mount onto the host. Like
//! `filepath-securejoin` (used by runc), every symlink is resolved relative to the rootfs.

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// How many symlinks one resolution may follow (the kernel's MAXSYMLINKS is 40).
const MAX_LINKS: usize = 255;

/// `root` joined with the container path `path`, following symlinks inside `root` only.
/// Components that do not exist yet are appended as they are.
pub fn resolve_in_root(root: &Path, path: &Path) -> Result<PathBuf> {
    let mut pending: Vec<std::ffi::OsString> =
        path.components().rev().filter_map(|c| keep(c).map(|s| s.to_os_string())).collect();
    let mut resolved = PathBuf::new(); // relative to root
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = root.join(&resolved).join(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Error::InvalidSpec(format!("{path:?}: too many symlinks in the rootfs")));
                }
                let target =
                    std::fs::read_link(&candidate).map_err(|e| Error::io(format!("readlink {candidate:?}"), e))?;
                if target.is_absolute() {
                    resolved = PathBuf::new();
                }
                pending.extend(target.components().rev().filter_map(|c| keep(c).map(|s| s.to_os_string())));
            }
            _ => resolved.push(&part),
        }
    }
    Ok(root.join(resolved))
}

fn keep(c: Component<'_>) -> Option<&std::ffi::OsStr> {
    match c {
        Component::Normal(s) => Some(s),
        Component::ParentDir => Some("..".as_ref()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_stay_inside_the_root() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("real/dir")).unwrap();
        std::os::unix::fs::symlink("/", r.join("escape")).unwrap();
        std::os::unix::fs::symlink("../../../../real", r.join("up")).unwrap();
        std::os::unix::fs::symlink("real/dir", r.join("rel")).unwrap();
        assert_eq!(resolve_in_root(r, Path::new("/escape/etc")).unwrap(), r.join("etc"));
        assert_eq!(resolve_in_root(r, Path::new("/up/dir")).unwrap(), r.join("real/dir"));
        assert_eq!(resolve_in_root(r, Path::new("/rel/new")).unwrap(), r.join("real/dir/new"));
        assert_eq!(resolve_in_root(r, Path::new("/../../x")).unwrap(), r.join("x"));
    }

    #[test]
    fn symlink_loops_are_an_error() {
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("b", root.path().join("a")).unwrap();
        std::os::unix::fs::symlink("a", root.path().join("b")).unwrap();
        assert!(resolve_in_root(root.path(), Path::new("/a/x")).is_err());
    }
}
