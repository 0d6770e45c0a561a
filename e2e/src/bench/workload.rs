//! The pods and containers every scenario creates: one definition, so both runtimes get
//! byte-for-byte the same requests.
//!
//! They look like what kubelet sends for a plain best-effort pod: pod-level network and IPC
//! namespaces, a per-container PID namespace (`shareProcessNamespace: false`), kubelet's
//! default masked and read-only paths, best-effort CPU shares, no hostPorts, the runtime's
//! default cgroup parent and pod network. Like kubelet, the benchmark creates each pod's
//! log directory before `RunPodSandbox` (outside any timing).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use corral_cri::v1;

use super::error::{BenchError, Result};

/// Label carried by every pod of one run; its value is the run's id.
pub const RUN_LABEL: &str = "corral-bench/run";
/// Kubernetes namespace of every benchmark pod.
pub const POD_NAMESPACE: &str = "corral-bench";

/// kubelet's `defaultMaskedPaths` (pkg/securitycontext/util.go).
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
/// kubelet's `defaultReadonlyPaths`.
const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Makes pod and container configs with unique names for one run against one runtime.
pub struct Workload {
    image: String,
    log_root: PathBuf,
    run_id: String,
    next: AtomicU64,
}

impl Workload {
    /// `image` runs in every container; pod log directories go under `log_root`; `run_id`
    /// labels every pod so that a clean-up finds all of them.
    pub fn new(image: &str, log_root: &Path, run_id: &str) -> Workload {
        Workload {
            image: image.to_owned(),
            log_root: log_root.to_owned(),
            run_id: run_id.to_owned(),
            next: AtomicU64::new(0),
        }
    }

    pub fn image(&self) -> &str {
        &self.image
    }

    /// The label selector matching every pod of this run.
    pub fn selector(&self) -> HashMap<String, String> {
        HashMap::from([(RUN_LABEL.to_owned(), self.run_id.clone())])
    }

    /// A fresh pod config named after `scenario`, with its log directory created.
    pub fn pod(&self, scenario: &str) -> Result<v1::PodSandboxConfig> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("{scenario}-{n}");
        let uid = format!("{}-{n}", self.run_id);
        let log_dir = self.log_root.join(&uid);
        std::fs::create_dir_all(&log_dir).map_err(|e| BenchError::io("creating log directory", &log_dir, e))?;
        Ok(v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata {
                name: name.clone(),
                uid,
                namespace: POD_NAMESPACE.to_owned(),
                attempt: 0,
            }),
            hostname: name,
            log_directory: log_dir.to_string_lossy().into_owned(),
            labels: self.selector(),
            linux: Some(v1::LinuxPodSandboxConfig {
                security_context: Some(v1::LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    /// `sleep 3600`: the container of every scenario except the startup-latency one.
    pub fn sleeper(&self) -> v1::ContainerConfig {
        self.container("sleeper", &["sleep", "3600"])
    }

    /// Prints one line, then sleeps: its first log line marks "the pod is up".
    pub fn greeter(&self) -> v1::ContainerConfig {
        self.container("greeter", &["sh", "-c", "echo ready; exec sleep 3600"])
    }

    fn container(&self, name: &str, command: &[&str]) -> v1::ContainerConfig {
        v1::ContainerConfig {
            metadata: Some(v1::ContainerMetadata { name: name.to_owned(), attempt: 0 }),
            image: Some(v1::ImageSpec { image: self.image.clone(), ..Default::default() }),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            log_path: format!("{name}.log"),
            linux: Some(v1::LinuxContainerConfig {
                resources: Some(v1::LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_shares: 2,
                    oom_score_adj: 1000,
                    ..Default::default()
                }),
                security_context: Some(v1::LinuxContainerSecurityContext {
                    namespace_options: Some(namespaces()),
                    masked_paths: MASKED_PATHS.iter().map(|s| (*s).to_owned()).collect(),
                    readonly_paths: READONLY_PATHS.iter().map(|s| (*s).to_owned()).collect(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }
}

/// Where the runtime writes a container's CRI log.
pub fn log_file(pod: &v1::PodSandboxConfig, container: &v1::ContainerConfig) -> PathBuf {
    Path::new(&pod.log_directory).join(&container.log_path)
}

/// kubelet's choice for a pod without `shareProcessNamespace` or host namespaces.
fn namespaces() -> v1::NamespaceOption {
    v1::NamespaceOption {
        network: v1::NamespaceMode::Pod as i32,
        pid: v1::NamespaceMode::Container as i32,
        ipc: v1::NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_get_unique_names_uids_and_their_own_log_directory() {
        let dir = tempfile::tempdir().unwrap();
        let wl = Workload::new("img", dir.path(), "run1");
        let a = wl.pod("cycle").unwrap();
        let b = wl.pod("cycle").unwrap();
        let (ma, mb) = (a.metadata.as_ref().unwrap(), b.metadata.as_ref().unwrap());
        assert_ne!(ma.name, mb.name);
        assert_ne!(ma.uid, mb.uid);
        assert!(Path::new(&a.log_directory).is_dir());
        assert_eq!(a.labels, wl.selector());
        let c = wl.greeter();
        assert_eq!(log_file(&a, &c), dir.path().join(&ma.uid).join("greeter.log"));
        let ns = a.linux.unwrap().security_context.unwrap().namespace_options.unwrap();
        assert_eq!(ns.pid, v1::NamespaceMode::Container as i32);
    }
}
