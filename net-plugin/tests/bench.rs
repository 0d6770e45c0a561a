//! ADD/DEL timings: the builtin bridge in-process vs Debian's bridge + host-local +
//! portmap chain through the CNI runner. A benchmark, not a test: it asserts only
//! that the operations succeed. Run with
//! `cargo test -p corral-net --test bench -- --ignored --nocapture`.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use corral_net::cni::{CniConfig, CniNetwork};
use corral_net::{Attachment, PodNetwork, PortMapping, Protocol};
use serde_json::json;

const ROUNDS: usize = 20;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// ADD then DEL `ROUNDS` times on fresh namespaces; returns (median ADD, median DEL).
async fn measure(net: &dyn PodNetwork, tag: &str, ports: &[PortMapping]) -> (Duration, Duration) {
    let (mut adds, mut dels) = (Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        let ns = NetnsGuard::new(&format!("cnt-11-{tag}-{i}"));
        let id = format!("bench-{tag}-{i}");
        let a = Attachment { port_mappings: ports, ..Attachment::new(&id, ns.path()) };
        let t = Instant::now();
        net.add(&a).await.unwrap();
        adds.push(t.elapsed());
        let t = Instant::now();
        net.del(&a).await.unwrap();
        dels.push(t.elapsed());
    }
    (median(adds), median(dels))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run explicitly"]
async fn add_del_medians() {
    // CORRAL_NET_LOG=corral_net=debug shows the time of every step.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("CORRAL_NET_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let port = [PortMapping { protocol: Protocol::Tcp, container_port: 80, host_port: 30911, host_ip: None }];

    let net = TestNet::new(11);
    net.bridge.setup().await.unwrap();
    let (a, d) = measure(&net.bridge, "b", &[]).await;
    println!("builtin bridge, no hostPort:   ADD {a:?}  DEL {d:?}  (median of {ROUNDS})");
    let (a, d) = measure(&net.bridge, "bp", &port).await;
    println!("builtin bridge, one hostPort:  ADD {a:?}  DEL {d:?}");
    drop(net);

    if !std::path::Path::new("/usr/lib/cni/bridge").exists() {
        println!("Debian CNI plugins not installed; skipping the comparison");
        return;
    }
    let _bridge = LinkGuard("cnt12".into());
    let tmp = tempfile::tempdir().unwrap();
    let conf = json!({
        "cniVersion": "1.0.0", "name": "cnt-debian12",
        "plugins": [
            { "type": "bridge", "bridge": "cnt12", "isGateway": true, "ipMasq": true, "hairpinMode": true,
              "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.210.12.0/24" }]],
                        "routes": [{ "dst": "0.0.0.0/0" }], "dataDir": tmp.path().join("hl") } },
            { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true }
        ]
    });
    std::fs::create_dir_all(tmp.path().join("net.d")).unwrap();
    std::fs::write(tmp.path().join("net.d/10.conflist"), conf.to_string()).unwrap();
    let runner = CniNetwork::new(CniConfig {
        conf_dir: tmp.path().join("net.d"),
        bin_dirs: vec![PathBuf::from("/usr/lib/cni")],
        cache_dir: tmp.path().join("cache"),
        ..Default::default()
    });
    let (a, d) = measure(&runner, "d", &[]).await;
    println!("Debian bridge+host-local+portmap, no hostPort:  ADD {a:?}  DEL {d:?}");
    let (a, d) = measure(&runner, "dp", &port).await;
    println!("Debian bridge+host-local+portmap, one hostPort: ADD {a:?}  DEL {d:?}");
}
