//! The per-pod files bind-mounted into every container of a pod: `/etc/hostname`,
//! `/etc/hosts` and `/etc/resolv.conf`, written once at RunPodSandbox as containerd does.
//! (kubelet mounts its own `/etc/hosts` into most containers; that mount wins.)

use std::path::Path;

use corral_cri::v1;

/// `/etc/hosts` of a pod with its own network namespace.
const POD_HOSTS: &str = "127.0.0.1\tlocalhost\n\
::1\tlocalhost ip6-localhost ip6-loopback\n\
fe00::0\tip6-localnet\n\
ff00::0\tip6-mcastprefix\n\
ff00::1\tip6-allnodes\n\
ff00::2\tip6-allrouters\n";

/// The contents of `/etc/resolv.conf` for a pod: the DNS config kubelet sent, or the host's
/// file when it sent none (host-network pods and pods with `dnsPolicy: Default`).
pub fn resolv_conf(dns: Option<&v1::DnsConfig>, host_resolv: &Path) -> std::io::Result<String> {
    let Some(dns) = dns.filter(|d| !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty())) else {
        return match std::fs::read_to_string(host_resolv) {
            Ok(text) => Ok(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e),
        };
    };
    let mut out = String::new();
    if !dns.searches.is_empty() {
        out.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        out.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        out.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    Ok(out)
}

/// The contents of `/etc/hosts`: the host's for host-network pods, the standard local
/// names otherwise.
pub fn hosts(host_network: bool, host_hosts: &Path) -> std::io::Result<String> {
    if host_network { std::fs::read_to_string(host_hosts) } else { Ok(POD_HOSTS.to_string()) }
}

/// Checks a DNS config before it reaches a file: one entry per token, no line breaks that
/// could inject extra resolver directives.
pub fn validate_dns(dns: &v1::DnsConfig) -> Result<(), String> {
    for (what, values) in [("server", &dns.servers), ("search", &dns.searches), ("option", &dns.options)] {
        if let Some(bad) = values.iter().find(|v| v.is_empty() || v.contains(char::is_whitespace)) {
            return Err(format!("DNS {what} {bad:?} must be one non-empty token"));
        }
    }
    for server in &dns.servers {
        if server.parse::<std::net::IpAddr>().is_err() {
            return Err(format!("DNS server {server:?} is not an IP address"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_from_dns_config() {
        let dns = v1::DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["default.svc.cluster.local".into(), "svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        };
        let text = resolv_conf(Some(&dns), Path::new("/nonexistent")).unwrap();
        assert_eq!(
            text,
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn resolv_conf_falls_back_to_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("resolv.conf");
        std::fs::write(&host, "nameserver 192.0.2.53\n").unwrap();
        assert_eq!(resolv_conf(None, &host).unwrap(), "nameserver 192.0.2.53\n");
        assert_eq!(resolv_conf(Some(&v1::DnsConfig::default()), &host).unwrap(), "nameserver 192.0.2.53\n");
        assert_eq!(resolv_conf(None, &dir.path().join("missing")).unwrap(), "");
    }

    #[test]
    fn dns_injection_is_refused() {
        let bad = v1::DnsConfig { servers: vec!["1.1.1.1\nnameserver 6.6.6.6".into()], ..Default::default() };
        assert!(validate_dns(&bad).is_err());
        let bad = v1::DnsConfig { servers: vec!["dns.example".into()], ..Default::default() };
        assert!(validate_dns(&bad).unwrap_err().contains("not an IP"));
        let ok =
            v1::DnsConfig { servers: vec!["fd00::10".into()], options: vec!["ndots:2".into()], ..Default::default() };
        assert!(validate_dns(&ok).is_ok());
    }

    #[test]
    fn hosts_for_pod_and_host_network() {
        assert!(hosts(false, Path::new("/nonexistent")).unwrap().starts_with("127.0.0.1\tlocalhost\n"));
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("hosts");
        std::fs::write(&host, "127.0.0.1 myhost\n").unwrap();
        assert_eq!(hosts(true, &host).unwrap(), "127.0.0.1 myhost\n");
    }
}
