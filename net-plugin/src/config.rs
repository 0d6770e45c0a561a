//! Configuration of the builtin bridge network, and the addresses derived from it.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How the builtin bridge network is set up. The same fields (camelCase) are the
/// plugin-specific part of a `corral-bridge` CNI config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct BridgeConfig {
    /// The network name (CNI `name`); it names the IPAM directory and the veth aliases.
    pub name: String,
    /// The host bridge, created on first use.
    pub bridge: String,
    /// The pod CIDR; the bridge (gateway) gets its first address.
    pub subnet: String,
    /// MTU of both veth ends.
    pub mtu: u32,
    /// Where IPAM records and attachment records live (under corral's `--root`).
    pub data_dir: PathBuf,
    /// The nftables table (family `ip`) of this network: one table per network.
    pub nft_table: String,
    /// Masquerade traffic from pods to addresses outside the subnet.
    pub ip_masq: bool,
    /// Hairpin mode on the host veth, so a pod reaches itself through a hostPort.
    pub hairpin: bool,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            name: "corral".into(),
            bridge: "corral0".into(),
            subnet: "10.88.0.0/16".into(),
            mtu: 1500,
            data_dir: PathBuf::from("/var/lib/corral/network"),
            nft_table: "corral".into(),
            ip_masq: true,
            hairpin: true,
        }
    }
}

/// A validated [`BridgeConfig`] with its addresses computed once.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub cfg: BridgeConfig,
    /// The pod subnet, normalised (`10.88.0.0/16`).
    pub subnet: Ipv4Net,
    /// The bridge's address and the pods' default gateway: first host of the subnet.
    pub gateway: Ipv4Addr,
}

impl Plan {
    pub fn new(cfg: BridgeConfig) -> Result<Self> {
        let bad = |what: String| Err(Error::InvalidConfig(what));
        if !is_plain_name(&cfg.name) {
            return bad(format!("name {:?}: letters, digits, '_', '.', '-' only", cfg.name));
        }
        if crate::types::validate_ifname(&cfg.bridge).is_err() {
            return bad(format!("bridge {:?}: not a valid interface name", cfg.bridge));
        }
        if cfg.nft_table.is_empty()
            || cfg.nft_table.len() > 64
            || !cfg.nft_table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return bad(format!("nftTable {:?}: letters, digits and '_' only", cfg.nft_table));
        }
        if !(68..=65535).contains(&cfg.mtu) {
            return bad(format!("mtu {}: must be 68-65535", cfg.mtu));
        }
        let subnet: Ipv4Net = match cfg.subnet.parse() {
            Ok(net) => net,
            Err(_) => {
                return bad(format!(
                    "subnet {:?}: not an IPv4 CIDR (IPv6 pod networks are not supported yet)",
                    cfg.subnet
                ));
            }
        };
        let subnet = subnet.trunc();
        if subnet.prefix_len() > 30 {
            return bad(format!("subnet {subnet}: too small, needs at least a /30 (gateway + one pod)"));
        }
        let gateway = Ipv4Addr::from(u32::from(subnet.network()) + 1);
        if cfg.data_dir.as_os_str().is_empty() {
            return bad("dataDir is empty".into());
        }
        Ok(Plan { cfg, subnet, gateway })
    }

    /// The directory of this network's IPAM records.
    pub fn ipam_dir(&self) -> PathBuf {
        self.cfg.data_dir.join("ipam").join(&self.cfg.name)
    }

    /// The directory of this network's attachment records.
    pub fn attachments_dir(&self) -> PathBuf {
        self.cfg.data_dir.join("attachments").join(&self.cfg.name)
    }
}

/// Names that are safe as a path component and inside an nft comment.
pub(crate) fn is_plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s != "."
        && s != ".."
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_is_first_address() {
        let plan = Plan::new(BridgeConfig { subnet: "10.210.7.9/24".into(), ..Default::default() }).unwrap();
        assert_eq!(plan.subnet.to_string(), "10.210.7.0/24");
        assert_eq!(plan.gateway, Ipv4Addr::new(10, 210, 7, 1));
    }

    #[test]
    fn bad_configs_are_rejected_with_the_field() {
        for (cfg, field) in [
            (BridgeConfig { subnet: "fd00::/64".into(), ..Default::default() }, "subnet"),
            (BridgeConfig { subnet: "10.0.0.0/31".into(), ..Default::default() }, "subnet"),
            (BridgeConfig { bridge: "much-too-long-bridge".into(), ..Default::default() }, "bridge"),
            (BridgeConfig { name: "../x".into(), ..Default::default() }, "name"),
            (BridgeConfig { nft_table: "x; flush ruleset".into(), ..Default::default() }, "nftTable"),
            (BridgeConfig { mtu: 10, ..Default::default() }, "mtu"),
        ] {
            let err = Plan::new(cfg).unwrap_err().to_string();
            assert!(err.contains(field), "{err} should name {field}");
        }
    }
}
