//! The per-container state directory `<state_dir>/<id>/` and its records.
//!
//! | file | written by | contents |
//! |---|---|---|
//! | `config.json` | `Runtime::start` | the OCI spec |
//! | `start.json` | `Runtime::start` | [`StartRecord`]: start options + resolved cgroup path |
//! | `monitor.json` | monitor | the monitor's [`ProcessId`] |
//! | `init.json` | monitor | [`InitRecord`]: the container init's `ProcessId`, start time |
//! | `exit.json` | monitor | [`ExitInfo`], written once the container ended |
//! | `monitor.log` | monitor | the monitor's own diagnostics (stderr) |
//! | `rootfs/` | `Runtime::start` | mount point of the overlay, inside the container's mount ns |
//! | `attach.sock` | monitor | the attach server's socket, see `attach` |
//!
//! Every JSON record is written atomically (see `files`).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::files::{read_json, write_json_atomic};
use crate::process::ProcessId;
use crate::types::{ExitInfo, StartOptions};

/// What `start` stores for the monitor (and for later `exec`, `kill_all`, `delete`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartRecord {
    /// The caller's options.
    pub options: StartOptions,
    /// `linux.cgroupsPath`, or the default `/corral/<id>`.
    pub cgroup_path: String,
}

/// The container's init process.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct InitRecord {
    /// Host pid + start time.
    pub process: ProcessId,
    /// When its `execve` succeeded.
    pub started_at: SystemTime,
}

/// Paths of one container's state directory.
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
}

impl Bundle {
    /// The bundle at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Bundle {
        Bundle { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The mount point of an overlay rootfs.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// The monitor's diagnostics log.
    pub fn monitor_log(&self) -> PathBuf {
        self.dir.join("monitor.log")
    }

    /// Unix socket of the attach server (see `crate::attach`).
    pub fn attach_socket(&self) -> PathBuf {
        self.dir.join("attach.sock")
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Reads `config.json`.
    pub fn spec(&self) -> Result<Spec> {
        read_json(&self.file("config.json"))?.ok_or_else(|| Error::NotFound(format!("{:?}", self.file("config.json"))))
    }

    /// Writes `config.json`.
    pub fn write_spec(&self, spec: &Spec) -> Result<()> {
        write_json_atomic(&self.file("config.json"), spec)
    }

    /// Reads `start.json`.
    pub fn start_record(&self) -> Result<StartRecord> {
        read_json(&self.file("start.json"))?.ok_or_else(|| Error::NotFound(format!("{:?}", self.file("start.json"))))
    }

    /// Writes `start.json`.
    pub fn write_start_record(&self, record: &StartRecord) -> Result<()> {
        write_json_atomic(&self.file("start.json"), record)
    }

    /// Reads `monitor.json`, if the monitor got that far.
    pub fn monitor(&self) -> Result<Option<ProcessId>> {
        read_json(&self.file("monitor.json"))
    }

    /// Writes `monitor.json`.
    pub fn write_monitor(&self, monitor: &ProcessId) -> Result<()> {
        write_json_atomic(&self.file("monitor.json"), monitor)
    }

    /// Reads `init.json`, if the container started.
    pub fn init(&self) -> Result<Option<InitRecord>> {
        read_json(&self.file("init.json"))
    }

    /// Writes `init.json`.
    pub fn write_init(&self, init: &InitRecord) -> Result<()> {
        write_json_atomic(&self.file("init.json"), init)
    }

    /// Reads `exit.json`, if the container ended.
    pub fn exit(&self) -> Result<Option<ExitInfo>> {
        read_json(&self.file("exit.json"))
    }

    /// Writes `exit.json`.
    pub fn write_exit(&self, exit: &ExitInfo) -> Result<()> {
        write_json_atomic(&self.file("exit.json"), exit)
    }
}
