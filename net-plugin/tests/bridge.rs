//! The builtin bridge network on the real kernel: namespaces, veths, bridge, nftables.
//! Needs root. Every test has its own bridge/subnet/table/ports (see `common`).

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use common::*;
use corral_net::{Attachment, Error, PodNetwork, PortMapping, Protocol};

fn v4(ip: IpAddr) -> Ipv4Addr {
    match ip {
        IpAddr::V4(v) => v,
        IpAddr::V6(_) => panic!("expected IPv4"),
    }
}

fn tcp(host_port: u16, container_port: u16, host_ip: Option<&str>) -> PortMapping {
    PortMapping { protocol: Protocol::Tcp, container_port, host_port, host_ip: host_ip.map(|s| s.parse().unwrap()) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_reach_each_other_and_the_host_reaches_them() {
    let net = TestNet::new(1);
    let ns_a = NetnsGuard::new("cnt-1-a");
    let ns_b = NetnsGuard::new("cnt-1-b");
    let (pa, pb) = (ns_a.path(), ns_b.path());

    let ra = net.bridge.add(&Attachment::new("pod-a", pa)).await.unwrap();
    let rb = net.bridge.add(&Attachment::new("pod-b", pb)).await.unwrap();
    let (ip_a, ip_b) = (v4(ra.pod_ip().unwrap()), v4(rb.pod_ip().unwrap()));
    assert_ne!(ip_a, ip_b);
    assert!(net.bridge.subnet().contains(&ip_a) && net.bridge.subnet().contains(&ip_b));
    assert_ne!(ip_a, net.bridge.gateway(), "the gateway is never handed out");

    // The CNI result says what was built.
    assert_eq!(ra.cni_version, "1.1.0");
    assert_eq!(ra.interfaces.len(), 3);
    assert_eq!(ra.interfaces[0].name, "cnt1");
    assert!(ra.interfaces[1].name.starts_with("veth") && ra.interfaces[1].name.len() <= 15);
    assert_eq!(ra.interfaces[2].name, "eth0");
    assert_eq!(ra.interfaces[2].sandbox.as_deref(), Some(pa.to_str().unwrap()));
    assert_eq!(ra.ips[0].address.to_string(), format!("{ip_a}/24"));
    assert_eq!(ra.ips[0].gateway, Some(IpAddr::V4(Ipv4Addr::new(10, 210, 1, 1))));
    assert_eq!(ra.routes[0].dst.to_string(), "0.0.0.0/0");

    // Inside the pod: eth0 with the address, MTU, MAC; lo up; default route.
    let eth0 = ns_a.exec(&["ip", "-o", "addr", "show", "dev", "eth0"]);
    assert!(eth0.contains(&format!("inet {ip_a}/24")), "{eth0}");
    let link = ns_a.exec(&["ip", "-o", "link", "show", "dev", "eth0"]);
    assert!(link.contains("mtu 1400") && link.contains(ra.interfaces[2].mac.as_deref().unwrap()), "{link}");
    assert!(ns_a.exec(&["ip", "-o", "link", "show", "dev", "lo"]).contains("UP"));
    assert!(ns_a.exec(&["ip", "route"]).contains("default via 10.210.1.1 dev eth0"));
    // Host side: on the bridge, hairpin on.
    let host_veth = &ra.interfaces[1].name;
    let detail = sh(&["ip", "-d", "link", "show", "dev", host_veth]);
    assert!(detail.contains("master cnt1") && detail.contains("hairpin on"), "{detail}");

    // Pod B -> pod A, not NATed: A sees B's own address.
    let server = tcp_server(pa, 8080, "pod-a", 2);
    let addr_a = SocketAddr::new(IpAddr::V4(ip_a), 8080);
    let from_b = in_netns(pb, move || tcp_get(addr_a)).join().unwrap().unwrap();
    assert_eq!(from_b, format!("pod-a saw {ip_b}"));
    // Host -> pod A, from the gateway address.
    let from_host = tcp_get(addr_a).unwrap();
    assert_eq!(from_host, "pod-a saw 10.210.1.1");
    server.join().unwrap();

    net.bridge.check(&Attachment::new("pod-a", pa)).await.unwrap();
    net.bridge.check(&Attachment::new("pod-b", pb)).await.unwrap();
    // CHECK notices what someone broke.
    ns_b.exec(&["ip", "route", "del", "default"]);
    let err = net.bridge.check(&Attachment::new("pod-b", pb)).await.unwrap_err();
    assert!(err.to_string().contains("no default route"), "{err}");
    sh(&["ip", "link", "set", &rb.interfaces[1].name, "nomaster"]);
    let err = net.bridge.check(&Attachment::new("pod-b", pb)).await.unwrap_err();
    assert!(err.to_string().contains("not on bridge"), "{err}");

    net.bridge.del(&Attachment::new("pod-a", pa)).await.unwrap();
    net.bridge.del(&Attachment::new("pod-b", pb)).await.unwrap();
    assert!(veths_of("corral-test1").is_empty());
    assert!(net.ip_records().is_empty());
    assert!(net.attachment_records().is_empty());
    assert!(ns_a.exec(&["ip", "-o", "link"]).lines().all(|l| !l.contains("eth0")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_is_masqueraded_and_host_ports_answer_from_outside() {
    let net = TestNet::new(2);
    // A fake outside host at 198.51.100.2, routed from the host via its own veth.
    let outside = NetnsGuard::new("cnt-2-out");
    let _out_link = LinkGuard("cnt2o".into());
    sh_quiet(&["ip", "link", "del", "cnt2o"]);
    sh(&["ip", "link", "add", "cnt2o", "type", "veth", "peer", "name", "cnt2o-p"]);
    sh(&["ip", "link", "set", "cnt2o-p", "netns", &outside.name, "name", "eth0"]);
    sh(&["ip", "addr", "add", "198.51.100.1/24", "dev", "cnt2o"]);
    sh(&["ip", "link", "set", "cnt2o", "up"]);
    outside.exec(&["ip", "addr", "add", "198.51.100.2/24", "dev", "eth0"]);
    outside.exec(&["ip", "link", "set", "eth0", "up"]);
    outside.exec(&["ip", "link", "set", "lo", "up"]);
    // Note: no route back to the pod subnet in the outside host. Only NAT makes replies work.

    let pod_ns = NetnsGuard::new("cnt-2-pod");
    let ports = [tcp(30201, 8080, None)];
    let a = Attachment { port_mappings: &ports, ..Attachment::new("pod-egress", pod_ns.path()) };
    let r = net.bridge.add(&a).await.unwrap();
    let pod_ip = r.pod_ip().unwrap();

    // Pod -> outside: the outside host sees the host's address, not the pod's.
    let server = tcp_server(outside.path(), 9090, "outside", 1);
    let target: SocketAddr = "198.51.100.2:9090".parse().unwrap();
    let got = in_netns(pod_ns.path(), move || tcp_get(target)).join().unwrap().unwrap();
    assert_eq!(got, "outside saw 198.51.100.1");
    assert_eq!(server.join().unwrap()[0].ip(), "198.51.100.1".parse::<IpAddr>().unwrap());

    // Outside -> host:hostPort -> pod (DNAT in prerouting); the pod sees the real client.
    let server = tcp_server(pod_ns.path(), 8080, "pod", 1);
    let front: SocketAddr = "198.51.100.1:30201".parse().unwrap();
    let got = in_netns(outside.path(), move || tcp_get(front)).join().unwrap().unwrap();
    assert_eq!(got, "pod saw 198.51.100.2");
    server.join().unwrap();
    assert_ne!(pod_ip, "198.51.100.2".parse::<IpAddr>().unwrap());

    net.bridge.del(&a).await.unwrap();
    // After DEL the hostPort is gone: the outside host is refused.
    let refused = in_netns(outside.path(), move || tcp_get(front)).join().unwrap();
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_ports_answer_on_localhost_and_the_bridge_address() {
    let net = TestNet::new(3);
    let ns = NetnsGuard::new("cnt-3-a");
    let ports = [
        tcp(30301, 8080, None),
        tcp(30302, 8081, Some("127.0.0.1")),
        PortMapping { protocol: Protocol::Udp, container_port: 5353, host_port: 30303, host_ip: None },
        PortMapping {
            protocol: Protocol::Sctp,
            container_port: 9999,
            host_port: 30304,
            host_ip: Some("0.0.0.0".parse().unwrap()),
        },
    ];
    let a = Attachment { port_mappings: &ports, ..Attachment::new("pod-ports", ns.path()) };
    net.bridge.add(&a).await.unwrap();
    net.bridge.check(&a).await.unwrap();
    let gw = net.bridge.gateway();

    let s1 = tcp_server(ns.path(), 8080, "any", 2);
    assert_eq!(tcp_get("127.0.0.1:30301".parse().unwrap()).unwrap(), "any saw 10.210.3.1");
    assert_eq!(tcp_get(SocketAddr::new(gw.into(), 30301)).unwrap(), "any saw 10.210.3.1");
    s1.join().unwrap();

    let s2 = tcp_server(ns.path(), 8081, "local-only", 1);
    assert_eq!(tcp_get("127.0.0.1:30302".parse().unwrap()).unwrap(), "local-only saw 10.210.3.1");
    // Bound to 127.0.0.1: the bridge address is not mapped.
    assert!(tcp_get(SocketAddr::new(gw.into(), 30302)).is_err());
    s2.join().unwrap();

    let s3 = udp_server(ns.path(), 5353, "udp-pod", 1);
    assert_eq!(udp_get("127.0.0.1:30303".parse().unwrap()).unwrap(), "udp-pod");
    s3.join().unwrap();

    // SCTP cannot be exercised on a kernel without SCTP sockets, but the mapping exists.
    let table = net.ruleset();
    assert!(table.contains("sctp . 30304 comment \"pod-ports/eth0\""), "{table}");

    // A second pod asking for a taken hostPort fails cleanly and leaves nothing.
    let ns2 = NetnsGuard::new("cnt-3-b");
    let clash = [tcp(30301, 80, None)];
    let b = Attachment { port_mappings: &clash, ..Attachment::new("pod-clash", ns2.path()) };
    let err = net.bridge.add(&b).await.unwrap_err();
    assert!(matches!(err, Error::PortInUse(_)), "{err}");
    assert!(err.to_string().contains("tcp/30301"), "{err}");
    assert_eq!(net.ip_records().len(), 1, "the clashing pod's address was released");
    assert_eq!(veths_of("corral-test3").len(), 1, "the clashing pod's veth was removed");
    assert!(ns2.exec(&["ip", "-o", "link"]).lines().all(|l| !l.contains("eth0")));

    net.bridge.del(&a).await.unwrap();
    assert!(tcp_get("127.0.0.1:30301".parse().unwrap()).is_err());
    assert!(!net.ruleset().contains("comment"), "no element left: {}", net.ruleset());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_adds_then_dels_leave_nothing() {
    let net = Arc::new(TestNet::new(4));
    net.bridge.setup().await.unwrap();
    // Other tests and suites add and remove links on this host meanwhile; compare
    // what is ours: the bridge's ports, links with this network's alias, and the
    // host veth names the ADDs reported.
    let links_before = (host_links(), bridge_ports("cnt4"), veths_of("corral-test4"));
    let table_before = net.ruleset();
    let ipam_before = net.ip_records();

    let namespaces: Vec<NetnsGuard> = (0..50).map(|i| NetnsGuard::new(&format!("cnt-4-{i}"))).collect();
    let paths: Vec<_> = namespaces.iter().map(|n| n.path().to_path_buf()).collect();
    // Every other pod has a hostPort, so the nft path runs concurrently too.
    let port_sets: Vec<Vec<PortMapping>> =
        (0..50u16).map(|i| if i % 2 == 0 { vec![tcp(30400 + i, 80, None)] } else { vec![] }).collect();
    let port_sets = Arc::new(port_sets);

    let adds = (0..50).map(|i| {
        let (net, path, ports) = (Arc::clone(&net), paths[i].clone(), Arc::clone(&port_sets));
        tokio::spawn(async move {
            let id = format!("pod-{i}");
            let a = Attachment { port_mappings: &ports[i], ..Attachment::new(&id, &path) };
            net.bridge.add(&a).await.map(|r| (r.pod_ip().unwrap(), r.interfaces[1].name.clone()))
        })
    });
    let (ips, host_veths): (Vec<IpAddr>, Vec<String>) = futures_join_all(adds).await.into_iter().unzip();
    let distinct: HashSet<_> = ips.iter().collect();
    assert_eq!(distinct.len(), 50, "50 distinct addresses");
    assert_eq!(net.ip_records().len(), 50);
    assert_eq!(veths_of("corral-test4").len(), 50);
    assert_eq!(net.ruleset().matches("comment \"pod-").count(), 25);

    let dels = (0..50).map(|i| {
        let (net, path, ports) = (Arc::clone(&net), paths[i].clone(), Arc::clone(&port_sets));
        tokio::spawn(async move {
            let id = format!("pod-{i}");
            let a = Attachment { port_mappings: &ports[i], ..Attachment::new(&id, &path) };
            net.bridge.del(&a).await
        })
    });
    futures_join_all(dels).await;

    let (all_before, ports_before, veths_before) = links_before;
    assert!(host_veths.iter().all(|v| !all_before.contains(v)), "names were new");
    assert_eq!(bridge_ports("cnt4"), ports_before, "ip link master cnt4: same as before");
    assert_eq!(veths_of("corral-test4"), veths_before, "veths: same as before");
    let all_after = host_links();
    let left: Vec<_> = host_veths.iter().filter(|v| all_after.contains(v)).collect();
    assert!(left.is_empty(), "host veths left: {left:?}");
    assert_eq!(net.ip_records(), ipam_before, "IPAM records: same as before");
    assert_eq!(net.ruleset(), table_before, "nft table: same as before");
    assert!(net.attachment_records().is_empty());
    drop(namespaces);
}

/// Awaits spawned tasks, panicking on any error or on a task stuck for 60 s.
async fn futures_join_all<T, E: std::fmt::Display>(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<Result<T, E>>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for t in tasks.collect::<Vec<_>>() {
        let done = tokio::time::timeout(std::time::Duration::from_secs(60), t).await.expect("operation stuck for 60 s");
        out.push(done.unwrap().unwrap_or_else(|e| panic!("{e}")));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn del_is_idempotent_and_failed_adds_leak_nothing() {
    let net = TestNet::new(5);

    // DEL of a pod never seen, with a netns path that does not exist.
    let nowhere = Path::new("/run/netns/cnt-5-never-existed");
    net.bridge.del(&Attachment::new("pod-unknown", nowhere)).await.unwrap();

    // ADD into a missing netns: a clear error, nothing allocated.
    let err = net.bridge.add(&Attachment::new("pod-x", nowhere)).await.unwrap_err();
    assert!(matches!(err, Error::NetnsMissing { .. }), "{err}");
    assert!(err.to_string().contains("cnt-5-never-existed"), "{err}");
    assert!(net.ip_records().is_empty());

    // ADD, ADD again (refused, first one intact), DEL, DEL again.
    let ns = NetnsGuard::new("cnt-5-a");
    let a = Attachment::new("pod-a", ns.path());
    net.bridge.add(&a).await.unwrap();
    let err = net.bridge.add(&a).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyAttached { .. }), "{err}");
    net.bridge.check(&a).await.unwrap();
    net.bridge.del(&a).await.unwrap();
    net.bridge.del(&a).await.unwrap();
    assert!(net.bridge.check(&a).await.is_err());
    assert!(net.ip_records().is_empty());
    assert!(veths_of("corral-test5").is_empty());

    // The pod is gone before DEL (netns deleted): DEL still frees the address.
    let gone = NetnsGuard::new("cnt-5-gone");
    let gone_path = gone.path().to_path_buf();
    net.bridge.add(&Attachment::new("pod-gone", &gone_path)).await.unwrap();
    assert_eq!(net.ip_records().len(), 1);
    drop(gone);
    net.bridge.del(&Attachment::new("pod-gone", &gone_path)).await.unwrap();
    assert!(net.ip_records().is_empty());
    assert!(veths_of("corral-test5").is_empty());

    // A failure half-way (the pod already has an eth0) rolls back the allocation.
    let busy = NetnsGuard::new("cnt-5-busy");
    busy.exec(&["ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"]);
    let err = net.bridge.add(&Attachment::new("pod-busy", busy.path())).await.unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(net.ip_records().is_empty());
    assert!(veths_of("corral-test5").is_empty());
    assert!(net.attachment_records().is_empty());

    // A netns path that is a plain file (an unmounted pin) is "missing" too.
    let plain = net.data.path().join("not-a-netns");
    std::fs::write(&plain, "").unwrap();
    let err = net.bridge.add(&Attachment::new("pod-p", &plain)).await.unwrap_err();
    assert!(matches!(err, Error::NetnsMissing { .. }), "{err}");

    // The host's own namespace is never wired as a pod.
    let err = net.bridge.add(&Attachment::new("pod-host", Path::new("/proc/self/ns/net"))).await.unwrap_err();
    assert!(err.to_string().contains("host's network namespace"), "{err}");
    assert!(net.ip_records().is_empty());

    // Bad input is refused before anything happens.
    let err = net.bridge.add(&Attachment::new("../etc", ns.path())).await.unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
    let v6 = [tcp(30501, 80, Some("::1"))];
    let err =
        net.bridge.add(&Attachment { port_mappings: &v6, ..Attachment::new("pod-v6", ns.path()) }).await.unwrap_err();
    assert!(err.to_string().contains("IPv6"), "{err}");
    assert!(net.ip_records().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_keeps_live_pods_and_removes_the_rest() {
    let net = TestNet::new(6);
    let nss: Vec<NetnsGuard> = (0..3).map(|i| NetnsGuard::new(&format!("cnt-6-{i}"))).collect();
    let ports = [tcp(30601, 80, None)];
    for (i, ns) in nss.iter().enumerate() {
        let id = format!("pod-{i}");
        let path = ns.path();
        let a = Attachment { port_mappings: &ports[..usize::from(i == 1)], ..Attachment::new(&id, path) };
        net.bridge.add(&a).await.unwrap();
    }
    // pod-2 loses its attachment record (as after a crash): GC must still find its
    // veth (alias), address (IPAM owner) and hostPorts (none here).
    std::fs::remove_file(net.data.path().join("attachments/corral-test6/pod-2:eth0.json")).unwrap();

    net.bridge.gc(&["pod-0".to_string()]).await.unwrap();
    net.bridge.check(&Attachment::new("pod-0", nss[0].path())).await.unwrap();
    assert_eq!(veths_of("corral-test6").len(), 1);
    assert_eq!(net.ip_records().len(), 1);
    assert!(!net.ruleset().contains("30601"));
    assert_eq!(net.attachment_records(), vec!["pod-0:eth0.json".to_string()]);

    net.bridge.gc(&[]).await.unwrap();
    assert!(veths_of("corral-test6").is_empty());
    assert!(net.ip_records().is_empty());
}

#[tokio::test]
async fn status_says_why_it_is_not_ready() {
    let net = TestNet::new(9);
    net.bridge.status().await.unwrap();

    // A data dir that cannot be created (its parent is a file).
    let file = net.data.path().join("file");
    std::fs::write(&file, "").unwrap();
    let broken =
        corral_net::Bridge::new(corral_net::BridgeConfig { data_dir: file.join("sub"), ..net.bridge.config().clone() })
            .unwrap();
    let err = broken.status().await.unwrap_err();
    assert!(matches!(err, Error::NotReady { .. }), "{err}");
    assert!(err.to_string().contains("IPAM dir"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_keeps_every_allocation() {
    let net = TestNet::new(14);
    let ns_a = NetnsGuard::new("cnt-14-a");
    let ns_b = NetnsGuard::new("cnt-14-b");
    let ports = [tcp(30141, 80, None)];
    let a = Attachment { port_mappings: &ports, ..Attachment::new("pod-a", ns_a.path()) };
    let ip_a = net.bridge.add(&a).await.unwrap().pod_ip().unwrap();

    // A new process: a fresh Bridge over the same config and data dir.
    let restarted = corral_net::Bridge::new(net.bridge.config().clone()).unwrap();
    restarted.check(&a).await.unwrap();
    let ip_b = restarted.add(&Attachment::new("pod-b", ns_b.path())).await.unwrap().pod_ip().unwrap();
    assert_ne!(ip_a, ip_b, "the restarted side does not hand out a live pod's address");
    // Its setup is idempotent: the running pod's hostPort survives it.
    restarted.setup().await.unwrap();
    assert!(net.ruleset().contains("tcp . 30141 comment \"pod-a/eth0\""), "{}", net.ruleset());

    restarted.del(&a).await.unwrap();
    restarted.del(&Attachment::new("pod-b", ns_b.path())).await.unwrap();
    assert!(net.ip_records().is_empty());
    assert!(veths_of("corral-test14").is_empty());
    assert!(!net.ruleset().contains("30141"));
}
