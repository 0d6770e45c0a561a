//! A pod's host-side pieces: its directory, /etc files, shared /dev/shm, pinned namespaces,
//! optional pause process and network attachment, made in [`setup`] and taken away in
//! [`teardown`].
//!
//! Setup fills in the record step by step; teardown reads the record and undoes whatever it
//! says exists, each step idempotent. A failed setup is rolled back by tearing down the
//! partial record, and StopPodSandbox is the same teardown: one mechanism, so there is no
//! second, less-tested cleanup path that could leak a netns or an IP.

pub mod files;
mod shm;

use std::path::{Path, PathBuf};

use corral_cri::v1;
use corral_net::{Attachment, PodNetwork};
use tracing::Instrument;

use crate::error::{CriError, CriResult};
use crate::store::records::SandboxRecord;

/// Host files the pod files are copied from when the pod has no config of its own.
pub struct HostFiles {
    pub resolv_conf: PathBuf,
    pub hosts: PathBuf,
}

impl Default for HostFiles {
    fn default() -> Self {
        HostFiles { resolv_conf: "/etc/resolv.conf".into(), hosts: "/etc/hosts".into() }
    }
}

/// The namespace modes a pod asked for, POD when unset.
pub fn namespace_options(config: &v1::PodSandboxConfig) -> v1::NamespaceOption {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

/// Does the pod use the node's network namespace?
pub fn host_network(config: &v1::PodSandboxConfig) -> bool {
    namespace_options(config).network == v1::NamespaceMode::Node as i32
}

/// Paths of the pod files inside the pod dir.
pub fn hostname_file(dir: &Path) -> PathBuf {
    dir.join("hostname")
}
pub fn hosts_file(dir: &Path) -> PathBuf {
    dir.join("hosts")
}
pub fn resolv_conf_file(dir: &Path) -> PathBuf {
    dir.join("resolv.conf")
}
pub fn shm_dir(dir: &Path) -> PathBuf {
    dir.join("shm")
}

/// Builds everything the pod needs on the host, recording each piece in `record` as it
/// is made. On error the record says what exists; the caller tears it down.
pub async fn setup(
    record: &mut SandboxRecord,
    runtime: &corral_runtime::Runtime,
    network: &dyn PodNetwork,
    host: &HostFiles,
    sysctls: &std::collections::HashMap<String, String>,
) -> CriResult<()> {
    let config = record.config.clone();
    let modes = namespace_options(&config);
    let host_net = modes.network == v1::NamespaceMode::Node as i32;
    let host_ipc = modes.ipc == v1::NamespaceMode::Node as i32;
    let dir = record.dir.clone();

    // Step spans (debug level): with `log_span_timings` they show where the time goes.
    tracing::debug_span!("pod_files").in_scope(|| {
        std::fs::create_dir_all(&dir).map_err(|e| internal(format!("creating {}", dir.display()), e))?;
        write_pod_files(&dir, &config, host_net, host)?;
        if !host_ipc {
            shm::mount(&shm_dir(&dir))?;
        }
        Ok::<_, CriError>(())
    })?;

    let hostname = (!host_net && !config.hostname.is_empty()).then(|| config.hostname.clone());
    let which = corral_runtime::namespaces::PodNamespaces { net: !host_net, ipc: !host_ipc, uts: !host_net };
    let pod_dir = dir.clone();
    let mut sysctls: Vec<(String, String)> = sysctls.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    sysctls.sort();
    let pinned = tokio::task::spawn_blocking(move || {
        corral_runtime::namespaces::pin(&pod_dir, which, hostname.as_deref(), &sysctls)
    })
    .instrument(tracing::debug_span!("pin_namespaces"))
    .await
    .map_err(|e| CriError::Internal(format!("pinning namespaces: {e}")))??;
    record.netns = pinned.net;
    record.ipcns = pinned.ipc;
    record.utsns = pinned.uts;
    crate::fault::point("after-netns-pinned");

    if modes.pid == v1::NamespaceMode::Pod as i32 {
        // One PID namespace for the whole pod needs a PID 1 that outlives any container.
        let (exe, dir, cgroup) = (runtime.exe().to_path_buf(), dir.clone(), record.cgroup_parent.clone());
        let pause = tokio::task::spawn_blocking(move || {
            corral_runtime::cgroups::create_pod_cgroup(&cgroup, None)?;
            corral_runtime::pause::start(&exe, &dir, Some(&cgroup))
        })
        .instrument(tracing::debug_span!("start_pause"))
        .await
        .map_err(|e| CriError::Internal(format!("starting pause: {e}")))??;
        record.pause_pid = u32::try_from(pause.process.pid).ok();
        crate::fault::point("after-pause-started");
    }

    if let Some(netns) = record.netns.clone() {
        let ports = port_mappings(&config)?;
        let args = cni_args(record);
        let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let result = network
            .add(&Attachment { pod_id: &record.id, netns: &netns, ifname: "eth0", port_mappings: &ports, args: &args })
            .instrument(tracing::debug_span!("network_add"))
            .await?;
        record.ips = result.pod_ips().iter().map(|ip| ip.to_string()).collect();
        crate::fault::point("after-network-added");
    }
    Ok(())
}

/// Undoes whatever `record` says exists; safe to repeat. Returns the first error after
/// trying every step, so one stuck step does not leave the others behind.
pub async fn teardown(record: &mut SandboxRecord, network: &dyn PodNetwork) -> CriResult<()> {
    let mut errors: Vec<CriError> = Vec::new();
    let mut note = |e: CriError| errors.push(e);
    if let Some(netns) = record.netns.clone() {
        let ports = port_mappings(&record.config).unwrap_or_default();
        let args = cni_args(record);
        let args: Vec<(&str, &str)> = args.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let attachment =
            Attachment { pod_id: &record.id, netns: &netns, ifname: "eth0", port_mappings: &ports, args: &args };
        if let Err(e) = network.del(&attachment).instrument(tracing::debug_span!("network_del")).await {
            note(e.into());
        }
    }
    if record.pause_pid.is_some() {
        let pod_dir = record.dir.clone();
        match tokio::task::spawn_blocking(move || corral_runtime::pause::stop(&pod_dir)).await {
            Ok(Ok(())) => record.pause_pid = None,
            Ok(Err(e)) => note(e.into()),
            Err(e) => note(CriError::Internal(format!("stopping pause: {e}"))),
        }
    }
    let pod_dir = record.dir.clone();
    match tokio::task::spawn_blocking(move || corral_runtime::namespaces::unpin(&pod_dir))
        .instrument(tracing::debug_span!("unpin_namespaces"))
        .await
    {
        Ok(Ok(())) => {
            record.netns = None;
            record.ipcns = None;
            record.utsns = None;
            record.ips.clear();
        }
        Ok(Err(e)) => note(e.into()),
        Err(e) => note(CriError::Internal(format!("unpinning namespaces: {e}"))),
    }
    if let Err(e) = shm::unmount(&shm_dir(&record.dir)) {
        note(e);
    }
    for e in &errors {
        tracing::warn!(pod = %record.id, "teardown: {e}");
    }
    match errors.into_iter().next() {
        None => Ok(()),
        Some(e) => Err(e),
    }
}

/// The `CNI_ARGS` kubelet-era plugins (Calico, Cilium) expect, as containerd passes them.
fn cni_args(record: &SandboxRecord) -> Vec<(&'static str, String)> {
    let meta = record.config.metadata.clone().unwrap_or_default();
    vec![
        ("IgnoreUnknown", "1".to_string()),
        ("K8S_POD_NAMESPACE", meta.namespace),
        ("K8S_POD_NAME", meta.name),
        ("K8S_POD_INFRA_CONTAINER_ID", record.id.clone()),
        ("K8S_POD_UID", meta.uid),
    ]
}

/// Writes /etc/hostname, /etc/hosts and /etc/resolv.conf for the pod's containers.
fn write_pod_files(dir: &Path, config: &v1::PodSandboxConfig, host_net: bool, host: &HostFiles) -> CriResult<()> {
    let hostname = if config.hostname.is_empty() {
        nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
    } else {
        config.hostname.clone()
    };
    let resolv = files::resolv_conf(config.dns_config.as_ref(), &host.resolv_conf)
        .map_err(|e| internal(format!("reading {}", host.resolv_conf.display()), e))?;
    let hosts =
        files::hosts(host_net, &host.hosts).map_err(|e| internal(format!("reading {}", host.hosts.display()), e))?;
    for (path, text) in
        [(hostname_file(dir), format!("{hostname}\n")), (hosts_file(dir), hosts), (resolv_conf_file(dir), resolv)]
    {
        std::fs::write(&path, text).map_err(|e| internal(format!("writing {}", path.display()), e))?;
    }
    Ok(())
}

/// The pod's port mappings in the network crate's terms; invalid ones are refused.
pub fn port_mappings(config: &v1::PodSandboxConfig) -> CriResult<Vec<corral_net::PortMapping>> {
    config
        .port_mappings
        .iter()
        .filter(|p| p.host_port != 0)
        .map(|p| {
            let protocol = match v1::Protocol::try_from(p.protocol) {
                Ok(v1::Protocol::Tcp) => corral_net::Protocol::Tcp,
                Ok(v1::Protocol::Udp) => corral_net::Protocol::Udp,
                Ok(v1::Protocol::Sctp) => corral_net::Protocol::Sctp,
                Err(_) => return Err(CriError::InvalidArgument(format!("unknown port protocol {}", p.protocol))),
            };
            let port = |what: &str, n: i32| {
                u16::try_from(n)
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| CriError::InvalidArgument(format!("{what} {n} is outside 1-65535")))
            };
            let host_ip = match p.host_ip.as_str() {
                "" | "0.0.0.0" | "::" => None,
                ip => Some(ip.parse().map_err(|_| CriError::InvalidArgument(format!("host IP {ip:?} is not an IP")))?),
            };
            Ok(corral_net::PortMapping {
                protocol,
                container_port: port("container port", p.container_port)?,
                host_port: port("host port", p.host_port)?,
                host_ip,
            })
        })
        .collect()
}

fn internal(what: String, e: std::io::Error) -> CriError {
    CriError::Internal(format!("{what}: {e}"))
}

/// Unmounts the pod's /dev/shm tmpfs under `pod_dir`, if mounted.
pub fn shm_unmount(pod_dir: &Path) -> CriResult<()> {
    shm::unmount(&shm_dir(pod_dir))
}
