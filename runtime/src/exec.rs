//! `corral exec <state-dir>`: runs one command inside a running container.
//!
//! Spawned by the daemon through [`crate::Runtime::exec_command`] with the caller's stdio
//! (pipes, or a pty slave with `tty`) and the [`ExecOptions`] as JSON in the environment.
//! It joins the container's cgroup, then its namespaces (host-owned ones first, then the
//! user namespace, then the mount namespace), forks so the child is inside the PID
//! namespace, and the child applies the container's security settings and `execve`s.
//! The helper waits and exits with the command's status (128 + signal if it was killed).

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::ExitCode;

use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, setns};
use nix::sys::stat::{Mode, fstat};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, fork};

use crate::cgroups::Cgroup;
use crate::error::{Context, Error, Result};
use crate::execve::{Program, merge_env};
use crate::init::{ChildStdio, install_stdio, setgroups_allowed};
use crate::security;
use crate::state::Bundle;
use crate::types::{EXEC_OPTIONS_ENV, ExecOptions};

/// Namespaces joined by exec, in join order (see the module doc).
const NAMESPACES: [(&str, CloneFlags); 7] = [
    ("net", CloneFlags::CLONE_NEWNET),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("user", CloneFlags::CLONE_NEWUSER),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Exit code of the helper when exec itself failed (like `docker exec`'s 126/127 split,
/// 127 for "command not found", 126 otherwise).
fn failure_code(e: &Error) -> u8 {
    if e.to_string().contains("not found") || e.to_string().contains("No such file") { 127 } else { 126 }
}

/// Entry point of the `exec` helper mode.
pub(crate) fn main(dir: &Path) -> ExitCode {
    match run(dir) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("corral exec: {e}");
            ExitCode::from(failure_code(&e))
        }
    }
}

fn run(dir: &Path) -> Result<ExitCode> {
    let opts: ExecOptions = match std::env::var(EXEC_OPTIONS_ENV) {
        Ok(json) => {
            serde_json::from_str(&json).map_err(|source| Error::Json { path: EXEC_OPTIONS_ENV.into(), source })?
        }
        Err(_) => return Err(Error::InvalidSpec(format!("{EXEC_OPTIONS_ENV} is not set"))),
    };
    let bundle = Bundle::new(dir);
    let spec = bundle.spec()?;
    let record = bundle.start_record()?;
    let init = bundle.init()?.ok_or_else(|| Error::InvalidState("container has not started".into()))?;
    if !init.process.is_alive() || bundle.exit()?.is_some() {
        return Err(Error::InvalidState("container is not running".into()));
    }
    let process = spec.process().as_ref().ok_or_else(|| Error::InvalidSpec("no process".into()))?;
    let filter = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
        Some(profile) => Some(crate::seccomp::build(profile)?),
        None => None,
    };

    // Open every namespace first: the pid could be reused once the container exits.
    let pid = init.process.pid;
    let mut targets: Vec<(&str, CloneFlags, OwnedFd)> = Vec::new();
    for (name, flag) in NAMESPACES {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let fd = open(theirs.as_str(), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .step(|| format!("open {theirs}"))?;
        let ours =
            nix::sys::stat::stat(format!("/proc/self/ns/{name}").as_str()).step(|| format!("stat own {name} ns"))?;
        let st = fstat(&fd).step(|| format!("fstat {theirs}"))?;
        if (st.st_dev, st.st_ino) != (ours.st_dev, ours.st_ino) {
            targets.push((name, flag, fd));
        }
    }
    if !init.process.is_alive() {
        return Err(Error::InvalidState("container exited while exec was joining it".into()));
    }
    Cgroup::open(&record.cgroup_path)?.add_process(std::process::id() as i32)?;
    for (name, flag, fd) in &targets {
        setns(fd, *flag).step(|| format!("setns({name}) of pid {pid}"))?;
    }

    // SAFETY: run_helper_mode runs before any thread exists.
    match unsafe { fork() }.step(|| "fork exec process")? {
        ForkResult::Child => {
            let e = match child(process, &opts, filter) {
                Err(e) => e,
                Ok(never) => match never {},
            };
            eprintln!("corral exec: {e}");
            // SAFETY: leave without running the parent's destructors.
            unsafe { libc::_exit(failure_code(&e) as i32) }
        }
        ForkResult::Parent { child } => {
            forward_termination_to(child);
            loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => return Ok(ExitCode::from(code as u8)),
                    Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(ExitCode::from(128 + sig as u8)),
                    Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => return Err(Error::sys("waitpid(exec process)", e)),
                }
            }
        }
    }
}

/// The exec'd process, for the termination handler.
static EXEC_CHILD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

/// SIGTERM/SIGINT/SIGHUP of `corral exec` (a timed-out ExecSync, a client that went away)
/// SIGKILLs the exec'd process; the waitpid loop then reaps it before `corral exec` exits.
/// So when the daemon has waited for `corral exec`, the command is gone, not a zombie in
/// the container. (PR_SET_PDEATHSIG covers a SIGKILLed `corral exec`, without that promise.)
fn forward_termination_to(child: nix::unistd::Pid) {
    extern "C" fn kill_child(_: libc::c_int) {
        let pid = EXEC_CHILD.load(std::sync::atomic::Ordering::Relaxed);
        if pid > 0 {
            // SAFETY: kill(2) is async-signal-safe.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    EXEC_CHILD.store(child.as_raw(), std::sync::atomic::Ordering::Relaxed);
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(kill_child),
        nix::sys::signal::SaFlags::SA_RESTART,
        nix::sys::signal::SigSet::empty(),
    );
    for sig in [nix::sys::signal::Signal::SIGTERM, nix::sys::signal::Signal::SIGINT, nix::sys::signal::Signal::SIGHUP] {
        // SAFETY: the handler only loads an atomic and calls kill(2), both async-signal-safe.
        if let Err(e) = unsafe { nix::sys::signal::sigaction(sig, &action) } {
            tracing::warn!("installing the {sig} handler of corral exec: {e}");
        }
    }
}

fn child(
    process: &oci_spec::runtime::Process,
    opts: &ExecOptions,
    filter: Option<libseccomp::ScmpFilterContext>,
) -> Result<std::convert::Infallible> {
    // Resolved now that we are in the container's mount namespace.
    let env = merge_env(process.env().as_deref().unwrap_or_default(), &opts.env);
    let program = Program::new(&opts.args, &env)?;
    security::set_rlimits(process.rlimits().as_deref().unwrap_or_default())?;
    let no_new_privs = process.no_new_privileges().unwrap_or(false);
    if !no_new_privs && let Some(f) = &filter {
        crate::seccomp::load(f)?;
    }
    let caps = process.capabilities().as_ref();
    security::drop_bounding_set(caps)?;
    security::switch_user(process.user(), setgroups_allowed())?;
    security::set_capabilities(caps)?;
    nix::unistd::chdir(process.cwd()).step(|| format!("chdir {:?}", process.cwd()))?;
    if opts.tty {
        // The caller gave us the pty slave as stdio: make it our controlling terminal.
        let fd0 = std::io::stdin().as_fd_owned()?;
        let fds = [fd0.try_clone().step(|| "dup")?, fd0.try_clone().step(|| "dup")?, fd0];
        install_stdio(ChildStdio { fds, tty: true })?;
    }
    // The helper dies with its caller (an exec timeout kills it); so does the command.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).step(|| "prctl(PR_SET_PDEATHSIG)")?;
    if no_new_privs {
        security::set_no_new_privs()?;
        if let Some(f) = &filter {
            crate::seccomp::load(f)?;
        }
    }
    Err(program.exec())
}

trait AsFdOwned {
    fn as_fd_owned(&self) -> Result<OwnedFd>;
}

impl AsFdOwned for std::io::Stdin {
    fn as_fd_owned(&self) -> Result<OwnedFd> {
        use std::os::fd::AsFd;
        self.as_fd().try_clone_to_owned().step(|| "dup stdin")
    }
}
