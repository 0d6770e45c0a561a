//! Shared helpers of the real-kernel tests: namespaces, links and nft tables that are
//! always removed (Drop guards), and TCP/UDP peers running inside a namespace.
//!
//! Isolation from other test suites on the same host: bridges are `cnt<N>`, netns
//! `cnt-*`, subnets `10.210.<N>.0/24`, nft tables `corral_test_<N>`, host ports
//! 30000-30999, data in tempdirs.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use corral_net::{Bridge, BridgeConfig};

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command, ignoring failure (cleanup).
pub fn sh_quiet(args: &[&str]) {
    let _ = Command::new(args[0]).args(&args[1..]).output();
}

/// A network namespace made with `ip netns add`, deleted on drop.
pub struct NetnsGuard {
    pub name: String,
    path: PathBuf,
}

impl NetnsGuard {
    pub fn new(name: &str) -> Self {
        assert!(name.starts_with("cnt-"), "test netns must start with cnt-");
        sh_quiet(&["ip", "netns", "del", name]); // a leftover of a killed run
        sh(&["ip", "netns", "add", name]);
        NetnsGuard { name: name.to_owned(), path: PathBuf::from(format!("/run/netns/{name}")) }
    }

    /// `/run/netns/<name>`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `ip netns exec <ns> args...`.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        sh_quiet(&["ip", "netns", "del", &self.name]);
    }
}

/// A host link deleted on drop (bridges; veths of fake outside hosts).
pub struct LinkGuard(pub String);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        sh_quiet(&["ip", "link", "del", &self.0]);
    }
}

/// An nft table deleted on drop.
pub struct NftTableGuard(pub String);

impl Drop for NftTableGuard {
    fn drop(&mut self) {
        sh_quiet(&["nft", "delete", "table", "ip", &self.0]);
    }
}

/// A builtin network for test number `n`: bridge `cnt<n>`, subnet `10.210.<n>.0/24`,
/// table `corral_test_<n>`, data in a tempdir. Dropping it removes bridge and table.
pub struct TestNet {
    pub bridge: Bridge,
    pub data: tempfile::TempDir,
    _link: LinkGuard,
    _table: NftTableGuard,
}

impl TestNet {
    pub fn new(n: u8) -> Self {
        let data = tempfile::tempdir().unwrap();
        let cfg = BridgeConfig {
            name: format!("corral-test{n}"),
            bridge: format!("cnt{n}"),
            subnet: format!("10.210.{n}.0/24"),
            mtu: 1400,
            data_dir: data.path().to_owned(),
            nft_table: format!("corral_test_{n}"),
            ip_masq: true,
            hairpin: true,
        };
        let _link = LinkGuard(cfg.bridge.clone());
        let _table = NftTableGuard(cfg.nft_table.clone());
        sh_quiet(&["ip", "link", "del", &cfg.bridge]); // a leftover of a killed run
        sh_quiet(&["nft", "delete", "table", "ip", &cfg.nft_table]);
        TestNet { bridge: Bridge::new(cfg).unwrap(), data, _link, _table }
    }

    pub fn ipam_dir(&self) -> PathBuf {
        self.data.path().join("ipam").join(&self.bridge.config().name)
    }

    /// IP records in the IPAM dir (file names that parse as addresses).
    pub fn ip_records(&self) -> Vec<String> {
        list_dir(&self.ipam_dir()).into_iter().filter(|n| n.parse::<std::net::Ipv4Addr>().is_ok()).collect()
    }

    pub fn attachment_records(&self) -> Vec<String> {
        list_dir(&self.data.path().join("attachments").join(&self.bridge.config().name))
    }

    /// `nft list table` of this network.
    pub fn ruleset(&self) -> String {
        sh(&["nft", "list", "table", "ip", &self.bridge.config().nft_table])
    }
}

pub fn list_dir(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Names of the host's links.
pub fn host_links() -> Vec<String> {
    let mut v: Vec<String> = sh(&["ip", "-o", "link", "show"])
        .lines()
        .filter_map(|l| l.split(": ").nth(1).map(|n| n.split('@').next().unwrap_or(n).to_owned()))
        .collect();
    v.sort();
    v
}

/// Ports of bridge `bridge`.
pub fn bridge_ports(bridge: &str) -> Vec<String> {
    sh(&["ip", "-o", "link", "show", "master", bridge]).lines().map(|l| l.to_owned()).collect()
}

/// Host links whose alias names test network `net`.
pub fn veths_of(net: &str) -> Vec<String> {
    let prefix = format!("alias corral:{net}:");
    sh(&["ip", "-o", "link", "show"]).lines().filter(|l| l.contains(&prefix)).map(|l| l.to_owned()).collect()
}

/// Runs `f` on a thread inside namespace `netns` and returns its result.
pub fn in_netns<T: Send + 'static>(netns: &Path, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    let file = std::fs::File::open(netns).unwrap();
    std::thread::spawn(move || {
        nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
}

/// A TCP server inside `netns` on `port` (all addresses). For each of `conns`
/// connections it answers with `<tag> saw <peer ip>` and reports the peer. Gives up
/// after 15 s.
pub fn tcp_server(
    netns: &Path,
    port: u16,
    tag: &'static str,
    conns: usize,
) -> std::thread::JoinHandle<Vec<SocketAddr>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = in_netns(netns, move || {
        let listener = TcpListener::bind(("0.0.0.0", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        tx.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut peers = Vec::new();
        while peers.len() < conns && Instant::now() < deadline {
            match listener.accept() {
                Ok((mut s, peer)) => {
                    s.set_nonblocking(false).unwrap();
                    let _ = s.write_all(format!("{tag} saw {}\n", peer.ip()).as_bytes());
                    peers.push(peer);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("accept: {e}"),
            }
        }
        peers
    });
    rx.recv().unwrap();
    handle
}

/// A UDP echo inside `netns` on `port`: answers `conns` datagrams with `<tag>`.
pub fn udp_server(
    netns: &Path,
    port: u16,
    tag: &'static str,
    conns: usize,
) -> std::thread::JoinHandle<Vec<SocketAddr>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = in_netns(netns, move || {
        let sock = UdpSocket::bind(("0.0.0.0", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        tx.send(()).unwrap();
        let mut peers = Vec::new();
        let mut buf = [0u8; 64];
        while peers.len() < conns {
            match sock.recv_from(&mut buf) {
                Ok((_, peer)) => {
                    sock.send_to(tag.as_bytes(), peer).unwrap();
                    peers.push(peer);
                }
                Err(_) => break,
            }
        }
        peers
    });
    rx.recv().unwrap();
    handle
}

/// Connects to `addr` from the calling thread's namespace and returns the greeting.
pub fn tcp_get(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.trim().to_owned())
}

/// Sends one datagram to `addr` and returns the answer.
pub fn udp_get(addr: SocketAddr) -> std::io::Result<String> {
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(3)))?;
    sock.send_to(b"ping", addr)?;
    let mut buf = [0u8; 64];
    let (n, _) = sock.recv_from(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}
