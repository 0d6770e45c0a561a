//! Facts about the node that change how a container spec is built, read once at daemon
//! start (containerd also detects them once): cgroup version and controllers, the daemon's
//! own capabilities and OOM score, the host name.

use std::io;
use std::path::Path;

use oci_spec::runtime::Capability;

use super::caps;

/// What the node offers. [`HostFacts::detect`] reads it from `/proc` and `/sys`; tests build
/// it by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// `/sys/fs/cgroup` is a unified cgroup v2 hierarchy. Unprivileged containers then get
    /// their own cgroup namespace (containerd does the same; on v1 and hybrid hosts no one
    /// does, for compatibility with tools that read `/proc/self/cgroup`).
    pub cgroup_v2: bool,
    /// Swap accounting exists (`memory.memsw.*` on v1, `memory.swap.max` on v2). When it does,
    /// a memory limit without a swap limit also caps swap at the same value, so a limited
    /// container cannot swap (containerd's rule).
    pub swap_controller: bool,
    /// The hugetlb controller exists. Without it hugepage limits are dropped with a warning
    /// (containerd's default `tolerate_missing_hugetlb_controller = true`).
    pub hugetlb_controller: bool,
    /// The daemon's effective capabilities: what `add: [ALL]` and a privileged container get.
    /// A runtime cannot give a container capabilities it does not hold itself.
    pub capabilities: Vec<Capability>,
    /// The lowest `oom_score_adj` a container may get: the daemon's own score when it lacks
    /// `CAP_SYS_RESOURCE` (the kernel refuses to go lower), `None` when any value works.
    pub oom_score_adj_floor: Option<i32>,
    /// The node's host name: `HOSTNAME` of containers whose pod sent no hostname.
    pub hostname: String,
}

impl HostFacts {
    /// Reads the facts of the node the daemon runs on.
    pub fn detect() -> io::Result<HostFacts> {
        let status = read("/proc/self/status")?;
        let capabilities = effective_caps(&status)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "/proc/self/status: no CapEff line"))?;
        let oom_score_adj_floor = if capabilities.contains(&Capability::SysResource) {
            None
        } else {
            let text = read("/proc/self/oom_score_adj")?;
            let score = text.trim().parse::<i32>().map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("/proc/self/oom_score_adj {text:?}: {e}"))
            })?;
            Some(score)
        };
        let unified = Path::new("/sys/fs/cgroup/cgroup.controllers");
        let cgroup_v2 = unified.exists();
        let (swap_controller, hugetlb_controller) = if cgroup_v2 {
            let controllers = read(unified)?;
            let own = unified_cgroup(&read("/proc/self/cgroup")?).unwrap_or_default();
            let swap = Path::new("/sys/fs/cgroup").join(own.trim_start_matches('/')).join("memory.swap.max");
            (swap.exists(), controllers.split_whitespace().any(|c| c == "hugetlb"))
        } else {
            (
                Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists(),
                Path::new("/sys/fs/cgroup/hugetlb").is_dir(),
            )
        };
        let hostname = read("/proc/sys/kernel/hostname")?.trim().to_string();
        Ok(HostFacts { cgroup_v2, swap_controller, hugetlb_controller, capabilities, oom_score_adj_floor, hostname })
    }
}

fn read(path: impl AsRef<Path>) -> io::Result<String> {
    let path = path.as_ref();
    std::fs::read_to_string(path).map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))
}

/// The `CapEff` mask of a `/proc/<pid>/status` text.
fn effective_caps(status: &str) -> Option<Vec<Capability>> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok().map(caps::from_mask)
}

/// The cgroup v2 path (`0::/a/b`) of a `/proc/<pid>/cgroup` text.
fn unified_cgroup(proc_cgroup: &str) -> Option<String> {
    proc_cgroup.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status_and_cgroup() {
        let status = "Name:\tcorral\nCapInh:\t0000000000000000\nCapEff:\t000001fffeffffff\nCapBnd:\t000001ffffffffff\n";
        let caps = effective_caps(status).unwrap();
        assert_eq!(caps.len(), 40);
        assert!(!caps.contains(&Capability::SysResource));
        assert_eq!(effective_caps("Name: x\n"), None);
        assert_eq!(
            unified_cgroup("12:pids:/x\n0::/system.slice/corral.service\n").as_deref(),
            Some("/system.slice/corral.service")
        );
        assert_eq!(unified_cgroup("3:cpu:/\n"), None);
    }

    #[test]
    fn detect_agrees_with_this_host() {
        let facts = HostFacts::detect().unwrap();
        // Cross-check each fact against the file it comes from.
        assert_eq!(facts.cgroup_v2, Path::new("/sys/fs/cgroup/cgroup.controllers").exists());
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert_eq!(Some(facts.capabilities.clone()), effective_caps(&status));
        assert!(facts.capabilities.contains(&Capability::Chown), "tests run as root");
        let own_score: i32 = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap().trim().parse().unwrap();
        match facts.oom_score_adj_floor {
            Some(floor) => assert_eq!(floor, own_score),
            None => assert!(facts.capabilities.contains(&Capability::SysResource)),
        }
        assert_eq!(facts.hostname, std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim());
        if !facts.cgroup_v2 {
            assert_eq!(facts.swap_controller, Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists());
            assert_eq!(facts.hugetlb_controller, Path::new("/sys/fs/cgroup/hugetlb").is_dir());
        }
    }
}
