//! The pod's shared /dev/shm: one tmpfs per pod (with its own IPC namespace), bind-mounted
//! into each of its containers so they share POSIX shared memory, as with containerd.

use std::path::Path;

use nix::mount::{MntFlags, MsFlags};

use crate::error::{CriError, CriResult};

/// Size of a pod's /dev/shm (Docker's and containerd's default).
const SHM_SIZE: &str = "size=65536k";

/// Mounts a fresh tmpfs at `dir`.
pub fn mount(dir: &Path) -> CriResult<()> {
    std::fs::create_dir_all(dir).map_err(|e| CriError::Internal(format!("creating {}: {e}", dir.display())))?;
    nix::mount::mount(
        Some("shm"),
        dir,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(format!("mode=1777,{SHM_SIZE}").as_str()),
    )
    .map_err(|e| CriError::Internal(format!("mount tmpfs {}: {e}", dir.display())))
}

/// Unmounts the tmpfs at `dir` if it is mounted; a missing dir or mount is fine.
pub fn unmount(dir: &Path) -> CriResult<()> {
    match nix::mount::umount2(dir, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(e) => Err(CriError::Internal(format!("umount {}: {e}", dir.display()))),
    }
}
