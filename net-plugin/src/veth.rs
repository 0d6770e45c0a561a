//! The veth pair of a pod: host end on the bridge, pod end in the pod's namespace.
//!
//! The pair is created with ONE netlink request: the peer is born inside the pod's
//! namespace under its final name (`eth0`) with its MTU and MAC, and the host end is
//! born enslaved to the bridge and up. (The peer cannot be born up: the kernel answers
//! `ENOTCONN`; the pod side brings it up.) A second request sets the host end's alias
//! (which pod it belongs to: DEL and GC find it by that) and hairpin mode.
//!
//! Host names are `veth` + 11 hex digits of a hash of network, pod id and ifname:
//! 15 bytes, stable for a pod. Two pods hashing alike is resolved, not assumed away:
//! the alias tells whose an existing name is, and the next hash (salted by an attempt
//! number) is tried.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;

use rtnetlink::packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkMessage,
};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec};
use sha2::{Digest, Sha256};

use crate::netns::Netns;
use crate::nl;
use crate::{Error, Result};

/// How many salted names are tried before giving up on collisions.
const MAX_NAME_ATTEMPTS: u32 = 16;

/// Which attachment a host veth belongs to, stored as the link's alias:
/// `corral:<network>:<pod id>:<ifname>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VethOwner {
    pub network: String,
    pub pod_id: String,
    pub ifname: String,
}

impl VethOwner {
    pub fn alias(&self) -> String {
        format!("corral:{}:{}:{}", self.network, self.pod_id, self.ifname)
    }

    /// Parses an alias written by [`VethOwner::alias`].
    pub fn parse(alias: &str) -> Option<Self> {
        let rest = alias.strip_prefix("corral:")?;
        let (network, rest) = rest.split_once(':')?;
        let (pod_id, ifname) = rest.split_once(':')?;
        Some(VethOwner { network: network.into(), pod_id: pod_id.into(), ifname: ifname.into() })
    }
}

/// The host-side name for `owner`, attempt `n` (0 first).
pub(crate) fn host_name(owner: &VethOwner, attempt: u32) -> String {
    let mut h = Sha256::new();
    h.update(owner.alias().as_bytes());
    if attempt > 0 {
        h.update(attempt.to_be_bytes());
    }
    let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("veth{}", &hex[..11])
}

/// The pod end's MAC: `0a:58` + the IPv4 address, as the CNI bridge plugin and kubenet
/// do. Unique on the bridge because addresses are, and stable for an address.
pub(crate) fn pod_mac(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x0a, 0x58, o[0], o[1], o[2], o[3]]
}

/// What to create.
pub(crate) struct VethSpec<'a> {
    pub owner: &'a VethOwner,
    pub bridge_index: u32,
    pub mtu: u32,
    pub pod_mac: [u8; 6],
    pub hairpin: bool,
}

/// Creates the pair; returns the host end's name. The caller then runs
/// [`configure_host_end`] (and deletes the pair if anything after this fails).
pub(crate) async fn create(host: &Handle, netns: &Netns, spec: &VethSpec<'_>) -> Result<String> {
    let ifname = &spec.owner.ifname;
    let mut attempt = 0;
    let mut replaced_stale = false;
    while attempt < MAX_NAME_ATTEMPTS {
        let name = host_name(spec.owner, attempt);
        let err = match host.link().add(pair_message(&name, netns, spec)).execute().await {
            Ok(()) => return Ok(name),
            Err(e) if nl::is_exists(&e) => e,
            Err(e) => {
                return Err(Error::netlink(
                    format!("create veth {name:?} <-> {ifname:?} in {}", netns.path().display()),
                    e,
                ));
            }
        };
        // EEXIST: the host name is taken, or the pod already has `ifname`.
        let existing =
            nl::link_by_name(host, &name).await.map_err(|e| Error::netlink(format!("look up {name:?}"), e))?;
        match existing {
            None => {
                return Err(Error::netlink(
                    format!("interface {ifname:?} already exists in {}", netns.path().display()),
                    err,
                ));
            }
            Some(link) if nl::alias(&link) == Some(spec.owner.alias().as_str()) && !replaced_stale => {
                // Left by an ADD of this very attachment that died half-way: replace it.
                tracing::warn!(veth = name, pod = spec.owner.pod_id, "removing stale veth of the same pod");
                delete_index(host, link.header.index, &name).await?;
                replaced_stale = true;
            }
            Some(_) => {
                tracing::debug!(veth = name, "host veth name taken by another pod, trying the next");
                attempt += 1;
            }
        }
    }
    Err(Error::InvalidArgument(format!(
        "no free host veth name for pod {} after {MAX_NAME_ATTEMPTS} attempts",
        spec.owner.pod_id
    )))
}

fn pair_message(name: &str, netns: &Netns, spec: &VethSpec<'_>) -> LinkMessage {
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name(spec.owner.ifname.clone())
        .mtu(spec.mtu)
        .address(spec.pod_mac.to_vec())
        .setns_by_fd(netns.file().as_raw_fd())
        .build();
    LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(InfoKind::Veth)
        .name(name.to_owned())
        .mtu(spec.mtu)
        .controller(spec.bridge_index)
        .up()
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build()
}

/// Alias and hairpin: bridge-port settings need `RTM_NEWLINK` on an enslaved link.
pub(crate) async fn configure_host_end(host: &Handle, name: &str, spec: &VethSpec<'_>) -> Result<()> {
    let mut msg = LinkUnspec::new_with_name(name).alias(spec.owner.alias());
    if spec.hairpin {
        msg = msg
            .set_port_kind(InfoPortKind::Bridge)
            .set_port_data(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(true)]));
    }
    host.link()
        .set_port(msg.build())
        .execute()
        .await
        .map_err(|e| Error::netlink(format!("set alias and hairpin on {name:?}"), e))
}

/// Finds the host end of `owner`: `hint` (from the attachment record) if its alias
/// still says so, else by alias among all links.
pub(crate) async fn find(host: &Handle, owner: &VethOwner, hint: Option<&str>) -> Result<Option<LinkMessage>> {
    let alias = owner.alias();
    if let Some(name) = hint {
        let link = nl::link_by_name(host, name).await.map_err(|e| Error::netlink(format!("look up {name:?}"), e))?;
        if let Some(link) = link.filter(|l| nl::alias(l) == Some(alias.as_str())) {
            return Ok(Some(link));
        }
    }
    Ok(owned_links(host, &owner.network).await?.into_iter().find(|(_, o)| *o == *owner).map(|(link, _)| link))
}

/// Every host veth of `network`, with its owner.
pub(crate) async fn owned_links(host: &Handle, network: &str) -> Result<Vec<(LinkMessage, VethOwner)>> {
    let links = nl::all_links(host).await.map_err(|e| Error::netlink("list links", e))?;
    Ok(links
        .into_iter()
        .filter_map(|l| {
            let owner = nl::alias(&l).and_then(VethOwner::parse)?;
            (owner.network == network).then_some((l, owner))
        })
        .collect())
}

/// Deletes a link by index; gone already is fine. Deleting one end removes both.
pub(crate) async fn delete_index(host: &Handle, index: u32, name: &str) -> Result<()> {
    match host.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if nl::is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::netlink(format!("delete veth {name:?}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_and_differ() {
        let owner = VethOwner { network: "corral".into(), pod_id: "a".repeat(64), ifname: "eth0".into() };
        let n0 = host_name(&owner, 0);
        assert_eq!(n0.len(), 15);
        assert_eq!(n0, host_name(&owner, 0), "stable");
        assert_ne!(n0, host_name(&owner, 1), "salted");
        let other = VethOwner { ifname: "net1".into(), ..owner.clone() };
        assert_ne!(n0, host_name(&other, 0));
        assert_eq!(VethOwner::parse(&owner.alias()), Some(owner));
        assert_eq!(VethOwner::parse("something else"), None);
    }

    #[test]
    fn pod_mac_embeds_the_address() {
        assert_eq!(nl::format_mac(&pod_mac(Ipv4Addr::new(10, 88, 0, 5))), "0a:58:0a:58:00:05");
    }
}
