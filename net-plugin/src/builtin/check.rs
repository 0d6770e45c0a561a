//! CHECK and STATUS.

use crate::ipam::Owner;
use crate::netns::Netns;
use crate::types::Attachment;
use crate::veth;
use crate::{Error, Result, nft, nl, pod_side, sysctl};

use super::Bridge;

impl Bridge {
    /// CHECK: host veth on the bridge, address and route in the pod, IPAM record,
    /// hostPort elements.
    pub(super) async fn check_attachment(&self, a: &Attachment<'_>) -> Result<()> {
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

    /// STATUS: what would stop the next ADD.
    pub(super) async fn network_status(&self) -> Result<()> {
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
}
