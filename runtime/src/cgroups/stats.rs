//! Usage statistics of a cgroup, as the CRI's ContainerStats needs them.

use std::time::SystemTime;

use cgroups_rs::fs::cgroup::Cgroup;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuacct::CpuAcctController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use serde::{Deserialize, Serialize};

/// A snapshot of a cgroup's usage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// When the numbers were read.
    pub timestamp: SystemTime,
    /// Cumulative CPU time of all tasks, in nanoseconds.
    pub cpu_usage_ns: u64,
    /// Memory charged to the cgroup, page cache included.
    pub memory_usage_bytes: u64,
    /// Usage minus inactive file cache: what kubelet evicts on (cadvisor's definition).
    pub memory_working_set_bytes: u64,
    /// Anonymous memory (v1 `total_rss`, v2 `anon`).
    pub memory_rss_bytes: u64,
    /// The memory limit, if one is set.
    pub memory_limit_bytes: Option<u64>,
    /// Cumulative page faults.
    pub page_faults: u64,
    /// Cumulative major page faults (those that needed I/O).
    pub major_page_faults: u64,
    /// Number of tasks.
    pub pids: u64,
}

/// Limits at or above this are "unlimited" (v1 reports PAGE_COUNTER_MAX pages, v2 "max").
const UNLIMITED: u64 = 1 << 62;

/// `key value` lines (cpu.stat, memory.stat, memory.events): the value of `key`.
pub(crate) fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

pub(crate) fn read(cg: &Cgroup) -> Stats {
    let v2 = cg.v2();
    let cpu_usage_ns = if v2 {
        cg.controller_of::<CpuController>().and_then(|c| field(&c.cpu().stat, "usage_usec")).unwrap_or(0) * 1000
    } else {
        cg.controller_of::<CpuAcctController>().map(|c| c.cpuacct().usage).unwrap_or(0)
    };
    let mut limit = None;
    let (usage, inactive_file, rss, faults, major_faults) = match cg.controller_of::<MemController>() {
        Some(mem) => {
            let m = mem.memory_stat();
            limit = u64::try_from(m.limit_in_bytes).ok().filter(|l| *l < UNLIMITED);
            if v2 {
                // cgroups-rs parses v2 memory.stat into the same struct; `anon` has no field.
                let anon = m.stat.raw.get("anon").copied().unwrap_or(0);
                (m.usage_in_bytes, m.stat.inactive_file, anon, m.stat.pgfault, m.stat.pgmajfault)
            } else {
                let s = &m.stat;
                (m.usage_in_bytes, s.total_inactive_file, s.total_rss, s.total_pgfault, s.total_pgmajfault)
            }
        }
        None => (0, 0, 0, 0, 0),
    };
    let pids = cg.controller_of::<PidController>().and_then(|p| p.get_pid_current().ok()).unwrap_or(0);
    Stats {
        timestamp: SystemTime::now(),
        cpu_usage_ns,
        memory_usage_bytes: usage,
        memory_working_set_bytes: usage.saturating_sub(inactive_file),
        memory_rss_bytes: rss,
        memory_limit_bytes: limit,
        page_faults: faults,
        major_page_faults: major_faults,
        pids,
    }
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn field_finds_exact_key() {
        let text = "usage_usec 1500\nuser_usec 1000\noom_kill 3\noom 4\n";
        assert_eq!(field(text, "usage_usec"), Some(1500));
        assert_eq!(field(text, "oom_kill"), Some(3));
        assert_eq!(field(text, "oom"), Some(4));
        assert_eq!(field(text, "missing"), None);
    }
}
