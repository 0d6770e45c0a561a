//! corral's container runtime: corral's runc.
//!
//! Given an OCI runtime [spec](https://github.com/opencontainers/runtime-spec), a prepared
//! rootfs and the pod's pinned namespaces, this crate starts the container process, supervises
//! it through a monitor process, and reports how it ended. It has no gRPC in it; the daemon
//! (`shim/`) calls it. See `docs/design.md` for the process model.
//!
//! The public shape (filled in by the runtime issue):
//! - `namespaces`: pin a pod's network/IPC/UTS namespaces to files without a process.
//! - `monitor`: the per-container monitor (a re-exec of the `corral` binary, no tokio):
//!   owns the container's stdio, writes the CRI log, reaps, records the exit.
//! - `container`: create / start / kill / delete a container from a bundle.
//! - `exec`: run a process inside a running container.
//! - `cgroups`: v1 and v2 resource limits and stats.

mod error;

pub use error::{Error, Result};
