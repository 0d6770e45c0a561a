//! The container init: the child side of the monitor's fork, in two stages.
//!
//! Stage 1 (a child of the monitor, in the host's namespaces): waits until the monitor has
//! put it in the container's cgroup, joins the namespaces given by path (the pod's), creates
//! the user namespace and has the monitor write its id maps, creates the other new
//! namespaces, and forks stage 2, which is PID 1 of a new PID namespace. Stage 1 reports
//! stage 2's pid and exits; stage 2 is reparented to the monitor (a child subreaper).
//!
//! Stage 2 builds the filesystem view (`rootfs`), sets hostname and sysctls, applies the
//! security settings and `execve`s the container's command. Any failing step is reported
//! to the monitor over the channel with its step and path, and the process exits.
//!
//! Both stages run in a fork of the single-threaded monitor, so ordinary Rust (allocation,
//! tracing to the monitor's log) is safe here.

mod devices;
mod mount_options;
mod namespaces;
mod paths;
pub(crate) mod rootfs;

use std::os::fd::{AsFd, AsRawFd, IntoRawFd, OwnedFd};
use std::path::PathBuf;

use nix::sched::CloneFlags;
use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, sigprocmask};
use nix::unistd::{ForkResult, Gid, Uid, fork, setresgid, setresuid};
use oci_spec::runtime::Spec;

pub(crate) use namespaces::NamespacePlan;

use crate::channel::{Channel, ChildMessage};
use crate::error::{Context, Error, Result};
use crate::execve::Program;
use crate::security;
use crate::state::Bundle;
use crate::types::Rootfs;

/// The container's side of its stdio.
pub(crate) struct ChildStdio {
    /// fd 0, 1, 2 of the container (a pty slave three times with a terminal).
    pub fds: [OwnedFd; 3],
    /// Make fd 0 the controlling terminal of a new session.
    pub tty: bool,
}

/// Everything the container init needs; it lives in the forked copy of the monitor.
pub(crate) struct InitContext<'a> {
    pub spec: &'a Spec,
    pub bundle: &'a Bundle,
    pub rootfs: Rootfs,
    pub cgroup_path: String,
    pub cgroup_dirs: Vec<(String, PathBuf)>,
    pub cgroup_v2: bool,
    pub in_userns: bool,
    pub plan: NamespacePlan,
}

/// Restores default signal handling and an empty mask: the monitor blocks and ignores
/// signals, and ignored dispositions and the mask would survive `execve`.
fn reset_signals() {
    for sig in Signal::iterator() {
        if matches!(sig, Signal::SIGKILL | Signal::SIGSTOP) {
            continue;
        }
        // SAFETY: installing SIG_DFL involves no handler code.
        let _ = unsafe { nix::sys::signal::signal(sig, SigHandler::SigDfl) };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Stage 1. Never returns.
pub(crate) fn stage1(ctx: InitContext<'_>, stdio: ChildStdio, channel: Channel) -> ! {
    reset_signals();
    let result = stage1_steps(&ctx, stdio, &channel);
    exit_reporting(&channel, result)
}

fn exit_reporting(channel: &Channel, result: Result<()>) -> ! {
    let code = match result {
        Ok(()) => 0,
        Err(e) => {
            let _ = channel.tell(&ChildMessage::Error(e.to_string()));
            1
        }
    };
    // SAFETY: _exit skips atexit handlers and destructors, which belong to the monitor.
    unsafe { libc::_exit(code) }
}

fn stage1_steps(ctx: &InitContext<'_>, stdio: ChildStdio, channel: &Channel) -> Result<()> {
    channel.wait_go()?; // the monitor has moved us into the container's cgroup
    ctx.plan.join_all()?;
    if ctx.plan.new.contains(CloneFlags::CLONE_NEWUSER) {
        nix::sched::unshare(CloneFlags::CLONE_NEWUSER).step(|| "unshare(CLONE_NEWUSER)")?;
        channel.tell(&ChildMessage::UserNamespace)?;
        channel.wait_go()?; // uid_map and gid_map are written
    }
    if ctx.in_userns {
        // Become root of the user namespace (host root itself is unmapped there).
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).step(|| "setresgid(0) in user namespace")?;
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).step(|| "setresuid(0) in user namespace")?;
    }
    ctx.plan.unshare_rest()?;
    // SAFETY: the monitor is single-threaded, so the child may run ordinary code.
    match unsafe { fork() }.step(|| "fork container process")? {
        ForkResult::Child => {
            let result = stage2(ctx, stdio);
            exit_reporting(channel, result.map(drop))
        }
        ForkResult::Parent { child } => channel.tell(&ChildMessage::Pid(child.as_raw())),
    }
}

/// Stage 2: only returns with an error (success is `execve`).
fn stage2(ctx: &InitContext<'_>, stdio: ChildStdio) -> Result<std::convert::Infallible> {
    let spec = ctx.spec;
    let process = spec.process().as_ref().ok_or_else(|| Error::InvalidSpec("no process".into()))?;
    rootfs::prepare(ctx)?;
    if ctx.plan.new.contains(CloneFlags::CLONE_NEWUTS) {
        if let Some(hostname) = spec.hostname() {
            nix::unistd::sethostname(hostname).step(|| format!("sethostname({hostname:?})"))?;
        }
        if let Some(domain) = spec.domainname() {
            // SAFETY: pointer and length of a live byte slice.
            let rc = unsafe { libc::setdomainname(domain.as_ptr().cast(), domain.len()) };
            nix::errno::Errno::result(rc).step(|| format!("setdomainname({domain:?})"))?;
        }
    }
    write_sysctls(ctx)?;
    rootfs::finish(spec)?;
    security::set_oom_score_adj(process.oom_score_adj())?;
    security::set_rlimits(process.rlimits().as_deref().unwrap_or_default())?;

    let env = process.env().clone().unwrap_or_default();
    let program = Program::new(process.args().as_deref().unwrap_or_default(), &env)?;
    let filter = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(profile) => Some(crate::seccomp::build(profile)?),
        None => None,
    };
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    if !no_new_privs && let Some(f) = &filter {
        // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: before dropping it.
        crate::seccomp::load(f)?;
    }
    let caps = process.capabilities().as_ref();
    security::drop_bounding_set(caps)?;
    security::switch_user(process.user(), setgroups_allowed())?;
    security::set_capabilities(caps)?;
    nix::unistd::chdir(process.cwd()).step(|| format!("chdir {:?}", process.cwd()))?;
    install_stdio(stdio)?;
    if no_new_privs {
        security::set_no_new_privs()?;
        if let Some(f) = &filter {
            crate::seccomp::load(f)?;
        }
    }
    Err(program.exec())
}

/// `setgroups(2)` is refused in a user namespace whose `setgroups` file says `deny`.
pub(crate) fn setgroups_allowed() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").map(|s| s.trim() != "deny").unwrap_or(true)
}

/// Puts the container's stdio on fds 0-2; with a terminal, in a new session that has the
/// terminal as its controlling tty.
pub(crate) fn install_stdio(stdio: ChildStdio) -> Result<()> {
    if stdio.tty {
        nix::unistd::setsid().step(|| "setsid")?;
        // SAFETY: TIOCSCTTY on a valid terminal fd, argument 0 (do not steal).
        let rc = unsafe { libc::ioctl(stdio.fds[0].as_raw_fd(), libc::TIOCSCTTY, 0) };
        nix::errno::Errno::result(rc).step(|| "ioctl(TIOCSCTTY)")?;
    }
    for (target, fd) in stdio.fds.into_iter().enumerate() {
        if fd.as_raw_fd() == target as i32 {
            // Already in place: only clear close-on-exec, and keep it open.
            nix::fcntl::fcntl(fd.as_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()))
                .step(|| format!("fcntl({target}, F_SETFD)"))?;
            let _ = fd.into_raw_fd();
            continue;
        }
        // SAFETY: dup2 onto a standard fd number; both fds are valid. The original is
        // closed when `fd` drops; the copy has close-on-exec cleared by dup2.
        let rc = unsafe { libc::dup2(fd.as_raw_fd(), target as i32) };
        nix::errno::Errno::result(rc).step(|| format!("dup2 onto fd {target}"))?;
    }
    Ok(())
}

/// Writes `linux.sysctl`, refusing keys that are not namespaced (they would change the host).
fn write_sysctls(ctx: &InitContext<'_>) -> Result<()> {
    let Some(sysctls) = ctx.spec.linux().as_ref().and_then(|l| l.sysctl().as_ref()) else { return Ok(()) };
    for (key, value) in sysctls {
        let namespace =
            sysctl_namespace(key).ok_or_else(|| Error::InvalidSpec(format!("sysctl {key:?} is not namespaced")))?;
        if !ctx.plan.has(namespace) {
            return Err(Error::InvalidSpec(format!("sysctl {key:?} needs its own {namespace:?} namespace")));
        }
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).step(|| format!("write sysctl {path} = {value:?}"))?;
    }
    Ok(())
}

/// The namespace a sysctl belongs to, or `None` if it is global.
pub(crate) fn sysctl_namespace(key: &str) -> Option<CloneFlags> {
    let ipc = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if ipc.contains(&key) || key.starts_with("fs.mqueue.") {
        Some(CloneFlags::CLONE_NEWIPC)
    } else if key.starts_with("net.") {
        Some(CloneFlags::CLONE_NEWNET)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some(CloneFlags::CLONE_NEWUTS)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_namespaced_sysctls_are_allowed() {
        assert_eq!(sysctl_namespace("net.ipv4.ip_forward"), Some(CloneFlags::CLONE_NEWNET));
        assert_eq!(sysctl_namespace("kernel.shmmax"), Some(CloneFlags::CLONE_NEWIPC));
        assert_eq!(sysctl_namespace("fs.mqueue.msg_max"), Some(CloneFlags::CLONE_NEWIPC));
        assert_eq!(sysctl_namespace("kernel.pid_max"), None);
        assert_eq!(sysctl_namespace("vm.overcommit_memory"), None);
    }
}
