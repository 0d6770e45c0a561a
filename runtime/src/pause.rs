//! `corral pause`: PID 1 of a pod's shared PID namespace (only for pods that share one).
//!
//! [`start`] spawns `<exe> pause`; that process unshares a PID namespace, forks the real
//! pause process (PID 1 there), reports its host pid on stdout and exits, so pause is not
//! a child of the daemon. Pause reaps the zombies the namespace's orphans leave and exits
//! on SIGTERM/SIGINT. Containers join it through `linux.namespaces[pid].path` =
//! [`Pause::pid_namespace`]. Its identity is kept in `<pod dir>/pause.json`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::{ForkResult, fork};

use crate::error::{Context, Error, Result};
use crate::files::{read_json, write_json_atomic};
use crate::process::{ProcessId, pidfd_send_signal, wait_pidfd};

/// A running pause process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    /// Its host pid (and start time).
    pub process: ProcessId,
}

impl Pause {
    /// The path containers use to join the pod's PID namespace.
    pub fn pid_namespace(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/pid", self.process.pid))
    }
}

fn record_path(pod_dir: &Path) -> PathBuf {
    pod_dir.join("pause.json")
}

/// Starts the pause process of the pod whose state directory is `pod_dir`, optionally in
/// the pod's cgroup. Idempotent: an already running pause is returned as is.
pub fn start(exe: &Path, pod_dir: &Path, cgroup_path: Option<&str>) -> Result<Pause> {
    if let Some(p) = running(pod_dir)? {
        return Ok(p);
    }
    std::fs::create_dir_all(pod_dir).step(|| format!("mkdir {pod_dir:?}"))?;
    let mut child = Command::new(exe)
        .arg("pause")
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .step(|| format!("spawn {exe:?} pause"))?;
    let stdout = child.stdout.take().ok_or_else(|| Error::InvalidState("pause: no stdout pipe".into()))?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).step(|| "read pause pid")?;
    let _ = child.wait();
    let pid: i32 = line.trim().parse().map_err(|_| Error::Start(format!("pause did not report its pid: {line:?}")))?;
    let pause = Pause { process: ProcessId::of(pid)? };
    if let Some(cg) = cgroup_path {
        crate::cgroups::Cgroup::open(cg)?.add_process(pid)?;
    }
    write_json_atomic(&record_path(pod_dir), &pause.process)?;
    Ok(pause)
}

/// The pod's pause process, if it runs.
pub fn running(pod_dir: &Path) -> Result<Option<Pause>> {
    let process: Option<ProcessId> = read_json(&record_path(pod_dir))?;
    Ok(process.filter(ProcessId::is_alive).map(|process| Pause { process }))
}

/// Stops the pod's pause process (SIGKILL, which also kills everything left in its PID
/// namespace) and removes its record. Idempotent.
pub fn stop(pod_dir: &Path) -> Result<()> {
    let process: Option<ProcessId> = read_json(&record_path(pod_dir))?;
    if let Some(process) = process
        && let Some(fd) = process.pidfd()?
    {
        match pidfd_send_signal(&fd, Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => return Err(Error::sys(format!("kill pause {}", process.pid), e)),
        }
        wait_pidfd(&fd, Duration::from_secs(10))?;
    }
    match std::fs::remove_file(record_path(pod_dir)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("remove pause.json", e)),
        _ => Ok(()),
    }
}

/// Entry point of the `pause` helper mode.
pub(crate) fn main() -> ExitCode {
    if let Err(e) = unshare(CloneFlags::CLONE_NEWPID).step(|| "unshare(CLONE_NEWPID)") {
        eprintln!("corral pause: {e}");
        return ExitCode::FAILURE;
    }
    // SAFETY: run_helper_mode runs before any thread exists.
    match unsafe { fork() } {
        Err(e) => {
            eprintln!("corral pause: fork: {e}");
            ExitCode::FAILURE
        }
        Ok(ForkResult::Parent { child }) => {
            let mut out = std::io::stdout();
            let _ = writeln!(out, "{child}");
            ExitCode::SUCCESS
        }
        Ok(ForkResult::Child) => pause_loop(),
    }
}

/// PID 1: reap, and leave on SIGTERM/SIGINT.
fn pause_loop() -> ExitCode {
    let _ = nix::unistd::setsid();
    // Nobody reads our stdout after the pid line; fd 1 must not keep the daemon's pipe open.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        // SAFETY: dup2 of a valid fd onto fd 1.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
    let mut mask = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        mask.add(s);
    }
    if mask.thread_block().is_err() {
        return ExitCode::FAILURE;
    }
    loop {
        match mask.wait() {
            Ok(Signal::SIGCHLD) => {
                while let Ok(s) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    if s == nix::sys::wait::WaitStatus::StillAlive {
                        break;
                    }
                }
            }
            Ok(Signal::SIGTERM | Signal::SIGINT) => return ExitCode::SUCCESS,
            _ => {}
        }
    }
}
