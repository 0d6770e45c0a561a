//! A read-only view of an image's root filesystem straight from its unpacked layer
//! directories, as overlayfs would show it, without mounting anything.
//!
//! The spec builder needs a few files of the image before the container exists: `/etc/passwd`
//! and `/etc/group` to resolve users, and the content of `VOLUME` directories to seed the
//! volumes. containerd mounts the snapshot read-only for that; corral reads the layers
//! directly, which is cheaper and leaves no mount behind on a crash.
//!
//! Layers are given top first. An upper layer hides a lower one's entry by
//! - having an entry of the same name (a file over a directory hides the whole directory),
//! - a whiteout: `.wh.<name>` (OCI layer format) or a 0/0 character device named `<name>`
//!   (overlayfs format),
//! - an opaque directory: a `.wh..wh..opq` marker in it (OCI) or the xattr
//!   `trusted.overlay.opaque=y` / `user.overlay.opaque=y` (overlayfs): nothing below it in
//!   lower layers is visible.
//!
//! Symlinks are followed inside the image (an absolute target starts again at the image
//! root), never onto the host.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
/// Linux gives up after 40 symlinks in one path resolution; so do we.
const MAX_SYMLINKS: usize = 40;

/// The merged view of a stack of layer directories (top first).
pub struct LayeredFs<'a> {
    layers: &'a [PathBuf],
}

/// One visible entry of the merged view.
#[derive(Debug, Clone)]
pub struct Node {
    /// Path inside the image, without symlinks, relative to the root ("" for the root).
    pub rel: PathBuf,
    /// The top-most layer's copy of the entry on the host.
    pub host_path: PathBuf,
    /// Its metadata (of the entry itself, not of a symlink's target).
    pub meta: Metadata,
    /// For a directory: the layers (indices, top first) whose copies make up its content.
    dir_layers: Vec<usize>,
}

impl Node {
    /// Whether the entry is a directory.
    pub fn is_dir(&self) -> bool {
        self.meta.is_dir()
    }
}

impl<'a> LayeredFs<'a> {
    /// A view of `layers`, top layer first.
    pub fn new(layers: &'a [PathBuf]) -> LayeredFs<'a> {
        LayeredFs { layers }
    }

    /// Reads a file of the image; `Ok(None)` when it does not exist (or is hidden).
    pub fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        match self.resolve(path)? {
            None => Ok(None),
            Some(node) if node.is_dir() => {
                Err(io::Error::new(io::ErrorKind::IsADirectory, format!("{path} is a directory in the image")))
            }
            Some(node) => fs::read(&node.host_path).map(Some),
        }
    }

    /// Finds the visible entry at `path` (absolute inside the image), following symlinks.
    pub fn resolve(&self, path: &str) -> io::Result<Option<Node>> {
        let Some(root) = self.root()? else { return Ok(None) };
        let mut stack = vec![root];
        let mut pending: Vec<String> = components(path).into_iter().rev().collect();
        let mut symlinks = 0;
        while let Some(name) = pending.pop() {
            match name.as_str() {
                "." => continue,
                ".." => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                    continue;
                }
                _ => {}
            }
            let Some(parent) = stack.last().filter(|p| p.is_dir()) else { return Ok(None) };
            let Some(child) = self.child(parent, &name)? else { return Ok(None) };
            if child.meta.file_type().is_symlink() {
                symlinks += 1;
                if symlinks > MAX_SYMLINKS {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("{path}: too many levels of symbolic links in the image"),
                    ));
                }
                let target = fs::read_link(&child.host_path)?;
                if target.is_absolute() {
                    stack.truncate(1);
                }
                pending.extend(components(&target.to_string_lossy()).into_iter().rev());
                continue;
            }
            stack.push(child);
        }
        Ok(stack.pop())
    }

    /// The visible entries of a directory, by name (sorted).
    pub fn read_dir(&self, dir: &Node) -> io::Result<Vec<(String, Node)>> {
        let mut names = BTreeSet::new();
        for &layer in &dir.dir_layers {
            let path = self.layers[layer].join(&dir.rel);
            for entry in fs::read_dir(&path)? {
                let name = entry?.file_name().to_string_lossy().into_owned();
                if !name.starts_with(WHITEOUT_PREFIX) {
                    names.insert(name);
                }
            }
        }
        let mut out = Vec::new();
        for name in names {
            if let Some(node) = self.child(dir, &name)? {
                out.push((name, node));
            }
        }
        Ok(out)
    }

    /// The root directory: every layer down to (and including) the first opaque root.
    fn root(&self) -> io::Result<Option<Node>> {
        let Some(top) = self.layers.first() else { return Ok(None) };
        let meta = fs::symlink_metadata(top)?;
        let mut dir_layers = Vec::new();
        for (i, layer) in self.layers.iter().enumerate() {
            dir_layers.push(i);
            if is_opaque(layer)? {
                break;
            }
        }
        Ok(Some(Node { rel: PathBuf::new(), host_path: top.clone(), meta, dir_layers }))
    }

    /// Looks up `name` in directory `dir`.
    fn child(&self, dir: &Node, name: &str) -> io::Result<Option<Node>> {
        for (pos, &layer) in dir.dir_layers.iter().enumerate() {
            let parent = self.layers[layer].join(&dir.rel);
            if present(&parent.join(format!("{WHITEOUT_PREFIX}{name}"))) {
                return Ok(None);
            }
            let path = parent.join(name);
            let meta = match fs::symlink_metadata(&path) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if is_overlay_whiteout(&meta) {
                return Ok(None);
            }
            let rel = dir.rel.join(name);
            if !meta.is_dir() {
                return Ok(Some(Node { rel, host_path: path, meta, dir_layers: Vec::new() }));
            }
            // A directory: lower layers' copies merge in until one hides the rest.
            let mut dir_layers = vec![layer];
            if !is_opaque(&path)? {
                for &lower in &dir.dir_layers[pos + 1..] {
                    let lower_parent = self.layers[lower].join(&dir.rel);
                    if present(&lower_parent.join(format!("{WHITEOUT_PREFIX}{name}"))) {
                        break;
                    }
                    let lower_path = lower_parent.join(name);
                    match fs::symlink_metadata(&lower_path) {
                        Ok(m) if m.is_dir() => {
                            dir_layers.push(lower);
                            if is_opaque(&lower_path)? {
                                break;
                            }
                        }
                        Ok(_) => break, // a file or whiteout device hides everything below
                        Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(e),
                    }
                }
            }
            return Ok(Some(Node { rel, host_path: path, meta, dir_layers }));
        }
        Ok(None)
    }
}

fn components(path: &str) -> Vec<String> {
    path.split('/').filter(|c| !c.is_empty()).map(str::to_string).collect()
}

/// Whether a directory entry exists (a marker may be anything, even a dangling symlink).
fn present(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// overlayfs marks a deleted entry with a character device 0/0.
fn is_overlay_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

/// Whether a layer's directory hides the same directory of lower layers.
fn is_opaque(dir: &Path) -> io::Result<bool> {
    if present(&dir.join(OPAQUE_MARKER)) {
        return Ok(true);
    }
    for attr in ["trusted.overlay.opaque", "user.overlay.opaque"] {
        if xattr_is_y(dir, attr)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether extended attribute `name` of `path` (not following symlinks) is "y".
fn xattr_is_y(path: &Path, name: &str) -> io::Result<bool> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let c_name = CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "bad xattr name"))?;
    let mut value = [0u8; 2];
    // SAFETY: both strings are NUL-terminated and outlive the call; the kernel writes at most
    // `value.len()` bytes into `value`.
    let n = unsafe { libc::lgetxattr(c_path.as_ptr(), c_name.as_ptr(), value.as_mut_ptr().cast(), value.len()) };
    if n < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            // Not set, not supported by the filesystem, value longer than "y", or no
            // permission to read trusted.* (not root): none of these mean "opaque".
            Some(libc::ENODATA | libc::ENOTSUP | libc::ERANGE | libc::EPERM) => Ok(false),
            _ => Err(err),
        };
    }
    Ok(&value[..n as usize] == b"y")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::testutil::Layers;

    fn read(view: &LayeredFs, path: &str) -> Option<String> {
        view.read(path).unwrap().map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn upper_layer_wins_and_lower_shows_through() {
        let layers = Layers::new(2);
        layers.file(1, "etc/passwd", "lower");
        layers.file(1, "etc/group", "lower group");
        layers.file(0, "etc/passwd", "upper");
        let view = LayeredFs::new(layers.paths());
        assert_eq!(read(&view, "/etc/passwd").as_deref(), Some("upper"));
        assert_eq!(read(&view, "/etc/group").as_deref(), Some("lower group"));
        assert_eq!(read(&view, "/etc/shadow"), None);
        assert_eq!(read(&view, "etc//./passwd").as_deref(), Some("upper"), "relative and unclean paths");
    }

    #[test]
    fn oci_whiteouts_hide_files_and_directories() {
        let layers = Layers::new(3);
        layers.file(2, "etc/passwd", "bottom");
        layers.file(2, "etc/group", "bottom");
        layers.file(2, "opt/app/config", "bottom");
        layers.file(1, "etc/.wh.passwd", "");
        layers.file(1, ".wh.opt", "");
        layers.file(0, "opt/other", "top");
        let view = LayeredFs::new(layers.paths());
        assert_eq!(read(&view, "/etc/passwd"), None);
        assert_eq!(read(&view, "/etc/group").as_deref(), Some("bottom"));
        assert_eq!(read(&view, "/opt/app/config"), None, "a whited-out directory hides its content");
        assert_eq!(read(&view, "/opt/other").as_deref(), Some("top"), "a new directory above the whiteout");
    }

    #[test]
    fn opaque_directories_hide_lower_content() {
        let layers = Layers::new(2);
        layers.file(1, "etc/passwd", "lower");
        layers.file(1, "etc/hosts", "lower");
        layers.file(0, "etc/.wh..wh..opq", "");
        layers.file(0, "etc/group", "upper");
        let view = LayeredFs::new(layers.paths());
        assert_eq!(read(&view, "/etc/passwd"), None);
        assert_eq!(read(&view, "/etc/group").as_deref(), Some("upper"));
        let etc = view.resolve("/etc").unwrap().unwrap();
        let names: Vec<String> = view.read_dir(&etc).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["group"], "the marker itself is not an entry");
    }

    #[test]
    fn overlay_native_whiteouts_and_opaque_xattr() {
        let layers = Layers::new(2);
        layers.file(1, "etc/passwd", "lower");
        layers.file(1, "etc/group", "lower");
        layers.file(1, "var/lib/x", "lower");
        layers.overlay_whiteout(0, "etc/passwd");
        layers.dir(0, "var/lib");
        layers.set_overlay_opaque(0, "var/lib");
        let view = LayeredFs::new(layers.paths());
        assert_eq!(read(&view, "/etc/passwd"), None);
        assert_eq!(read(&view, "/etc/group").as_deref(), Some("lower"));
        assert_eq!(read(&view, "/var/lib/x"), None);
    }

    #[test]
    fn a_file_over_a_directory_hides_it() {
        let layers = Layers::new(2);
        layers.file(1, "srv/data/a", "lower");
        layers.file(0, "srv/data", "now a file");
        let view = LayeredFs::new(layers.paths());
        assert_eq!(read(&view, "/srv/data").as_deref(), Some("now a file"));
        assert_eq!(read(&view, "/srv/data/a"), None);
    }

    #[test]
    fn symlinks_resolve_inside_the_image() {
        let layers = Layers::new(2);
        layers.file(1, "usr/etc/passwd", "real");
        layers.symlink(0, "etc", "usr/etc"); // relative
        layers.symlink(0, "abs", "/usr/etc/passwd"); // absolute: the image root, not the host's
        layers.symlink(0, "escape", "../../../../../../etc/hostname"); // `..` stops at the root
        layers.symlink(0, "loop", "loop");
        let view = LayeredFs::new(layers.paths());
        assert_eq!(read(&view, "/etc/passwd").as_deref(), Some("real"));
        assert_eq!(read(&view, "/abs").as_deref(), Some("real"));
        assert_eq!(read(&view, "/escape"), None, "never the host's /etc/hostname");
        let err = view.read("/loop").unwrap_err();
        assert!(err.to_string().contains("too many levels"), "{err}");
    }

    #[test]
    fn read_dir_merges_layers() {
        let layers = Layers::new(3);
        layers.file(2, "data/a", "a");
        layers.file(2, "data/b", "b");
        layers.file(1, "data/.wh.b", "");
        layers.file(1, "data/c", "c");
        layers.file(0, "data/d", "d");
        let view = LayeredFs::new(layers.paths());
        let data = view.resolve("/data").unwrap().unwrap();
        let names: Vec<String> = view.read_dir(&data).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "c", "d"]);
    }

    #[test]
    fn no_layers_is_an_empty_image() {
        let view = LayeredFs::new(&[]);
        assert_eq!(view.read("/etc/passwd").unwrap(), None);
    }
}
