//! The builtin bridge network: the in-process fast path the daemon uses, and the
//! library behind the `corral-bridge` CNI plugin.
//!
//! ADD, in order (each step undone if a later one fails):
//! 1. network setup, once per process: bridge, `ip_forward`, `route_localnet`, nft table;
//! 2. open the pod's netns (a missing one fails here, before anything is allocated);
//! 3. allocate an address (host-local IPAM);
//! 4. create the veth pair with one netlink request (pod end born as `eth0` in the pod);
//! 5. inside the pod: `lo` up, address, default route;
//! 6. hostPorts, only if the pod has any: one nft batch of map elements;
//! 7. write the attachment record.
//!
//! DEL undoes all of it, finding each piece by the record or, without one, by owner
//! (veth alias, IPAM record content, nft element comment). It keeps going past a failed
//! step and keeps the record until everything is gone, so a retried DEL finishes the job.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;

use ipnet::{IpNet, Ipv4Net};
use rtnetlink::Handle;
use tokio::sync::OnceCell;

use crate::config::{BridgeConfig, Plan};
use crate::ipam::{HostLocal, Owner};
use crate::netns::{self, Netns};
use crate::nft::{self, Nft};
use crate::pod_side::{self, PodAddr};
use crate::records::{Record, Records};
use crate::types::{AddResult, Attachment, Interface, IpConfig, Route};
use crate::veth::{self, VethOwner, VethSpec};
use crate::{CNI_VERSION, Error, PodNetwork, Result, bridge, nl, sysctl};

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

    /// Steps 3-7 of ADD; `undo` learns what to take back.
    async fn wire(
        &self,
        a: &Attachment<'_>,
        host: &Handle,
        netns: &Netns,
        bridge_index: u32,
        undo: &mut Undo,
    ) -> Result<AddResult> {
        let mut steps = StepTimer::new("ADD", a.pod_id);
        // The address and the netlink socket inside the pod do not depend on each other.
        let owner = Owner::new(a.pod_id, a.ifname);
        let (ip, pod) = tokio::join!(self.ipam(move |ipam| ipam.allocate(&owner)), netns.netlink());
        let ip = ip?;
        undo.ip = Some(ip);
        let pod = pod?;
        steps.mark("ipam + pod netlink");

        let vowner = self.veth_owner(a);
        let spec = VethSpec {
            owner: &vowner,
            bridge_index,
            mtu: self.plan.cfg.mtu,
            pod_mac: veth::pod_mac(ip),
            hairpin: self.plan.cfg.hairpin,
        };
        let host_veth = veth::create(host, netns, &spec).await?;
        undo.veth = Some(host_veth.clone());
        steps.mark("veth");

        // Host end (alias, hairpin) and pod end (up, address, route) in parallel.
        let pod_addr = self.pod_addr(a.ifname, ip);
        let ((), pod_mac) = futures_util::try_join!(
            veth::configure_host_end(host, &host_veth, &spec),
            pod_side::configure(&pod, &pod_addr),
        )?;
        drop(pod);
        steps.mark("host + pod side");

        if !a.port_mappings.is_empty() {
            undo.ports = true;
            self.nft.add_ports(a.pod_id, a.ifname, ip, a.port_mappings).await?;
            steps.mark("hostPorts");
        }

        let result = self.result(a, &host_veth, &pod_mac, ip);
        self.records.save(&Record {
            pod_id: a.pod_id.to_owned(),
            ifname: a.ifname.to_owned(),
            netns: a.netns.to_owned(),
            host_veth,
            ip,
            port_mappings: a.port_mappings.to_vec(),
            result: result.clone(),
        })?;
        steps.mark("record");
        steps.done();
        Ok(result)
    }

    fn result(&self, a: &Attachment<'_>, host_veth: &str, pod_mac: &str, ip: Ipv4Addr) -> AddResult {
        let mtu = Some(self.plan.cfg.mtu);
        let prefix = self.plan.subnet.prefix_len();
        let address = IpNet::new(IpAddr::V4(ip), prefix).unwrap_or(IpNet::V4(self.plan.subnet));
        AddResult {
            cni_version: CNI_VERSION.into(),
            interfaces: vec![
                Interface { name: self.plan.cfg.bridge.clone(), ..Default::default() },
                Interface { name: host_veth.to_owned(), mtu, ..Default::default() },
                Interface {
                    name: a.ifname.to_owned(),
                    mac: Some(pod_mac.to_owned()).filter(|m| !m.is_empty()),
                    mtu,
                    sandbox: Some(a.netns.display().to_string()),
                },
            ],
            ips: vec![IpConfig { address, gateway: Some(IpAddr::V4(self.plan.gateway)), interface: Some(2) }],
            routes: vec![Route {
                dst: "0.0.0.0/0".parse().unwrap_or(IpNet::V4(Ipv4Net::default())),
                gw: Some(IpAddr::V4(self.plan.gateway)),
            }],
            dns: Default::default(),
        }
    }

    /// Removes everything of one attachment; `record` speeds it up when present.
    /// Runs every step even if one fails; returns the first error.
    async fn unwire(&self, pod_id: &str, ifname: &str, record: Option<&Record>) -> Result<()> {
        let mut steps = StepTimer::new("DEL", pod_id);
        let mut first_err: Option<Error> = None;
        let mut keep = |r: Result<()>| {
            if let Err(e) = r {
                tracing::warn!(pod = pod_id, error = %e, "DEL step failed");
                first_err.get_or_insert(e);
            }
        };

        // The veth: deleting the host end takes the pod end (and its address and
        // routes) with it.
        let vowner =
            VethOwner { network: self.plan.cfg.name.clone(), pod_id: pod_id.to_owned(), ifname: ifname.to_owned() };
        let veth = async {
            let host = &self.host()?;
            if let Some(link) = veth::find(host, &vowner, record.map(|r| r.host_veth.as_str())).await? {
                let name = nl::name(&link).unwrap_or_default().to_owned();
                veth::delete_index(host, link.header.index, &name).await?;
            }
            Ok(())
        };
        keep(veth.await);
        steps.mark("veth");

        // hostPorts: only pods that had some (or whose record is lost) touch nft.
        let ports = match record {
            Some(r) if r.port_mappings.is_empty() => Ok(()),
            Some(r) => self.nft.del_ports(pod_id, ifname, &r.port_mappings).await,
            None => self.nft.del_ports(pod_id, ifname, &[]).await,
        };
        keep(ports);
        steps.mark("hostPorts");

        let owner = Owner::new(pod_id, ifname);
        keep(self.ipam(move |ipam| ipam.release_owner(&owner).map(drop)).await);
        steps.mark("ipam");
        steps.done();

        match first_err {
            None => self.records.remove(pod_id, ifname),
            Some(e) => Err(e),
        }
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

/// What a failed ADD must take back.
#[derive(Default)]
struct Undo {
    ip: Option<Ipv4Addr>,
    veth: Option<String>,
    ports: bool,
}

#[async_trait::async_trait]
impl PodNetwork for Bridge {
    async fn add(&self, a: &Attachment<'_>) -> Result<AddResult> {
        a.validate()?;
        if self.records.load(a.pod_id, a.ifname)?.is_some() {
            return Err(Error::AlreadyAttached {
                network: self.plan.cfg.name.clone(),
                pod_id: a.pod_id.to_owned(),
                ifname: a.ifname.to_owned(),
            });
        }
        if let Some(pm) = a.port_mappings.iter().find(|pm| pm.bound_host_ip().is_some_and(|ip| ip.is_ipv6())) {
            return Err(Error::InvalidArgument(format!(
                "hostPort {}: hostIP {:?} is IPv6, network {} is IPv4-only",
                pm.host_port, pm.host_ip, self.plan.cfg.name
            )));
        }
        let netns = Netns::open(a.netns)?;
        let host = &self.host()?;
        let bridge_index = self.prepare(host).await?;

        let mut undo = Undo::default();
        let wired = self.wire(a, host, &netns, bridge_index, &mut undo).await;
        let Err(err) = wired else {
            return wired;
        };
        // Roll back exactly what this ADD did, newest first.
        tracing::warn!(pod = a.pod_id, error = %err, "ADD failed, rolling back");
        if undo.ports
            && let Err(e) = self.nft.del_ports(a.pod_id, a.ifname, a.port_mappings).await
        {
            tracing::warn!(pod = a.pod_id, error = %e, "rollback: hostPorts");
        }
        if let Some(name) = undo.veth {
            let gone = match nl::link_by_name(host, &name).await {
                Ok(Some(link)) => veth::delete_index(host, link.header.index, &name).await,
                Ok(None) => Ok(()),
                Err(e) => Err(Error::netlink(format!("look up {name:?}"), e)),
            };
            if let Err(e) = gone {
                tracing::warn!(pod = a.pod_id, error = %e, "rollback: veth");
            }
        }
        if let Some(ip) = undo.ip {
            let owner = Owner::new(a.pod_id, a.ifname);
            if let Err(e) = self.ipam(move |ipam| ipam.release(ip, &owner)).await {
                tracing::warn!(pod = a.pod_id, error = %e, "rollback: IPAM");
            }
        }
        Err(err)
    }

    async fn del(&self, a: &Attachment<'_>) -> Result<()> {
        a.validate()?;
        let record = self.records.load(a.pod_id, a.ifname)?;
        self.unwire(a.pod_id, a.ifname, record.as_ref()).await
    }

    async fn check(&self, a: &Attachment<'_>) -> Result<()> {
        a.validate()?;
        let failed = |what: String| Error::CheckFailed { pod_id: a.pod_id.to_owned(), what };
        let Some(record) = self.records.load(a.pod_id, a.ifname)? else {
            return Err(failed(format!("no attachment of {} on network {}", a.ifname, self.plan.cfg.name)));
        };
        // Host side: the veth, with our alias, on our bridge.
        let host = &self.host()?;
        let vowner = self.veth_owner(a);
        let Some(link) = veth::find(host, &vowner, Some(&record.host_veth)).await? else {
            return Err(failed(format!("host veth {} is gone", record.host_veth)));
        };
        let bridge =
            nl::link_by_name(host, &self.plan.cfg.bridge).await.map_err(|e| Error::netlink("look up bridge", e))?;
        if bridge.map(|b| b.header.index) != nl::controller(&link) {
            return Err(failed(format!("host veth {} is not on bridge {}", record.host_veth, self.plan.cfg.bridge)));
        }
        // Pod side: address and default route.
        let netns = Netns::open(a.netns)?;
        let pod = netns.netlink().await?;
        if let Some(what) = pod_side::check(&pod, &self.pod_addr(a.ifname, record.ip)).await? {
            return Err(failed(what));
        }
        // IPAM: the address is still ours.
        let owner = Owner::new(a.pod_id, a.ifname);
        let ip = record.ip;
        let ours = self
            .ipam(move |ipam| Ok(ipam.records()?.into_iter().any(|(i, o)| i == ip && o.as_ref() == Some(&owner))))
            .await?;
        if !ours {
            return Err(failed(format!("IPAM does not hold {ip} for it")));
        }
        // hostPorts: one element per mapping, with our comment.
        if !record.port_mappings.is_empty() {
            let comment = nft::owner_comment(a.pod_id, a.ifname);
            let mine = self
                .nft
                .list_ports()
                .await?
                .into_iter()
                .filter(|e| e.comment.as_deref() == Some(comment.as_str()))
                .count();
            if mine != record.port_mappings.len() {
                return Err(failed(format!(
                    "{mine} of {} hostPort mappings present in nft table {}",
                    record.port_mappings.len(),
                    self.plan.cfg.nft_table
                )));
            }
        }
        Ok(())
    }

    async fn status(&self) -> Result<()> {
        let not_ready = |reason: String| Error::NotReady { network: self.plan.cfg.name.clone(), reason };
        if !nft::nft_available() {
            return Err(not_ready("nft (nftables) not found".into()));
        }
        let dir = self.ipam.dir().to_owned();
        if let Err(e) = std::fs::create_dir_all(&dir) {
            return Err(not_ready(format!("IPAM dir {}: {e}", dir.display())));
        }
        if let Err(e) = self.host() {
            return Err(not_ready(format!("netlink: {e}")));
        }
        if self.setup_done.initialized() && sysctl::read("net.ipv4.ip_forward").as_deref() == Some("0") {
            return Err(not_ready("net.ipv4.ip_forward was turned off".into()));
        }
        Ok(())
    }

    async fn gc(&self, live_pod_ids: &[String]) -> Result<()> {
        let live: HashSet<&str> = live_pod_ids.iter().map(String::as_str).collect();
        self.setup().await?;
        let mut first_err = None;

        for record in self.records.list()? {
            if !live.contains(record.pod_id.as_str()) {
                tracing::info!(pod = record.pod_id, "GC: removing attachment");
                if let Err(e) = self.unwire(&record.pod_id, &record.ifname, Some(&record)).await {
                    first_err.get_or_insert(e);
                }
            }
        }
        self.records.remove_unreadable()?;

        // Whatever no record describes: veths by alias, IPAM by owner, nft by comment.
        let host = &self.host()?;
        for (link, owner) in veth::owned_links(host, &self.plan.cfg.name).await? {
            if !live.contains(owner.pod_id.as_str()) {
                let name = nl::name(&link).unwrap_or_default().to_owned();
                tracing::info!(veth = name, pod = owner.pod_id, "GC: removing veth");
                if let Err(e) = veth::delete_index(host, link.header.index, &name).await {
                    first_err.get_or_insert(e);
                }
            }
        }
        let live_owned: HashSet<String> = live.iter().map(|s| s.to_string()).collect();
        let freed = self.ipam(move |ipam| ipam.release_unless(|o| live_owned.contains(&o.pod_id))).await?;
        if !freed.is_empty() {
            tracing::info!(?freed, "GC: released addresses");
        }
        let stale: Vec<_> = self
            .nft
            .list_ports()
            .await?
            .into_iter()
            .filter(|e| !e.pod_id().is_some_and(|p| live.contains(p)))
            .collect();
        if let Err(e) = self.nft.delete_elements(&stale).await {
            first_err.get_or_insert(e);
        }
        first_err.map_or(Ok(()), Err)
    }
}
