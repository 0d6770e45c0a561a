//! The public option and state types of the runtime API.

use std::path::PathBuf;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Where the runtime keeps per-container state and which binary dispatches the helper modes.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Per-container state directories live here (e.g. `<state_dir>/containers`).
    pub state_dir: PathBuf,
    /// The binary whose `main()` calls [`crate::run_helper_mode`] first: the daemon passes its
    /// own resolved `/proc/self/exe`.
    pub exe: PathBuf,
}

/// The container's root filesystem, prepared by the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rootfs {
    /// A directory that is already the complete rootfs; it is bind-mounted.
    Dir(PathBuf),
    /// An overlay mounted by the container init inside the container's mount namespace.
    Overlay {
        /// Image layers, top first.
        lower: Vec<PathBuf>,
        /// The container's writable layer.
        upper: PathBuf,
        /// overlayfs' work directory (same filesystem as `upper`).
        work: PathBuf,
    },
}

/// How to start a container, besides its spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartOptions {
    /// CRI log file, appended to in the CRI log format; `None` discards output.
    pub log_path: Option<PathBuf>,
    /// Keep the container's stdin open (a pipe held by the monitor) instead of /dev/null.
    pub stdin: bool,
    /// Close stdin after the first attach session ends (kept for attach; see `monitor`).
    pub stdin_once: bool,
    /// Give the container a terminal instead of pipes (also when `process.terminal` is set).
    pub tty: bool,
    /// The root filesystem.
    pub rootfs: Rootfs,
}

/// A started container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// Host pid of the container's init process.
    pub pid: i32,
    /// Host pid of its monitor.
    pub monitor_pid: i32,
    /// When `execve` of the container process succeeded.
    pub started_at: SystemTime,
    /// How long the monitor's steps took (for profiling a start).
    #[serde(default)]
    pub phases: StartPhases,
}

/// The monitor's side of a container start, in microseconds: what the daemon cannot time
/// itself because it happens in another process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartPhases {
    /// From the monitor's first instruction to the fork of the container init: records,
    /// cgroup creation and limits, stdio, log file, attach socket.
    pub setup_us: u64,
    /// Moving the init into the container's cgroups (a cgroup v1 migration waits for an
    /// RCU grace period: often the largest single cost of a start).
    pub cgroup_join_us: u64,
    /// From the init's go-ahead to its successful `execve`: namespaces, rootfs, mounts,
    /// `pivot_root`, security settings.
    pub init_us: u64,
}

/// How a container ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit status, or 128 + signal number when killed by a signal (137 for SIGKILL).
    pub exit_code: i32,
    /// The signal that killed the init process, if any.
    pub signal: Option<i32>,
    /// When the monitor saw the exit.
    pub finished_at: SystemTime,
    /// The cgroup's OOM-kill counter grew while the container ran.
    pub oom_killed: bool,
    /// CRI reason: `Completed`, `Error`, `OOMKilled`, `StartError` or `Unknown`.
    pub reason: String,
    /// Details, e.g. the error of a failed start.
    pub message: Option<String>,
}

/// A container's state as found on disk and in /proc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// The state directory exists but no monitor was ever started for it.
    Created,
    /// The monitor runs and is still building the container.
    Starting {
        /// Host pid of the monitor.
        monitor_pid: i32,
    },
    /// The container's init process runs.
    Running {
        /// Host pid of the container's init process.
        pid: i32,
        /// Host pid of its monitor.
        monitor_pid: i32,
        /// When the container process was exec'd.
        started_at: SystemTime,
    },
    /// The container ended (or its monitor died without recording how: reason `Unknown`).
    Exited(ExitInfo),
}

/// A command to run inside a running container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOptions {
    /// argv; `args[0]` is looked up in the container's `PATH`.
    pub args: Vec<String>,
    /// The caller passes a pty slave as stdio: make it the controlling terminal.
    pub tty: bool,
    /// `KEY=VALUE` entries added to (or replacing in) the container's environment.
    pub env: Vec<String>,
}

/// Pod namespaces to pin (see [`crate::namespaces::pin`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodNamespaces {
    /// A new network namespace.
    pub net: bool,
    /// A new IPC namespace.
    pub ipc: bool,
    /// A new UTS namespace.
    pub uts: bool,
}

/// Bind-mounted namespace files, to be used as `linux.namespaces[].path`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pinned {
    /// `<dir>/ns/net` when pinned.
    pub net: Option<PathBuf>,
    /// `<dir>/ns/ipc` when pinned.
    pub ipc: Option<PathBuf>,
    /// `<dir>/ns/uts` when pinned.
    pub uts: Option<PathBuf>,
}

/// Environment variable carrying the JSON [`ExecOptions`] to the `exec` helper mode (not
/// argv, so secrets in the environment are not world-readable in /proc/<pid>/cmdline).
pub(crate) const EXEC_OPTIONS_ENV: &str = "CORRAL_EXEC_OPTIONS";

/// Environment variable with the tracing filter of the helper modes (default `info`).
pub const HELPER_LOG_ENV: &str = "CORRAL_LOG";
