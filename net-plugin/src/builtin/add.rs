//! ADD: wire a pod, or undo exactly what was done.

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use rtnetlink::Handle;

use super::{Bridge, StepTimer};
use crate::ipam::Owner;
use crate::netns::Netns;
use crate::pod_side;
use crate::records::Record;
use crate::types::{AddResult, Attachment, Interface, IpConfig, Route};
use crate::veth::{self, VethSpec};
use crate::{CNI_VERSION, Error, Result, nl};

/// What a failed ADD must take back.
#[derive(Default)]
struct Undo {
    ip: Option<Ipv4Addr>,
    veth: Option<String>,
    ports: bool,
}

impl Bridge {
    /// ADD: see the module doc of [`super`] for the steps.
    pub(super) async fn add_attachment(&self, a: &Attachment<'_>) -> Result<AddResult> {
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
        if netns.is_current()? {
            return Err(Error::InvalidArgument(format!(
                "{} is the host's network namespace; host-network pods need no ADD",
                a.netns.display()
            )));
        }
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
}
