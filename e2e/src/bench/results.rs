//! What one `bench run` against one runtime produces (its JSON file), and the host facts
//! that say how much the numbers can be trusted.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::error::{BenchError, Result};
use super::memory::MemorySnapshot;
use super::stats::{Samples, Summary};

/// The results of one runtime.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunResults {
    pub runtime: RuntimeInfo,
    pub host: HostInfo,
    pub settings: Settings,
    /// Every latency row, in report order; rows of both runtimes are matched by `key`.
    pub latency: Vec<LatencyRow>,
    /// Memory at each measured population.
    pub memory: Vec<MemorySnapshot>,
    /// The cold-pull scenario's check that the image store really was empty.
    pub pull: Option<PullCheck>,
    /// Things the reader of the numbers must know (e.g. content kept after RemoveImage).
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RuntimeInfo {
    /// The name given on the command line (`corral`, `containerd`).
    pub name: String,
    /// `Version` RPC: runtime name and version as the runtime reports them.
    pub reported: String,
    pub endpoint: String,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HostInfo {
    pub kernel: String,
    pub cpus: usize,
    /// `/proc/loadavg` (1, 5, 15 minutes) when the run started and when it ended: this
    /// machine is shared, a high load makes every row slower for both runtimes.
    pub loadavg_start: [f64; 3],
    pub loadavg_end: [f64; 3],
    /// How busy the whole machine was during the run (all processes, not only ours).
    pub cpu: Option<CpuLoad>,
    pub started_at: String,
    pub duration_s: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Settings {
    pub iterations: usize,
    pub warmup: usize,
    pub pull_iterations: usize,
    pub concurrent_pods: usize,
    pub concurrent_rounds: usize,
    pub scale_levels: Vec<usize>,
    pub memory_levels: Vec<usize>,
    pub scale_samples: usize,
    pub image: String,
}

/// Which table a latency row belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// One operation, repeated.
    Latency,
    /// The phases of the full pod cycle, each timed inside the cycle.
    CyclePhase,
    /// Many pods at once.
    Concurrent,
    /// Image pull with a cold store.
    Pull,
    /// One operation with many pods already running.
    Scaling,
}

/// One measured quantity: its raw samples and their summary.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LatencyRow {
    /// Stable identifier, e.g. `run_pod_sandbox` or `scale.list_containers@100`.
    pub key: String,
    /// What a reader sees in the table.
    pub title: String,
    pub group: Group,
    pub samples: Samples,
    pub summary: Option<Summary>,
}

impl LatencyRow {
    pub fn new(key: impl Into<String>, title: impl Into<String>, group: Group, samples: Samples) -> LatencyRow {
        let summary = samples.summary();
        LatencyRow { key: key.into(), title: title.into(), group, samples, summary }
    }
}

/// Whether the cold pulls really started from an empty store.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PullCheck {
    pub image: String,
    /// Layer digests looked for in the store after each `RemoveImage`.
    pub layers: Vec<String>,
    /// Files or directories named after one of those digests, found after a `RemoveImage`
    /// (empty: every pull fetched and unpacked every layer).
    pub leftovers: Vec<String>,
    /// Bytes in the image store before the first pull, and after each `RemoveImage`.
    pub store_bytes_initial: Option<u64>,
    pub store_bytes_after_remove: Vec<u64>,
}

impl RunResults {
    pub fn read(path: &Path) -> Result<RunResults> {
        let text = std::fs::read_to_string(path).map_err(|e| BenchError::io("reading", path, e))?;
        serde_json::from_str(&text).map_err(|source| BenchError::Results { path: path.to_owned(), source })
    }

    pub fn row(&self, key: &str) -> Option<&LatencyRow> {
        self.latency.iter().find(|r| r.key == key)
    }
}

/// Writes `value` as pretty JSON.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|source| BenchError::Results { path: path.to_owned(), source })?;
    std::fs::write(path, text + "\n").map_err(|e| BenchError::io("writing", path, e))
}

/// Machine-wide CPU use over an interval.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CpuLoad {
    /// Share of all CPUs' time spent not idle (`/proc/stat`).
    pub busy: f64,
    /// Share of wall time during which some runnable task waited for a CPU
    /// (`/proc/pressure/cpu`, "some"): above ~0.2 the numbers include queueing for CPUs.
    pub pressure: Option<f64>,
}

/// Counters read at the start of an interval; [`CpuMeter::finish`] turns them into a [`CpuLoad`].
pub struct CpuMeter {
    stat: Option<(u64, u64)>,
    pressure_us: Option<u64>,
    started: std::time::Instant,
}

impl CpuMeter {
    pub fn start() -> CpuMeter {
        CpuMeter { stat: cpu_stat(), pressure_us: cpu_pressure_us(), started: std::time::Instant::now() }
    }

    /// `None` when /proc/stat is unreadable.
    pub fn finish(&self) -> Option<CpuLoad> {
        let ((busy0, total0), (busy1, total1)) = (self.stat?, cpu_stat()?);
        let busy = (busy1 - busy0) as f64 / ((total1 - total0).max(1)) as f64;
        let wall_us = self.started.elapsed().as_micros().max(1) as f64;
        let pressure = match (self.pressure_us, cpu_pressure_us()) {
            (Some(a), Some(b)) => Some((b.saturating_sub(a)) as f64 / wall_us),
            _ => None,
        };
        Some(CpuLoad { busy, pressure })
    }
}

/// (busy, total) jiffies of the `cpu` line of /proc/stat.
fn cpu_stat() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_stat(text.lines().next()?)
}

fn parse_cpu_stat(line: &str) -> Option<(u64, u64)> {
    let fields: Vec<u64> = line.strip_prefix("cpu ")?.split_whitespace().filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    let total: u64 = fields.iter().take(8).sum();
    let idle = fields.get(3)? + fields.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Microseconds of "some" CPU pressure since boot.
fn cpu_pressure_us() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/pressure/cpu").ok()?;
    let some = text.lines().find(|l| l.starts_with("some "))?;
    some.split_whitespace().find_map(|f| f.strip_prefix("total=")).and_then(|v| v.parse().ok())
}

/// `/proc/loadavg`'s three averages (zeros if unreadable: it is context, not a result).
pub fn loadavg() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text.split_whitespace().map(|f| f.parse().unwrap_or(0.0));
    [it.next().unwrap_or(0.0), it.next().unwrap_or(0.0), it.next().unwrap_or(0.0)]
}

/// The running kernel's release.
pub fn kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_stat_busy_and_total() {
        assert_eq!(parse_cpu_stat("cpu  100 5 50 800 20 3 2 0 0 0"), Some((160, 980)));
        assert_eq!(parse_cpu_stat("cpu0 1 2 3 4"), None);
    }

    #[test]
    fn cpu_meter_measures_this_machine() {
        let meter = CpuMeter::start();
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(50) {
            std::hint::black_box(0);
        }
        let load = meter.finish().unwrap();
        assert!(load.busy > 0.0 && load.busy <= 1.0, "{load:?}");
    }
}
