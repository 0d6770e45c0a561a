//! File operations confined to one layer directory.
//!
//! Every operation starts from a file descriptor of the layer root and resolves parent
//! directories with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS |
//! RESOLVE_NO_XDEV)`: the kernel refuses any resolution that would leave the root, cross a
//! symlink (even one pointing inside) or a mount. The final component is then created or
//! changed with an `*at` call on the parent fd that never follows a symlink (`O_NOFOLLOW`,
//! `O_EXCL`, `AT_SYMLINK_NOFOLLOW`, `linkat` without `AT_SYMLINK_FOLLOW`). So no tar entry can
//! make corral write outside the layer, whatever symlinks earlier entries planted. This is the
//! proof the unpacker relies on; keep every new operation in this shape.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags};

const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// A directory fd opened with `O_PATH`: usable as the base of `*at` calls only.
pub type DirFd = Rc<OwnedFd>;

/// The root of one layer being unpacked, with a one-entry cache of the last parent directory
/// (tar streams list a directory's files together).
pub struct LayerRoot {
    root: DirFd,
    path: PathBuf,
    cache: Option<(Vec<u8>, DirFd)>,
}

/// Joins components for cache keys and messages.
fn join(components: &[&[u8]]) -> Vec<u8> {
    components.join(&b'/')
}

impl LayerRoot {
    /// Opens the (empty) layer directory.
    pub fn open(path: &Path) -> io::Result<LayerRoot> {
        let fd = rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        Ok(LayerRoot { root: Rc::new(fd), path: path.to_owned(), cache: None })
    }

    /// The layer directory's path (for messages only; never used to reach files).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Forgets the cached parent; called after anything is removed, since the cached
    /// directory may have been unlinked.
    pub fn invalidate(&mut self) {
        self.cache = None;
    }

    /// The directory `components` below the root, creating missing ones with mode 0755 when
    /// `create` (tar streams may omit parent directories).
    pub fn dir(&mut self, components: &[&[u8]], create: bool) -> io::Result<DirFd> {
        if components.is_empty() {
            return Ok(self.root.clone());
        }
        let key = join(components);
        if let Some((cached, fd)) = &self.cache
            && *cached == key
        {
            return Ok(fd.clone());
        }
        let fd = match open_beneath(&self.root, &key, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => self.create_dirs(components)?,
            Err(e) => return Err(e),
        };
        let fd = Rc::new(fd);
        self.cache = Some((key, fd.clone()));
        Ok(fd)
    }

    fn create_dirs(&self, components: &[&[u8]]) -> io::Result<OwnedFd> {
        let mut current = open_beneath(&self.root, b".", OFlags::PATH | OFlags::DIRECTORY)?;
        for component in components {
            match rustix::fs::mkdirat(&current, OsStr::from_bytes(component), Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            current = open_beneath(&current, component, OFlags::PATH | OFlags::DIRECTORY)?;
        }
        Ok(current)
    }

    /// Removes `name` in `parent` if it exists: a file is unlinked, a directory removed with
    /// everything in it (a later tar entry replaces an earlier one). Directories are kept when
    /// `keep_dir`. Returns whether a directory was kept.
    pub fn clear(&mut self, parent: &DirFd, name: &[u8], keep_dir: bool) -> io::Result<bool> {
        let name = OsStr::from_bytes(name);
        let stat = match rustix::fs::statat(parent.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(s) => s,
            Err(rustix::io::Errno::NOENT) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory {
            if keep_dir {
                return Ok(true);
            }
            remove_tree(parent, name)?;
            self.invalidate();
        } else {
            rustix::fs::unlinkat(parent.as_fd(), name, AtFlags::empty())?;
        }
        Ok(false)
    }
}

/// `openat2` below `base` that never crosses a symlink (not even as the last component:
/// `RESOLVE_NO_SYMLINKS` makes that `ELOOP`), `..` out of `base`, or a mount.
pub fn open_beneath<Fd: AsFd>(base: Fd, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat2(base, OsStr::from_bytes(path), flags | OFlags::CLOEXEC, Mode::empty(), RESOLVE)?)
}

/// A readable fd of the directory an `O_PATH` fd points to (for `fsetxattr`, `fchmod`, `futimens`).
pub fn reopen_dir(dir: &DirFd) -> io::Result<OwnedFd> {
    open_beneath(dir, b".", OFlags::RDONLY | OFlags::DIRECTORY)
}

/// The path through procfs that names `name` inside `parent` without following `name` itself,
/// for the calls that have no fd form (`lsetxattr` on symlinks and device nodes).
pub fn proc_path(parent: &DirFd, name: &[u8]) -> PathBuf {
    use std::os::fd::AsRawFd;
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", parent.as_raw_fd()));
    p.push(OsStr::from_bytes(name));
    p
}

fn remove_tree(parent: &DirFd, name: &OsStr) -> io::Result<()> {
    let dir = open_beneath(parent, name.as_bytes(), OFlags::RDONLY | OFlags::DIRECTORY)?;
    let entries: Vec<Vec<u8>> = rustix::fs::Dir::read_from(&dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_bytes().to_vec())
        .filter(|n| n != b"." && n != b"..")
        .collect();
    let dir = Rc::new(dir);
    for entry in entries {
        let entry = OsStr::from_bytes(&entry);
        let stat = rustix::fs::statat(dir.as_fd(), entry, AtFlags::SYMLINK_NOFOLLOW)?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory {
            remove_tree(&dir, entry)?;
        } else {
            rustix::fs::unlinkat(dir.as_fd(), entry, AtFlags::empty())?;
        }
    }
    rustix::fs::unlinkat(parent.as_fd(), name, AtFlags::REMOVEDIR)?;
    Ok(())
}
