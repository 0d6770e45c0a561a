//! host-local IPAM: one file per allocated address, as the CNI `host-local` plugin keeps them.
//!
//! The directory holds a file named after each allocated IP containing
//! `"<pod id>\r\n<ifname>"`, a `last_reserved_ip.0` hint so allocation goes round-robin
//! (a freed address is not handed out again at once), and a `lock` file. Every
//! operation runs under an exclusive `flock` of `lock`, so concurrent ADDs, in this
//! process or in `corral-bridge` processes, never get the same address.
//!
//! A record appears atomically with its content: it is written to an unnamed
//! `O_TMPFILE` and then hard-linked to its name with `linkat`, which fails with
//! `EEXIST` if the address is taken. Records are not fsync'ed: they live in the page
//! cache across a daemon restart, and after a power loss every pod is gone anyway, so
//! GC at start frees whatever a torn record (empty, unparsable) still holds.
//!
//! All functions block (file locks and I/O); async callers run them on
//! `spawn_blocking`.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use nix::fcntl::{AT_FDCWD, AtFlags, Flock, FlockArg};
use nix::unistd::linkat;

use crate::{Error, Result};

const LOCK_FILE: &str = "lock";
const LAST_RESERVED: &str = "last_reserved_ip.0";

/// Who holds an address: the pod and the interface inside it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    /// The pod (CNI container id).
    pub pod_id: String,
    /// The interface inside the pod.
    pub ifname: String,
}

impl Owner {
    pub fn new(pod_id: &str, ifname: &str) -> Self {
        Owner { pod_id: pod_id.to_owned(), ifname: ifname.to_owned() }
    }

    fn encode(&self) -> String {
        format!("{}\r\n{}", self.pod_id, self.ifname)
    }

    /// Parses a record; `None` for a torn or foreign one.
    fn decode(s: &str) -> Option<Self> {
        let (pod, ifname) = s.split_once("\r\n")?;
        let (pod, ifname) = (pod.trim(), ifname.trim());
        (!pod.is_empty()).then(|| Owner::new(pod, ifname))
    }
}

/// The allocator of one network's range.
#[derive(Debug, Clone)]
pub struct HostLocal {
    dir: PathBuf,
    /// First and last allocatable address (gateway, network and broadcast excluded).
    first: u32,
    last: u32,
}

impl HostLocal {
    /// Allocates from `subnet`, skipping the network address, `gateway` (the first
    /// host) and the broadcast address.
    pub fn new(dir: PathBuf, subnet: Ipv4Net, gateway: Ipv4Addr) -> Self {
        let first = u32::from(gateway) + 1;
        let last = u32::from(subnet.broadcast()) - 1;
        HostLocal { dir, first, last }
    }

    /// The directory holding the records.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn range(&self) -> String {
        format!("{}-{}", Ipv4Addr::from(self.first), Ipv4Addr::from(self.last))
    }

    /// Takes the directory lock, creating the directory on first use.
    fn lock(&self) -> Result<Flock<File>> {
        fs::create_dir_all(&self.dir).map_err(|e| Error::io(format!("create IPAM dir {}", self.dir.display()), e))?;
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, errno)| Error::io(format!("flock {}", path.display()), errno.into()))
    }

    /// Allocates the next free address for `owner`, round-robin after the last one
    /// handed out.
    pub fn allocate(&self, owner: &Owner) -> Result<Ipv4Addr> {
        let _lock = self.lock()?;
        let size = self.last - self.first + 1;
        let start = self
            .last_reserved()
            .filter(|ip| (self.first..=self.last).contains(ip))
            .map_or(self.first, |ip| if ip == self.last { self.first } else { ip + 1 });
        let content = owner.encode();
        for i in 0..size {
            let ip = Ipv4Addr::from(self.first + (start - self.first + i) % size);
            if self.create_record(ip, &content)? {
                let hint = self.dir.join(LAST_RESERVED);
                // Only a hint: losing it restarts the round-robin, nothing else.
                if let Err(e) = fs::write(&hint, ip.to_string()) {
                    tracing::warn!(path = %hint.display(), error = %e, "cannot write IPAM hint");
                }
                tracing::debug!(%ip, pod = owner.pod_id, "allocated");
                return Ok(ip);
            }
        }
        Err(Error::Exhausted { range: self.range(), allocated: self.records_locked()?.len(), dir: self.dir.clone() })
    }

    fn last_reserved(&self) -> Option<u32> {
        let s = fs::read_to_string(self.dir.join(LAST_RESERVED)).ok()?;
        s.trim().parse::<Ipv4Addr>().ok().map(u32::from)
    }

    /// Creates the record of `ip` atomically; `false` if the address is taken.
    fn create_record(&self, ip: Ipv4Addr, content: &str) -> Result<bool> {
        let path = self.dir.join(ip.to_string());
        let step = |what: &str| format!("{what} IPAM record {}", path.display());
        let mut tmp = OpenOptions::new()
            .write(true)
            .mode(0o644)
            .custom_flags(libc::O_TMPFILE)
            .open(&self.dir)
            .map_err(|e| Error::io(step("create"), e))?;
        tmp.write_all(content.as_bytes()).map_err(|e| Error::io(step("write"), e))?;
        let fd_path = format!("/proc/self/fd/{}", tmp.as_raw_fd());
        match linkat(AT_FDCWD, fd_path.as_str(), AT_FDCWD, &path, AtFlags::AT_SYMLINK_FOLLOW) {
            Ok(()) => Ok(true),
            Err(nix::errno::Errno::EEXIST) => Ok(false),
            Err(e) => Err(Error::io(step("link"), e.into())),
        }
    }

    /// Frees `ip` if `owner` holds it. Returns whether a record was removed.
    pub fn release(&self, ip: Ipv4Addr, owner: &Owner) -> Result<bool> {
        let _lock = self.lock()?;
        let path = self.dir.join(ip.to_string());
        match fs::read_to_string(&path) {
            Ok(s) if Owner::decode(&s).as_ref() == Some(owner) => {
                remove_record(&path)?;
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
        }
    }

    /// Frees every address `owner` holds (DEL without knowing the address).
    pub fn release_owner(&self, owner: &Owner) -> Result<Vec<Ipv4Addr>> {
        self.release_where(|o| o == Some(owner))
    }

    /// Frees every address whose owner fails `keep` (GC). Torn records have no owner.
    pub fn release_unless(&self, keep: impl Fn(&Owner) -> bool) -> Result<Vec<Ipv4Addr>> {
        self.release_where(|o| !o.is_some_and(&keep))
    }

    fn release_where(&self, release: impl Fn(Option<&Owner>) -> bool) -> Result<Vec<Ipv4Addr>> {
        if !self.dir.exists() {
            return Ok(Vec::new());
        }
        let _lock = self.lock()?;
        let mut freed = Vec::new();
        for (ip, owner) in self.records_locked()? {
            if release(owner.as_ref()) {
                remove_record(&self.dir.join(ip.to_string()))?;
                freed.push(ip);
            }
        }
        Ok(freed)
    }

    /// Every record: address and owner (`None` when torn).
    pub fn records(&self) -> Result<Vec<(Ipv4Addr, Option<Owner>)>> {
        if !self.dir.exists() {
            return Ok(Vec::new());
        }
        let _lock = self.lock()?;
        self.records_locked()
    }

    fn records_locked(&self) -> Result<Vec<(Ipv4Addr, Option<Owner>)>> {
        let read_dir =
            fs::read_dir(&self.dir).map_err(|e| Error::io(format!("read IPAM dir {}", self.dir.display()), e))?;
        let mut out = Vec::new();
        for entry in read_dir {
            let entry = entry.map_err(|e| Error::io(format!("read IPAM dir {}", self.dir.display()), e))?;
            let Some(ip) = entry.file_name().to_str().and_then(|n| n.parse::<Ipv4Addr>().ok()) else {
                continue; // lock, last_reserved_ip.0
            };
            let owner = match fs::read_to_string(entry.path()) {
                Ok(s) => Owner::decode(&s),
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("read {}", entry.path().display()), e)),
            };
            out.push((ip, owner));
        }
        out.sort_by_key(|(ip, _)| *ip);
        Ok(out)
    }
}

fn remove_record(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("remove IPAM record {}", path.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    fn ipam(dir: &Path, cidr: &str) -> HostLocal {
        let net: Ipv4Net = cidr.parse().unwrap();
        let gw = Ipv4Addr::from(u32::from(net.network()) + 1);
        HostLocal::new(dir.join("net"), net, gw)
    }

    #[test]
    fn records_have_host_local_format_and_skip_gateway() {
        let tmp = tempfile::tempdir().unwrap();
        let ipam = ipam(tmp.path(), "10.210.200.0/24");
        let ip = ipam.allocate(&Owner::new("pod1", "eth0")).unwrap();
        assert_eq!(ip, Ipv4Addr::new(10, 210, 200, 2));
        let content = fs::read_to_string(ipam.dir().join("10.210.200.2")).unwrap();
        assert_eq!(content, "pod1\r\neth0");
    }

    #[test]
    fn round_robin_and_exhaustion_and_release() {
        let tmp = tempfile::tempdir().unwrap();
        // /29: .0 network, .1 gateway, .2-.6 pods, .7 broadcast.
        let ipam = ipam(tmp.path(), "10.210.200.0/29");
        let ips: Vec<_> = (0..5).map(|i| ipam.allocate(&Owner::new(&format!("p{i}"), "eth0")).unwrap()).collect();
        assert_eq!(ips.first(), Some(&Ipv4Addr::new(10, 210, 200, 2)));
        assert_eq!(ips.last(), Some(&Ipv4Addr::new(10, 210, 200, 6)));
        let err = ipam.allocate(&Owner::new("p9", "eth0")).unwrap_err();
        assert!(matches!(err, Error::Exhausted { allocated: 5, .. }), "{err}");
        assert!(err.to_string().contains("10.210.200.2-10.210.200.6"));

        // Releasing needs the right owner.
        assert!(!ipam.release(ips[1], &Owner::new("p0", "eth0")).unwrap());
        assert!(ipam.release(ips[1], &Owner::new("p1", "eth0")).unwrap());
        assert!(!ipam.release(ips[1], &Owner::new("p1", "eth0")).unwrap());
        assert_eq!(ipam.allocate(&Owner::new("p9", "eth0")).unwrap(), ips[1]);

        // A new allocator over the same directory (a restart) sees everything.
        let again = ipam.clone();
        assert_eq!(again.records().unwrap().len(), 5);
        assert_eq!(again.release_owner(&Owner::new("p3", "eth0")).unwrap(), vec![ips[3]]);
        let freed = again.release_unless(|o| o.pod_id == "p0" || o.pod_id == "p9").unwrap();
        assert_eq!(freed, vec![ips[2], ips[4]]);
        assert_eq!(again.records().unwrap().len(), 2);
    }

    #[test]
    fn torn_records_are_collected() {
        let tmp = tempfile::tempdir().unwrap();
        let ipam = ipam(tmp.path(), "10.210.200.0/24");
        ipam.allocate(&Owner::new("p0", "eth0")).unwrap();
        fs::write(ipam.dir().join("10.210.200.9"), "").unwrap();
        let recs = ipam.records().unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].1, None);
        assert_eq!(ipam.release_unless(|_| true).unwrap(), vec![Ipv4Addr::new(10, 210, 200, 9)]);
    }

    #[test]
    fn concurrent_allocations_never_collide() {
        let tmp = tempfile::tempdir().unwrap();
        let ipam = Arc::new(ipam(tmp.path(), "10.210.200.0/24"));
        let handles: Vec<_> = (0..16)
            .map(|t| {
                let ipam = Arc::clone(&ipam);
                std::thread::spawn(move || {
                    (0..8)
                        .map(|i| ipam.allocate(&Owner::new(&format!("t{t}-{i}"), "eth0")).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let all: Vec<Ipv4Addr> = handles.into_iter().flat_map(|h| h.join().unwrap()).collect();
        let distinct: HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), 128);
        assert_eq!(ipam.records().unwrap().len(), 128);
    }
}
