//! Stats RPCs: ContainerStats, ListContainerStats, PodSandboxStats, ListPodSandboxStats.
//!
//! kubelet uses the CRI stats path (for any runtime but CRI-O), so these numbers drive its
//! summary API, eviction and autoscaling: they come from the cgroups, the writable layer on
//! disk and the pod's network interfaces, measured at call time.

use std::collections::HashMap;
use std::sync::Mutex;

use corral_cri::v1;

use super::filters::{id_matches, labels_match};
use super::{Daemon, now_nanos};
use crate::error::{CriError, CriResult};
use crate::images::fs_usage;
use crate::store::records::{ContainerRecord, ContainerState, SandboxRecord, SandboxState};

/// The previous CPU sample of each container or pod, to turn cumulative CPU time into a
/// rate (`usage_nano_cores`), as cAdvisor does.
#[derive(Default)]
pub struct CpuSamples {
    last: Mutex<HashMap<String, (i64, u64)>>,
}

impl CpuSamples {
    /// Records `(timestamp ns, cumulative ns)` for `key` and returns the rate since the last
    /// sample in nanocores, if there was one.
    fn rate(&self, key: &str, timestamp: i64, usage: u64) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let previous = last.insert(key.to_string(), (timestamp, usage));
        let (t0, u0) = previous?;
        let dt = u64::try_from(timestamp - t0).ok().filter(|dt| *dt > 0)?;
        Some(usage.saturating_sub(u0).saturating_mul(1_000_000_000) / dt)
    }

    fn forget(&self, keep: impl Fn(&str) -> bool) {
        self.last.lock().unwrap_or_else(|p| p.into_inner()).retain(|k, _| keep(k));
    }
}

impl Daemon {
    pub(super) fn container_stats(&self, req: v1::ContainerStatsRequest) -> CriResult<v1::ContainerStatsResponse> {
        let id = self.resolve_container(&req.container_id)?;
        let record = self.containers.get(&id).ok_or_else(|| CriError::NotFound(format!("container {id} not found")))?;
        Ok(v1::ContainerStatsResponse { stats: Some(self.stats_of(&record)) })
    }

    pub(super) fn list_container_stats(
        &self,
        req: v1::ListContainerStatsRequest,
    ) -> CriResult<v1::ListContainerStatsResponse> {
        let filter = req.filter.unwrap_or_default();
        let containers = self.containers.list();
        self.cpu.forget(|k| k.starts_with("pod/") || containers.iter().any(|c| c.id == k));
        let stats = containers
            .iter()
            .filter(|c| c.state == ContainerState::Running)
            .filter(|c| id_matches(&filter.id, &c.id))
            .filter(|c| id_matches(&filter.pod_sandbox_id, &c.sandbox_id))
            .filter(|c| labels_match(&filter.label_selector, &c.config.labels))
            .map(|c| self.stats_of(c))
            .collect();
        Ok(v1::ListContainerStatsResponse { stats })
    }

    pub(super) fn pod_sandbox_stats(&self, req: v1::PodSandboxStatsRequest) -> CriResult<v1::PodSandboxStatsResponse> {
        let id = self.resolve_sandbox(&req.pod_sandbox_id)?;
        let record =
            self.sandboxes.get(&id).ok_or_else(|| CriError::NotFound(format!("pod sandbox {id} not found")))?;
        Ok(v1::PodSandboxStatsResponse { stats: Some(self.pod_stats_of(&record)) })
    }

    pub(super) fn list_pod_sandbox_stats(
        &self,
        req: v1::ListPodSandboxStatsRequest,
    ) -> CriResult<v1::ListPodSandboxStatsResponse> {
        let filter = req.filter.unwrap_or_default();
        let stats = self
            .sandboxes
            .list()
            .iter()
            .filter(|s| s.state == SandboxState::Ready)
            .filter(|s| id_matches(&filter.id, &s.id))
            .filter(|s| labels_match(&filter.label_selector, &s.config.labels))
            .map(|s| self.pod_stats_of(s))
            .collect();
        Ok(v1::ListPodSandboxStatsResponse { stats })
    }

    /// One container's stats; a container that is not running reports only its disk use.
    fn stats_of(&self, c: &ContainerRecord) -> v1::ContainerStats {
        let timestamp = now_nanos();
        let mut stats = v1::ContainerStats {
            attributes: Some(v1::ContainerAttributes {
                id: c.id.clone(),
                metadata: c.config.metadata.clone(),
                labels: c.config.labels.clone(),
                annotations: c.config.annotations.clone(),
            }),
            writable_layer: Some(self.writable_layer(c, timestamp)),
            ..Default::default()
        };
        if c.state == ContainerState::Running {
            match self.runtime.stats(&c.id) {
                Ok(s) => {
                    stats.cpu = Some(self.cpu_usage(&c.id, timestamp, s.cpu_usage_ns));
                    stats.memory = Some(memory_usage(timestamp, &s));
                }
                Err(e) => tracing::debug!(container = %c.id, "stats: {e}"),
            }
        }
        stats
    }

    fn pod_stats_of(&self, s: &SandboxRecord) -> v1::PodSandboxStats {
        let timestamp = now_nanos();
        let containers: Vec<v1::ContainerStats> = self
            .containers
            .list()
            .iter()
            .filter(|c| c.sandbox_id == s.id && c.state == ContainerState::Running)
            .map(|c| self.stats_of(c))
            .collect();
        let cgroup = corral_runtime::cgroups::Cgroup::open(&s.cgroup_parent).and_then(|g| g.stats()).ok();
        let processes = cgroup.as_ref().map(|g| g.pids).unwrap_or(0);
        let linux = v1::LinuxPodSandboxStats {
            cpu: cgroup.as_ref().map(|g| self.cpu_usage(&format!("pod/{}", s.id), timestamp, g.cpu_usage_ns)),
            memory: cgroup.as_ref().map(|g| memory_usage(timestamp, g)),
            network: self.network_usage(s, timestamp),
            process: Some(v1::ProcessUsage { timestamp, process_count: Some(v1::UInt64Value { value: processes }) }),
            containers,
            io: None,
        };
        v1::PodSandboxStats {
            attributes: Some(v1::PodSandboxAttributes {
                id: s.id.clone(),
                metadata: s.config.metadata.clone(),
                labels: s.config.labels.clone(),
                annotations: s.config.annotations.clone(),
            }),
            linux: Some(linux),
            windows: None,
        }
    }

    fn cpu_usage(&self, key: &str, timestamp: i64, usage_ns: u64) -> v1::CpuUsage {
        v1::CpuUsage {
            timestamp,
            usage_core_nano_seconds: Some(v1::UInt64Value { value: usage_ns }),
            usage_nano_cores: self.cpu.rate(key, timestamp, usage_ns).map(|value| v1::UInt64Value { value }),
            psi: None,
        }
    }

    /// The container's writable layer (the overlay's upper dir).
    pub(super) fn upper_dir(&self, c: &ContainerRecord) -> std::path::PathBuf {
        self.config.root.join("containers-rw").join(&c.id).join("upper")
    }

    fn writable_layer(&self, c: &ContainerRecord, timestamp: i64) -> v1::FilesystemUsage {
        let upper = self.upper_dir(c);
        let usage = fs_usage::measure(&upper).unwrap_or_default();
        v1::FilesystemUsage {
            timestamp,
            fs_id: Some(v1::FilesystemIdentifier { mountpoint: upper.display().to_string() }),
            used_bytes: Some(v1::UInt64Value { value: usage.bytes }),
            inodes_used: Some(v1::UInt64Value { value: usage.inodes }),
        }
    }

    /// Counters of the pod's interfaces, read inside its pinned network namespace, so they
    /// are there even when none of its containers runs (none for host-network pods: kubelet
    /// reports the node's).
    fn network_usage(&self, s: &SandboxRecord, timestamp: i64) -> Option<v1::NetworkUsage> {
        let text =
            read_net_dev_in(s.netns.as_ref()?).map_err(|e| tracing::debug!(pod = %s.id, "network stats: {e}")).ok()?;
        let value = |v: u64| Some(v1::UInt64Value { value: v });
        let mut interfaces: Vec<v1::NetworkInterfaceUsage> = parse_net_dev(&text)
            .into_iter()
            .filter(|i| i.name != "lo")
            .map(|i| v1::NetworkInterfaceUsage {
                name: i.name,
                rx_bytes: value(i.rx_bytes),
                rx_errors: value(i.rx_errors),
                tx_bytes: value(i.tx_bytes),
                tx_errors: value(i.tx_errors),
            })
            .collect();
        let default_at = interfaces.iter().position(|i| i.name == "eth0")?;
        let default_interface = interfaces.remove(default_at);
        Some(v1::NetworkUsage { timestamp, default_interface: Some(default_interface), interfaces })
    }
}

/// `/proc/net/dev` of a network namespace: read on a throw-away thread that joins it
/// (`/proc/thread-self/net` follows the thread's namespace), so no daemon thread moves.
pub(super) fn read_net_dev_in(netns: &std::path::Path) -> std::io::Result<String> {
    let netns = netns.to_path_buf();
    std::thread::Builder::new()
        .name("corral-netstats".into())
        .spawn(move || {
            let ns = std::fs::File::open(&netns)?;
            nix::sched::setns(std::os::fd::AsFd::as_fd(&ns), nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            std::fs::read_to_string("/proc/thread-self/net/dev")
        })?
        .join()
        .map_err(|_| std::io::Error::other("network stats thread panicked"))?
}

fn memory_usage(timestamp: i64, s: &corral_runtime::Stats) -> v1::MemoryUsage {
    let value = |v: u64| Some(v1::UInt64Value { value: v });
    v1::MemoryUsage {
        timestamp,
        working_set_bytes: value(s.memory_working_set_bytes),
        available_bytes: s
            .memory_limit_bytes
            .map(|limit| v1::UInt64Value { value: limit.saturating_sub(s.memory_working_set_bytes) }),
        usage_bytes: value(s.memory_usage_bytes),
        rss_bytes: value(s.memory_rss_bytes),
        page_faults: value(s.page_faults),
        major_page_faults: value(s.major_page_faults),
        psi: None,
    }
}

/// One interface's counters in `/proc/net/dev`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct NetDevCounters {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// `/proc/net/dev`: two header lines, then `name: rx bytes packets errs drop fifo frame
/// compressed multicast tx bytes packets errs drop ...` per interface.
pub(super) fn parse_net_dev(text: &str) -> Vec<NetDevCounters> {
    text.lines().skip(2).filter_map(parse_net_dev_line).collect()
}

fn parse_net_dev_line(line: &str) -> Option<NetDevCounters> {
    let (name, counters) = line.split_once(':')?;
    let n: Vec<u64> = counters.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    if n.len() < 12 {
        return None;
    }
    Some(NetDevCounters {
        name: name.trim().to_string(),
        rx_bytes: n[0],
        rx_packets: n[1],
        rx_errors: n[2],
        rx_dropped: n[3],
        tx_bytes: n[8],
        tx_packets: n[9],
        tx_errors: n[10],
        tx_dropped: n[11],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_rate_needs_two_samples() {
        let samples = CpuSamples::default();
        assert_eq!(samples.rate("c", 1_000_000_000, 0), None);
        // half a core for one second
        assert_eq!(samples.rate("c", 2_000_000_000, 500_000_000), Some(500_000_000));
        samples.forget(|_| false);
        assert_eq!(samples.rate("c", 3_000_000_000, 600_000_000), None);
    }

    #[test]
    fn net_dev_is_read_inside_the_pod_namespace() {
        // A pinned namespace with only `lo`: its /proc/net/dev lists no host interface.
        let dir = tempfile::tempdir().unwrap();
        let which = corral_runtime::PodNamespaces { net: true, ipc: false, uts: false };
        let pinned = corral_runtime::namespaces::pin(dir.path(), which, None, &[]).unwrap();
        let text = read_net_dev_in(pinned.net.as_ref().unwrap());
        corral_runtime::namespaces::unpin(dir.path()).unwrap();
        let names: Vec<String> =
            text.unwrap().lines().skip(2).filter_map(|l| l.split_once(':')).map(|(n, _)| n.trim().into()).collect();
        assert_eq!(names, vec!["lo".to_string()]);
        assert!(read_net_dev_in(std::path::Path::new("/nonexistent/netns")).is_err());
    }

    #[test]
    fn net_dev_lines() {
        let line = "  eth0:    1234      10    1    0    0     0          0         0     5678      20    2    0    0     0       0          0";
        let usage = parse_net_dev_line(line).unwrap();
        let want = NetDevCounters {
            name: "eth0".into(),
            rx_bytes: 1234,
            rx_packets: 10,
            rx_errors: 1,
            tx_bytes: 5678,
            tx_packets: 20,
            tx_errors: 2,
            ..Default::default()
        };
        assert_eq!(usage, want);
        assert!(parse_net_dev_line("Inter-|   Receive").is_none());
    }
}
