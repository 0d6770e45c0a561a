//! Pinning a pod's network, IPC and UTS namespaces to files, without a process.
//!
//! A namespace lives as long as something refers to it. Like `ip netns add`, a fresh
//! namespace is bind-mounted from `/proc/thread-self/ns/<kind>` onto a file under
//! `<dir>/ns/`; the network plugin configures it through that path and containers join it
//! with `setns`. Namespaces are per thread, so the `unshare` happens on a throw-away
//! thread: the daemon's own threads never change namespace, and nothing forks.

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

use crate::error::{Context, Error, Result};
pub use crate::types::{Pinned, PodNamespaces};

const KINDS: [(&str, CloneFlags); 3] =
    [("net", CloneFlags::CLONE_NEWNET), ("ipc", CloneFlags::CLONE_NEWIPC), ("uts", CloneFlags::CLONE_NEWUTS)];

fn ns_dir(dir: &Path) -> PathBuf {
    dir.join("ns")
}

/// Creates the namespaces `which` asks for and pins them under `<dir>/ns/`, setting the
/// UTS namespace's hostname and the pod's sysctls. On failure nothing stays pinned.
///
/// Sysctls are set here because corral has no pause container to carry them: a namespaced
/// sysctl written from the thread that owns the new namespaces lands in those namespaces.
/// Only sysctls of a namespace the pod owns are accepted; anything else would change the
/// host.
pub fn pin(dir: &Path, which: PodNamespaces, hostname: Option<&str>, sysctls: &[(String, String)]) -> Result<Pinned> {
    for (key, _) in sysctls {
        sysctl_path(key, which)?;
    }
    let nsdir = ns_dir(dir);
    std::fs::create_dir_all(&nsdir).step(|| format!("mkdir {nsdir:?}"))?;
    let wanted: Vec<(&'static str, CloneFlags)> = KINDS
        .into_iter()
        .filter(|(name, _)| match *name {
            "net" => which.net,
            "ipc" => which.ipc,
            _ => which.uts,
        })
        .collect();
    let hostname = hostname.map(str::to_owned);
    let sysctls = sysctls.to_vec();
    let thread_dir = nsdir.clone();
    let result = std::thread::Builder::new()
        .name("corral-pin-ns".into())
        .spawn(move || pin_on_this_thread(&thread_dir, &wanted, hostname.as_deref(), which, &sysctls))
        .step(|| "spawn namespace thread")?
        .join()
        .map_err(|_| Error::InvalidState("namespace thread panicked".into()))?;
    match result {
        Ok(pinned) => Ok(pinned),
        Err(e) => {
            let _ = unpin(dir);
            Err(e)
        }
    }
}

fn pin_on_this_thread(
    nsdir: &Path,
    wanted: &[(&'static str, CloneFlags)],
    hostname: Option<&str>,
    which: PodNamespaces,
    sysctls: &[(String, String)],
) -> Result<Pinned> {
    let flags = wanted.iter().fold(CloneFlags::empty(), |acc, (_, f)| acc | *f);
    unshare(flags).step(|| format!("unshare({flags:?})"))?;
    if let Some(name) = hostname
        && flags.contains(CloneFlags::CLONE_NEWUTS)
    {
        nix::unistd::sethostname(name).step(|| format!("sethostname({name:?})"))?;
    }
    for (key, value) in sysctls {
        let path = sysctl_path(key, which)?;
        std::fs::write(&path, value).step(|| format!("sysctl {key}={value:?} ({path:?})"))?;
    }
    let mut pinned = Pinned::default();
    for (name, _) in wanted {
        let target = nsdir.join(name);
        std::fs::File::create(&target).step(|| format!("create {target:?}"))?;
        let source = format!("/proc/thread-self/ns/{name}");
        mount(Some(source.as_str()), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
            .step(|| format!("bind {source} to {target:?}"))?;
        match *name {
            "net" => pinned.net = Some(target),
            "ipc" => pinned.ipc = Some(target),
            _ => pinned.uts = Some(target),
        }
    }
    Ok(pinned)
}

/// The /proc/sys file of a sysctl the pod may set: `net.*` with its own network namespace,
/// the IPC ones (`kernel.shm*`, `kernel.msg*`, `kernel.sem`, `fs.mqueue.*`) with its own IPC
/// namespace. Names use dots or slashes as separators, as Kubernetes allows.
fn sysctl_path(key: &str, which: PodNamespaces) -> Result<PathBuf> {
    let dotted = if key.contains('/') { key.replace('/', ".") } else { key.to_string() };
    let well_formed =
        !dotted.is_empty() && dotted.split('.').all(|part| !part.is_empty() && part != ".." && !part.contains('\0'));
    let ipc = [
        "kernel.shmmax",
        "kernel.shmall",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
    ]
    .contains(&dotted.as_str())
        || dotted.starts_with("fs.mqueue.");
    let allowed = well_formed && ((dotted.starts_with("net.") && which.net) || (ipc && which.ipc));
    if !allowed {
        return Err(Error::InvalidSpec(format!(
            "sysctl {key:?} is not a namespaced sysctl of a namespace this pod owns"
        )));
    }
    // With slashes in the name, dots inside a component (an interface name like "eth0.100")
    // are literal; with dots as separators they all are separators.
    let relative = if key.contains('/') { key.to_string() } else { key.replace('.', "/") };
    Ok(Path::new("/proc/sys").join(relative))
}

/// Unmounts and removes the pinned namespace files under `<dir>/ns/`. Idempotent.
pub fn unpin(dir: &Path) -> Result<()> {
    let nsdir = ns_dir(dir);
    for (name, _) in KINDS {
        let target = nsdir.join(name);
        match umount2(&target, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(Error::sys(format!("umount {target:?}"), e)),
        }
        match std::fs::remove_file(&target) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io(format!("remove {target:?}"), e));
            }
            _ => {}
        }
    }
    match std::fs::remove_dir(&nsdir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(format!("rmdir {nsdir:?}"), e)),
        _ => Ok(()),
    }
}
