//! The container's filesystem view, built by the container init inside its new mount
//! namespace: root propagation, the rootfs (bind or overlay), the spec's mounts, `/dev`,
//! `pivot_root`; then, inside the new root, masked and read-only paths and a read-only root.

use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::Mode;
use oci_spec::runtime::{Mount, Spec};

use super::mount_options::{self, MountOptions};
use super::paths::resolve_in_root;
use super::{InitContext, devices};
use crate::error::{Context, Error, Result};
use crate::types::Rootfs;

/// Mounts everything and pivots into the rootfs. Runs before any security step.
pub fn prepare(ctx: &InitContext<'_>) -> Result<()> {
    let spec = ctx.spec;
    let linux = spec.linux().as_ref();
    // Nothing we mount may propagate back to the host: rslave by default, like runc.
    let propagation = match linux.and_then(|l| l.rootfs_propagation().as_deref()) {
        Some(p) => {
            mount_options::propagation(p).ok_or_else(|| Error::InvalidSpec(format!("linux.rootfsPropagation {p:?}")))?
        }
        None => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    mount(None::<&str>, "/", None::<&str>, propagation | MsFlags::MS_REC, None::<&str>)
        .step(|| format!("make / {propagation:?}"))?;
    // pivot_root refuses a new root whose parent mount is shared (EINVAL): with an rshared
    // root (a pod asking for bidirectional propagation) make just that parent private, and
    // share the new root again after the pivot, as runc does.
    make_parent_mount_private(&ctx.bundle.rootfs())?;

    let root = mount_rootfs(ctx)?;
    let mut has_dev_tmpfs = false;
    for m in spec.mounts().iter().flatten() {
        mount_one(ctx, &root, m)?;
        has_dev_tmpfs |= m.destination().as_os_str() == "/dev" && !is_bind(m);
    }
    if has_dev_tmpfs {
        let extra = linux.and_then(|l| l.devices().clone()).unwrap_or_default();
        devices::populate(&root, &extra, ctx.in_userns)?;
    }
    // The working directory is created now, while the rootfs may still be written.
    if let Some(process) = spec.process() {
        let cwd = resolve_in_root(&root, process.cwd())?;
        std::fs::create_dir_all(&cwd).step(|| format!("mkdir cwd {cwd:?}"))?;
    }
    pivot(&root)?;
    if propagation.contains(MsFlags::MS_SHARED) {
        mount(None::<&str>, "/", None::<&str>, propagation | MsFlags::MS_REC, None::<&str>)
            .step(|| format!("make the new / {propagation:?}"))?;
    }
    Ok(())
}

/// Makes the mount that holds `path`'s parent directory private (not recursively).
fn make_parent_mount_private(path: &Path) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").step(|| "read /proc/self/mountinfo")?;
    let mount_point = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|mp| parent.starts_with(mp))
        .max_by_key(|mp| mp.as_os_str().len())
        .unwrap_or_else(|| PathBuf::from("/"));
    mount(None::<&str>, &mount_point, None::<&str>, MsFlags::MS_PRIVATE, None::<&str>)
        .step(|| format!("make {mount_point:?} private"))
}

/// Mount points in mountinfo escape space, tab, newline and backslash as octal (`\040`).
fn unescape_mountinfo(field: &str) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let octal = std::str::from_utf8(&bytes[i + 1..i + 4]).ok().and_then(|o| u8::from_str_radix(o, 8).ok());
            if let Some(b) = octal {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    PathBuf::from(<std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(out))
}

fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind") || m.options().iter().flatten().any(|o| o == "bind" || o == "rbind")
}

/// Mounts the rootfs on itself (a bind) or on the bundle's `rootfs/` (an overlay) and
/// returns where it is. pivot_root needs the new root to be a mount point.
fn mount_rootfs(ctx: &InitContext<'_>) -> Result<PathBuf> {
    match &ctx.rootfs {
        Rootfs::Dir(dir) => {
            mount(Some(dir), dir, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
                .step(|| format!("bind rootfs {dir:?}"))?;
            Ok(dir.clone())
        }
        Rootfs::Overlay { lower, upper, work } => {
            let target = ctx.bundle.rootfs();
            let data = overlay_options(lower, upper, work)?;
            mount(Some("overlay"), &target, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
                .step(|| format!("mount overlay on {target:?} ({data})"))?;
            Ok(target)
        }
    }
}

/// `lowerdir=..,upperdir=..,workdir=..`, checked against what overlayfs can parse.
pub fn overlay_options(lower: &[PathBuf], upper: &Path, work: &Path) -> Result<String> {
    if lower.is_empty() {
        return Err(Error::InvalidSpec("overlay rootfs without lower layers".into()));
    }
    let check = |p: &Path| {
        let s = p.to_str().ok_or_else(|| Error::InvalidSpec(format!("overlay path {p:?} is not UTF-8")))?;
        if s.contains([',', ':']) || !p.is_absolute() {
            return Err(Error::InvalidSpec(format!("overlay path {p:?} must be absolute without ',' or ':'")));
        }
        Ok(s.to_owned())
    };
    let lowers = lower.iter().map(|p| check(p)).collect::<Result<Vec<_>>>()?.join(":");
    let data = format!("lowerdir={lowers},upperdir={},workdir={}", check(upper)?, check(work)?);
    // mount(2) copies at most one page of data.
    if data.len() >= 4096 {
        return Err(Error::InvalidSpec(format!("overlay options are {} bytes, more than a page", data.len())));
    }
    Ok(data)
}

/// Flags a remount must keep: in a user namespace, nosuid/nodev/noexec/atime flags
/// inherited from the source are locked and a remount without them fails with EPERM.
fn locked_flags(path: &Path) -> MsFlags {
    use nix::sys::statvfs::{FsFlags, statvfs};
    let Ok(st) = statvfs(path) else { return MsFlags::empty() };
    let f = st.flags();
    let pairs = [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ];
    pairs.into_iter().filter(|(st, _)| f.contains(*st)).fold(MsFlags::empty(), |acc, (_, ms)| acc | ms)
}

/// Remounts a bind mount with `flags` (read-only, nosuid, ...), keeping locked flags.
fn remount_bind(path: &Path, flags: MsFlags) -> Result<()> {
    let flags = flags | locked_flags(path) | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    mount(None::<&str>, path, None::<&str>, flags, None::<&str>).step(|| format!("remount {path:?} {flags:?}"))
}

/// `mount_setattr(path, AT_RECURSIVE, MOUNT_ATTR_RDONLY)`: read-only for every submount too.
fn make_recursively_readonly(path: &Path) -> Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::InvalidSpec(format!("{path:?} contains NUL")))?;
    // SAFETY: valid C string, a live struct of the size passed, flags as documented.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    nix::errno::Errno::result(rc).map(drop).step(|| format!("mount_setattr({path:?}, AT_RECURSIVE, RDONLY)"))
}

/// Creates the mount point: a directory, or an empty file when binding a file.
fn create_mount_point(dest: &Path, source_is_file: bool) -> Result<()> {
    if source_is_file {
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).step(|| format!("mkdir {parent:?}"))?;
        }
        if !dest.exists() {
            std::fs::File::create(dest).step(|| format!("create mount point {dest:?}"))?;
        }
        Ok(())
    } else {
        std::fs::create_dir_all(dest).step(|| format!("mkdir mount point {dest:?}"))
    }
}

fn mount_one(ctx: &InitContext<'_>, root: &Path, m: &Mount) -> Result<()> {
    let dest = resolve_in_root(root, m.destination())?;
    let opts = mount_options::parse(m.options().as_deref().unwrap_or_default());
    let typ = m.typ().as_deref().unwrap_or("none");
    if opts.bind || typ == "bind" {
        let source =
            m.source().as_ref().ok_or_else(|| Error::InvalidSpec(format!("bind mount {dest:?} without source")))?;
        bind(source, &dest, &opts)?;
    } else if typ == "cgroup" || typ == "cgroup2" {
        mount_cgroup(ctx, &dest, &opts)?;
    } else {
        create_mount_point(&dest, false)?;
        let data = opts.data.join(",");
        let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
        let result = mount(Some(&source), &dest, Some(typ), opts.flags, Some(data.as_str()));
        match (result, typ) {
            (Ok(()), _) => {}
            // In a user namespace sysfs needs a network namespace owned by it, mqueue an IPC
            // one. Without them, bind the host's instance read-only instead (as runc does).
            (Err(nix::errno::Errno::EPERM), "sysfs" | "mqueue") if ctx.in_userns => {
                let host = if typ == "sysfs" { "/sys" } else { "/dev/mqueue" };
                let bind_opts =
                    MountOptions { flags: opts.flags | MsFlags::MS_BIND | MsFlags::MS_REC, ..Default::default() };
                bind(Path::new(host), &dest, &bind_opts)?;
            }
            (Err(e), _) => return Err(Error::sys(format!("mount {typ} on {dest:?} ({data})"), e)),
        }
    }
    for p in &opts.propagation {
        mount(None::<&str>, &dest, None::<&str>, *p, None::<&str>)
            .step(|| format!("set propagation {p:?} on {dest:?}"))?;
    }
    Ok(())
}

fn bind(source: &Path, dest: &Path, opts: &MountOptions) -> Result<()> {
    let meta = std::fs::metadata(source).step(|| format!("bind source {source:?}"))?;
    create_mount_point(dest, !meta.is_dir())?;
    let bind_flags = opts.flags & (MsFlags::MS_BIND | MsFlags::MS_REC) | MsFlags::MS_BIND;
    mount(Some(source), dest, None::<&str>, bind_flags, None::<&str>)
        .step(|| format!("bind {source:?} to {dest:?}"))?;
    let rest = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if !rest.is_empty() {
        remount_bind(dest, rest)?;
    }
    if opts.recursive_readonly {
        make_recursively_readonly(dest)?;
    }
    Ok(())
}

/// `/sys/fs/cgroup`: on v2 a cgroup2 mount (rooted at the container's cgroup when it has a
/// cgroup namespace); on v1 a tmpfs with the container's own directory of each hierarchy
/// bind-mounted under the hierarchy's name, like runc.
fn mount_cgroup(ctx: &InitContext<'_>, dest: &Path, opts: &MountOptions) -> Result<()> {
    create_mount_point(dest, false)?;
    let flags = opts.flags & !MsFlags::MS_RDONLY;
    if ctx.cgroup_v2 {
        let ro = opts.flags & MsFlags::MS_RDONLY;
        match mount(Some("cgroup2"), dest, Some("cgroup2"), flags | ro, None::<&str>) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EPERM) if ctx.in_userns => {
                let (_, dir) =
                    ctx.cgroup_dirs.first().ok_or_else(|| Error::InvalidState("no cgroup directory".into()))?;
                let bind_opts =
                    MountOptions { flags: opts.flags | MsFlags::MS_BIND | MsFlags::MS_REC, ..Default::default() };
                return bind(dir, dest, &bind_opts);
            }
            Err(e) => return Err(Error::sys(format!("mount cgroup2 on {dest:?}"), e)),
        }
    }
    mount(Some("tmpfs"), dest, Some("tmpfs"), flags, Some("mode=755")).step(|| format!("mount tmpfs on {dest:?}"))?;
    let relative = ctx.cgroup_path.trim_start_matches('/');
    for (_, dir) in &ctx.cgroup_dirs {
        // <mount point>/<cgroup path>: the hierarchy's name is the mount point's basename.
        let Some(mount_point) = dir.to_str().and_then(|d| d.strip_suffix(relative)) else { continue };
        let Some(name) = Path::new(mount_point.trim_end_matches('/')).file_name() else { continue };
        let sub = dest.join(name);
        let bind_opts = MountOptions { flags: opts.flags | MsFlags::MS_BIND, ..Default::default() };
        bind(dir, &sub, &bind_opts)?;
    }
    if opts.flags.contains(MsFlags::MS_RDONLY) {
        remount_bind(dest, MsFlags::MS_RDONLY).or_else(|_| {
            mount(None::<&str>, dest, None::<&str>, flags | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, Some("mode=755"))
                .step(|| format!("remount {dest:?} read-only"))
        })?;
    }
    Ok(())
}

/// Makes `root` the process's `/`. `pivot_root(".", ".")` stacks the old root on the new
/// one (no directory needed in the rootfs, which a user-namespaced root may not write);
/// the old root is then made rslave, so unmounting it cannot propagate to the host, and is
/// lazily unmounted, so no host path stays reachable. The old root is reached through a
/// descriptor opened before the pivot: after it, the path "." names the new root's mount
/// for mount(2), and making that rslave would cut a bidirectional volume off the host.
/// Where pivot_root is impossible (a rootfs on the initramfs: EINVAL), fall back to moving
/// the rootfs onto `/` and chroot, like runc's `--no-pivot`; the host root then stays
/// mounted underneath, which is why it is only a fallback.
fn pivot(root: &Path) -> Result<()> {
    let old_root = nix::fcntl::open("/", OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .step(|| "open the old root")?;
    nix::unistd::chdir(root).step(|| format!("chdir {root:?}"))?;
    match nix::unistd::pivot_root(".", ".") {
        Ok(()) => {
            nix::unistd::fchdir(&old_root).step(|| "fchdir to the old root")?;
            mount(None::<&str>, ".", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>)
                .step(|| "make old root rslave")?;
            umount2(".", MntFlags::MNT_DETACH).step(|| "unmount old root")?;
        }
        Err(nix::errno::Errno::EINVAL) => {
            tracing::warn!(?root, "pivot_root: EINVAL, falling back to MS_MOVE + chroot");
            mount(Some(root), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
                .step(|| format!("move {root:?} to /"))?;
            nix::unistd::chroot(".").step(|| format!("chroot {root:?}"))?;
        }
        Err(e) => return Err(Error::sys(format!("pivot_root({root:?})"), e)),
    }
    nix::unistd::chdir("/").step(|| "chdir / after pivot_root")
}

/// After pivot_root: read-only and masked paths, then the read-only root.
pub fn finish(spec: &Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    for path in linux.and_then(|l| l.readonly_paths().as_ref()).into_iter().flatten() {
        readonly_path(Path::new(path))?;
    }
    for path in linux.and_then(|l| l.masked_paths().as_ref()).into_iter().flatten() {
        mask_path(Path::new(path))?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()).unwrap_or(false) {
        remount_bind(Path::new("/"), MsFlags::MS_RDONLY)?;
    }
    Ok(())
}

fn readonly_path(path: &Path) -> Result<()> {
    match mount(Some(path), path, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>) {
        Err(nix::errno::Errno::ENOENT) => return Ok(()),
        r => r.step(|| format!("bind readonly path {path:?}"))?,
    }
    remount_bind(path, MsFlags::MS_RDONLY | MsFlags::MS_REC)
}

fn mask_path(path: &Path) -> Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("stat masked path {path:?}"), e)),
    };
    if meta.is_dir() {
        mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, None::<&str>)
            .step(|| format!("mask directory {path:?}"))
    } else {
        mount(Some("/dev/null"), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .step(|| format!("mask file {path:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_options_are_checked() {
        let lower = vec![PathBuf::from("/l/top"), PathBuf::from("/l/base")];
        let s = overlay_options(&lower, Path::new("/u"), Path::new("/w")).unwrap();
        assert_eq!(s, "lowerdir=/l/top:/l/base,upperdir=/u,workdir=/w");
        assert!(overlay_options(&[], Path::new("/u"), Path::new("/w")).is_err());
        assert!(overlay_options(&[PathBuf::from("/a:b")], Path::new("/u"), Path::new("/w")).is_err());
        let many: Vec<_> = (0..200).map(|i| PathBuf::from(format!("/var/lib/corral/layers/{i:040}"))).collect();
        assert!(overlay_options(&many, Path::new("/u"), Path::new("/w")).unwrap_err().to_string().contains("page"));
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/var/lib/with\\040space"), PathBuf::from("/var/lib/with space"));
        assert_eq!(unescape_mountinfo("/plain"), PathBuf::from("/plain"));
        assert_eq!(unescape_mountinfo("/trailing\\"), PathBuf::from("/trailing\\"));
    }
}
