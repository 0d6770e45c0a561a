//! Container RPCs: CreateContainer, StartContainer, StopContainer, RemoveContainer,
//! ContainerStatus, ListContainers, UpdateContainerResources, ReopenContainerLog.
//!
//! Create resolves the image, translates the CRI config into an OCI spec and writes it; no
//! process exists until Start (as in containerd's CRI plugin). Start hands the spec to the
//! runtime, which returns once the container's process has exec'd; a watcher task then waits
//! for the monitor to exit and records how the container ended.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use corral_cri::v1;

use super::filters::{id_matches, labels_match};
use super::{Daemon, now_nanos};
use crate::container::{self as ocispec, SpecInputs};
use crate::error::{CriError, CriResult};
use crate::store::records::{ContainerRecord, ContainerState, RECORD_VERSION, SandboxState};
use crate::store::{Lookup, new_id};

/// How long StopContainer waits after SIGKILL before it reports the container as stuck.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// The runtime's exit reason when a monitor died without recording the exit
/// (`corral_runtime::Runtime::state`).
const MONITOR_DIED: &str = "Unknown";

/// The name a container is reserved under, as containerd builds it.
fn container_name(c: &v1::ContainerMetadata, s: &v1::PodSandboxMetadata) -> String {
    format!("{}_{}_{}_{}_{}", c.name, s.name, s.namespace, s.uid, c.attempt)
}

impl Daemon {
    /// The container's writable layer, volumes and spec, under the persistent root.
    fn container_dir(&self, id: &str) -> PathBuf {
        self.config.root.join("containers-rw").join(id)
    }

    pub(super) async fn create_container(
        &self,
        req: v1::CreateContainerRequest,
    ) -> CriResult<v1::CreateContainerResponse> {
        let sandbox_id = self.resolve_sandbox(&req.pod_sandbox_id)?;
        let sandbox = self
            .sandboxes
            .get(&sandbox_id)
            .ok_or_else(|| CriError::NotFound(format!("pod sandbox {:?} not found", req.pod_sandbox_id)))?;
        if sandbox.state != SandboxState::Ready {
            return Err(CriError::FailedPrecondition(format!("pod sandbox {sandbox_id} is not ready")));
        }
        let config = req.config.ok_or_else(|| CriError::InvalidArgument("container config is required".into()))?;
        let meta = config
            .metadata
            .clone()
            .filter(|m| !m.name.is_empty())
            .ok_or_else(|| CriError::InvalidArgument("container metadata.name is required".into()))?;
        let image_name = config.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
        if image_name.is_empty() {
            return Err(CriError::InvalidArgument("container image is required".into()));
        }
        let image = self.images.resolve(&image_name).ok_or_else(|| {
            CriError::NotFound(format!("image {image_name:?} not found: pull it before creating a container"))
        })?;

        let name = container_name(&meta, sandbox.config.metadata.as_ref().unwrap_or(&Default::default()));
        let id = new_id();
        tracing::Span::current().record("id", id.as_str());
        self.names.reserve(&name, &id).map_err(|holder| {
            CriError::AlreadyExists(format!("container name {name:?} is already reserved for container {holder}"))
        })?;
        let result = self.create_container_reserved(&id, &name, &sandbox_id, config, &image_name, &image).await;
        if result.is_err() {
            self.names.release(&name, &id);
            let _ = std::fs::remove_dir_all(self.container_dir(&id));
        }
        result.map(|()| v1::CreateContainerResponse { container_id: id })
    }

    async fn create_container_reserved(
        &self,
        id: &str,
        name: &str,
        sandbox_id: &str,
        config: v1::ContainerConfig,
        image_name: &str,
        image: &crate::images::Image,
    ) -> CriResult<()> {
        let sandbox = self.sandboxes.get(sandbox_id).ok_or_else(|| {
            CriError::NotFound(format!("pod sandbox {sandbox_id} was removed while the container was created"))
        })?;
        let dir = self.container_dir(id);
        for sub in ["upper", "work", "volumes"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|e| CriError::Internal(format!("creating {}: {e}", dir.join(sub).display())))?;
        }
        let target_pid_ns = self.target_pid_namespace(&config, sandbox_id)?;
        let built = ocispec::container_spec(SpecInputs {
            container_id: id,
            sandbox_id,
            config: &config,
            sandbox_config: &sandbox.config,
            image: &image_config(&image.config),
            rootfs_layers: &self.images.rootfs_layers(&image.id),
            pod: &self.pod_paths(&sandbox),
            target_pid_ns: target_pid_ns.as_deref(),
            cgroups_path: &format!("{}/{}", sandbox.cgroup_parent.trim_end_matches('/'), id),
            volumes_dir: &dir.join("volumes"),
            host: &self.host_facts,
            mount_table: None,
            base: corral_runtime::spec::default_spec(),
            default_seccomp: &self.default_seccomp,
        })?;
        let spec_json =
            serde_json::to_vec(&built.spec).map_err(|e| CriError::Internal(format!("encoding spec: {e}")))?;
        crate::store::atomic::write(&dir.join("spec.json"), &spec_json)
            .map_err(|e| CriError::Internal(e.to_string()))?;
        crate::fault::point("after-container-spec-written");

        let log_path = match (sandbox.config.log_directory.as_str(), config.log_path.as_str()) {
            ("", _) | (_, "") => None,
            (d, p) => Some(Path::new(d).join(p)),
        };
        let record = ContainerRecord {
            version: RECORD_VERSION,
            id: id.to_string(),
            name: name.to_string(),
            sandbox_id: sandbox_id.to_string(),
            image_spec: image_name.to_string(),
            image_id: image.id.to_string(),
            created_at: now_nanos(),
            state: ContainerState::Created,
            log_path,
            stop_signal: ocispec::signal_number(built.stop_signal),
            resources: config.linux.as_ref().and_then(|l| l.resources.clone()),
            user: Some(built.user),
            mounts: built.mounts,
            config,
            ..Default::default()
        };
        let record =
            self.containers.put(record).map_err(|e| CriError::Internal(format!("saving container record: {e}")))?;
        crate::fault::point("after-container-record-written");
        self.publish(&record, v1::ContainerEventType::ContainerCreatedEvent);
        tracing::info!(container = %id, pod = %sandbox_id, image = %image_name, "container created");
        Ok(())
    }

    pub(super) async fn start_container(
        &self,
        req: v1::StartContainerRequest,
    ) -> CriResult<v1::StartContainerResponse> {
        let id = self.resolve_container(&req.container_id)?;
        let _op = self.ops.lock(&id).await;
        let record = self.containers.get(&id).ok_or_else(|| container_not_found(&id))?;
        if record.state != ContainerState::Created {
            return Err(CriError::FailedPrecondition(format!(
                "container {id} is {:?}; only a created container can be started",
                record.state
            )));
        }
        let sandbox_ready = self.sandboxes.get(&record.sandbox_id).is_some_and(|s| s.state == SandboxState::Ready);
        if !sandbox_ready {
            return Err(CriError::FailedPrecondition(format!("pod sandbox {} is not ready", record.sandbox_id)));
        }
        let dir = self.container_dir(&id);
        let spec = read_spec(&dir)?;
        if let Some(log) = &record.log_path
            && let Some(parent) = log.parent()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| CriError::Internal(format!("creating log dir {}: {e}", parent.display())))?;
        }
        let opts = corral_runtime::StartOptions {
            log_path: record.log_path.clone(),
            stdin: record.config.stdin,
            stdin_once: record.config.stdin_once,
            tty: record.config.tty,
            rootfs: corral_runtime::Rootfs::Overlay {
                lower: self.image_layers(&record.image_id)?,
                upper: dir.join("upper"),
                work: dir.join("work"),
            },
        };
        let runtime = self.runtime.clone();
        let span = tracing::Span::current(); // the runtime's step spans nest under this RPC
        let started = tokio::task::spawn_blocking({
            let id = id.clone();
            move || span.in_scope(|| runtime.start(&id, &spec, &opts))
        })
        .await
        .map_err(|e| CriError::Internal(format!("starting container: {e}")))?;
        let started = match started {
            Ok(started) => started,
            Err(err) => {
                // The process never ran: record the failure like containerd does, so the
                // container shows as exited with the reason, and free what the runtime made.
                let message = err.to_string();
                let _ = self.runtime.delete(&id);
                let _ = self.containers.update(&id, |c| {
                    c.state = ContainerState::Exited;
                    c.finished_at = now_nanos();
                    c.exit_code = 128;
                    c.reason = "StartError".into();
                    c.message = message.clone();
                });
                return Err(err.into());
            }
        };
        crate::fault::point("after-monitor-started");
        let record = tracing::debug_span!("save_record")
            .in_scope(|| {
                self.containers.update(&id, |c| {
                    c.state = ContainerState::Running;
                    c.started_at = nanos(started.started_at);
                    c.pid = u32::try_from(started.pid).ok();
                })
            })
            .map_err(|e| CriError::Internal(format!("saving container record: {e}")))?
            .ok_or_else(|| container_not_found(&id))?;
        self.publish(&record, v1::ContainerEventType::ContainerStartedEvent);
        self.watch_exit(id.clone());
        tracing::info!(container = %id, pid = started.pid, "container started");
        Ok(v1::StartContainerResponse {})
    }

    /// Waits in the background for the container's monitor to exit, then records the exit.
    pub(super) fn watch_exit(self: &Daemon, id: String) {
        let Some(me) = self.me.upgrade() else { return };
        tokio::spawn(async move {
            if let Err(e) = me.wait_for_exit(&id).await {
                tracing::warn!(container = %id, "waiting for exit: {e}");
            }
        });
    }

    async fn wait_for_exit(&self, id: &str) -> CriResult<()> {
        monitor_exited(self.runtime.watch(id)?).await?;
        self.record_exit(id).await
    }

    /// Reads how the container ended from the runtime and stores it (idempotent).
    ///
    /// A monitor that died without recording the exit (SIGKILL, OOM kill) leaves its
    /// container running unsupervised, its output going nowhere and its end unrecorded. Such
    /// a container is killed before it is reported exited (reason `Unknown`), as containerd
    /// kills the container of a dead shim: "exited" must be true, and kubelet restarts it.
    pub(super) async fn record_exit(&self, id: &str) -> CriResult<()> {
        let state = self.runtime.state(id)?;
        let corral_runtime::ContainerState::Exited(exit) = state else { return Ok(()) };
        let unrecorded = self.containers.get(id).is_some_and(|c| c.state != ContainerState::Exited);
        if unrecorded && exit.reason == MONITOR_DIED {
            tracing::warn!(container = %id, "the container's monitor died; killing what is left of the container");
            let (runtime, rid) = (self.runtime.clone(), id.to_string());
            let killed = tokio::task::spawn_blocking(move || runtime.kill_all(&rid))
                .await
                .map_err(|e| CriError::Internal(format!("killing the container of a dead monitor: {e}")))?;
            if let Err(e) = killed {
                tracing::warn!(container = %id, "killing the container of a dead monitor: {e}");
            }
        }
        let mut changed = false;
        let record = self
            .containers
            .update(id, |c| {
                // Created: a container whose start the daemon did not live to record.
                if matches!(c.state, ContainerState::Running | ContainerState::Created) {
                    changed = true;
                    c.state = ContainerState::Exited;
                    c.finished_at = nanos(exit.finished_at);
                    c.exit_code = exit.exit_code;
                    c.pid = None;
                    c.reason = if !exit.reason.is_empty() {
                        exit.reason.clone() // the monitor's, or Unknown for a dead monitor
                    } else if exit.oom_killed {
                        "OOMKilled".into()
                    } else if exit.exit_code == 0 {
                        "Completed".into()
                    } else {
                        "Error".into()
                    };
                    c.message = exit.message.clone().unwrap_or_default();
                }
            })
            .map_err(|e| CriError::Internal(format!("saving container record: {e}")))?;
        if let (true, Some(record)) = (changed, record) {
            tracing::info!(container = %id, exit_code = record.exit_code, reason = %record.reason, "container exited");
            self.publish(&record, v1::ContainerEventType::ContainerStoppedEvent);
        }
        Ok(())
    }

    pub(super) async fn stop_container(&self, req: v1::StopContainerRequest) -> CriResult<v1::StopContainerResponse> {
        let Some(id) = self.find_container_for_cleanup(&req.container_id)? else {
            return Ok(v1::StopContainerResponse {}); // already gone: stop is idempotent
        };
        let _op = self.ops.lock(&id).await;
        self.stop_container_now(&id, req.timeout.max(0)).await?;
        Ok(v1::StopContainerResponse {})
    }

    /// Stop signal, `timeout` seconds of grace, then SIGKILL to the whole cgroup.
    /// The caller holds the container's op lock (or its sandbox's).
    pub(super) async fn stop_container_now(&self, id: &str, timeout: i64) -> CriResult<()> {
        let Some(record) = self.containers.get(id) else { return Ok(()) };
        match record.state {
            ContainerState::Running => {}
            ContainerState::Unknown => return self.stop_unknown_container(id).await,
            ContainerState::Created | ContainerState::Exited => return Ok(()),
        }
        if timeout > 0 {
            let signal =
                nix::sys::signal::Signal::try_from(record.stop_signal).unwrap_or(nix::sys::signal::Signal::SIGTERM);
            match self.runtime.signal(id, signal) {
                Ok(()) => {
                    if self.wait_stopped(id, Duration::from_secs(timeout as u64)).await? {
                        return Ok(());
                    }
                }
                Err(e) => tracing::warn!(container = %id, "sending {signal}: {e}; killing"),
            }
        }
        let (runtime, rid) = (self.runtime.clone(), id.to_string());
        tokio::task::spawn_blocking(move || runtime.kill_all(&rid))
            .await
            .map_err(|e| CriError::Internal(format!("killing container {id}: {e}")))??;
        if self.wait_stopped(id, KILL_WAIT).await? {
            return Ok(());
        }
        Err(CriError::Internal(format!("container {id} did not exit {}s after SIGKILL", KILL_WAIT.as_secs())))
    }

    /// A container whose record could not be read may still run: kill whatever is in its
    /// cgroup (if the runtime knows it), then record it as exited, keeping the reason.
    async fn stop_unknown_container(&self, id: &str) -> CriResult<()> {
        let (runtime, rid) = (self.runtime.clone(), id.to_string());
        let killed = tokio::task::spawn_blocking(move || runtime.kill_all(&rid))
            .await
            .map_err(|e| CriError::Internal(format!("stopping container {id}: {e}")))?;
        match killed {
            Ok(()) | Err(corral_runtime::Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.containers
            .update(id, |c| {
                c.state = ContainerState::Exited;
                c.finished_at = now_nanos();
                c.pid = None;
            })
            .map_err(|e| CriError::Internal(format!("saving container record: {e}")))?;
        Ok(())
    }

    /// Waits until the container's monitor exited and its exit is recorded.
    async fn wait_stopped(&self, id: &str, limit: Duration) -> CriResult<bool> {
        let pidfd = match self.runtime.watch(id) {
            Ok(fd) => fd,
            Err(corral_runtime::Error::NotFound(_)) => {
                self.record_exit(id).await?;
                return Ok(true);
            }
            Err(e) => return Err(e.into()),
        };
        match tokio::time::timeout(limit, monitor_exited(pidfd)).await {
            Ok(result) => {
                result?;
                self.record_exit(id).await?;
                Ok(true)
            }
            Err(_) => Ok(false),
        }
    }

    pub(super) async fn remove_container(
        &self,
        req: v1::RemoveContainerRequest,
    ) -> CriResult<v1::RemoveContainerResponse> {
        let Some(id) = self.find_container_for_cleanup(&req.container_id)? else {
            return Ok(v1::RemoveContainerResponse {}); // already gone: remove is idempotent
        };
        let _op = self.ops.lock(&id).await;
        self.remove_container_now(&id).await?;
        Ok(v1::RemoveContainerResponse {})
    }

    /// Kills the container if it still runs, then removes every trace of it.
    pub(super) async fn remove_container_now(&self, id: &str) -> CriResult<()> {
        let Some(record) = self.containers.get(id) else { return Ok(()) };
        self.stop_container_now(id, 0).await?;
        let runtime = self.runtime.clone();
        let rid = id.to_string();
        tokio::task::spawn_blocking(move || runtime.delete(&rid))
            .await
            .map_err(|e| CriError::Internal(format!("deleting container: {e}")))??;
        crate::fault::point("mid-container-removal");
        let dir = self.container_dir(id);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(CriError::Internal(format!("removing {}: {e}", dir.display())));
        }
        self.containers.remove(id).map_err(|e| CriError::Internal(format!("removing container record: {e}")))?;
        self.names.release(&record.name, id);
        self.publish(&record, v1::ContainerEventType::ContainerDeletedEvent);
        tracing::info!(container = %id, "container removed");
        Ok(())
    }

    pub(super) fn container_status(&self, req: v1::ContainerStatusRequest) -> CriResult<v1::ContainerStatusResponse> {
        let id = self.resolve_container(&req.container_id)?;
        let record = self.containers.get(&id).ok_or_else(|| container_not_found(&id))?;
        let mut info = std::collections::HashMap::new();
        if req.verbose {
            let spec = read_spec(&self.container_dir(&id)).ok();
            info.insert(
                "info".to_string(),
                serde_json::json!({ "pid": record.pid, "sandboxID": record.sandbox_id, "runtimeSpec": spec })
                    .to_string(),
            );
        }
        Ok(v1::ContainerStatusResponse { status: Some(self.container_status_of(&record)), info })
    }

    /// The CRI status of a record.
    pub(super) fn container_status_of(&self, c: &ContainerRecord) -> v1::ContainerStatus {
        v1::ContainerStatus {
            id: c.id.clone(),
            metadata: c.config.metadata.clone(),
            state: c.state.to_cri() as i32,
            created_at: c.created_at,
            started_at: c.started_at,
            finished_at: c.finished_at,
            exit_code: c.exit_code,
            image: Some(image_spec(c)),
            image_ref: c.image_id.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            labels: c.config.labels.clone(),
            annotations: c.config.annotations.clone(),
            mounts: c.mounts.clone(),
            log_path: c.log_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            resources: c.resources.clone().map(|linux| v1::ContainerResources { linux: Some(linux), windows: None }),
            image_id: c.image_id.clone(),
            user: c.user.clone().map(|linux| v1::ContainerUser { linux: Some(linux) }),
            stop_signal: c.config.stop_signal,
        }
    }

    pub(super) fn list_containers(&self, req: v1::ListContainersRequest) -> CriResult<v1::ListContainersResponse> {
        let filter = req.filter.unwrap_or_default();
        let containers = self
            .containers
            .list()
            .iter()
            .filter(|c| id_matches(&filter.id, &c.id))
            .filter(|c| id_matches(&filter.pod_sandbox_id, &c.sandbox_id))
            .filter(|c| filter.state.as_ref().is_none_or(|want| want.state == c.state.to_cri() as i32))
            .filter(|c| labels_match(&filter.label_selector, &c.config.labels))
            .map(|c| v1::Container {
                id: c.id.clone(),
                pod_sandbox_id: c.sandbox_id.clone(),
                metadata: c.config.metadata.clone(),
                image: Some(image_spec(c)),
                image_ref: c.image_id.clone(),
                state: c.state.to_cri() as i32,
                created_at: c.created_at,
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
                image_id: c.image_id.clone(),
            })
            .collect();
        Ok(v1::ListContainersResponse { containers })
    }

    pub(super) async fn update_container_resources(
        &self,
        req: v1::UpdateContainerResourcesRequest,
    ) -> CriResult<v1::UpdateContainerResourcesResponse> {
        let id = self.resolve_container(&req.container_id)?;
        let _op = self.ops.lock(&id).await;
        let record = self.containers.get(&id).ok_or_else(|| container_not_found(&id))?;
        let Some(resources) = req.linux else { return Ok(v1::UpdateContainerResourcesResponse {}) };
        if record.state == ContainerState::Running {
            let oci = ocispec::linux_resources(&resources, &self.host_facts)?;
            self.runtime.update_resources(&id, &oci)?;
        }
        self.containers
            .update(&id, |c| c.resources = Some(resources.clone()))
            .map_err(|e| CriError::Internal(format!("saving container record: {e}")))?;
        Ok(v1::UpdateContainerResourcesResponse {})
    }

    pub(super) async fn reopen_container_log(
        &self,
        req: v1::ReopenContainerLogRequest,
    ) -> CriResult<v1::ReopenContainerLogResponse> {
        let id = self.resolve_container(&req.container_id)?;
        let record = self.containers.get(&id).ok_or_else(|| container_not_found(&id))?;
        if record.state != ContainerState::Running {
            return Err(CriError::FailedPrecondition(format!("container {id} is not running")));
        }
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || runtime.reopen_log(&id))
            .await
            .map_err(|e| CriError::Internal(format!("reopening the log: {e}")))??;
        Ok(v1::ReopenContainerLogResponse {})
    }

    /// The full id of a container named by id or unique id prefix.
    pub(super) fn resolve_container(&self, prefix: &str) -> CriResult<String> {
        self.containers.resolve(prefix).map_err(|lookup| match lookup {
            Lookup::Missing => container_not_found(prefix),
            Lookup::Ambiguous(n) => {
                CriError::InvalidArgument(format!("container id prefix {prefix:?} matches {n} containers"))
            }
        })
    }

    fn find_container_for_cleanup(&self, prefix: &str) -> CriResult<Option<String>> {
        match self.resolve_container(prefix) {
            Ok(id) => Ok(Some(id)),
            Err(CriError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// For a TARGET PID namespace: the target container's PID namespace, which must run.
    fn target_pid_namespace(&self, config: &v1::ContainerConfig, sandbox_id: &str) -> CriResult<Option<PathBuf>> {
        let Some(ns) =
            config.linux.as_ref().and_then(|l| l.security_context.as_ref()).and_then(|s| s.namespace_options.as_ref())
        else {
            return Ok(None);
        };
        if ns.pid != v1::NamespaceMode::Target as i32 {
            return Ok(None);
        }
        let target = self.resolve_container(&ns.target_id)?;
        let record = self.containers.get(&target).ok_or_else(|| container_not_found(&target))?;
        match (record.sandbox_id == sandbox_id, record.pid) {
            (true, Some(pid)) => Ok(Some(PathBuf::from(format!("/proc/{pid}/ns/pid")))),
            (false, _) => Err(CriError::InvalidArgument(format!("target container {target} is in another pod"))),
            (true, None) => Err(CriError::FailedPrecondition(format!("target container {target} is not running"))),
        }
    }

    /// The image layer dirs of a container's image (top first); the image cannot be removed
    /// while a container uses it.
    fn image_layers(&self, image_id: &str) -> CriResult<Vec<PathBuf>> {
        let image = self
            .images
            .resolve(image_id)
            .ok_or_else(|| CriError::FailedPrecondition(format!("image {image_id} of the container is gone")))?;
        Ok(self.images.rootfs_layers(&image.id))
    }

    fn pod_paths(&self, sandbox: &crate::store::records::SandboxRecord) -> ocispec::PodPaths {
        ocispec::PodPaths {
            net: sandbox.netns.clone(),
            ipc: sandbox.ipcns.clone(),
            uts: sandbox.utsns.clone(),
            pid: sandbox.pause_pid.map(|pid| PathBuf::from(format!("/proc/{pid}/ns/pid"))),
            user: None,
            hostname: crate::pod::hostname_file(&sandbox.dir),
            hosts: crate::pod::hosts_file(&sandbox.dir),
            resolv_conf: crate::pod::resolv_conf_file(&sandbox.dir),
            dev_shm: if sandbox.ipcns.is_some() {
                crate::pod::shm_dir(&sandbox.dir)
            } else {
                PathBuf::from("/dev/shm")
            },
        }
    }

    fn publish(&self, record: &Arc<ContainerRecord>, kind: v1::ContainerEventType) {
        let sandbox = self.sandboxes.get(&record.sandbox_id);
        self.events.publish(v1::ContainerEventResponse {
            container_id: record.id.clone(),
            container_event_type: kind as i32,
            created_at: now_nanos(),
            pod_sandbox_status: sandbox.map(|s| super::sandbox::status_of(&s)),
            containers_statuses: vec![self.container_status_of(record)],
        });
    }
}

/// Waits until a monitor is gone: its pidfd (or the runtime's stand-in, a pipe whose writer
/// has closed) becomes readable.
async fn monitor_exited(fd: std::os::fd::OwnedFd) -> CriResult<()> {
    use tokio::io::Interest;
    use tokio::io::unix::AsyncFd;
    // SAFETY: `fd` is an open descriptor owned by the AsyncFd from here on; nothing else closes
    // or replaces it while the AsyncFd lives.
    let fd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }
        .map_err(|e| CriError::Internal(format!("watching the monitor: {}", e.into_parts().1)))?;
    let _ready = fd.readable().await.map_err(|e| CriError::Internal(format!("watching the monitor: {e}")))?;
    Ok(())
}

/// The image's run defaults as the spec builder wants them.
fn image_config(c: &crate::images::ImageConfig) -> ocispec::ImageConfig {
    ocispec::ImageConfig {
        entrypoint: c.entrypoint.clone(),
        cmd: c.cmd.clone(),
        env: c.env.clone(),
        working_dir: c.working_dir.clone(),
        user: c.user.clone(),
        volumes: c.volumes.clone(),
        stop_signal: c.stop_signal.clone(),
    }
}

/// A `SystemTime` in the CRI's nanoseconds since the epoch.
pub(super) fn nanos(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

fn container_not_found(id: &str) -> CriError {
    CriError::NotFound(format!("container {id:?} not found"))
}

fn image_spec(c: &ContainerRecord) -> v1::ImageSpec {
    v1::ImageSpec {
        image: c.image_spec.clone(),
        annotations: c.config.image.as_ref().map(|i| i.annotations.clone()).unwrap_or_default(),
        user_specified_image: c.config.image.as_ref().map(|i| i.user_specified_image.clone()).unwrap_or_default(),
        ..Default::default()
    }
}

fn read_spec(dir: &Path) -> CriResult<oci_spec::runtime::Spec> {
    let path = dir.join("spec.json");
    let bytes = std::fs::read(&path).map_err(|e| CriError::Internal(format!("reading {}: {e}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| CriError::Internal(format!("parsing {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_containerd() {
        let c = v1::ContainerMetadata { name: "app".into(), attempt: 2 };
        let s = v1::PodSandboxMetadata { name: "web".into(), uid: "u1".into(), namespace: "ns".into(), attempt: 0 };
        assert_eq!(container_name(&c, &s), "app_web_ns_u1_2");
    }
}
