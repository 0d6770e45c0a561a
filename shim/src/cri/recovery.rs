//! What a starting daemon does before it serves: re-attach to what still runs, record what
//! ended while it was away, and remove what nothing refers to.
//!
//! Containers outlive the daemon (their monitors are not its children), so after `kill -9`
//! and a restart every running container is found again through the runtime's state dir.
//! After a reboot the state dir is empty: containers are recorded as exited and pods as
//! NOTREADY, and kubelet recreates them. Orphans (a crash between two steps of a create)
//! are garbage-collected here, so nothing leaks across crashes.

use std::collections::HashSet;

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
        self.recover_containers();
        self.recover_sandboxes();
        self.collect_garbage().await;
    }

    fn recover_containers(&self) {
        for c in self.containers.list().iter().filter(|c| c.state == ContainerState::Running) {
            match self.runtime.state(&c.id) {
                Ok(
                    corral_runtime::ContainerState::Running { .. } | corral_runtime::ContainerState::Starting { .. },
                ) => {
                    tracing::info!(container = %c.id, "re-attached to running container");
                    self.watch_exit(c.id.clone());
                }
                Ok(corral_runtime::ContainerState::Exited(_) | corral_runtime::ContainerState::Created) => {
                    if let Err(e) = self.record_exit(&c.id) {
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
        for (dir, known) in
            [(self.config.state_dir.join("pods"), &sandboxes), (self.config.root.join("containers-rw"), &containers)]
        {
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if known.contains(&name) {
                    continue;
                }
                tracing::info!(path = %entry.path().display(), "removing orphaned directory");
                if dir.ends_with("pods") {
                    let _ = corral_runtime::namespaces::unpin(&entry.path());
                    let _ = crate::pod::shm_unmount(&entry.path());
                }
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(path = %entry.path().display(), "removing orphan: {e}");
                }
            }
        }
        let live: Vec<String> =
            self.sandboxes.list().iter().filter(|s| s.netns.is_some()).map(|s| s.id.clone()).collect();
        if let Err(e) = self.network.gc(&live).await {
            tracing::warn!("network garbage collection: {e}");
        }
    }
}
