//! corral's container runtime: corral's runc.
//!
//! Given an OCI runtime [spec](https://github.com/opencontainers/runtime-spec), a prepared
//! rootfs and the pod's pinned namespaces, this crate starts the container process,
//! supervises it through a monitor process, and reports how it ended. It has no gRPC in it;
//! the daemon (`shim/`) calls it. See `docs/design.md` for the process model.
//!
//! - [`Runtime`]: start / state / watch / signal / kill_all / delete / exec / stats.
//! - [`run_helper_mode`]: the hidden `monitor`, `exec` and `pause` modes of the binary.
//! - [`namespaces`]: pin a pod's network/IPC/UTS namespaces to files without a process.
//! - [`pause`]: PID 1 of a pod's shared PID namespace.
//! - [`cgroups`]: v1 and v2 limits, stats, kill, pod cgroups.
//! - [`spec`]: containerd-like default spec and `RuntimeDefault` seccomp profile.
//! - [`logs`]: the CRI log line format.
//! - [`attach`]: the frame protocol of a container's `attach.sock`.
//!
//! Inside: `monitor` (the per-container supervisor), `init` (the container init: namespaces,
//! rootfs, pivot_root), `security` + `seccomp` + `execve` (the last steps, shared with
//! `exec`), `state` (the state directory), `channel` (monitor ↔ init messages).

pub mod attach;
pub mod cgroups;
mod channel;
mod error;
mod exec;
mod execve;
mod files;
mod helper;
mod init;
pub mod logs;
mod monitor;
pub mod namespaces;
pub mod pause;
mod process;
mod runtime;
mod seccomp;
mod security;
pub mod spec;
mod state;
mod types;

pub use cgroups::{Stats, Usage};
pub use error::{Error, Result};
pub use helper::run_helper_mode;
pub use nix::sys::signal::Signal;
pub use process::ProcessId;
pub use runtime::Runtime;
pub use types::{
    ContainerState, ExecOptions, ExitInfo, HELPER_LOG_ENV, Pinned, PodNamespaces, Rootfs, RuntimeOptions, StartOptions,
    StartPhases, Started,
};
