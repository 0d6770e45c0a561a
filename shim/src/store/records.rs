//! What corral remembers about each pod and container, as written to disk.
//!
//! Records keep the CRI configs verbatim (labels and annotations must come back exactly as
//! given) plus what corral made for the object: pinned namespaces, IPs, exit status. Every
//! field has a default so an older record still loads after an upgrade.

use std::path::PathBuf;

use corral_cri::v1;
use serde::{Deserialize, Serialize};

use super::Record;

/// Version of the record layout, bumped on incompatible changes.
pub const RECORD_VERSION: u32 = 1;

/// Whether a pod's namespaces and network are up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum SandboxState {
    /// Namespaces pinned and network attached.
    Ready,
    /// Stopped, or set up only in part (a failed create whose cleanup also failed).
    #[default]
    NotReady,
}

/// A pod sandbox.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SandboxRecord {
    pub version: u32,
    pub id: String,
    /// The reserved name, from the metadata.
    pub name: String,
    pub config: v1::PodSandboxConfig,
    pub runtime_handler: String,
    pub created_at: i64,
    pub state: SandboxState,
    /// Primary pod IP, then any others.
    pub ips: Vec<String>,
    /// The pod's directory under the state dir: pinned namespaces, /etc files, shm.
    pub dir: PathBuf,
    pub netns: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
    /// The `corral pause` process, when the pod shares one PID namespace.
    pub pause_pid: Option<u32>,
    /// Cgroup path of the pod (kubelet's `cgroup_parent`, or one under corral's root).
    pub cgroup_parent: String,
    /// Why the last teardown did not finish; Stop/Remove retry it.
    pub teardown_error: Option<String>,
    /// Set on the stand-in for a record that could not be read at start-up: why. The pod
    /// is NOTREADY; Stop and Remove take down what is found of it.
    pub unreadable: Option<String>,
}

impl Record for SandboxRecord {
    const VERSION: u32 = RECORD_VERSION;
    fn id(&self) -> &str {
        &self.id
    }
    fn version(&self) -> u32 {
        self.version
    }
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ContainerState {
    #[default]
    Created,
    Running,
    Exited,
    /// Its record or its monitor's state could not be read.
    Unknown,
}

impl ContainerState {
    /// The CRI enum value.
    pub fn to_cri(self) -> v1::ContainerState {
        match self {
            ContainerState::Created => v1::ContainerState::ContainerCreated,
            ContainerState::Running => v1::ContainerState::ContainerRunning,
            ContainerState::Exited => v1::ContainerState::ContainerExited,
            ContainerState::Unknown => v1::ContainerState::ContainerUnknown,
        }
    }
}

/// A container.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct ContainerRecord {
    pub version: u32,
    pub id: String,
    pub name: String,
    pub sandbox_id: String,
    pub config: v1::ContainerConfig,
    /// The image as the request named it.
    pub image_spec: String,
    /// The image id (`sha256:` + config digest); `image_ref` and `image_id` in the CRI.
    pub image_id: String,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub state: ContainerState,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    /// Full path of the CRI log file, if the pod has a log directory.
    pub log_path: Option<PathBuf>,
    /// PID of the container's first process on the host, while running.
    pub pid: Option<u32>,
    /// Signal that StopContainer sends first (number).
    pub stop_signal: i32,
    /// Resources as last applied (create, then UpdateContainerResources).
    pub resources: Option<v1::LinuxContainerResources>,
    /// The user the first process runs as.
    pub user: Option<v1::LinuxContainerUser>,
    /// Mounts as applied, for ContainerStatus.
    pub mounts: Vec<v1::Mount>,
}

impl Record for ContainerRecord {
    const VERSION: u32 = RECORD_VERSION;
    fn id(&self) -> &str {
        &self.id
    }
    fn version(&self) -> u32 {
        self.version
    }
}
