//! The builtin bridge network: the in-process fast path the daemon uses, and the
//! library behind the `corral-bridge` CNI plugin.
//!
//! ADD ([`add`]), in order, each step undone if a later one fails:
//! 1. network setup, once per process: bridge, `ip_forward`, `route_localnet`, nft table
//!    (afterwards one bridge lookup per ADD, which also recreates a deleted bridge);
//! 2. open the pod's netns (a missing one fails here, before anything is allocated);
//! 3. allocate an address (host-local IPAM) and open a netlink socket inside the pod,
//!    side by side;
//! 4. create the veth pair with one netlink request (pod end born as `eth0` in the pod);
//! 5. side by side: host end alias + hairpin; inside the pod `lo` and `eth0` up,
//!    address, default route;
//! 6. hostPorts, only if the pod has any: one nft batch of map elements;
//! 7. write the attachment record.
//!
//! DEL ([`del`]) undoes all of it, finding each piece by the record or, without one, by
//! owner (veth alias, IPAM record content, nft element comment). It keeps going past a
//! failed step and keeps the record until everything is gone, so a retried DEL or GC
//! finishes the job. CHECK and STATUS are in [`check`].

mod add;
mod check;
mod del;

use std::net::Ipv4Addr;
use std::time::Instant;

use ipnet::Ipv4Net;
use rtnetlink::Handle;
use tokio::sync::OnceCell;

use crate::config::{BridgeConfig, Plan};
use crate::ipam::HostLocal;
use crate::netns;
use crate::nft::Nft;
use crate::pod_side::PodAddr;
use crate::records::Records;
use crate::types::{AddResult, Attachment};
use crate::veth::VethOwner;
use crate::{Error, PodNetwork, Result, bridge, nl, sysctl};

/// The builtin bridge network.
pub struct Bridge {
    plan: Plan,
    ipam: HostLocal,
    records: Records,
    nft: Nft,
    /// Set once the one-time setup (sysctls, nft table) succeeded in this process.
    setup_done: OnceCell<()>,
}

impl Bridge {
    /// Validates `cfg`. Touches nothing on the host until the first request.
    pub fn new(cfg: BridgeConfig) -> Result<Self> {
        let plan = Plan::new(cfg)?;
        Ok(Bridge {
            ipam: HostLocal::new(plan.ipam_dir(), plan.subnet, plan.gateway),
            records: Records::new(plan.attachments_dir()),
            nft: Nft::new(&plan.cfg.nft_table),
            plan,
            setup_done: OnceCell::new(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &BridgeConfig {
        &self.plan.cfg
    }

    /// The pod subnet.
    pub fn subnet(&self) -> Ipv4Net {
        self.plan.subnet
    }

    /// The bridge's address, the pods' default gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        self.plan.gateway
    }

    /// A host netlink connection for one operation. Each ADD/DEL gets its own
    /// socket: concurrent operations sharing one would queue replies in one receive
    /// buffer, and a reply the kernel drops when it overflows hangs its request.
    fn host(&self) -> Result<Handle> {
        netns::host_netlink()
    }

    /// Creates (or repairs) everything the network needs on the host: bridge with the
    /// gateway address, `ip_forward`, `route_localnet` on the bridge, the nft table.
    /// Idempotent; ADD and GC call it, the daemon may call it at start.
    pub async fn setup(&self) -> Result<()> {
        self.prepare(&self.host()?).await.map(drop)
    }

    /// [`Bridge::setup`], returning the bridge's index. After the first success in
    /// this process it costs one lookup; a bridge deleted behind our back is recreated.
    async fn prepare(&self, host: &Handle) -> Result<u32> {
        let name = &self.plan.cfg.bridge;
        let known = match self.setup_done.initialized() {
            true => nl::link_by_name(host, name)
                .await
                .map_err(|e| Error::netlink(format!("look up bridge {name:?}"), e))?
                .map(|link| link.header.index),
            false => None,
        };
        let index = match known {
            Some(index) => index,
            None => {
                let index = bridge::ensure(host, name, self.plan.gateway, self.plan.subnet.prefix_len()).await?;
                sysctl::enable_route_localnet(name)?;
                index
            }
        };
        self.setup_done
            .get_or_try_init(|| async {
                sysctl::enable_ip_forward()?;
                self.nft.ensure(self.plan.subnet, self.plan.cfg.ip_masq).await
            })
            .await?;
        Ok(index)
    }

    fn veth_owner(&self, a: &Attachment<'_>) -> VethOwner {
        VethOwner { network: self.plan.cfg.name.clone(), pod_id: a.pod_id.to_owned(), ifname: a.ifname.to_owned() }
    }

    fn pod_addr(&self, ifname: &str, ip: Ipv4Addr) -> PodAddr {
        PodAddr { ifname: ifname.to_owned(), ip, prefix: self.plan.subnet.prefix_len(), gateway: self.plan.gateway }
    }

    /// Runs a blocking IPAM operation off the async threads.
    async fn ipam<T: Send + 'static>(&self, f: impl FnOnce(&HostLocal) -> Result<T> + Send + 'static) -> Result<T> {
        let ipam = self.ipam.clone();
        tokio::task::spawn_blocking(move || f(&ipam))
            .await
            .map_err(|e| Error::io("IPAM task", std::io::Error::other(e)))?
    }
}

/// Logs how long each step of an operation took (debug) and the total (info): the
/// numbers to look at when RunPodSandbox is slow.
struct StepTimer<'a> {
    op: &'static str,
    pod_id: &'a str,
    start: Instant,
    last: Instant,
}

impl<'a> StepTimer<'a> {
    fn new(op: &'static str, pod_id: &'a str) -> Self {
        let now = Instant::now();
        StepTimer { op, pod_id, start: now, last: now }
    }

    fn mark(&mut self, step: &str) {
        let now = Instant::now();
        tracing::debug!(op = self.op, pod = self.pod_id, step, us = (now - self.last).as_micros() as u64, "step done");
        self.last = now;
    }

    fn done(&self) {
        tracing::info!(
            op = self.op,
            pod = self.pod_id,
            us = self.start.elapsed().as_micros() as u64,
            "network operation done"
        );
    }
}

#[async_trait::async_trait]
impl PodNetwork for Bridge {
    async fn add(&self, a: &Attachment<'_>) -> Result<AddResult> {
        self.add_attachment(a).await
    }

    async fn del(&self, a: &Attachment<'_>) -> Result<()> {
        self.del_attachment(a).await
    }

    async fn check(&self, a: &Attachment<'_>) -> Result<()> {
        self.check_attachment(a).await
    }

    async fn status(&self) -> Result<()> {
        self.network_status().await
    }

    async fn gc(&self, live_pod_ids: &[String]) -> Result<()> {
        self.collect_garbage(live_pod_ids).await
    }
}
