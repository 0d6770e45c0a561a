//! The CNI protocol, both sides, on the real kernel:
//! - `corral-bridge` driven by corral's own CNI runner and by raw env + stdin;
//! - corral's CNI runner driving Debian's containernetworking-plugins
//!   (bridge + host-local + portmap, and loopback).

mod common;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use corral_net::cni::{CniConfig, CniNetwork};
use corral_net::{Attachment, Error, PodNetwork, PortMapping, Protocol};
use serde_json::{Value, json};

/// Debian's plugins.
const DEBIAN_CNI: &str = "/usr/lib/cni";

fn corral_bridge_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_corral-bridge"))
}

/// The `corral-bridge` config of test network `n`.
fn corral_bridge_conf(n: u8, data: &Path, version: &str) -> Value {
    json!({
        "cniVersion": version,
        "name": format!("corral-test{n}"),
        "plugins": [{
            "type": "corral-bridge",
            "bridge": format!("cnt{n}"),
            "subnet": format!("10.210.{n}.0/24"),
            "mtu": 1400,
            "dataDir": data.join("net"),
            "nftTable": format!("corral_test_{n}"),
            "capabilities": { "portMappings": true }
        }]
    })
}

fn write_conf(dir: &Path, file: &str, conf: &Value) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(file), serde_json::to_vec_pretty(conf).unwrap()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corral_bridge_plugin_under_the_cni_runner() {
    let _bridge = LinkGuard("cnt7".into());
    let _table = NftTableGuard("corral_test_7".into());
    let tmp = tempfile::tempdir().unwrap();
    write_conf(&tmp.path().join("net.d"), "10-corral.conflist", &corral_bridge_conf(7, tmp.path(), "1.1.0"));
    let runner = CniNetwork::new(CniConfig {
        conf_dir: tmp.path().join("net.d"),
        bin_dirs: vec![corral_bridge_bin().parent().unwrap().to_owned()],
        cache_dir: tmp.path().join("cache"),
        ..Default::default()
    });

    // VERSION, STATUS (a 1.1.0 network: the plugin's own STATUS runs).
    let versions = runner.plugin_versions().await.unwrap();
    assert_eq!(versions[0].0, "corral-bridge");
    assert!(versions[0].1["supportedVersions"].as_array().unwrap().contains(&json!("1.1.0")));
    runner.status().await.unwrap();

    let ns = NetnsGuard::new("cnt-7-a");
    let ports = [PortMapping { protocol: Protocol::Tcp, container_port: 8080, host_port: 30701, host_ip: None }];
    let args = [("K8S_POD_NAMESPACE", "default"), ("K8S_POD_NAME", "web")];
    let a = Attachment { port_mappings: &ports, args: &args, ..Attachment::new("pod-cni-a", ns.path()) };
    let result = runner.add(&a).await.unwrap();
    let ip = result.pod_ip().unwrap();
    assert_eq!(result.cni_version, "1.1.0");
    assert!(ip.to_string().starts_with("10.210.7."));

    // The pod answers on its IP and on 127.0.0.1:hostPort.
    let server = tcp_server(ns.path(), 8080, "cni-pod", 2);
    assert_eq!(tcp_get(SocketAddr::new(ip, 8080)).unwrap(), "cni-pod saw 10.210.7.1");
    assert_eq!(tcp_get("127.0.0.1:30701".parse().unwrap()).unwrap(), "cni-pod saw 10.210.7.1");
    server.join().unwrap();

    runner.check(&a).await.unwrap();
    // The result is cached for DEL after a restart: a new runner over the same dirs.
    let cached = std::fs::read(tmp.path().join("cache/results/corral-test7-pod-cni-a-eth0")).unwrap();
    let cached: Value = serde_json::from_slice(&cached).unwrap();
    assert_eq!(cached["result"]["ips"][0]["address"], format!("{ip}/24"));
    assert_eq!(cached["cniArgs"], "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web");
    let restarted = CniNetwork::new(CniConfig {
        conf_dir: tmp.path().join("net.d"),
        bin_dirs: vec![corral_bridge_bin().parent().unwrap().to_owned()],
        cache_dir: tmp.path().join("cache"),
        ..Default::default()
    });
    restarted.del(&a).await.unwrap();
    restarted.del(&a).await.unwrap();
    assert!(veths_of("corral-test7").is_empty());
    assert!(tcp_get("127.0.0.1:30701".parse().unwrap()).is_err());
    assert!(list_dir(&tmp.path().join("cache/results")).is_empty());
    let records: Vec<_> = list_dir(&tmp.path().join("net/ipam/corral-test7"))
        .into_iter()
        .filter(|f| f.parse::<IpAddr>().is_ok())
        .collect();
    assert!(records.is_empty(), "{records:?}");

    // GC through the plugin: an attachment the runtime no longer knows goes away.
    // A live pod whose cache entry is lost survives.
    let ns_b = NetnsGuard::new("cnt-7-b");
    let ns_live = NetnsGuard::new("cnt-7-live");
    runner.add(&Attachment::new("pod-cni-b", ns_b.path())).await.unwrap();
    runner.add(&Attachment::new("pod-cni-live", ns_live.path())).await.unwrap();
    std::fs::remove_dir_all(tmp.path().join("cache")).unwrap(); // the runtime forgot them
    assert_eq!(veths_of("corral-test7").len(), 2);
    runner.gc(&["pod-cni-live".to_string()]).await.unwrap();
    let left = veths_of("corral-test7");
    assert_eq!(left.len(), 1, "plugin GC removed only the forgotten, dead pod");
    assert!(left[0].contains("pod-cni-live"), "{left:?}");
    runner.gc(&[]).await.unwrap();
    assert!(veths_of("corral-test7").is_empty());

    // ADD into a missing netns: refused before any plugin runs.
    let err = runner.add(&Attachment::new("pod-cni-c", Path::new("/run/netns/cnt-7-missing"))).await.unwrap_err();
    assert!(matches!(err, Error::NetnsMissing { .. }), "{err}");
}

/// Runs `corral-bridge` exactly as a CNI runtime does: env + config on stdin.
fn exec_plugin(command: &str, container: &str, netns: &str, stdin: &Value) -> (i32, Value) {
    let mut child = Command::new(corral_bridge_bin())
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", "IgnoreUnknown=1")
        .env("CNI_PATH", corral_bridge_bin().parent().unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.to_string().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = if out.stdout.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    };
    (out.status.code().unwrap(), stdout)
}

#[test]
fn corral_bridge_speaks_the_cni_protocol() {
    let _bridge = LinkGuard("cnt8".into());
    let _table = NftTableGuard("corral_test_8".into());
    let tmp = tempfile::tempdir().unwrap();
    let list = corral_bridge_conf(8, tmp.path(), "1.0.0");
    // What a runtime sends a plugin: the plugin entry plus name and cniVersion.
    let mut conf = list["plugins"][0].clone();
    conf["name"] = list["name"].clone();
    conf["cniVersion"] = json!("1.0.0");
    conf["runtimeConfig"] = json!({ "portMappings": [{ "hostPort": 30801, "containerPort": 80, "protocol": "udp" }] });
    let ns = NetnsGuard::new("cnt-8-a");
    let netns = ns.path().to_str().unwrap();

    let (code, v) = exec_plugin("VERSION", "", "", &json!({ "cniVersion": "1.0.0" }));
    assert_eq!(code, 0);
    assert_eq!(v["cniVersion"], "1.1.0");

    let (code, v) = exec_plugin("ADD", "pod-raw", "/run/netns/cnt-8-missing", &conf);
    assert_eq!((code, v["code"].as_u64()), (1, Some(4)), "{v}");
    assert!(v["msg"].as_str().unwrap().contains("cnt-8-missing"), "{v}");

    let (code, result) = exec_plugin("ADD", "pod-raw", netns, &conf);
    assert_eq!(code, 0, "{result}");
    assert_eq!(result["cniVersion"], "1.0.0");
    assert_eq!(result["interfaces"][2]["sandbox"], netns);
    assert_eq!(result["ips"][0]["interface"], 2);
    assert!(result["ips"][0]["address"].as_str().unwrap().starts_with("10.210.8."));
    assert_eq!(result["routes"][0]["dst"], "0.0.0.0/0");

    // ADD twice is an error; CHECK with prevResult passes.
    let (code, v) = exec_plugin("ADD", "pod-raw", netns, &conf);
    assert_eq!(code, 1, "{v}");
    let mut with_prev = conf.clone();
    with_prev["prevResult"] = result.clone();
    let (code, v) = exec_plugin("CHECK", "pod-raw", netns, &with_prev);
    assert_eq!((code, &v), (0, &Value::Null));
    let (code, _) = exec_plugin("STATUS", "", "", &conf);
    assert_eq!(code, 0);

    // An old config version gets the old result shape.
    let mut old = conf.clone();
    old["cniVersion"] = json!("0.4.0");
    old.as_object_mut().unwrap().remove("runtimeConfig");
    let ns_old = NetnsGuard::new("cnt-8-old");
    let (code, v) = exec_plugin("ADD", "pod-old", ns_old.path().to_str().unwrap(), &old);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["ips"][0]["version"], "4");
    let (code, _) = exec_plugin("DEL", "pod-old", "", &old);
    assert_eq!(code, 0);

    // DEL (without a netns, as after the pod is gone), twice.
    for _ in 0..2 {
        let (code, v) = exec_plugin("DEL", "pod-raw", "", &with_prev);
        assert_eq!((code, &v), (0, &Value::Null));
    }
    assert!(veths_of("corral-test8").is_empty());
    let table = sh(&["nft", "list", "table", "ip", "corral_test_8"]);
    assert!(!table.contains("30801"), "{table}");

    // Protocol errors carry CNI codes.
    let (code, v) = exec_plugin("ADD", "pod-raw", netns, &json!({ "cniVersion": "7.0.0" }));
    assert_eq!((code, v["code"].as_u64()), (1, Some(1)), "{v}");
    let mut bad = conf.clone();
    bad["subnet"] = json!("10.210.8.0/99");
    let (code, v) = exec_plugin("ADD", "pod-raw", netns, &bad);
    assert_eq!((code, v["code"].as_u64()), (1, Some(7)), "{v}");
    let (code, v) = exec_plugin("FROB", "pod-raw", netns, &conf);
    assert_eq!((code, v["code"].as_u64()), (1, Some(4)), "{v}");
}

/// Removes the iptables chains Debian's portmap plugin creates on first use
/// (CNI-HOSTPORT-*), but only if they did not exist before the test and nothing
/// else uses them now.
struct PortmapChainsGuard {
    existed: bool,
}

impl PortmapChainsGuard {
    fn new() -> Self {
        PortmapChainsGuard { existed: Self::rules().iter().any(|r| r.starts_with("-N CNI-HOSTPORT-")) }
    }

    fn rules() -> Vec<String> {
        Command::new("iptables")
            .args(["-w", "-t", "nat", "-S"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }
}

impl Drop for PortmapChainsGuard {
    fn drop(&mut self) {
        let rules = Self::rules();
        // Per-container chains (CNI-DN-*) mean some other pod still uses portmap.
        let in_use = rules.iter().any(|r| r.starts_with("-N CNI-DN-"));
        if self.existed || in_use {
            return;
        }
        let hooks = ["-A PREROUTING ", "-A OUTPUT ", "-A POSTROUTING "];
        for rule in rules.iter().filter(|r| hooks.iter().any(|h| r.starts_with(h)) && r.contains("-j CNI-HOSTPORT-")) {
            let mut cmd = Command::new("iptables");
            cmd.args(["-w", "-t", "nat"]).args(shell_words(&rule.replacen("-A", "-D", 1)));
            let _ = cmd.output();
        }
        for chain in ["CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"] {
            sh_quiet(&["iptables", "-w", "-t", "nat", "-F", chain]);
            sh_quiet(&["iptables", "-w", "-t", "nat", "-X", chain]);
        }
    }
}

/// Splits an `iptables -S` line into words, keeping `"quoted words"` together.
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in s.chars() {
        match c {
            '"' => quoted = !quoted,
            ' ' if !quoted => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// DELs an attachment through a runner when dropped, so a failing test leaves no
/// iptables rules of Debian's plugins behind.
struct DelOnDrop {
    runner: CniNetwork,
    pod_id: String,
    netns: PathBuf,
    ports: Vec<PortMapping>,
}

impl Drop for DelOnDrop {
    fn drop(&mut self) {
        // Drop cannot await, and may run inside the test's runtime: use a fresh one
        // on a scoped thread.
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                let a = Attachment { port_mappings: &self.ports, ..Attachment::new(&self.pod_id, &self.netns) };
                if let Err(e) = rt.block_on(self.runner.del(&a)) {
                    eprintln!("cleanup DEL of {}: {e}", self.pod_id);
                }
            });
        });
    }
}

/// The Debian bridge + host-local + portmap chain of test network `n`.
fn debian_conf(n: u8, data: &Path) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": format!("cnt-debian{n}"),
        "plugins": [
            {
                "type": "bridge", "bridge": format!("cnt{n}"), "isGateway": true, "ipMasq": true,
                "hairpinMode": true, "mtu": 1400,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{ "subnet": format!("10.210.{n}.0/24") }]],
                    "routes": [{ "dst": "0.0.0.0/0" }],
                    "dataDir": data.join("host-local")
                }
            },
            { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true }
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_drives_debian_bridge_host_local_portmap_and_loopback() {
    if !Path::new(DEBIAN_CNI).join("bridge").exists() {
        eprintln!("SKIP: {DEBIAN_CNI}/bridge missing (apt-get install containernetworking-plugins)");
        return;
    }
    let _chains = PortmapChainsGuard::new();
    let _bridge = LinkGuard("cnt10".into());
    let tmp = tempfile::tempdir().unwrap();
    write_conf(&tmp.path().join("net.d"), "10-debian.conflist", &debian_conf(10, tmp.path()));
    let runner = CniNetwork::new(CniConfig {
        conf_dir: tmp.path().join("net.d"),
        bin_dirs: vec![PathBuf::from(DEBIAN_CNI)],
        cache_dir: tmp.path().join("cache"),
        ..Default::default()
    });
    runner.status().await.unwrap();
    let versions = runner.plugin_versions().await.unwrap();
    assert_eq!(versions.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["bridge", "portmap"]);

    let ns = NetnsGuard::new("cnt-10-a");
    let ports = [PortMapping { protocol: Protocol::Tcp, container_port: 8080, host_port: 30910, host_ip: None }];
    let a = Attachment { port_mappings: &ports, ..Attachment::new("pod-debian", ns.path()) };
    let _cleanup = DelOnDrop {
        runner: runner.clone(),
        pod_id: "pod-debian".into(),
        netns: ns.path().to_owned(),
        ports: ports.to_vec(),
    };
    let result = runner.add(&a).await.unwrap();
    let ip = result.pod_ip().unwrap();
    assert!(ip.to_string().starts_with("10.210.10."), "{result:?}");
    assert!(result.interfaces.iter().any(|i| i.name == "eth0" && i.sandbox.is_some()));

    let server = tcp_server(ns.path(), 8080, "debian-pod", 2);
    assert_eq!(tcp_get(SocketAddr::new(ip, 8080)).unwrap(), "debian-pod saw 10.210.10.1");
    let via_port = SocketAddr::new("10.210.10.1".parse().unwrap(), ports[0].host_port);
    assert!(tcp_get(via_port).unwrap().starts_with("debian-pod saw"));
    server.join().unwrap();

    // CHECK runs the chain with the cached prevResult: bridge's CHECK passes; Debian's
    // portmap 1.1.1 then fails on hosts without ip6tables NAT chains (an upstream bug),
    // which must surface as that plugin's error.
    match runner.check(&a).await {
        Ok(()) => {}
        Err(Error::Plugin { plugin, command, msg, .. }) => {
            assert_eq!((plugin.as_str(), command.as_str()), ("portmap", "CHECK"), "{msg}");
            assert!(msg.contains("ipv6"), "{msg}");
        }
        Err(e) => panic!("CHECK: {e}"),
    }
    runner.del(&a).await.unwrap();
    runner.del(&a).await.unwrap();
    assert!(list_dir(&tmp.path().join("cache/results")).is_empty());
    let held: Vec<_> = list_dir(&tmp.path().join("host-local/cnt-debian10"))
        .into_iter()
        .filter(|f| f.parse::<IpAddr>().is_ok())
        .collect();
    assert!(held.is_empty(), "host-local still holds {held:?}");
    assert!(bridge_ports("cnt10").is_empty());

    // GC: a cached attachment of a pod that is no longer live is DELeted.
    let ns_b = NetnsGuard::new("cnt-10-b");
    let _cleanup_b = DelOnDrop {
        runner: runner.clone(),
        pod_id: "pod-debian-b".into(),
        netns: ns_b.path().to_owned(),
        ports: vec![],
    };
    runner.add(&Attachment::new("pod-debian-b", ns_b.path())).await.unwrap();
    assert_eq!(bridge_ports("cnt10").len(), 1);
    runner.gc(&[]).await.unwrap();
    assert!(bridge_ports("cnt10").is_empty());

    // loopback, as runtimes run it for every pod: its own single-plugin .conf.
    let lo_dir = tmp.path().join("lo.d");
    write_conf(
        &lo_dir,
        "99-loopback.conf",
        &json!({ "cniVersion": "1.0.0", "name": "cni-loopback", "type": "loopback" }),
    );
    let lo = CniNetwork::new(CniConfig {
        conf_dir: lo_dir,
        bin_dirs: vec![PathBuf::from(DEBIAN_CNI)],
        cache_dir: tmp.path().join("cache"),
        ..Default::default()
    });
    let ns_lo = NetnsGuard::new("cnt-10-lo");
    assert!(!ns_lo.exec(&["ip", "-o", "link", "show", "lo"]).contains(",UP"));
    let a_lo = Attachment { ifname: "lo", ..Attachment::new("pod-lo", ns_lo.path()) };
    lo.add(&a_lo).await.unwrap();
    assert!(ns_lo.exec(&["ip", "-o", "link", "show", "lo"]).contains(",UP"));
    lo.del(&a_lo).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_chain_add_is_rolled_back() {
    let _bridge = LinkGuard("cnt13".into());
    let _table = NftTableGuard("corral_test_13".into());
    let tmp = tempfile::tempdir().unwrap();
    let bin_dirs = vec![corral_bridge_bin().parent().unwrap().to_owned()];
    let ns = NetnsGuard::new("cnt-13-a");

    // A chain whose second plugin does not exist: nothing runs at all.
    let mut conf = corral_bridge_conf(13, tmp.path(), "1.1.0");
    conf["plugins"].as_array_mut().unwrap().push(json!({ "type": "no-such-plugin" }));
    write_conf(&tmp.path().join("missing.d"), "10.conflist", &conf);
    let runner = CniNetwork::new(CniConfig {
        conf_dir: tmp.path().join("missing.d"),
        bin_dirs: bin_dirs.clone(),
        cache_dir: tmp.path().join("cache"),
        ..Default::default()
    });
    let err = runner.add(&Attachment::new("pod-f", ns.path())).await.unwrap_err();
    assert!(err.to_string().contains("no-such-plugin"), "{err}");
    assert!(veths_of("corral-test13").is_empty());

    // A chain whose second plugin fails after the first wired the pod (the same
    // attachment twice): the runner DELs the chain, and nothing is left.
    let mut conf = corral_bridge_conf(13, tmp.path(), "1.1.0");
    let again = conf["plugins"][0].clone();
    conf["plugins"].as_array_mut().unwrap().push(again);
    write_conf(&tmp.path().join("twice.d"), "10.conflist", &conf);
    let runner = CniNetwork::new(CniConfig {
        conf_dir: tmp.path().join("twice.d"),
        bin_dirs,
        cache_dir: tmp.path().join("cache"),
        ..Default::default()
    });
    let err = runner.add(&Attachment::new("pod-f", ns.path())).await.unwrap_err();
    assert!(matches!(&err, Error::Plugin { command, .. } if command == "ADD"), "{err}");
    assert!(err.to_string().contains("already has interface"), "{err}");
    assert!(veths_of("corral-test13").is_empty(), "rolled back");
    let records: Vec<_> = list_dir(&tmp.path().join("net/ipam/corral-test13"))
        .into_iter()
        .filter(|f| f.parse::<IpAddr>().is_ok())
        .collect();
    assert!(records.is_empty(), "{records:?}");
    assert!(list_dir(&tmp.path().join("cache/results")).is_empty());
}
