//! What a starting daemon does before it serves: re-attach to what still runs, record what
//! ended while it was away, and remove what nothing refers to.
//!
//! Containers outlive the daemon (their monitors are not its children), so after `kill -9`
//! and a restart every running container is found again through the runtime's state dir.
//! After a reboot the state dir is empty: containers are recorded as exited and pods as
//! NOTREADY, and kubelet recreates them. Orphans (a crash between two steps of a create)
//! are garbage-collected here, so nothing leaks across crashes.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{Daemon, now_nanos};
use crate::store::records::{ContainerState, SandboxState};

impl Daemon {
    /// Brings records and the host back in line. Errors are logged, never fatal: one broken
    /// object must not keep the daemon (and every other pod) down.
    pub(super) async fn recover(&self) {
        for c in self.containers.list() {
            self.names.reserve(&c.name, &c.id).ok();
        }
        for s in self.sandboxes.list() {
            self.names.reserve(&s.name, &s.id).ok();
        }
        self.adopt_started_containers().await;
        self.recover_containers().await;
        self.recover_sandboxes();
        self.collect_garbage().await;
    }

    /// A daemon that crashed in StartContainer after the monitor started left a record that
    /// still says Created for a container that runs (or already ended). The runtime's state
    /// is the truth: the record becomes Running (then watched like any running container) or
    /// Exited. Without this the container would run unseen, and Stop would not stop it.
    async fn adopt_started_containers(&self) {
        for c in self.containers.list().iter().filter(|c| c.state == ContainerState::Created) {
            let (pid, started_at) = match self.runtime.state(&c.id) {
                Ok(corral_runtime::ContainerState::Running { pid, started_at, .. }) => {
                    (u32::try_from(pid).ok(), super::container::nanos(started_at))
                }
                Ok(corral_runtime::ContainerState::Starting { .. }) => (None, now_nanos()),
                Ok(corral_runtime::ContainerState::Exited(_)) => {
                    if let Err(e) = self.record_exit(&c.id).await {
                        tracing::warn!(container = %c.id, "recording the exit of a container started before a crash: {e}");
                    }
                    continue;
                }
                // Never started (no runtime state, or no monitor): it stays Created.
                Ok(corral_runtime::ContainerState::Created) | Err(_) => continue,
            };
            tracing::info!(container = %c.id, "adopting a container started before the daemon crashed");
            let adopted = self.containers.update(&c.id, |c| {
                c.state = ContainerState::Running;
                c.pid = pid;
                c.started_at = started_at;
            });
            if let Err(e) = adopted {
                tracing::warn!(container = %c.id, "saving the adopted container: {e}");
            }
        }
    }

    async fn recover_containers(&self) {
        for c in self.containers.list().iter().filter(|c| c.state == ContainerState::Running) {
            match self.runtime.state(&c.id) {
                Ok(
                    corral_runtime::ContainerState::Running { .. } | corral_runtime::ContainerState::Starting { .. },
                ) => {
                    tracing::info!(container = %c.id, "re-attached to running container");
                    self.watch_exit(c.id.clone());
                }
                Ok(corral_runtime::ContainerState::Exited(_) | corral_runtime::ContainerState::Created) => {
                    if let Err(e) = self.record_exit(&c.id).await {
                        tracing::warn!(container = %c.id, "recording exit: {e}");
                    }
                }
                Err(e) => {
                    tracing::warn!(container = %c.id, "container state lost ({e}); marking it exited");
                    let _ = self.containers.update(&c.id, |c| {
                        c.state = ContainerState::Exited;
                        c.finished_at = now_nanos();
                        c.exit_code = 255;
                        c.pid = None;
                        c.reason = "Unknown".into();
                        c.message = format!("the container's runtime state was lost: {e}");
                    });
                }
            }
        }
    }

    /// A READY pod whose pinned network namespace is gone (reboot) is NOTREADY.
    fn recover_sandboxes(&self) {
        for s in self.sandboxes.list().iter().filter(|s| s.state == SandboxState::Ready) {
            let pins = [&s.netns, &s.ipcns, &s.utsns];
            if let Some(missing) = pins.iter().filter_map(|p| p.as_ref()).find(|p| !p.exists()) {
                tracing::warn!(pod = %s.id, path = %missing.display(), "pinned namespace is gone; pod is NOTREADY");
                let _ = self.sandboxes.update(&s.id, |s| s.state = SandboxState::NotReady);
            }
        }
    }

    /// Removes runtime state, pod dirs, writable layers and network attachments that no
    /// record refers to.
    async fn collect_garbage(&self) {
        let containers: HashSet<String> = self.containers.list().iter().map(|c| c.id.clone()).collect();
        let sandboxes: HashSet<String> = self.sandboxes.list().iter().map(|s| s.id.clone()).collect();

        match self.runtime.list() {
            Ok(ids) => {
                for id in ids.iter().filter(|id| !containers.contains(*id)) {
                    tracing::info!(container = %id, "removing orphaned container state");
                    if let Err(e) = self.runtime.delete(id) {
                        tracing::warn!(container = %id, "removing orphan: {e}");
                    }
                }
            }
            Err(e) => tracing::warn!("listing runtime state: {e}"),
        }
        for (id, path) in unknown_entries(&self.config.state_dir.join("pods"), &sandboxes) {
            tracing::info!(path = %path.display(), "removing orphaned pod");
            self.remove_orphaned_pod(&id, &path).await;
        }
        for (_, path) in unknown_entries(&self.config.root.join("containers-rw"), &containers) {
            tracing::info!(path = %path.display(), "removing orphaned writable layer");
            if let Err(e) = std::fs::remove_dir_all(&path) {
                tracing::warn!(path = %path.display(), "removing orphan: {e}");
            }
        }
        let live: Vec<String> =
            self.sandboxes.list().iter().filter(|s| s.netns.is_some()).map(|s| s.id.clone()).collect();
        if let Err(e) = self.network.gc(&live).await {
            tracing::warn!("network garbage collection: {e}");
        }
    }

    /// Takes away what a RunPodSandbox that crashed before writing its record made: the
    /// pause process and the pod cgroup (made before the network), the pinned namespaces,
    /// /dev/shm and the pod dir. The network attachment goes with the network GC.
    async fn remove_orphaned_pod(&self, id: &str, dir: &Path) {
        let own_cgroup = format!("{}/{}", self.config.cgroup_root.trim_end_matches('/'), id);
        let dir_owned = dir.to_path_buf();
        let stopped = tokio::task::spawn_blocking(move || -> corral_runtime::Result<()> {
            corral_runtime::pause::stop(&dir_owned)?;
            corral_runtime::cgroups::remove_pod_cgroup(&own_cgroup)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = stopped {
            tracing::warn!(pod = %id, "removing orphan's pause process and cgroup: {e}");
        }
        if let Err(e) = corral_runtime::namespaces::unpin(dir) {
            tracing::warn!(pod = %id, "unpinning orphan's namespaces: {e}");
        }
        if let Err(e) = crate::pod::shm_unmount(dir) {
            tracing::warn!(pod = %id, "unmounting orphan's /dev/shm: {e}");
        }
        if let Err(e) = std::fs::remove_dir_all(dir) {
            tracing::warn!(path = %dir.display(), "removing orphan: {e}");
        }
    }
}

/// The entries of `dir` whose names are not in `known`, as (name, path).
fn unknown_entries(dir: &Path, known: &HashSet<String>) -> Vec<(String, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| !known.contains(name))
        .collect()
}
