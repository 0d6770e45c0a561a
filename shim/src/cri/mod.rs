//! The CRI gRPC services, one file per RPC family (as containerd's CRI plugin does).
//!
//! `runtime_service.rs` and `image_service.rs` hold the tonic trait impls and only
//! dispatch; the work is in the family files (`runtime_info.rs`, ...). Every handler
//! returns [`CriResult`], turned into a gRPC status by [`reply`].

mod container;
mod events;
mod exec;
mod filters;
mod image;
mod image_service;
mod metrics;
mod recovery;
mod runtime_info;
mod runtime_service;
mod sandbox;
mod stats;
mod streams;
mod unreadable;

use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock, Weak};

use anyhow::Context;
use tokio_stream::Stream;
use tonic::{Response, Status};

use crate::config::{Config, NetworkMode};
use crate::error::CriResult;
use crate::images::ImageStore;
use crate::pod::HostFiles;
use crate::store::names::Names;
use crate::store::records::{ContainerRecord, SandboxRecord};
use crate::store::{OpLocks, Table};

pub use image_service::ImageServer;
pub use runtime_service::RuntimeServer;

/// Everything both services share: configuration, records, and the runtime, network and
/// image layers they drive.
pub struct Daemon {
    /// The effective configuration.
    pub config: Config,
    /// Pod CIDR last given by `UpdateRuntimeConfig` (kubelet in cluster mode sends it).
    pub runtime_pod_cidr: RwLock<Option<String>>,
    sandboxes: Table<SandboxRecord>,
    containers: Table<ContainerRecord>,
    /// Pod and container names in use.
    names: Names,
    /// Serializes multi-step operations per object id.
    ops: OpLocks,
    pub(super) events: events::Events,
    cpu: stats::CpuSamples,
    runtime: Arc<corral_runtime::Runtime>,
    network: Arc<dyn corral_net::PodNetwork>,
    images: Arc<ImageStore>,
    host_files: HostFiles,
    /// What the spec builder needs to know about this host (cgroup version, controllers).
    host_facts: crate::container::HostFacts,
    default_seccomp: oci_spec::runtime::LinuxSeccomp,
    /// The exec/attach/port-forward server, started once the daemon exists.
    streaming: OnceLock<crate::streaming::StreamingServer>,
    /// This daemon, for tasks that outlive a request (exit watchers).
    me: Weak<Daemon>,
}

impl Daemon {
    /// Opens the records, the image store, the network and the runtime under `config`,
    /// then recovers: re-attaches to running containers and collects orphans.
    pub async fn open(config: Config) -> anyhow::Result<Arc<Daemon>> {
        let (sandboxes, bad_sandboxes) = Table::open(&config.root.join("sandboxes")).context("sandbox records")?;
        let (containers, bad_containers) = Table::open(&config.root.join("containers")).context("container records")?;
        // Every other object loads; these are listed as stand-ins (see unreadable.rs).
        for bad in &bad_sandboxes {
            tracing::error!(pod = %bad.id, "unreadable record; the pod is NOTREADY until removed: {}", bad.reason);
            sandboxes.insert_unsaved(unreadable::sandbox(&config, bad));
        }
        for bad in &bad_containers {
            tracing::error!(container = %bad.id, "unreadable record; the container is UNKNOWN until removed: {}", bad.reason);
            containers.insert_unsaved(unreadable::container(bad));
        }
        let images = Arc::new(ImageStore::open(&config.image_dir(), &config.images).context("image store")?);
        let network = open_network(&config).context("pod network")?;
        let exe = std::fs::read_link("/proc/self/exe").context("resolving /proc/self/exe")?;
        let runtime = Arc::new(
            corral_runtime::Runtime::new(corral_runtime::RuntimeOptions {
                state_dir: config.state_dir.join("containers"),
                exe,
            })
            .context("container runtime")?,
        );
        let host_facts = crate::container::HostFacts::detect().context("inspecting the host")?;
        let daemon = Arc::new_cyclic(|me| Daemon {
            config,
            runtime_pod_cidr: RwLock::new(None),
            sandboxes,
            containers,
            names: Names::default(),
            ops: OpLocks::default(),
            events: events::Events::default(),
            cpu: stats::CpuSamples::default(),
            runtime,
            network,
            images,
            host_files: HostFiles::default(),
            host_facts,
            default_seccomp: corral_runtime::spec::runtime_default_seccomp(),
            streaming: OnceLock::new(),
            me: me.clone(),
        });
        let addr = std::net::SocketAddr::new(daemon.config.streaming.address, daemon.config.streaming.port);
        let backend = Arc::new(streams::CorralStreams { daemon: Arc::downgrade(&daemon) });
        let options = crate::streaming::StreamingOptions::new(addr);
        let server =
            crate::streaming::StreamingServer::start_with(options, backend).await.context("streaming server")?;
        let _ = daemon.streaming.set(server);
        daemon.recover().await;
        Ok(daemon)
    }
}

/// The pod network the config asks for: corral's own bridge, or standard CNI plugins.
fn open_network(config: &Config) -> anyhow::Result<Arc<dyn corral_net::PodNetwork>> {
    let net = &config.network;
    Ok(match net.mode {
        NetworkMode::Builtin => Arc::new(corral_net::Bridge::new(corral_net::BridgeConfig {
            // Veths, IPs and nft entries are owned by network name: one name per daemon.
            name: format!("corral-{}", net.bridge),
            bridge: net.bridge.clone(),
            subnet: net.pod_cidr.clone(),
            mtu: net.mtu,
            data_dir: config.root.join("network"),
            // One nftables table per daemon: two corrals on one host never touch each
            // other's rules (the bridge name is unique per daemon).
            nft_table: format!("corral_{}", net.bridge.replace(|c: char| !c.is_ascii_alphanumeric(), "_")),
            ..Default::default()
        })?),
        NetworkMode::Cni => Arc::new(corral_net::cni::CniNetwork::new(corral_net::cni::CniConfig {
            conf_dir: net.cni_conf_dir.clone(),
            bin_dirs: vec![net.cni_bin_dir.clone()],
            cache_dir: config.root.join("network").join("cni"),
            plugin_timeout: std::time::Duration::from_secs(60),
        })),
    })
}

/// A daemon for unit tests: its own dirs under `dir`, a bridge, CIDR and cgroup root no
/// other test uses. Dropping it removes the bridge and nftables table its network made.
#[cfg(test)]
pub(crate) struct TestDaemon(Arc<Daemon>);

#[cfg(test)]
impl std::ops::Deref for TestDaemon {
    type Target = Arc<Daemon>;
    fn deref(&self) -> &Arc<Daemon> {
        &self.0
    }
}

#[cfg(test)]
impl Drop for TestDaemon {
    fn drop(&mut self) {
        let bridge = &self.0.config.network.bridge;
        let _ = std::process::Command::new("ip").args(["link", "del", bridge]).output();
        let table = format!("corral_{bridge}");
        let _ = std::process::Command::new("nft").args(["delete", "table", "ip", &table]).output();
        // Pod cgroups a failed test did not get to remove (empty ones only: rmdir refuses others).
        let root = self.0.config.cgroup_root.trim_start_matches('/');
        for hierarchy in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
            let dir = hierarchy.path().join(root);
            for pod in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let _ = std::fs::remove_dir(pod.path());
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

#[cfg(test)]
pub(crate) async fn test_daemon(dir: &std::path::Path) -> TestDaemon {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tag = format!("{}{n}", std::process::id() % 10000);
    let mut config = Config {
        root: dir.join("root"),
        state_dir: dir.join("state"),
        cgroup_root: format!("/corral-unit-{tag}"),
        ..Config::default()
    };
    config.network.bridge = format!("cu{tag}");
    config.network.pod_cidr = format!("10.211.{}.0/24", n % 250);
    TestDaemon(Daemon::open(config).await.expect("test daemon"))
}

/// A server-streaming response body.
pub type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Items per message of the streaming list RPCs (`StreamContainers` & co.). Those RPCs
/// exist so that a node with thousands of objects never hits gRPC's message size limit
/// (16 MiB for kubelet): a page of 256 containers or pods stays far below it.
const LIST_PAGE: usize = 256;

/// A listing as a stream of pages: at least one message, so that an empty list is an
/// explicit (empty) answer.
fn in_pages<T, R>(items: Vec<T>, page: fn(Vec<T>) -> R) -> BoxStream<R>
where
    T: Send + 'static,
    R: Send + 'static,
{
    let mut pages: Vec<R> = Vec::with_capacity(items.len() / LIST_PAGE + 1);
    let mut items = items.into_iter().peekable();
    loop {
        pages.push(page(items.by_ref().take(LIST_PAGE).collect()));
        if items.peek().is_none() {
            break;
        }
    }
    Box::pin(tokio_stream::iter(pages.into_iter().map(Ok)))
}

/// Turns a handler result into a gRPC reply, logging failures in the request's span.
fn reply<T>(result: CriResult<T>) -> Result<Response<T>, Status> {
    match result {
        Ok(value) => Ok(Response::new(value)),
        Err(err) => {
            tracing::warn!(code = ?err.code(), "{err}");
            Err(err.into())
        }
    }
}

/// Nanoseconds since the Unix epoch, the CRI's timestamp unit.
pub fn now_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}
