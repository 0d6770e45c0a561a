//! Usage statistics of a cgroup, as the CRI's ContainerStats needs them.

use std::time::SystemTime;

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

/// `key value` lines (cpu.stat, memory.stat, memory.events): the value of `key`.
pub(crate) fn field(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The subset of the cgroup's counters that the stats RPCs report (no `/proc` walk).
pub(crate) fn read(cg: &super::Cgroup) -> Stats {
    let u = super::usage::read_counters(cg);
    Stats {
        timestamp: SystemTime::now(),
        cpu_usage_ns: u.cpu_total_ns,
        memory_usage_bytes: u.memory_usage,
        memory_working_set_bytes: u.memory_working_set,
        memory_rss_bytes: u.memory_rss,
        memory_limit_bytes: u.memory_limit,
        page_faults: u.pgfault_hierarchy,
        major_page_faults: u.pgmajfault_hierarchy,
        pids: u.tasks,
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
