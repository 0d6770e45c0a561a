//! Everything cAdvisor reports about one container, read straight from its cgroup files (v1
//! and v2) and from `/proc` of its processes, for the CRI metrics RPCs: with the
//! `PodAndContainerStatsFromCRI` gate, kubelet serves `/metrics/cadvisor` from these numbers.
//!
//! [`Stats`](super::Stats), what the stats RPCs report (kubelet's summary API and
//! eviction), is a subset of these counters, read by the same code without the `/proc` walk.

use std::path::{Path, PathBuf};

use super::Cgroup;
use super::stats::field;

/// One cgroup's usage counters and configured limits. Counters the kernel does not keep on
/// this host (swap without swap accounting, `memory.peak` before 5.19, ...) read as 0.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Usage {
    /// The cgroupfs path these numbers are of (`/corral/<pod>/<ctr>`): cAdvisor's `id` label.
    pub cgroup: String,
    /// Cumulative CPU time, nanoseconds: all, in user mode, in kernel mode.
    pub cpu_total_ns: u64,
    pub cpu_user_ns: u64,
    pub cpu_system_ns: u64,
    /// CFS bandwidth control: elapsed periods, throttled periods, time throttled (ns).
    pub cfs_periods: u64,
    pub cfs_throttled_periods: u64,
    pub cfs_throttled_ns: u64,
    /// Memory charged now, and the most ever charged.
    pub memory_usage: u64,
    pub memory_max_usage: u64,
    /// Usage minus inactive file cache (cAdvisor's and kubelet's working set).
    pub memory_working_set: u64,
    pub memory_cache: u64,
    pub memory_rss: u64,
    pub memory_mapped_file: u64,
    pub memory_swap: u64,
    pub memory_kernel: u64,
    /// Times usage hit the limit (v1 `memory.failcnt`, v2 `max` in `memory.events`).
    pub memory_failcnt: u64,
    /// Page faults of this cgroup's own tasks and of its whole subtree (equal on v2).
    pub pgfault: u64,
    pub pgmajfault: u64,
    pub pgfault_hierarchy: u64,
    pub pgmajfault_hierarchy: u64,
    /// Processes killed by the OOM killer.
    pub oom_kills: u64,
    /// Tasks (threads) now, and the pids limit (`None`: unlimited).
    pub tasks: u64,
    pub tasks_max: Option<u64>,
    /// Block I/O per device.
    pub io: Vec<DeviceIo>,
    /// Configured limits: CFS period and quota (µs), CPU shares (v2: from `cpu.weight`).
    pub cpu_period_us: u64,
    pub cpu_quota_us: Option<u64>,
    pub cpu_shares: u64,
    /// Memory limit, memory+swap limit (v1 `memsw`) or swap limit (v2), soft limit; `None`: unlimited.
    pub memory_limit: Option<u64>,
    pub memory_swap_limit: Option<u64>,
    pub memory_reservation: Option<u64>,
    /// What `/proc` says of the cgroup's processes.
    pub processes: ProcessCounts,
}

/// Block I/O of one device, from `blkio.throttle.*_recursive` (v1) or `io.stat` (v2).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeviceIo {
    pub major: u64,
    pub minor: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

/// Counts over the cgroup's processes, from `/proc/<pid>`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProcessCounts {
    pub processes: u64,
    pub threads: u64,
    pub file_descriptors: u64,
    pub sockets: u64,
    /// Soft `RLIMIT_NOFILE` of the oldest process (`None`: unlimited or no process).
    pub max_open_files: Option<u64>,
}

/// Values at or above this are "no limit" (v1 writes PAGE_COUNTER_MAX pages, or -1).
const UNLIMITED: u64 = 1 << 62;

/// The cgroup's files, by controller.
struct Files {
    v2: bool,
    dirs: Vec<(String, PathBuf)>,
}

impl Files {
    fn dir(&self, controller: &str) -> Option<&Path> {
        if self.v2 {
            // One directory holds every controller's files (whose names cgroups-rs spells
            // its own way: "blkio" for io).
            return self.dirs.first().map(|(_, dir)| dir.as_path());
        }
        self.dirs.iter().find(|(name, _)| name == controller).map(|(_, dir)| dir.as_path())
    }

    fn text(&self, controller: &str, file: &str) -> String {
        self.dir(controller).and_then(|d| std::fs::read_to_string(d.join(file)).ok()).unwrap_or_default()
    }

    /// A one-number file; `max`, `-1` and absurdly large values (no limit) read as `None`.
    fn number(&self, controller: &str, file: &str) -> Option<u64> {
        self.text(controller, file).trim().parse::<u64>().ok().filter(|v| *v < UNLIMITED)
    }
}

pub(crate) fn read(cg: &Cgroup) -> Usage {
    let mut usage = read_counters(cg);
    usage.processes = process_counts(&cg.pids());
    usage
}

/// Everything but [`Usage::processes`]: only the cgroup's own files.
pub(crate) fn read_counters(cg: &Cgroup) -> Usage {
    let files = Files { v2: cg.is_v2(), dirs: cg.dirs() };
    let mut usage = Usage { cgroup: cg.path(), ..Usage::default() };
    if files.v2 {
        read_v2(&files, &mut usage)
    } else {
        read_v1(&files, &mut usage)
    }
    usage
}

fn read_v1(f: &Files, u: &mut Usage) {
    u.cpu_total_ns = f.number("cpuacct", "cpuacct.usage").unwrap_or(0);
    u.cpu_user_ns = f.number("cpuacct", "cpuacct.usage_user").unwrap_or(0);
    u.cpu_system_ns = f.number("cpuacct", "cpuacct.usage_sys").unwrap_or(0);
    let cpu_stat = f.text("cpu", "cpu.stat");
    u.cfs_periods = field(&cpu_stat, "nr_periods").unwrap_or(0);
    u.cfs_throttled_periods = field(&cpu_stat, "nr_throttled").unwrap_or(0);
    u.cfs_throttled_ns = field(&cpu_stat, "throttled_time").unwrap_or(0);
    u.cpu_period_us = f.number("cpu", "cpu.cfs_period_us").unwrap_or(0);
    u.cpu_quota_us = f.number("cpu", "cpu.cfs_quota_us");
    u.cpu_shares = f.number("cpu", "cpu.shares").unwrap_or(0);

    let stat = f.text("memory", "memory.stat");
    let stat = |key| field(&stat, key).unwrap_or(0);
    u.memory_usage = f.number("memory", "memory.usage_in_bytes").unwrap_or(0);
    u.memory_max_usage = f.number("memory", "memory.max_usage_in_bytes").unwrap_or(0);
    u.memory_working_set = u.memory_usage.saturating_sub(stat("total_inactive_file"));
    u.memory_cache = stat("total_cache");
    u.memory_rss = stat("total_rss");
    u.memory_mapped_file = stat("total_mapped_file");
    // memory+swap minus memory, as cAdvisor: present only with swap accounting.
    u.memory_swap = f
        .number("memory", "memory.memsw.usage_in_bytes")
        .map(|memsw| memsw.saturating_sub(u.memory_usage))
        .unwrap_or(0);
    u.memory_kernel = f.number("memory", "memory.kmem.usage_in_bytes").unwrap_or(0);
    u.memory_failcnt = f.number("memory", "memory.failcnt").unwrap_or(0);
    u.pgfault = stat("pgfault");
    u.pgmajfault = stat("pgmajfault");
    u.pgfault_hierarchy = stat("total_pgfault");
    u.pgmajfault_hierarchy = stat("total_pgmajfault");
    u.oom_kills = field(&f.text("memory", "memory.oom_control"), "oom_kill").unwrap_or(0);
    u.memory_limit = f.number("memory", "memory.limit_in_bytes");
    u.memory_swap_limit = f.number("memory", "memory.memsw.limit_in_bytes");
    u.memory_reservation = f.number("memory", "memory.soft_limit_in_bytes");

    u.tasks = f.number("pids", "pids.current").unwrap_or(0);
    u.tasks_max = f.number("pids", "pids.max");
    u.io = blkio_v1(
        &f.text("blkio", "blkio.throttle.io_service_bytes_recursive"),
        &f.text("blkio", "blkio.throttle.io_serviced_recursive"),
    );
}

fn read_v2(f: &Files, u: &mut Usage) {
    let cpu_stat = f.text("cpu", "cpu.stat");
    let usec = |key| field(&cpu_stat, key).unwrap_or(0).saturating_mul(1000);
    u.cpu_total_ns = usec("usage_usec");
    u.cpu_user_ns = usec("user_usec");
    u.cpu_system_ns = usec("system_usec");
    u.cfs_periods = field(&cpu_stat, "nr_periods").unwrap_or(0);
    u.cfs_throttled_periods = field(&cpu_stat, "nr_throttled").unwrap_or(0);
    u.cfs_throttled_ns = usec("throttled_usec");
    // cpu.max: "<quota|max> <period>"
    let cpu_max = f.text("cpu", "cpu.max");
    let mut cpu_max = cpu_max.split_whitespace();
    u.cpu_quota_us = cpu_max.next().and_then(|q| q.parse().ok());
    u.cpu_period_us = cpu_max.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    u.cpu_shares = f.number("cpu", "cpu.weight").map(weight_to_shares).unwrap_or(0);

    let stat = f.text("memory", "memory.stat");
    let stat = |key| field(&stat, key).unwrap_or(0);
    u.memory_usage = f.number("memory", "memory.current").unwrap_or(0);
    u.memory_max_usage = f.number("memory", "memory.peak").unwrap_or(0);
    u.memory_working_set = u.memory_usage.saturating_sub(stat("inactive_file"));
    u.memory_cache = stat("file");
    u.memory_rss = stat("anon");
    u.memory_mapped_file = stat("file_mapped");
    u.memory_swap = f.number("memory", "memory.swap.current").unwrap_or(0);
    // `kernel` is in memory.stat since 5.18; before, its main parts.
    u.memory_kernel = match stat("kernel") {
        0 => stat("kernel_stack") + stat("pagetables") + stat("slab") + stat("sock"),
        kernel => kernel,
    };
    let events = f.text("memory", "memory.events");
    u.memory_failcnt = field(&events, "max").unwrap_or(0);
    u.oom_kills = field(&events, "oom_kill").unwrap_or(0);
    u.pgfault = stat("pgfault");
    u.pgmajfault = stat("pgmajfault");
    u.pgfault_hierarchy = u.pgfault;
    u.pgmajfault_hierarchy = u.pgmajfault;
    u.memory_limit = f.number("memory", "memory.max");
    u.memory_swap_limit = f.number("memory", "memory.swap.max");
    u.memory_reservation = f.number("memory", "memory.low").filter(|low| *low > 0);

    u.tasks = f.number("pids", "pids.current").unwrap_or(0);
    u.tasks_max = f.number("pids", "pids.max");
    u.io = io_stat_v2(&f.text("io", "io.stat"));
}

/// The inverse of [`shares_to_weight`](super::shares_to_weight), as cAdvisor reports v2 weights in v1 shares.
pub fn weight_to_shares(weight: u64) -> u64 {
    2 + weight.saturating_sub(1) * 262142 / 9999
}

/// v1 `blkio.throttle.io_service_bytes_recursive` + `io_serviced_recursive`: lines
/// `MAJ:MIN Read|Write|Sync|Async|Discard|Total N`, and a final `Total N`.
fn blkio_v1(bytes: &str, ops: &str) -> Vec<DeviceIo> {
    let mut devices: Vec<DeviceIo> = Vec::new();
    for (text, is_bytes) in [(bytes, true), (ops, false)] {
        for line in text.lines() {
            let mut parts = line.split_whitespace();
            let (Some(dev), Some(op), Some(value)) = (parts.next(), parts.next(), parts.next()) else { continue };
            let (Some((major, minor)), Ok(value)) = (parse_dev(dev), value.parse::<u64>()) else { continue };
            let d = device_entry(&mut devices, major, minor);
            match (op, is_bytes) {
                ("Read", true) => d.read_bytes = value,
                ("Write", true) => d.write_bytes = value,
                ("Read", false) => d.reads = value,
                ("Write", false) => d.writes = value,
                _ => {}
            }
        }
    }
    devices
}

/// v2 `io.stat`: lines `MAJ:MIN rbytes=N wbytes=N rios=N wios=N dbytes=N dios=N`.
fn io_stat_v2(text: &str) -> Vec<DeviceIo> {
    let mut devices = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let Some((major, minor)) = parts.next().and_then(parse_dev) else { continue };
        let d = device_entry(&mut devices, major, minor);
        for kv in parts {
            let Some((key, value)) = kv.split_once('=') else { continue };
            let value = value.parse().unwrap_or(0);
            match key {
                "rbytes" => d.read_bytes = value,
                "wbytes" => d.write_bytes = value,
                "rios" => d.reads = value,
                "wios" => d.writes = value,
                _ => {}
            }
        }
    }
    devices
}

fn parse_dev(dev: &str) -> Option<(u64, u64)> {
    let (major, minor) = dev.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn device_entry(devices: &mut Vec<DeviceIo>, major: u64, minor: u64) -> &mut DeviceIo {
    let at = match devices.iter().position(|d| d.major == major && d.minor == minor) {
        Some(at) => at,
        None => {
            devices.push(DeviceIo { major, minor, ..DeviceIo::default() });
            devices.len() - 1
        }
    };
    &mut devices[at]
}

/// `/dev/<name>` of block device `major:minor` (from sysfs), or `major:minor` if it has none.
pub fn block_device_name(major: u64, minor: u64) -> String {
    std::fs::read_to_string(format!("/sys/dev/block/{major}:{minor}/uevent"))
        .ok()
        .and_then(|uevent| uevent.lines().find_map(|l| l.strip_prefix("DEVNAME=").map(|n| format!("/dev/{n}"))))
        .unwrap_or_else(|| format!("{major}:{minor}"))
}

/// Processes, threads, open files and sockets of `pids`, from `/proc`. A process that exits
/// while being counted is skipped.
pub fn process_counts(pids: &[i32]) -> ProcessCounts {
    let mut counts = ProcessCounts::default();
    for (i, pid) in pids.iter().enumerate() {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let Ok(status) = std::fs::read_to_string(proc_dir.join("status")) else { continue };
        counts.processes += 1;
        counts.threads += status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or(1);
        if let Ok(fds) = std::fs::read_dir(proc_dir.join("fd")) {
            for fd in fds.flatten() {
                counts.file_descriptors += 1;
                if std::fs::read_link(fd.path()).is_ok_and(|target| target.to_string_lossy().starts_with("socket:")) {
                    counts.sockets += 1;
                }
            }
        }
        if i == 0 {
            counts.max_open_files = std::fs::read_to_string(proc_dir.join("limits")).ok().and_then(|l| soft_nofile(&l));
        }
    }
    counts
}

/// The soft limit in a `/proc/<pid>/limits` row `Max open files  <soft> <hard> files`.
fn soft_nofile(limits: &str) -> Option<u64> {
    let row = limits.lines().find_map(|l| l.strip_prefix("Max open files"))?;
    row.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::shares_to_weight;

    #[test]
    fn blkio_v1_lines_are_merged_per_device() {
        let bytes = "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 1\n8:0 Total 12288\n253:1 Read 10\nTotal 12298\n";
        let ops = "8:0 Read 1\n8:0 Write 2\n8:0 Total 3\nTotal 3\n";
        let io = blkio_v1(bytes, ops);
        assert_eq!(
            io,
            vec![
                DeviceIo { major: 8, minor: 0, read_bytes: 4096, write_bytes: 8192, reads: 1, writes: 2 },
                DeviceIo { major: 253, minor: 1, read_bytes: 10, ..DeviceIo::default() },
            ]
        );
    }

    #[test]
    fn io_stat_v2_lines() {
        let io = io_stat_v2("8:16 rbytes=100 wbytes=200 rios=3 wios=4 dbytes=0 dios=0\n");
        assert_eq!(io, vec![DeviceIo { major: 8, minor: 16, read_bytes: 100, write_bytes: 200, reads: 3, writes: 4 }]);
        assert!(io_stat_v2("").is_empty());
    }

    #[test]
    fn weight_to_shares_inverts_runcs_conversion() {
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(10_000), 262_144);
        // Both conversions round down: a round trip lands within one weight step (26 shares).
        for shares in [2, 512, 1024, 100_000] {
            let back = weight_to_shares(shares_to_weight(shares));
            assert!(back <= shares && shares - back < 27, "{shares} -> {back}");
        }
    }

    #[test]
    fn soft_nofile_of_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(soft_nofile(limits), Some(1024));
        assert_eq!(soft_nofile("Max open files unlimited unlimited files"), None);
    }

    #[test]
    fn process_counts_of_a_child() {
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        // A child with exactly three fds: a socket on stdin, /dev/null on stdout and stderr.
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut command = Command::new("sleep");
        command
            .arg("30")
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: close_range only closes fds of the child (an fd another test thread opened
        // without O_CLOEXEC would otherwise be inherited and counted).
        unsafe {
            command.pre_exec(|| {
                libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
                Ok(())
            });
        }
        let mut child = command.spawn().unwrap();
        let counts = process_counts(&[child.id() as i32, i32::MAX]);
        child.kill().unwrap();
        child.wait().unwrap();
        drop(ours);
        assert_eq!(counts.processes, 1, "the missing pid is skipped");
        assert_eq!(counts.threads, 1);
        assert_eq!(counts.file_descriptors, 3, "{counts:?}");
        assert_eq!(counts.sockets, 1, "{counts:?}");
        assert!(counts.max_open_files.is_some_and(|n| n > 0), "{counts:?}");
    }
}
