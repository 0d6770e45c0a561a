//! Pod sandbox RPCs: RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus,
//! ListPodSandbox, UpdatePodSandboxResources.
//!
//! A sandbox in corral is a directory, pinned namespaces and a network attachment (see
//! `pod/`); there is no pause container unless the pod shares one PID namespace.

use std::collections::HashMap;

use corral_cri::v1;

use super::filters::{id_matches, labels_match};
use super::{Daemon, now_nanos};
use crate::error::{CriError, CriResult};
use crate::pod;
use crate::store::records::{RECORD_VERSION, SandboxRecord, SandboxState};
use crate::store::{Lookup, new_id};

/// The name a pod is reserved under, as containerd builds it.
fn sandbox_name(meta: &v1::PodSandboxMetadata) -> String {
    format!("{}_{}_{}_{}", meta.name, meta.namespace, meta.uid, meta.attempt)
}

impl Daemon {
    pub(super) async fn run_pod_sandbox(&self, req: v1::RunPodSandboxRequest) -> CriResult<v1::RunPodSandboxResponse> {
        let config = req.config.ok_or_else(|| CriError::InvalidArgument("sandbox config is required".into()))?;
        validate_sandbox_config(&config)?;
        if !matches!(req.runtime_handler.as_str(), "" | "default" | "corral") {
            return Err(CriError::InvalidArgument(format!(
                "unknown runtime handler {:?}: corral has only the default handler",
                req.runtime_handler
            )));
        }
        let meta = config.metadata.clone().unwrap_or_default();
        let name = sandbox_name(&meta);
        let id = new_id();
        tracing::Span::current().record("id", id.as_str());
        self.names.reserve(&name, &id).map_err(|holder| {
            CriError::AlreadyExists(format!("pod sandbox name {name:?} is already reserved for sandbox {holder}"))
        })?;
        let _op = self.ops.lock(&id).await;

        let cgroup_parent = config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| format!("{}/{}", self.config.cgroup_root.trim_end_matches('/'), id));
        let mut record = SandboxRecord {
            version: RECORD_VERSION,
            id: id.clone(),
            name: name.clone(),
            runtime_handler: req.runtime_handler,
            created_at: now_nanos(),
            state: SandboxState::NotReady,
            dir: self.config.state_dir.join("pods").join(&id),
            cgroup_parent,
            config,
            ..Default::default()
        };
        let sysctls = record.config.linux.as_ref().map(|l| l.sysctls.clone()).unwrap_or_default();

        if let Err(err) =
            pod::setup(&mut record, &self.runtime, self.network.as_ref(), &self.host_files, &sysctls).await
        {
            return Err(self.roll_back_sandbox(record, err).await);
        }
        record.state = SandboxState::Ready;
        if let Err(e) = tracing::debug_span!("save_record").in_scope(|| self.sandboxes.put(record.clone())) {
            let err = CriError::Internal(format!("saving sandbox record: {e}"));
            return Err(self.roll_back_sandbox(record, err).await);
        }
        crate::fault::point("after-sandbox-record-written");
        tracing::info!(pod = %id, name = %name, ip = ?record.ips.first(), "pod sandbox ready");
        Ok(v1::RunPodSandboxResponse { pod_sandbox_id: id })
    }

    /// Tears down a half-made sandbox. If that fails too, the sandbox is kept as NOTREADY so
    /// that kubelet's StopPodSandbox/RemovePodSandbox retries the cleanup (no leaked IP).
    async fn roll_back_sandbox(&self, mut record: SandboxRecord, err: CriError) -> CriError {
        match pod::teardown(&mut record, self.network.as_ref()).await {
            Ok(()) => {
                let _ = std::fs::remove_dir_all(&record.dir);
                self.names.release(&record.name, &record.id);
            }
            Err(cleanup) => {
                record.state = SandboxState::NotReady;
                record.teardown_error = Some(cleanup.to_string());
                if let Err(e) = self.sandboxes.put(record.clone()) {
                    // The disk that made the create fail (full, read-only) may refuse the
                    // record too. Listed from memory, the pod still holds its name and gets
                    // StopPodSandbox/RemovePodSandbox from kubelet; forgotten, its name would
                    // stay reserved for a pod nobody can see or remove.
                    tracing::error!(pod = %record.id, "cannot save the record of a failed sandbox, keeping it in memory: {e}");
                    self.sandboxes.insert_unsaved(record);
                }
            }
        }
        err
    }

    pub(super) async fn stop_pod_sandbox(
        &self,
        req: v1::StopPodSandboxRequest,
    ) -> CriResult<v1::StopPodSandboxResponse> {
        let Some(id) = self.find_sandbox_for_cleanup(&req.pod_sandbox_id)? else {
            return Ok(v1::StopPodSandboxResponse {}); // already gone: stop is idempotent
        };
        let _op = self.ops.lock(&id).await;
        self.stop_sandbox_locked(&id).await?;
        Ok(v1::StopPodSandboxResponse {})
    }

    /// Stops every container of the pod, then takes down its network and namespaces.
    async fn stop_sandbox_locked(&self, id: &str) -> CriResult<()> {
        for container in self.containers.list().iter().filter(|c| c.sandbox_id == id) {
            self.stop_container_now(&container.id, 0).await?;
        }
        let Some(current) = self.sandboxes.get(id) else { return Ok(()) };
        let mut record = (*current).clone();
        let result = pod::teardown(&mut record, self.network.as_ref()).await;
        crate::fault::point("mid-sandbox-stop");
        record.state = SandboxState::NotReady;
        record.teardown_error = result.as_ref().err().map(|e| e.to_string());
        self.sandboxes.put(record).map_err(|e| CriError::Internal(format!("saving sandbox record: {e}")))?;
        result
    }

    pub(super) async fn remove_pod_sandbox(
        &self,
        req: v1::RemovePodSandboxRequest,
    ) -> CriResult<v1::RemovePodSandboxResponse> {
        let Some(id) = self.find_sandbox_for_cleanup(&req.pod_sandbox_id)? else {
            return Ok(v1::RemovePodSandboxResponse {}); // already gone: remove is idempotent
        };
        let _op = self.ops.lock(&id).await;
        self.stop_sandbox_locked(&id).await?;
        for container in self.containers.list().iter().filter(|c| c.sandbox_id == id) {
            self.remove_container_now(&container.id).await?;
        }
        let Some(record) = self.sandboxes.get(&id) else { return Ok(v1::RemovePodSandboxResponse {}) };
        if let Err(e) = std::fs::remove_dir_all(&record.dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(CriError::Internal(format!("removing {}: {e}", record.dir.display())));
        }
        self.remove_pod_cgroup(&record);
        crate::fault::point("mid-sandbox-removal");
        self.sandboxes.remove(&id).map_err(|e| CriError::Internal(format!("removing sandbox record: {e}")))?;
        self.names.release(&record.name, &id);
        tracing::info!(pod = %id, "pod sandbox removed");
        Ok(v1::RemovePodSandboxResponse {})
    }

    pub(super) fn pod_sandbox_status(
        &self,
        req: v1::PodSandboxStatusRequest,
    ) -> CriResult<v1::PodSandboxStatusResponse> {
        let id = self.resolve_sandbox(&req.pod_sandbox_id)?;
        let record = self.sandboxes.get(&id).ok_or_else(|| sandbox_not_found(&req.pod_sandbox_id))?;
        let mut info = HashMap::new();
        if req.verbose {
            info.insert("info".to_string(), verbose_info(&record));
        }
        let containers_statuses =
            self.containers.list().iter().filter(|c| c.sandbox_id == id).map(|c| self.container_status_of(c)).collect();
        Ok(v1::PodSandboxStatusResponse {
            status: Some(status_of(&record)),
            info,
            containers_statuses,
            timestamp: now_nanos(),
        })
    }

    pub(super) fn list_pod_sandbox(&self, req: v1::ListPodSandboxRequest) -> CriResult<v1::ListPodSandboxResponse> {
        let filter = req.filter.unwrap_or_default();
        let items = self
            .sandboxes
            .list()
            .iter()
            .filter(|s| id_matches(&filter.id, &s.id))
            .filter(|s| filter.state.as_ref().is_none_or(|want| want.state == cri_state(s.state) as i32))
            .filter(|s| labels_match(&filter.label_selector, &s.config.labels))
            .map(|s| v1::PodSandbox {
                id: s.id.clone(),
                metadata: s.config.metadata.clone(),
                state: cri_state(s.state) as i32,
                created_at: s.created_at,
                labels: s.config.labels.clone(),
                annotations: s.config.annotations.clone(),
                runtime_handler: s.runtime_handler.clone(),
            })
            .collect();
        Ok(v1::ListPodSandboxResponse { items })
    }

    pub(super) fn update_pod_sandbox_resources(
        &self,
        req: v1::UpdatePodSandboxResourcesRequest,
    ) -> CriResult<v1::UpdatePodSandboxResourcesResponse> {
        let id = self.resolve_sandbox(&req.pod_sandbox_id)?;
        // kubelet has already resized the pod cgroup (it calls this after doing so); keep the
        // numbers in the record so PodSandboxStatus and a restarted daemon agree with it.
        self.sandboxes
            .update(&id, |s| {
                let linux = s.config.linux.get_or_insert_with(Default::default);
                if req.overhead.is_some() {
                    linux.overhead = req.overhead.clone();
                }
                if req.resources.is_some() {
                    linux.resources = req.resources.clone();
                }
            })
            .map_err(|e| CriError::Internal(format!("saving sandbox record: {e}")))?;
        Ok(v1::UpdatePodSandboxResourcesResponse {})
    }

    /// The full id of a sandbox named by id or unique id prefix.
    pub(super) fn resolve_sandbox(&self, prefix: &str) -> CriResult<String> {
        self.sandboxes.resolve(prefix).map_err(|lookup| match lookup {
            Lookup::Missing => sandbox_not_found(prefix),
            Lookup::Ambiguous(n) => {
                CriError::InvalidArgument(format!("pod sandbox id prefix {prefix:?} matches {n} sandboxes"))
            }
        })
    }

    /// Like `resolve_sandbox`, but a missing sandbox is `None`: Stop and Remove succeed then.
    fn find_sandbox_for_cleanup(&self, prefix: &str) -> CriResult<Option<String>> {
        match self.resolve_sandbox(prefix) {
            Ok(id) => Ok(Some(id)),
            Err(CriError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the pod cgroup if corral made it (kubelet owns the ones it names).
    fn remove_pod_cgroup(&self, record: &SandboxRecord) {
        let own = format!("{}/{}", self.config.cgroup_root.trim_end_matches('/'), record.id);
        if record.cgroup_parent == own
            && let Err(e) = corral_runtime::cgroups::remove_pod_cgroup(&own)
        {
            tracing::warn!(pod = %record.id, cgroup = %own, "removing pod cgroup: {e}");
        }
    }
}

fn sandbox_not_found(id: &str) -> CriError {
    CriError::NotFound(format!("pod sandbox {id:?} not found"))
}

fn cri_state(state: SandboxState) -> v1::PodSandboxState {
    match state {
        SandboxState::Ready => v1::PodSandboxState::SandboxReady,
        SandboxState::NotReady => v1::PodSandboxState::SandboxNotready,
    }
}

pub(super) fn status_of(record: &SandboxRecord) -> v1::PodSandboxStatus {
    let network = (!pod::host_network(&record.config)).then(|| v1::PodSandboxNetworkStatus {
        ip: record.ips.first().cloned().unwrap_or_default(),
        additional_ips: record.ips.iter().skip(1).map(|ip| v1::PodIp { ip: ip.clone() }).collect(),
    });
    v1::PodSandboxStatus {
        id: record.id.clone(),
        metadata: record.config.metadata.clone(),
        state: cri_state(record.state) as i32,
        created_at: record.created_at,
        network,
        linux: Some(v1::LinuxPodSandboxStatus {
            namespaces: Some(v1::Namespace { options: Some(pod::namespace_options(&record.config)) }),
        }),
        labels: record.config.labels.clone(),
        annotations: record.config.annotations.clone(),
        runtime_handler: record.runtime_handler.clone(),
    }
}

/// What `crictl inspectp` shows beyond the CRI status: where corral keeps the pod.
fn verbose_info(record: &SandboxRecord) -> String {
    serde_json::json!({
        "dir": record.dir,
        "netns": record.netns,
        "ipcns": record.ipcns,
        "utsns": record.utsns,
        "pausePid": record.pause_pid,
        "cgroupParent": record.cgroup_parent,
        "teardownError": record.teardown_error,
        "unreadableRecord": record.unreadable,
        "config": record.config,
    })
    .to_string()
}

/// Refuses what cannot work before anything is made.
fn validate_sandbox_config(config: &v1::PodSandboxConfig) -> CriResult<()> {
    let meta =
        config.metadata.as_ref().ok_or_else(|| CriError::InvalidArgument("sandbox metadata is required".into()))?;
    if meta.name.is_empty() {
        return Err(CriError::InvalidArgument("sandbox metadata.name is required".into()));
    }
    if !pod::host_network(config) && !config.hostname.is_empty() {
        let h = &config.hostname;
        if h.len() > 64 || !h.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
            return Err(CriError::InvalidArgument(format!("hostname {h:?} is not a valid host name")));
        }
    }
    if let Some(dns) = &config.dns_config {
        pod::files::validate_dns(dns).map_err(CriError::InvalidArgument)?;
    }
    pod::port_mappings(config)?;
    let modes = pod::namespace_options(config);
    if modes.network == v1::NamespaceMode::Container as i32 || modes.network == v1::NamespaceMode::Target as i32 {
        return Err(CriError::InvalidArgument("a pod's network namespace must be POD or NODE".into()));
    }
    // Bad user-namespace mappings fail here, before anything is made.
    crate::container::user_namespace_mappings(modes.userns_options.as_ref())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> v1::PodSandboxConfig {
        v1::PodSandboxConfig {
            metadata: Some(v1::PodSandboxMetadata {
                name: "web".into(),
                uid: "u1".into(),
                namespace: "default".into(),
                attempt: 1,
            }),
            hostname: "web-0".into(),
            ..Default::default()
        }
    }

    #[test]
    fn names_follow_containerd() {
        assert_eq!(sandbox_name(config().metadata.as_ref().unwrap()), "web_default_u1_1");
    }

    #[test]
    fn validation_refuses_bad_input_with_the_reason() {
        assert!(validate_sandbox_config(&config()).is_ok());
        let mut c = config();
        c.metadata = None;
        assert!(validate_sandbox_config(&c).unwrap_err().to_string().contains("metadata"));
        let mut c = config();
        c.hostname = "bad host".into();
        assert!(validate_sandbox_config(&c).unwrap_err().to_string().contains("hostname"));
        let mut c = config();
        c.port_mappings =
            vec![v1::PortMapping { protocol: 7, container_port: 80, host_port: 8080, host_ip: "".into() }];
        assert!(validate_sandbox_config(&c).unwrap_err().to_string().contains("protocol"));
        let mut c = config();
        c.port_mappings =
            vec![v1::PortMapping { protocol: 0, container_port: 70000, host_port: 8080, host_ip: "".into() }];
        assert!(validate_sandbox_config(&c).unwrap_err().to_string().contains("container port 70000"));
        let mut c = config();
        c.port_mappings = vec![v1::PortMapping { protocol: 0, container_port: 80, host_port: 80, host_ip: "x".into() }];
        assert!(validate_sandbox_config(&c).unwrap_err().to_string().contains("host IP"));
    }
}
