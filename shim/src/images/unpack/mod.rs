//! Unpacking one layer tar into its own directory, the way overlayfs wants it, without trusting
//! the tar.
//!
//! - Paths: `..`, absolute paths and overlong names are refused (`paths.rs`); every file
//!   operation is relative to a layer-root fd and cannot leave it or pass through a symlink
//!   (`root.rs`). An entry "below" a symlink (the classic symlink-then-write-through attack)
//!   therefore fails, even when the symlink points inside the layer: a layer tar produced by
//!   a real build never does that.
//! - Symlinks are created as written: their targets are resolved later inside the container's
//!   root, where `/` and `..` cannot leave it.
//! - Hard links must point to an earlier entry of the same layer.
//! - Device nodes: char 0/0 (an overlay whiteout) anywhere; other character and block devices
//!   only under `dev/`, where the runtime mounts a fresh tmpfs, so they are never reachable in a
//!   container; anywhere else they are refused. FIFOs are allowed.
//! - Headers: the GNU long-name / PAX data of one entry may not exceed 1 MiB (`stream.rs`).
//! - Whiteouts: `.wh.NAME` becomes a 0/0 character device `NAME`, `.wh..wh..opq` the
//!   `trusted.overlay.opaque=y` xattr on its directory, as overlayfs expects. `trusted.overlay.*`
//!   xattrs from the tar itself are dropped: overlayfs would obey them (redirects, metacopy).
//! - Metadata: mode (with setuid/setgid/sticky), numeric owner, xattrs and mtime are applied;
//!   directory mtimes at the end, after their contents were written.
//! - The uncompressed stream's sha256 must equal the diff id from the image config.

pub(crate) mod paths;
mod root;
mod stream;

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use tar::EntryType;

use self::paths::EntryPath;
use self::root::{DirFd, LayerRoot, open_beneath, proc_path, reopen_dir};
pub use self::stream::Compression;
use self::stream::{Budgeted, Hashing};
use super::digest::Digest;
use super::error::{ImageError, IoContext, Result};

/// At most this many bytes of headers (long names, PAX records) per entry.
const MAX_HEADER_BYTES: u64 = 1 << 20;
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What an unpack did.
#[derive(Debug, Default, Clone, Copy)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
    pub compression: Option<Compression>,
}

/// Unpacks the layer blob at `blob` into the empty directory `dest`, checking that the
/// uncompressed tar has the digest `diff_id`. On error `dest` holds a partial layer: the
/// caller discards it.
pub fn unpack_layer(blob: &Path, dest: &Path, layer: &Digest, diff_id: &Digest) -> Result<UnpackStats> {
    let file = File::open(blob).ctx("opening layer blob", blob)?;
    let (compression, reader) = stream::decompress(file).map_err(|e| bad(layer, format!("reading: {e}")))?;
    let (reader, budget) = Budgeted::new(Hashing::new(reader));
    let mut archive = tar::Archive::new(reader);
    let root = LayerRoot::open(dest).ctx("opening layer directory", dest)?;
    let mut unpacker =
        Unpacker { root, layer: layer.to_string(), dir_times: Vec::new(), stats: UnpackStats::default() };
    unpacker.stats.compression = Some(compression);
    {
        let mut entries = archive.entries().map_err(|e| bad(layer, format!("not a tar stream: {e}")))?;
        loop {
            budget.limit(MAX_HEADER_BYTES);
            let next = entries.next();
            budget.lift();
            let Some(entry) = next else { break };
            let mut entry = entry.map_err(|e| tar_error(layer, e))?;
            unpacker.apply(&mut entry)?;
            // Drain what apply did not read, so the next header read is only headers.
            io::copy(&mut entry, &mut io::sink()).map_err(|e| tar_error(layer, e))?;
        }
    }
    unpacker.finish()?;
    let hasher = archive.into_inner().into_inner().finish().map_err(|e| tar_error(layer, e))?;
    let actual = Digest::from_hasher(hasher);
    if &actual != diff_id {
        return Err(bad(layer, format!("uncompressed content has digest {actual}, the image config says {diff_id}")));
    }
    Ok(unpacker.stats)
}

fn bad(layer: &Digest, reason: String) -> ImageError {
    ImageError::BadLayer { layer: layer.to_string(), reason }
}

fn tar_error(layer: &Digest, e: io::Error) -> ImageError {
    if e.to_string().contains(stream::OVERSIZE_HEADER) {
        return bad(layer, format!("{} (limit {MAX_HEADER_BYTES} bytes)", stream::OVERSIZE_HEADER));
    }
    bad(layer, format!("corrupt tar stream: {e}"))
}

/// Owner, mode, times and xattrs of one entry.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: Timespec,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Meta {
    fn timestamps(&self) -> Timestamps {
        Timestamps { last_access: self.mtime, last_modification: self.mtime }
    }
}

struct Unpacker {
    root: LayerRoot,
    layer: String,
    /// Directories whose mtime is set at the end (writing into them changes it).
    dir_times: Vec<(Vec<u8>, Timestamps)>,
    stats: UnpackStats,
}

impl Unpacker {
    fn refuse(&self, entry: &str, reason: impl Into<String>) -> ImageError {
        ImageError::UnsafeLayer { layer: self.layer.clone(), entry: entry.into(), reason: reason.into() }
    }

    /// Turns a filesystem error on `entry` into a refusal when the kernel stopped a symlink or
    /// mount crossing, else into an I/O error naming the layer directory.
    fn fs_error(&self, entry: &str, step: &'static str, e: io::Error) -> ImageError {
        match e.raw_os_error() {
            Some(libc::ELOOP) | Some(libc::EXDEV) => self.refuse(entry, "its path goes through a symlink"),
            Some(libc::ENOTDIR) => self.refuse(entry, "a parent of it is not a directory"),
            _ => ImageError::io(step, self.root.path().join(entry), e),
        }
    }

    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let path = match paths::split(&raw_path) {
            Ok(Some(path)) => path,
            Ok(None) => return Ok(()), // the layer root keeps the snapshot's own metadata
            Err(reason) => return Err(self.refuse(&shown, reason)),
        };
        let kind = entry.header().entry_type();
        if kind == EntryType::XGlobalHeader {
            return Ok(());
        }
        let meta = self.meta(entry, &shown)?;
        self.stats.entries += 1;
        if path.name.starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(&path, &shown);
        }
        match kind {
            EntryType::Directory => self.directory(&path, &meta, &shown),
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.regular(&path, &meta, entry, &shown)
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                self.hardlink(&path, &target, &shown)
            }
            EntryType::Symlink => {
                let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                self.symlink(&path, &target, &meta, &shown)
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                self.special(&path, kind, major, minor, &meta, &shown)
            }
            other => Err(self.refuse(&shown, format!("unsupported tar entry type {:?}", other.as_byte() as char))),
        }
    }

    fn meta<R: Read>(&self, entry: &mut tar::Entry<'_, R>, shown: &str) -> Result<Meta> {
        let header = entry.header();
        let field = |what: &str, e: io::Error| self.refuse(shown, format!("bad {what} field: {e}"));
        let id = |v: u64, what: &str| {
            u32::try_from(v)
                .ok()
                .filter(|v| *v != u32::MAX)
                .ok_or_else(|| self.refuse(shown, format!("{what} {v} is out of range")))
        };
        let mode = header.mode().map_err(|e| field("mode", e))? & 0o7777;
        let uid = id(header.uid().map_err(|e| field("uid", e))?, "uid")?;
        let gid = id(header.gid().map_err(|e| field("gid", e))?, "gid")?;
        let secs = header.mtime().map_err(|e| field("mtime", e))?;
        let mut mtime = Timespec { tv_sec: i64::try_from(secs).unwrap_or(0), tv_nsec: 0 };
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(|e| field("PAX", e))? {
            for ext in pax {
                let ext = ext.map_err(|e| field("PAX", e))?;
                let key = ext.key_bytes();
                if key == b"mtime" {
                    if let Some(t) = parse_pax_time(ext.value_bytes()) {
                        mtime = t;
                    }
                } else if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    if xattr_allowed(name) {
                        xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                    } else {
                        tracing::warn!(layer = %self.layer, entry = shown, xattr = %String::from_utf8_lossy(name),
                            "dropping xattr from layer");
                    }
                }
            }
        }
        Ok(Meta { mode, uid, gid, mtime, xattrs })
    }

    fn parent(&mut self, path: &EntryPath<'_>, shown: &str) -> Result<DirFd> {
        self.root.dir(&path.parent, true).map_err(|e| self.fs_error(shown, "creating parent directories of", e))
    }

    fn whiteout(&mut self, path: &EntryPath<'_>, shown: &str) -> Result<()> {
        let parent = self.parent(path, shown)?;
        if path.name == OPAQUE_MARKER {
            let dir = reopen_dir(&parent).map_err(|e| self.fs_error(shown, "opening", e))?;
            return rustix::fs::fsetxattr(&dir, OPAQUE_XATTR, b"y", XattrFlags::empty())
                .map_err(|e| self.fs_error(shown, "setting trusted.overlay.opaque on the parent of", e.into()));
        }
        let hidden = &path.name[WHITEOUT_PREFIX.len()..];
        if hidden.starts_with(WHITEOUT_PREFIX) {
            return Ok(()); // AUFS bookkeeping (.wh..wh.plnk, .wh..wh.aufs), not image content
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(self.refuse(shown, "whiteout of an invalid name"));
        }
        self.root.clear(&parent, hidden, false).map_err(|e| self.fs_error(shown, "replacing", e))?;
        rustix::fs::mknodat(parent.as_fd(), OsStr::from_bytes(hidden), FileType::CharacterDevice, Mode::empty(), 0)
            .map_err(|e| self.fs_error(shown, "creating whiteout", e.into()))
    }

    fn directory(&mut self, path: &EntryPath<'_>, meta: &Meta, shown: &str) -> Result<()> {
        let parent = self.parent(path, shown)?;
        let name = OsStr::from_bytes(path.name);
        let existed = self.root.clear(&parent, path.name, true).map_err(|e| self.fs_error(shown, "replacing", e))?;
        if !existed {
            rustix::fs::mkdirat(parent.as_fd(), name, Mode::from_raw_mode(0o700))
                .map_err(|e| self.fs_error(shown, "creating directory", e.into()))?;
        }
        let dir = open_beneath(&parent, path.name, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| self.fs_error(shown, "opening directory", e))?;
        self.set_fd_meta(&dir, meta, shown)?;
        self.dir_times.push((path.joined(), meta.timestamps()));
        Ok(())
    }

    fn regular<R: Read>(
        &mut self,
        path: &EntryPath<'_>,
        meta: &Meta,
        data: &mut tar::Entry<'_, R>,
        shown: &str,
    ) -> Result<()> {
        let parent = self.parent(path, shown)?;
        self.root.clear(&parent, path.name, false).map_err(|e| self.fs_error(shown, "replacing", e))?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(parent.as_fd(), OsStr::from_bytes(path.name), flags, Mode::from_raw_mode(0o600))
            .map_err(|e| self.fs_error(shown, "creating file", e.into()))?;
        let mut file = File::from(fd);
        let written = io::copy(data, &mut file).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof || e.kind() == io::ErrorKind::InvalidData {
                ImageError::BadLayer { layer: self.layer.clone(), reason: format!("reading {shown:?}: {e}") }
            } else {
                self.fs_error(shown, "writing", e)
            }
        })?;
        self.stats.bytes += written;
        self.set_fd_meta(&file, meta, shown)?;
        rustix::fs::futimens(&file, &meta.timestamps()).map_err(|e| self.fs_error(shown, "setting mtime of", e.into()))
    }

    fn hardlink(&mut self, path: &EntryPath<'_>, target: &[u8], shown: &str) -> Result<()> {
        let target_path = match paths::split(target) {
            Ok(Some(t)) => t,
            Ok(None) => return Err(self.refuse(shown, "hard link to the layer root")),
            Err(reason) => {
                return Err(
                    self.refuse(shown, format!("hard link target {:?}: {reason}", String::from_utf8_lossy(target)))
                );
            }
        };
        if target_path == *path {
            return Err(self.refuse(shown, "hard link to itself"));
        }
        let missing =
            || format!("hard link target {:?} is not an earlier entry of this layer", String::from_utf8_lossy(target));
        let target_parent = match self.root.dir(&target_path.parent, false) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(self.refuse(shown, missing())),
            Err(e) => return Err(self.fs_error(shown, "resolving hard link target of", e)),
        };
        let parent = self.parent(path, shown)?;
        self.root.clear(&parent, path.name, false).map_err(|e| self.fs_error(shown, "replacing", e))?;
        match rustix::fs::linkat(
            target_parent.as_fd(),
            OsStr::from_bytes(target_path.name),
            parent.as_fd(),
            OsStr::from_bytes(path.name),
            AtFlags::empty(),
        ) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::NOENT) => Err(self.refuse(shown, missing())),
            Err(rustix::io::Errno::PERM) => Err(self.refuse(shown, "hard link to a directory")),
            Err(e) => Err(self.fs_error(shown, "creating hard link", e.into())),
        }
    }

    fn symlink(&mut self, path: &EntryPath<'_>, target: &[u8], meta: &Meta, shown: &str) -> Result<()> {
        if target.is_empty() || target.len() >= paths::MAX_PATH {
            return Err(self.refuse(shown, "symlink target is empty or longer than 4095 bytes"));
        }
        let parent = self.parent(path, shown)?;
        self.root.clear(&parent, path.name, false).map_err(|e| self.fs_error(shown, "replacing", e))?;
        rustix::fs::symlinkat(OsStr::from_bytes(target), parent.as_fd(), OsStr::from_bytes(path.name))
            .map_err(|e| self.fs_error(shown, "creating symlink", e.into()))?;
        self.set_node_meta(&parent, path.name, meta, false, shown)
    }

    fn special(
        &mut self,
        path: &EntryPath<'_>,
        kind: EntryType,
        major: u32,
        minor: u32,
        meta: &Meta,
        shown: &str,
    ) -> Result<()> {
        let file_type = match kind {
            EntryType::Char => FileType::CharacterDevice,
            EntryType::Block => FileType::BlockDevice,
            _ => FileType::Fifo,
        };
        let whiteout_form = kind == EntryType::Char && major == 0 && minor == 0;
        if kind != EntryType::Fifo && !whiteout_form && !path.is_under(b"dev") {
            return Err(self.refuse(shown, format!("device node {major}:{minor} outside /dev")));
        }
        let parent = self.parent(path, shown)?;
        self.root.clear(&parent, path.name, false).map_err(|e| self.fs_error(shown, "replacing", e))?;
        let dev = rustix::fs::makedev(major, minor);
        rustix::fs::mknodat(parent.as_fd(), OsStr::from_bytes(path.name), file_type, Mode::empty(), dev)
            .map_err(|e| self.fs_error(shown, "creating node", e.into()))?;
        self.set_node_meta(&parent, path.name, meta, true, shown)
    }

    /// Owner, mode and xattrs of an open file or directory (owner first: chown clears setuid).
    fn set_fd_meta<Fd: AsFd>(&self, fd: Fd, meta: &Meta, shown: &str) -> Result<()> {
        let owner = (rustix::fs::Uid::from_raw(meta.uid), rustix::fs::Gid::from_raw(meta.gid));
        rustix::fs::fchown(&fd, Some(owner.0), Some(owner.1)).map_err(|e| self.fs_error(shown, "chown", e.into()))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(meta.mode)).map_err(|e| self.fs_error(shown, "chmod", e.into()))?;
        for (name, value) in &meta.xattrs {
            let result = rustix::fs::fsetxattr(&fd, OsStr::from_bytes(name), value, XattrFlags::empty());
            self.xattr_result(result, name, shown)?;
        }
        Ok(())
    }

    /// Owner, mode (not for symlinks), xattrs and mtime of a node that cannot be opened
    /// (symlink, device, FIFO), addressed by parent fd + name without following it.
    fn set_node_meta(&self, parent: &DirFd, name: &[u8], meta: &Meta, chmod: bool, shown: &str) -> Result<()> {
        let os_name = OsStr::from_bytes(name);
        let owner = (rustix::fs::Uid::from_raw(meta.uid), rustix::fs::Gid::from_raw(meta.gid));
        rustix::fs::chownat(parent.as_fd(), os_name, Some(owner.0), Some(owner.1), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.fs_error(shown, "chown", e.into()))?;
        if chmod {
            // The node was just created by mknodat in a directory only corral writes to; it is
            // not a symlink, so following is moot (fchmodat has no working NOFOLLOW on Linux).
            rustix::fs::chmodat(parent.as_fd(), os_name, Mode::from_raw_mode(meta.mode), AtFlags::empty())
                .map_err(|e| self.fs_error(shown, "chmod", e.into()))?;
        }
        for (xname, value) in &meta.xattrs {
            let result =
                rustix::fs::lsetxattr(proc_path(parent, name), OsStr::from_bytes(xname), value, XattrFlags::empty());
            self.xattr_result(result, xname, shown)?;
        }
        rustix::fs::utimensat(parent.as_fd(), os_name, &meta.timestamps(), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| self.fs_error(shown, "setting mtime of", e.into()))
    }

    /// Filesystems without support for an xattr namespace: warn and go on, as containerd does.
    fn xattr_result(&self, result: rustix::io::Result<()>, name: &[u8], shown: &str) -> Result<()> {
        match result {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::NOTSUP) => {
                tracing::warn!(layer = %self.layer, entry = shown, xattr = %String::from_utf8_lossy(name),
                    "filesystem does not support this xattr; skipped");
                Ok(())
            }
            Err(e) => Err(self.fs_error(shown, "setting xattr on", e.into())),
        }
    }

    /// Directory mtimes, now that nothing more is written into them.
    fn finish(&mut self) -> Result<()> {
        for (path, times) in std::mem::take(&mut self.dir_times) {
            let shown = String::from_utf8_lossy(&path).into_owned();
            let dir = match self.root.dir(&[&path[..]], false) {
                Ok(dir) => dir,
                // Replaced by a later entry (removed, or now a file).
                Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => continue,
                Err(e) => return Err(self.fs_error(&shown, "opening directory", e)),
            };
            let fd = reopen_dir(&dir).map_err(|e| self.fs_error(&shown, "opening directory", e))?;
            rustix::fs::futimens(&fd, &times).map_err(|e| self.fs_error(&shown, "setting mtime of", e.into()))?;
        }
        self.root.invalidate();
        Ok(())
    }
}

/// xattrs a layer may carry. `trusted.overlay.*` would steer overlayfs itself.
fn xattr_allowed(name: &[u8]) -> bool {
    if name.starts_with(b"trusted.overlay.") {
        return false;
    }
    name.starts_with(b"user.")
        || name.starts_with(b"trusted.")
        || name.starts_with(b"security.")
        || name == b"system.posix_acl_access"
        || name == b"system.posix_acl_default"
}

/// PAX times are decimal seconds with an optional fraction: `1700000000.123456789`.
fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let text = std::str::from_utf8(value).ok()?;
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let tv_nsec = if digits.is_empty() { 0 } else { format!("{digits:0<9}").parse().ok()? };
    Some(Timespec { tv_sec, tv_nsec })
}

#[cfg(test)]
mod tests;
