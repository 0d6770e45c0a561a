//! Device nodes and symlinks of the container's `/dev` tmpfs.

use std::os::unix::fs::symlink;
use std::path::Path;

use nix::mount::{MsFlags, mount};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::paths::resolve_in_root;
use crate::error::{Context, Error, Result};

/// The nodes every container gets: (path, major, minor), all character devices, mode 0666.
const DEFAULT_DEVICES: [(&str, u64, u64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// Creates the default devices, the spec's devices and the standard symlinks under
/// `root/dev`. In a user namespace `mknod` is not allowed, so host nodes are bind-mounted.
pub fn populate(root: &Path, extra: &[LinuxDevice], in_userns: bool) -> Result<()> {
    for (path, major, minor) in DEFAULT_DEVICES {
        if extra.iter().any(|d| d.path().as_os_str() == path) {
            continue;
        }
        create(root, Path::new(path), SFlag::S_IFCHR, major, minor, 0o666, None, in_userns)?;
    }
    for d in extra {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => return Err(Error::InvalidSpec(format!("device {:?}: type a", d.path()))),
        };
        let owner = Some((d.uid().unwrap_or(0), d.gid().unwrap_or(0)));
        let mode = d.file_mode().unwrap_or(0o666);
        create(root, d.path(), kind, d.major() as u64, d.minor() as u64, mode, owner, in_userns)?;
    }
    let links = [
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("pts/ptmx", "/dev/ptmx"),
    ];
    for (target, link) in links {
        let at = resolve_in_root(root, Path::new(link))?;
        match symlink(target, &at) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(Error::io(format!("symlink {at:?} -> {target}"), e));
            }
            _ => {}
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn create(
    root: &Path,
    path: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    owner: Option<(u32, u32)>,
    in_userns: bool,
) -> Result<()> {
    let at = resolve_in_root(root, path)?;
    if let Some(parent) = at.parent() {
        std::fs::create_dir_all(parent).step(|| format!("mkdir {parent:?}"))?;
    }
    if in_userns {
        std::fs::File::create(&at).step(|| format!("create {at:?}"))?;
        return mount(Some(path), &at, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .step(|| format!("bind device {path:?} to {at:?}"));
    }
    let _ = std::fs::remove_file(&at);
    let perm = Mode::from_bits_truncate(mode & 0o7777);
    mknod(&at, kind, perm, makedev(major, minor)).step(|| format!("mknod {at:?} {major}:{minor}"))?;
    // mknod applies the umask; the spec's mode is exact.
    std::fs::set_permissions(&at, std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777))
        .step(|| format!("chmod {at:?}"))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(&at, Some(uid), Some(gid)).step(|| format!("chown {at:?}"))?;
    }
    Ok(())
}
