//! The network's nftables table: egress masquerade once per network, hostPorts as
//! per-pod map elements.
//!
//! Why nftables and `nft -f -`: one table per network (`table ip <nftTable>`) is ours
//! alone, so nothing else on the host is ever flushed or edited; a batch is one atomic
//! transaction; and per-pod state is data (map elements), not rules, so a pod without
//! hostPorts needs no firewall work at all and a pod with hostPorts costs one batch.
//! The `nft` text syntax is what an operator reads in `nft list table`, and the same
//! lines are used here. Listing for DEL-without-record and GC uses `nft -j`.
//!
//! ```text
//! table ip corral {
//!   map hostports        { type inet_proto . inet_service : ipv4_addr . inet_service }
//!   map hostip_hostports { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service }
//!   chain hostports {     # DNAT: hostIP-bound mappings first, then "any local address"
//!     meta l4proto { tcp, udp, sctp } dnat ip to ip daddr . meta l4proto . th dport map @hostip_hostports
//!     meta l4proto { tcp, udp, sctp } fib daddr type local dnat ip to meta l4proto . th dport map @hostports
//!   }
//!   chain prerouting  { type nat hook prerouting priority dstnat;  jump hostports }   # from outside
//!   chain output      { type nat hook output priority -100; fib daddr type local jump hostports }  # from the host
//!   chain postrouting { type nat hook postrouting priority srcnat;
//!     ct status dnat ip saddr 127.0.0.0/8 masquerade          # 127.0.0.1:hostPort (needs route_localnet)
//!     ct status dnat ip saddr <cidr> ip daddr <cidr> masquerade # pod -> hostPort -> pod (hairpin)
//!     ip saddr <cidr> ip daddr != { <cidr>, 224.0.0.0/4 } masquerade   # egress, when ipMasq
//!   }
//! }
//! ```
//! Each element carries `comment "<pod id>/<ifname>"` so DEL and GC can find a pod's
//! elements without any other record.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::Stdio;

use ipnet::Ipv4Net;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::types::PortMapping;
use crate::{Error, Result};

/// How long one `nft` run may take before it is killed (it normally takes a few ms).
const NFT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Map of mappings without a host IP.
const ANY_IP_MAP: &str = "hostports";
/// Map of mappings bound to one host IP.
const HOST_IP_MAP: &str = "hostip_hostports";

/// The table of one network.
#[derive(Debug, Clone)]
pub(crate) struct Nft {
    table: String,
}

/// One hostPort element found in the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortElement {
    /// Which map it is in.
    pub map: &'static str,
    /// The key in nft syntax, e.g. `tcp . 30080` or `127.0.0.1 . udp . 53`.
    pub key: String,
    /// Its comment: `<pod id>/<ifname>`.
    pub comment: Option<String>,
}

impl PortElement {
    /// The pod id of the comment.
    pub fn pod_id(&self) -> Option<&str> {
        self.comment.as_deref().map(|c| c.split('/').next().unwrap_or(c))
    }
}

/// The comment that marks an attachment's elements.
pub(crate) fn owner_comment(pod_id: &str, ifname: &str) -> String {
    format!("{pod_id}/{ifname}")
}

impl Nft {
    pub fn new(table: &str) -> Self {
        Nft { table: table.to_owned() }
    }

    /// The batch that (re)creates the table's maps and chains. Idempotent: `add` of an
    /// existing map keeps its elements, and every chain is flushed and refilled in the
    /// same transaction, so running it again changes nothing and loses no mapping.
    pub fn setup_script(&self, subnet: Ipv4Net, ip_masq: bool) -> String {
        let t = format!("ip {}", self.table);
        let mut s = format!(
            "add table {t}\n\
             add map {t} {ANY_IP_MAP} {{ type inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
             add map {t} {HOST_IP_MAP} {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}\n\
             add chain {t} hostports\n\
             flush chain {t} hostports\n\
             add rule {t} hostports meta l4proto {{ tcp, udp, sctp }} dnat ip addr . port to ip daddr . meta l4proto . th dport map @{HOST_IP_MAP}\n\
             add rule {t} hostports meta l4proto {{ tcp, udp, sctp }} fib daddr type local dnat ip addr . port to meta l4proto . th dport map @{ANY_IP_MAP}\n\
             add chain {t} prerouting {{ type nat hook prerouting priority dstnat; policy accept; }}\n\
             flush chain {t} prerouting\n\
             add rule {t} prerouting jump hostports\n\
             add chain {t} output {{ type nat hook output priority -100; policy accept; }}\n\
             flush chain {t} output\n\
             add rule {t} output fib daddr type local jump hostports\n\
             add chain {t} postrouting {{ type nat hook postrouting priority srcnat; policy accept; }}\n\
             flush chain {t} postrouting\n\
             add rule {t} postrouting ct status dnat ip saddr 127.0.0.0/8 masquerade\n\
             add rule {t} postrouting ct status dnat ip saddr {subnet} ip daddr {subnet} masquerade\n"
        );
        if ip_masq {
            s.push_str(&format!(
                "add rule {t} postrouting ip saddr {subnet} ip daddr != {{ {subnet}, 224.0.0.0/4 }} masquerade\n"
            ));
        }
        s
    }

    /// Creates or refreshes the table.
    pub async fn ensure(&self, subnet: Ipv4Net, ip_masq: bool) -> Result<()> {
        run("set up table", &["-f", "-"], Some(&self.setup_script(subnet, ip_masq))).await?;
        Ok(())
    }

    fn element_line(
        &self,
        verb: &str,
        pm: &PortMapping,
        comment: Option<&str>,
        pod_ip: Option<Ipv4Addr>,
    ) -> Result<String> {
        let (map, key) = element_key(pm)?;
        let comment = comment.map(|c| format!(" comment \"{c}\"")).unwrap_or_default();
        let value = pod_ip.map(|ip| format!(" : {ip} . {}", pm.container_port)).unwrap_or_default();
        Ok(format!("{verb} element ip {} {map} {{ {key}{comment}{value} }}\n", self.table))
    }

    /// Maps `mappings` to `pod_ip`, all or nothing. A host port taken by another pod is
    /// [`Error::PortInUse`].
    pub async fn add_ports(
        &self,
        pod_id: &str,
        ifname: &str,
        pod_ip: Ipv4Addr,
        mappings: &[PortMapping],
    ) -> Result<()> {
        let comment = owner_comment(pod_id, ifname);
        let mut batch = String::new();
        for pm in mappings {
            batch.push_str(&self.element_line("create", pm, Some(&comment), Some(pod_ip))?);
        }
        match run(&format!("map hostPorts of pod {pod_id}"), &["-f", "-"], Some(&batch)).await {
            Err(Error::Nft { stderr, .. }) if stderr.contains("File exists") => {
                let line = stderr.lines().next().unwrap_or_default().to_owned();
                Err(Error::PortInUse(format!("{} ({line})", describe(mappings))))
            }
            other => other.map(drop),
        }
    }

    /// Removes the elements of `mappings` if they still carry the attachment's comment,
    /// and any other element with that comment. Missing elements are fine.
    pub async fn del_ports(&self, pod_id: &str, ifname: &str, mappings: &[PortMapping]) -> Result<()> {
        let comment = owner_comment(pod_id, ifname);
        if !mappings.is_empty() {
            let mut batch = String::new();
            for pm in mappings {
                batch.push_str(&self.element_line("delete", pm, None, None)?);
            }
            // Fast path: one batch by key. It fails as a whole if any element is gone
            // (DEL twice, GC raced): then fall back to listing by comment.
            let deleted = run(&format!("unmap hostPorts of pod {pod_id}"), &["-f", "-"], Some(&batch)).await;
            if deleted.is_ok() {
                return Ok(());
            }
        }
        let mine: Vec<PortElement> =
            self.list_ports().await?.into_iter().filter(|e| e.comment.as_deref() == Some(comment.as_str())).collect();
        self.delete_elements(&mine).await
    }

    /// Deletes the given elements in one batch.
    pub async fn delete_elements(&self, elements: &[PortElement]) -> Result<()> {
        if elements.is_empty() {
            return Ok(());
        }
        let batch: String =
            elements.iter().map(|e| format!("delete element ip {} {} {{ {} }}\n", self.table, e.map, e.key)).collect();
        run("delete hostPort elements", &["-f", "-"], Some(&batch)).await.map(drop)
    }

    /// Every hostPort element of the table (none when the table does not exist).
    pub async fn list_ports(&self) -> Result<Vec<PortElement>> {
        let mut out = Vec::new();
        for map in [ANY_IP_MAP, HOST_IP_MAP] {
            let json = match run("list map", &["-j", "list", "map", "ip", &self.table, map], None).await {
                Ok(json) => json,
                Err(Error::Nft { stderr, .. }) if stderr.contains("No such file or directory") => continue,
                Err(e) => return Err(e),
            };
            out.extend(parse_map_elements(map, &json)?);
        }
        Ok(out)
    }
}

/// Which map a mapping goes into, and its key in nft syntax.
fn element_key(pm: &PortMapping) -> Result<(&'static str, String)> {
    let proto_port = format!("{} . {}", pm.protocol, pm.host_port);
    match pm.bound_host_ip() {
        None => Ok((ANY_IP_MAP, proto_port)),
        Some(IpAddr::V4(ip)) => Ok((HOST_IP_MAP, format!("{ip} . {proto_port}"))),
        Some(IpAddr::V6(ip)) => {
            Err(Error::InvalidArgument(format!("hostIP {ip}: IPv6 host addresses need an IPv6 pod network")))
        }
    }
}

fn describe(mappings: &[PortMapping]) -> String {
    mappings
        .iter()
        .map(|pm| match pm.bound_host_ip() {
            Some(ip) => format!("{}/{ip}:{}", pm.protocol, pm.host_port),
            None => format!("{}/{}", pm.protocol, pm.host_port),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses `nft -j list map` output into elements.
///
/// An element with a comment is `[{"elem": {"val": {"concat": [...]}, "comment": "..."}}, value]`,
/// without one `[{"concat": [...]}, value]`.
fn parse_map_elements(map: &'static str, json: &str) -> Result<Vec<PortElement>> {
    let doc: Value = serde_json::from_str(json)
        .map_err(|source| Error::Decode { what: format!("nft -j list map {map}"), source })?;
    let mut out = Vec::new();
    let items = doc["nftables"].as_array().cloned().unwrap_or_default();
    for item in items {
        let Some(elems) = item["map"]["elem"].as_array() else {
            continue;
        };
        for pair in elems {
            let key = &pair[0];
            let (val, comment) = match key.get("elem") {
                Some(elem) => (&elem["val"], elem["comment"].as_str().map(str::to_owned)),
                None => (key, None),
            };
            let parts: Vec<String> = val["concat"]
                .as_array()
                .map(|parts| {
                    parts
                        .iter()
                        .map(|p| match p {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default();
            if parts.is_empty() {
                continue;
            }
            out.push(PortElement { map, key: parts.join(" . "), comment });
        }
    }
    Ok(out)
}

/// The `nft` binary: the usual sbin paths first (a CNI plugin may run with a bare PATH).
fn nft_binary() -> &'static str {
    ["/usr/sbin/nft", "/sbin/nft"].into_iter().find(|p| Path::new(p).exists()).unwrap_or("nft")
}

/// Whether `nft` can be found at all (STATUS).
pub(crate) fn nft_available() -> bool {
    let bin = nft_binary();
    if bin.contains('/') {
        return true;
    }
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(bin).exists()))
}

/// Runs `nft args`, feeding `stdin`; returns stdout, or [`Error::Nft`] with stderr.
async fn run(step: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let bin = nft_binary();
    let mut child = tokio::process::Command::new(bin)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::io(format!("run {bin} ({step})"), e))?;
    let pipe = child.stdin.take();
    let feed = async move {
        if let (Some(input), Some(mut pipe)) = (stdin, pipe) {
            // Closing the pipe (drop) is what tells nft the batch is complete.
            pipe.write_all(input.as_bytes()).await.map_err(|e| Error::io(format!("write to nft ({step})"), e))?;
        }
        Ok(())
    };
    let finished = tokio::time::timeout(NFT_TIMEOUT, async { tokio::join!(feed, child.wait_with_output()) });
    let (fed, out) = finished.await.map_err(|_| {
        Error::io(
            format!("nft ({step})"),
            std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 30 s, killed"),
        )
    })?;
    fed?;
    let out = out.map_err(|e| Error::io(format!("wait for nft ({step})"), e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        tracing::debug!(step, %stderr, input = stdin.unwrap_or_default(), "nft failed");
        Err(Error::Nft { step: step.to_owned(), stderr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Protocol;

    #[test]
    fn elements_of_both_maps_parse() {
        let any = r#"{"nftables": [{"metainfo": {}}, {"map": {"family": "ip", "name": "hostports", "table": "t",
            "elem": [[{"elem": {"val": {"concat": ["tcp", 30080]}, "comment": "pod1/eth0"}}, {"concat": ["10.0.0.5", 80]}],
                     [{"concat": ["udp", 30081]}, {"concat": ["10.0.0.6", 81]}]]}}]}"#;
        let got = parse_map_elements(ANY_IP_MAP, any).unwrap();
        assert_eq!(got[0].key, "tcp . 30080");
        assert_eq!(got[0].pod_id(), Some("pod1"));
        assert_eq!(got[1].key, "udp . 30081");
        assert_eq!(got[1].comment, None);
        let none = r#"{"nftables": [{"map": {"name": "hostip_hostports"}}]}"#;
        assert!(parse_map_elements(HOST_IP_MAP, none).unwrap().is_empty());
    }

    #[test]
    fn element_lines() {
        let nft = Nft::new("corral_test");
        let pm = PortMapping {
            protocol: Protocol::Sctp,
            container_port: 80,
            host_port: 30001,
            host_ip: Some("127.0.0.1".parse().unwrap()),
        };
        assert_eq!(
            nft.element_line("create", &pm, Some("p/eth0"), Some(Ipv4Addr::new(10, 0, 0, 2))).unwrap(),
            "create element ip corral_test hostip_hostports { 127.0.0.1 . sctp . 30001 comment \"p/eth0\" : 10.0.0.2 . 80 }\n"
        );
        let any = PortMapping { host_ip: Some("0.0.0.0".parse().unwrap()), ..pm.clone() };
        assert_eq!(
            nft.element_line("delete", &any, None, None).unwrap(),
            "delete element ip corral_test hostports { sctp . 30001 }\n"
        );
        let v6 = PortMapping { host_ip: Some("::1".parse().unwrap()), ..pm };
        assert!(nft.element_line("create", &v6, None, None).is_err());
    }
}
