//! The request and result shapes shared by the builtin bridge, the CNI runner and the
//! `corral-bridge` binary.
//!
//! [`AddResult`] is the CNI 1.1 result (`interfaces`, `ips`, `routes`, `dns`) with the
//! field names of the spec, so the same type is printed by `corral-bridge`, parsed from
//! standard plugins and cached on disk.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// A transport protocol of a hostPort mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (the CRI default).
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The name nftables and CNI use: `tcp`, `udp`, `sctp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One CRI `PortMapping`: traffic to `host_ip:host_port` goes to the pod's
/// `container_port`. Serialized like the CNI `portMappings` capability.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    /// TCP, UDP or SCTP.
    #[serde(default = "default_protocol")]
    pub protocol: Protocol,
    /// The port inside the pod.
    pub container_port: u16,
    /// The port on the host.
    pub host_port: u16,
    /// Only traffic to this host address is mapped; `None` (or `0.0.0.0`) means every
    /// local address, including `127.0.0.1`.
    #[serde(
        rename = "hostIP",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "empty_ip_is_none"
    )]
    pub host_ip: Option<IpAddr>,
}

fn default_protocol() -> Protocol {
    Protocol::Tcp
}

/// CRI and CNI send `"hostIP": ""` for "any address".
fn empty_ip_is_none<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Option<IpAddr>, D::Error> {
    let s: Option<String> = Option::deserialize(d)?;
    match s.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

impl PortMapping {
    /// The mapping's host address, with the unspecified address folded into `None`.
    pub fn bound_host_ip(&self) -> Option<IpAddr> {
        self.host_ip.filter(|ip| !ip.is_unspecified())
    }
}

/// Which pod, which namespace, which interface: the arguments of every CNI command.
#[derive(Debug, Clone, Copy)]
pub struct Attachment<'a> {
    /// The pod sandbox id (CNI `CNI_CONTAINERID`).
    pub pod_id: &'a str,
    /// The pinned network namespace file (CNI `CNI_NETNS`).
    pub netns: &'a Path,
    /// The interface name inside the pod, normally `eth0` (CNI `CNI_IFNAME`).
    pub ifname: &'a str,
    /// The pod's hostPort mappings (CNI `runtimeConfig.portMappings`).
    pub port_mappings: &'a [PortMapping],
    /// Extra `CNI_ARGS` for standard plugins, e.g. `K8S_POD_NAMESPACE`, `K8S_POD_NAME`
    /// (Calico needs them). The builtin bridge ignores them.
    pub args: &'a [(&'a str, &'a str)],
}

impl<'a> Attachment<'a> {
    /// An attachment of `eth0` without port mappings or extra args.
    pub fn new(pod_id: &'a str, netns: &'a Path) -> Self {
        Attachment { pod_id, netns, ifname: "eth0", port_mappings: &[], args: &[] }
    }

    /// Rejects what would break a file name, an interface name or an nft comment.
    ///
    /// CNI allows container ids of letters, digits, `_`, `.` and `-`; interface names
    /// are at most 15 bytes without `/`, `:` or whitespace.
    pub fn validate(&self) -> Result<()> {
        validate_pod_id(self.pod_id)?;
        validate_ifname(self.ifname)?;
        let mut seen = std::collections::HashSet::new();
        for pm in self.port_mappings {
            if pm.host_port == 0 || pm.container_port == 0 {
                return Err(Error::InvalidArgument(format!(
                    "port mapping {}:{}->{}: ports must be 1-65535",
                    pm.protocol, pm.host_port, pm.container_port
                )));
            }
            // One host address/port/protocol can lead to one place only.
            if !seen.insert((pm.protocol, pm.bound_host_ip(), pm.host_port)) {
                return Err(Error::InvalidArgument(format!(
                    "hostPort {}/{} is listed twice for pod {}",
                    pm.protocol, pm.host_port, self.pod_id
                )));
            }
        }
        Ok(())
    }
}

/// Checks a pod (container) id as CNI does: `[A-Za-z0-9][A-Za-z0-9_.-]*`.
pub fn validate_pod_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("pod id {id:?}: must be letters, digits, '_', '.', '-' (at most 200)")))
    }
}

/// Checks an interface name: what the kernel accepts (1-15 bytes, not `.`/`..`),
/// narrowed to letters, digits, `_`, `.`, `-`, because the name also ends up in file
/// names, link aliases and nft comments.
pub fn validate_ifname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!("interface name {name:?}: 1-15 of letters, digits, '_', '.', '-'")))
    }
}

/// The CNI 1.1 ADD result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddResult {
    /// The CNI version of this result.
    #[serde(default)]
    pub cni_version: String,
    /// Interfaces created: host-side ones have no `sandbox`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    /// Addresses assigned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    /// Routes added inside the pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// DNS settings the network wants (the builtin bridge sets none; CRI's DNSConfig wins).
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

impl AddResult {
    /// The pod's primary IP: the first address on an interface inside the sandbox
    /// (or the first address at all when the result names no interfaces).
    pub fn pod_ip(&self) -> Option<IpAddr> {
        self.ips
            .iter()
            .find(|ip| ip.interface.and_then(|i| self.interfaces.get(i)).is_none_or(|iface| iface.sandbox.is_some()))
            .map(|ip| ip.address.addr())
    }

    /// Every pod IP, primary first (CRI `PodSandboxNetworkStatus.additional_ips`).
    pub fn pod_ips(&self) -> Vec<IpAddr> {
        let primary = self.pod_ip();
        let mut ips: Vec<IpAddr> = primary.into_iter().collect();
        ips.extend(self.ips.iter().map(|ip| ip.address.addr()).filter(|ip| Some(*ip) != primary));
        ips
    }
}

/// A CNI result interface.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Interface {
    /// Its name.
    pub name: String,
    /// Its MAC address, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// Its MTU, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The namespace path for interfaces inside the pod; `None` on the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
}

/// A CNI result address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with prefix length, e.g. `10.88.0.5/16`.
    pub address: IpNet,
    /// The gateway of this address's subnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

/// A CNI result route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// Destination, e.g. `0.0.0.0/0`.
    pub dst: IpNet,
    /// Next hop; `None` means the default gateway of the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
}

/// CNI result DNS settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    /// resolv.conf options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    /// True when nothing is set.
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty() && self.domain.is_none() && self.search.is_empty() && self.options.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_mapping_parses_cni_capability_shape() {
        let pm: Vec<PortMapping> = serde_json::from_str(
            r#"[{"hostPort":8080,"containerPort":80,"protocol":"tcp","hostIP":""},
                {"hostPort":53,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"},
                {"hostPort":9,"containerPort":9}]"#,
        )
        .unwrap();
        assert_eq!(pm[0].host_ip, None);
        assert_eq!(pm[1].protocol, Protocol::Udp);
        assert_eq!(pm[1].host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(pm[2].protocol, Protocol::Tcp);
        let back = serde_json::to_value(&pm[1]).unwrap();
        assert_eq!(back["hostIP"], "127.0.0.1");
        assert_eq!(back["containerPort"], 53);
    }

    #[test]
    fn pod_ip_skips_host_side_addresses() {
        let r: AddResult = serde_json::from_str(
            r#"{"cniVersion":"1.0.0",
                "interfaces":[{"name":"cni0","mac":"aa:bb:cc:dd:ee:ff"},{"name":"eth0","sandbox":"/run/netns/x"}],
                "ips":[{"address":"10.0.0.1/24","interface":0},{"address":"10.0.0.7/24","gateway":"10.0.0.1","interface":1}],
                "routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#,
        )
        .unwrap();
        assert_eq!(r.pod_ip(), Some("10.0.0.7".parse().unwrap()));
        assert_eq!(r.pod_ips()[0], r.pod_ip().unwrap());
    }

    #[test]
    fn duplicate_host_ports_are_refused() {
        let pm = |host_port, container_port| PortMapping {
            protocol: Protocol::Tcp,
            container_port,
            host_port,
            host_ip: None,
        };
        let ok = [pm(8080, 80), pm(8081, 80)];
        let twice = [pm(8080, 80), pm(8080, 81)];
        let netns = Path::new("/run/netns/x");
        assert!(Attachment { port_mappings: &ok, ..Attachment::new("p", netns) }.validate().is_ok());
        let err = Attachment { port_mappings: &twice, ..Attachment::new("p", netns) }.validate().unwrap_err();
        assert!(err.to_string().contains("listed twice"), "{err}");
        let zero = [pm(0, 80)];
        assert!(Attachment { port_mappings: &zero, ..Attachment::new("p", netns) }.validate().is_err());
    }

    #[test]
    fn ids_and_names_are_validated() {
        assert!(validate_pod_id("abc-1.2_3").is_ok());
        assert!(validate_pod_id("../etc").is_err());
        assert!(validate_pod_id("a b").is_err());
        assert!(validate_pod_id("").is_err());
        assert!(validate_ifname("eth0").is_ok());
        assert!(validate_ifname("a-very-long-name0").is_err());
        assert!(validate_ifname("a/b").is_err());
        assert!(validate_ifname("e\"th0").is_err());
    }
}
