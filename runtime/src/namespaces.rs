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
/// UTS namespace's hostname. On failure nothing stays pinned.
pub fn pin(dir: &Path, which: PodNamespaces, hostname: Option<&str>) -> Result<Pinned> {
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
    let thread_dir = nsdir.clone();
    let result = std::thread::Builder::new()
        .name("corral-pin-ns".into())
        .spawn(move || pin_on_this_thread(&thread_dir, &wanted, hostname.as_deref()))
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

fn pin_on_this_thread(nsdir: &Path, wanted: &[(&'static str, CloneFlags)], hostname: Option<&str>) -> Result<Pinned> {
    let flags = wanted.iter().fold(CloneFlags::empty(), |acc, (_, f)| acc | *f);
    unshare(flags).step(|| format!("unshare({flags:?})"))?;
    if let Some(name) = hostname
        && flags.contains(CloneFlags::CLONE_NEWUTS)
    {
        nix::unistd::sethostname(name).step(|| format!("sethostname({name:?})"))?;
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
