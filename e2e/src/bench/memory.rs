//! Memory of a runtime: its daemon, and every process it added for pods.
//!
//! Sizes come from `/proc/<pid>/smaps_rollup`. RSS counts every resident page a process
//! maps, so the binary's text shared by a hundred monitors is counted a hundred times; PSS
//! divides each shared page among the processes mapping it, so PSS sums to what the
//! processes really cost together. Per-pod overhead is therefore the PSS sum of the pod
//! helpers divided by the number of pods.
//!
//! Which processes are "added for the pod":
//! - corral: every process running the daemon's own binary (same device and inode as
//!   `/proc/<daemon>/exe`) other than the daemon: `corral monitor` (one per container) and
//!   `corral pause` (one per pod sharing a PID namespace).
//! - containerd: every `containerd-shim-runc-v2` serving this containerd's socket (found by
//!   `-address <socket>` on its command line), one per pod.
//! - either: the pod's sandbox process the runtime reports in `PodSandboxStatus` verbose
//!   info (`pid`, containerd's pause container; `pausePid`, corral's pause).
//!
//! The containers' own processes (`sleep`) are the workload, not overhead, and are not counted.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::error::{BenchError, Result};

/// How to find a runtime's processes.
#[derive(Clone, Debug)]
pub enum RuntimeProcesses {
    /// corral: helpers are re-executions of the daemon's binary.
    Corral { daemon: u32 },
    /// containerd: shims carry the daemon's socket path on their command line.
    Containerd { daemon: u32, socket: PathBuf },
}

/// Resident memory of one process, in KiB.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessMemory {
    pub pid: u32,
    /// `/proc/<pid>/comm`.
    pub name: String,
    pub rss_kib: u64,
    pub pss_kib: u64,
}

/// Memory of a runtime at one moment.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MemorySnapshot {
    /// `idle`, `10 pods`, ..., `idle after`.
    pub label: String,
    /// Pods running (each with one container).
    pub pods: usize,
    pub daemon: ProcessMemory,
    /// Every helper process found, by pid.
    pub helpers: Vec<ProcessMemory>,
    pub helpers_rss_kib: u64,
    pub helpers_pss_kib: u64,
    /// `helpers_pss_kib / pods` (None without pods).
    pub per_pod_pss_kib: Option<f64>,
}

impl RuntimeProcesses {
    pub fn daemon(&self) -> u32 {
        match self {
            RuntimeProcesses::Corral { daemon } | RuntimeProcesses::Containerd { daemon, .. } => *daemon,
        }
    }

    /// Measures the daemon and its helpers; `sandbox_pids` are the pods' own sandbox
    /// processes as the runtime reported them (see the module doc).
    pub fn snapshot(&self, label: &str, pods: usize, sandbox_pids: &[u32]) -> Result<MemorySnapshot> {
        let daemon = read_process(self.daemon())?
            .ok_or_else(|| BenchError::check("memory", format!("daemon pid {} is gone", self.daemon())))?;
        let mut pids: BTreeSet<u32> = self.find_helpers()?.into_iter().collect();
        pids.extend(sandbox_pids.iter().copied().filter(|&p| p > 0 && p != self.daemon()));
        // A helper that exited between the listing and the read simply is not counted.
        let mut helpers = Vec::new();
        for pid in pids {
            if let Some(mem) = read_process(pid)? {
                helpers.push(mem);
            }
        }
        let helpers_rss_kib = helpers.iter().map(|p| p.rss_kib).sum();
        let helpers_pss_kib: u64 = helpers.iter().map(|p| p.pss_kib).sum();
        Ok(MemorySnapshot {
            label: label.to_owned(),
            pods,
            daemon,
            helpers,
            helpers_rss_kib,
            helpers_pss_kib,
            per_pod_pss_kib: (pods > 0).then(|| helpers_pss_kib as f64 / pods as f64),
        })
    }

    fn find_helpers(&self) -> Result<Vec<u32>> {
        let daemon = self.daemon();
        let mut found = Vec::new();
        match self {
            RuntimeProcesses::Corral { .. } => {
                let exe = Path::new("/proc").join(daemon.to_string()).join("exe");
                let meta = std::fs::metadata(&exe).map_err(|e| BenchError::io("stat", &exe, e))?;
                let want = (meta.dev(), meta.ino());
                for pid in all_pids()? {
                    if pid == daemon {
                        continue;
                    }
                    if let Ok(m) = std::fs::metadata(format!("/proc/{pid}/exe"))
                        && (m.dev(), m.ino()) == want
                    {
                        found.push(pid);
                    }
                }
            }
            RuntimeProcesses::Containerd { socket, .. } => {
                let address = socket.to_string_lossy();
                for pid in all_pids()? {
                    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
                    let args: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
                    let is_shim =
                        args.first().is_some_and(|a0| String::from_utf8_lossy(a0).ends_with("containerd-shim-runc-v2"));
                    let serves_us = args.windows(2).any(|w| w[0] == b"-address" && w[1] == address.as_bytes());
                    if is_shim && serves_us {
                        found.push(pid);
                    }
                }
            }
        }
        Ok(found)
    }
}

/// The sandbox process a runtime reports in `PodSandboxStatus` verbose info, if any:
/// containerd's `info` JSON has `pid` (the pause container), corral's has `pausePid`.
pub fn sandbox_pid(info: &std::collections::HashMap<String, String>) -> Option<u32> {
    let json: serde_json::Value = serde_json::from_str(info.get("info")?).ok()?;
    ["pid", "pausePid"]
        .iter()
        .find_map(|k| json.get(k).and_then(serde_json::Value::as_u64))
        .filter(|&p| p > 0)
        .and_then(|p| u32::try_from(p).ok())
}

fn all_pids() -> Result<Vec<u32>> {
    let entries = std::fs::read_dir("/proc").map_err(|e| BenchError::io("listing", "/proc", e))?;
    Ok(entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
}

/// RSS and PSS of `pid`; `None` if it exited (or is a zombie, whose rollup is empty).
pub fn read_process(pid: u32) -> Result<Option<ProcessMemory>> {
    let dir = PathBuf::from(format!("/proc/{pid}"));
    let path = dir.join("smaps_rollup");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        // ENOENT, or ESRCH in the middle of an exit.
        Err(_) if !dir.exists() => return Ok(None),
        Err(e) => return Err(BenchError::io("reading", path, e)),
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    let (rss_kib, pss_kib) = parse_rollup(&text)
        .ok_or_else(|| BenchError::check("memory", format!("{}: no Rss/Pss lines", path.display())))?;
    let name = std::fs::read_to_string(dir.join("comm")).unwrap_or_default().trim().to_owned();
    Ok(Some(ProcessMemory { pid, name, rss_kib, pss_kib }))
}

/// `Rss:` and `Pss:` of an `smaps_rollup`, in KiB.
fn parse_rollup(text: &str) -> Option<(u64, u64)> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((field("Rss:")?, field("Pss:")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollup_fields() {
        let text = "55f5-7ffd ---p 00000000 00:00 0  [rollup]\nRss:               24228 kB\n\
                    Pss:               22504 kB\nPss_Dirty:         13052 kB\n";
        assert_eq!(parse_rollup(text), Some((24228, 22504)));
        assert_eq!(parse_rollup("Rss: 1 kB\n"), None);
    }

    #[test]
    fn this_process_is_measured() {
        let me = read_process(std::process::id()).unwrap().unwrap();
        assert!(me.rss_kib > 0 && me.pss_kib > 0 && me.pss_kib <= me.rss_kib);
        assert!(read_process(u32::MAX - 1).unwrap().is_none());
    }

    #[test]
    fn corral_helpers_are_processes_of_the_daemon_binary() {
        use std::process::{Command, Stdio};
        // Stand-ins: a `sleep` is the "daemon", a second `sleep` (same binary) its helper,
        // a `cat` (another binary) must not count, unless reported as a sandbox process.
        let spawn = |cmd: &str, arg: &str| Command::new(cmd).arg(arg).stdin(Stdio::piped()).spawn().unwrap();
        let mut daemon = spawn("sleep", "30");
        let mut helper = spawn("sleep", "30");
        let mut other = spawn("cat", "-");
        let procs = RuntimeProcesses::Corral { daemon: daemon.id() };
        let found = procs.find_helpers().unwrap();
        assert!(found.contains(&helper.id()));
        assert!(!found.contains(&daemon.id()));
        assert!(!found.contains(&other.id()));
        let snap = procs.snapshot("t", 2, &[other.id()]).unwrap();
        assert_eq!(snap.daemon.pid, daemon.id());
        assert!(snap.helpers.iter().any(|p| p.pid == helper.id()));
        assert!(snap.helpers.iter().any(|p| p.pid == other.id()), "reported sandbox pids are counted");
        assert_eq!(snap.helpers_pss_kib, snap.helpers.iter().map(|p| p.pss_kib).sum::<u64>());
        assert_eq!(snap.per_pod_pss_kib, Some(snap.helpers_pss_kib as f64 / 2.0));
        for child in [&mut daemon, &mut helper, &mut other] {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    #[test]
    fn sandbox_pid_from_verbose_info() {
        let info = |json: &str| std::collections::HashMap::from([("info".to_owned(), json.to_owned())]);
        assert_eq!(sandbox_pid(&info(r#"{"pid": 42, "processStatus": "running"}"#)), Some(42));
        assert_eq!(sandbox_pid(&info(r#"{"pausePid": 7}"#)), Some(7));
        assert_eq!(sandbox_pid(&info(r#"{"pausePid": null}"#)), None);
        assert_eq!(sandbox_pid(&std::collections::HashMap::new()), None);
    }
}
