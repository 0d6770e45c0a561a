//! Two runs side by side: the runtime under test and its baseline, every row with the ratio
//! runtime / baseline (below 1: the runtime is faster or smaller). Writes the combined JSON
//! and the markdown table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::memory::MemorySnapshot;
use super::results::{Group, LatencyRow, RunResults};
use super::stats::Summary;

/// Latency goal: every row at least this many times lower than the baseline.
pub const LATENCY_GOAL_FACTOR: f64 = 10.0;
/// Goal for the daemon's idle RSS.
pub const DAEMON_IDLE_RSS_GOAL_KIB: u64 = 10 * 1024;
/// Goal for the per-pod overhead (PSS of the processes added for a pod).
pub const PER_POD_PSS_GOAL_KIB: f64 = 1024.0;

/// The combined results file (`e2e/results/latest.json`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Comparison {
    pub generated_at: String,
    /// Ratio of medians for every latency row both runs have, and of the memory figures.
    pub ratios: Vec<Ratio>,
    pub runtime: RunResults,
    pub baseline: RunResults,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Ratio {
    pub key: String,
    pub title: String,
    pub runtime: f64,
    pub baseline: f64,
    /// runtime / baseline.
    pub ratio: Option<f64>,
    pub unit: String,
}

impl Comparison {
    pub fn new(runtime: RunResults, baseline: RunResults, generated_at: String) -> Comparison {
        let mut ratios = Vec::new();
        for row in &runtime.latency {
            if let (Some(a), Some(b)) = (&row.summary, baseline.row(&row.key).and_then(|r| r.summary.as_ref())) {
                ratios.push(ratio(&row.key, &row.title, a.median_ms, b.median_ms, "ms (median)"));
            }
        }
        for (key, title, get) in memory_figures() {
            for snap in &runtime.memory {
                let other = baseline.memory.iter().find(|s| s.label == snap.label);
                if let (Some(a), Some(b)) = (get(snap), other.and_then(get)) {
                    ratios.push(ratio(
                        &format!("{key}@{}", snap.label),
                        &format!("{title}, {}", snap.label),
                        a,
                        b,
                        "KiB",
                    ));
                }
            }
        }
        Comparison { generated_at, ratios, runtime, baseline }
    }

    /// The markdown report.
    pub fn markdown(&self, chart: Option<&str>) -> String {
        let (a, b) = (&self.runtime, &self.baseline);
        let (an, bn) = (&a.runtime.name, &b.runtime.name);
        let mut md = String::new();
        let _ = writeln!(md, "# {an} vs {bn}: benchmark results\n");
        let _ = writeln!(
            md,
            "Generated {} by `e2e/bench.sh`. Host: Linux {}, {} CPUs, shared with other work: \
             load average (1/5/15 min) {} during the {an} run, {} during the {bn} run.\n",
            self.generated_at,
            a.host.kernel,
            a.host.cpus,
            load(a),
            load(b)
        );
        let _ = writeln!(
            md,
            "- {an}: `{}` ({}); {bn}: `{}` ({})",
            a.runtime.reported, a.runtime.endpoint, b.runtime.reported, b.runtime.endpoint
        );
        let s = &a.settings;
        let _ = writeln!(
            md,
            "- each scenario {} times after {} warm-up runs; pulls {} times; {} rounds of {} concurrent pods; \
             {} samples per scaling level; image `{}` running `sleep 3600`",
            s.iterations, s.warmup, s.pull_iterations, s.concurrent_rounds, s.concurrent_pods, s.scale_samples, s.image
        );
        let _ = writeln!(
            md,
            "- ratio = {an} / {bn} (below 1: {an} is faster or smaller). Goals: every latency row ≤ {:.2} \
             ({}x lower), daemon idle RSS < {} MiB, per-pod overhead < {} MiB PSS.\n",
            1.0 / LATENCY_GOAL_FACTOR,
            LATENCY_GOAL_FACTOR,
            DAEMON_IDLE_RSS_GOAL_KIB / 1024,
            PER_POD_PSS_GOAL_KIB / 1024.0
        );

        let groups = [
            (Group::Latency, "Latency (ms)"),
            (Group::Concurrent, "Concurrent pod starts (ms)"),
            (Group::Pull, "Image pull, cold store (ms)"),
            (Group::Scaling, "Scaling: latency with pods already running (ms)"),
            (Group::CyclePhase, "Full pod cycle by phase (ms)"),
        ];
        for (group, heading) in groups {
            let rows: Vec<&LatencyRow> = a.latency.iter().filter(|r| r.group == group).collect();
            if rows.is_empty() {
                continue;
            }
            let _ = writeln!(md, "## {heading}\n");
            let _ = writeln!(
                md,
                "| scenario | {an} median | {an} p90 | {an} p99 | {bn} median | {bn} p90 | {bn} p99 | ratio (median) | goal ≤ {:.2} |",
                1.0 / LATENCY_GOAL_FACTOR
            );
            md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|:---:|\n");
            for row in rows {
                let other = b.row(&row.key).and_then(|r| r.summary.as_ref());
                let r = row.summary.as_ref().zip(other).map(|(x, y)| x.median_ms / y.median_ms);
                let goal = match (group, r) {
                    (Group::CyclePhase, _) | (_, None) => "",
                    (_, Some(r)) if r <= 1.0 / LATENCY_GOAL_FACTOR => "met",
                    _ => "missed",
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {goal} |",
                    row.title,
                    cell(row.summary.as_ref(), |s| s.median_ms),
                    cell(row.summary.as_ref(), |s| s.p90_ms),
                    cell(row.summary.as_ref(), |s| s.p99_ms),
                    cell(other, |s| s.median_ms),
                    cell(other, |s| s.p90_ms),
                    cell(other, |s| s.p99_ms),
                    r.map_or("n/a".into(), |r| format!("{r:.3}")),
                );
            }
            md.push('\n');
        }

        md.push_str(&self.memory_markdown());
        if let Some(chart) = chart {
            let _ = writeln!(md, "## Full pod cycle distribution\n\n![full cycle latency CDF]({chart})\n");
        }
        md.push_str(&self.distribution_markdown());

        let _ = writeln!(md, "## Notes\n");
        if let Some(check) = &a.pull {
            md.push_str(&pull_note(an, check));
        }
        if let Some(check) = &b.pull {
            md.push_str(&pull_note(bn, check));
        }
        for note in a.notes.iter().chain(&b.notes) {
            let _ = writeln!(md, "- {note}");
        }
        md
    }

    fn memory_markdown(&self) -> String {
        let (a, b) = (&self.runtime, &self.baseline);
        let (an, bn) = (&a.runtime.name, &b.runtime.name);
        let mut md = String::new();
        let _ = writeln!(md, "## Memory\n");
        let _ = writeln!(
            md,
            "PSS from `/proc/<pid>/smaps_rollup`. Per-pod overhead = PSS of every process the runtime \
             added for the pods ({an}: its monitors/pause, {bn}: shims and pause containers), divided by \
             the number of pods; the containers' own `sleep` is not counted.\n"
        );
        let _ = writeln!(md, "| measure | pods | {an} | {bn} | ratio | goal |");
        md.push_str("|---|---:|---:|---:|---:|:---:|\n");
        for snap in &a.memory {
            let other = b.memory.iter().find(|s| s.label == snap.label);
            for (key, title, get) in memory_figures() {
                let Some(x) = get(snap) else { continue };
                let y = other.and_then(get);
                let goal =
                    match key {
                        "daemon_rss" if snap.pods == 0 && snap.label == "idle" => {
                            if x < DAEMON_IDLE_RSS_GOAL_KIB as f64 { "met" } else { "missed" }
                        }
                        "per_pod_pss" => {
                            if x < PER_POD_PSS_GOAL_KIB {
                                "met"
                            } else {
                                "missed"
                            }
                        }
                        _ => "",
                    };
                let _ = writeln!(
                    md,
                    "| {title} ({}) | {} | {} | {} | {} | {goal} |",
                    snap.label,
                    snap.pods,
                    mib(x),
                    y.map_or("n/a".into(), mib),
                    y.map_or("n/a".into(), |y| format!("{:.3}", x / y)),
                );
            }
        }
        let biggest = |r: &RunResults| r.memory.iter().max_by_key(|s| s.pods).map(helper_census);
        if let (Some(x), Some(y)) = (biggest(a), biggest(b)) {
            let _ = writeln!(md, "\nHelper processes at the largest population: {an}: {x}; {bn}: {y}.");
        }
        md.push('\n');
        md
    }

    fn distribution_markdown(&self) -> String {
        let mut md = String::from("## Full distributions (ms)\n\n");
        for run in [&self.runtime, &self.baseline] {
            let _ = writeln!(md, "### {}\n", run.runtime.name);
            md.push_str("| scenario | n | min | median | p90 | p99 | max |\n|---|---:|---:|---:|---:|---:|---:|\n");
            for row in &run.latency {
                if let Some(s) = &row.summary {
                    let _ = writeln!(
                        md,
                        "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                        row.title, s.n, s.min_ms, s.median_ms, s.p90_ms, s.p99_ms, s.max_ms
                    );
                }
            }
            md.push('\n');
        }
        md
    }
}

type MemoryGetter = fn(&MemorySnapshot) -> Option<f64>;

/// The memory figures of a snapshot that the report compares, with their keys and titles.
fn memory_figures() -> [(&'static str, &'static str, MemoryGetter); 4] {
    [
        ("daemon_rss", "daemon RSS", |s| Some(s.daemon.rss_kib as f64)),
        ("daemon_pss", "daemon PSS", |s| Some(s.daemon.pss_kib as f64)),
        ("per_pod_pss", "per-pod overhead PSS", |s| s.per_pod_pss_kib),
        ("total_pss", "daemon + helpers PSS", |s| Some((s.daemon.pss_kib + s.helpers_pss_kib) as f64)),
    ]
}

fn ratio(key: &str, title: &str, runtime: f64, baseline: f64, unit: &str) -> Ratio {
    Ratio {
        key: key.to_owned(),
        title: title.to_owned(),
        runtime,
        baseline,
        ratio: (baseline > 0.0).then(|| runtime / baseline),
        unit: unit.to_owned(),
    }
}

fn cell(summary: Option<&Summary>, get: fn(&Summary) -> f64) -> String {
    summary.map_or("n/a".into(), |s| format!("{:.2}", get(s)))
}

fn mib(kib: f64) -> String {
    format!("{:.2} MiB", kib / 1024.0)
}

fn load(run: &RunResults) -> String {
    let [s1, s5, s15] = run.host.loadavg_start;
    let [e1, e5, e15] = run.host.loadavg_end;
    let cpu = match &run.host.cpu {
        Some(c) => format!(
            " (CPUs {:.0}% busy, CPU pressure {})",
            c.busy * 100.0,
            c.pressure.map_or("n/a".into(), |p| format!("{:.0}%", p * 100.0))
        ),
        None => String::new(),
    };
    format!("{s1:.2}/{s5:.2}/{s15:.2} → {e1:.2}/{e5:.2}/{e15:.2}{cpu}")
}

/// `100 × corral` style counts of the helper processes by name.
fn helper_census(snap: &MemorySnapshot) -> String {
    let mut by_name: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    for p in &snap.helpers {
        let e = by_name.entry(p.name.as_str()).or_default();
        e.0 += 1;
        e.1 += p.pss_kib;
    }
    let parts: Vec<String> = by_name
        .iter()
        .map(|(name, (n, pss))| format!("{n} × `{name}` ({} PSS each on average)", mib(*pss as f64 / *n as f64)))
        .collect();
    format!("{} pods, {}", snap.pods, if parts.is_empty() { "none".into() } else { parts.join(", ") })
}

fn pull_note(name: &str, check: &super::results::PullCheck) -> String {
    let bytes: Vec<String> =
        check.store_bytes_after_remove.iter().map(|b| format!("{:.1}", *b as f64 / 1048576.0)).collect();
    let initial = check.store_bytes_initial.map_or("n/a".into(), |b| format!("{:.1}", b as f64 / 1048576.0));
    let cold = if check.leftovers.is_empty() {
        "no file named after a layer digest was left after any RemoveImage".to_owned()
    } else {
        format!("content named after a layer digest was left after RemoveImage: {}", check.leftovers.join(", "))
    };
    format!(
        "- {name} cold pull of `{}`: {cold}; image store size (MiB) before the first pull {initial}, after each RemoveImage [{}]\n",
        check.image,
        bytes.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::memory::ProcessMemory;
    use crate::bench::results::{HostInfo, RuntimeInfo, Settings};
    use crate::bench::stats::Samples;

    fn run(name: &str, scale: f64, daemon_rss: u64) -> RunResults {
        let samples = |base: f64| Samples { ms: (1..=10).map(|i| base * scale * f64::from(i)).collect() };
        let proc_mem = |pid, name: &str, kib| ProcessMemory { pid, name: name.into(), rss_kib: kib, pss_kib: kib / 2 };
        RunResults {
            runtime: RuntimeInfo { name: name.into(), reported: format!("{name} 1.0"), endpoint: "unix:///x".into() },
            host: HostInfo {
                kernel: "6.18".into(),
                cpus: 2,
                loadavg_start: [0.5, 0.4, 0.3],
                loadavg_end: [1.0, 0.9, 0.8],
                cpu: Some(crate::bench::results::CpuLoad { busy: 0.5, pressure: Some(0.25) }),
                started_at: "2026-01-01T00:00:00Z".into(),
                duration_s: 1.0,
            },
            settings: Settings {
                iterations: 10,
                warmup: 1,
                pull_iterations: 3,
                concurrent_pods: 20,
                concurrent_rounds: 2,
                scale_levels: vec![10],
                memory_levels: vec![10],
                scale_samples: 5,
                image: "busybox".into(),
            },
            latency: vec![
                LatencyRow::new("run_pod_sandbox", "RunPodSandbox", Group::Latency, samples(1.0)),
                LatencyRow::new("full_cycle.run", "full cycle: RunPodSandbox", Group::CyclePhase, samples(2.0)),
            ],
            memory: vec![
                MemorySnapshot {
                    label: "idle".into(),
                    pods: 0,
                    daemon: proc_mem(1, name, daemon_rss),
                    helpers: vec![],
                    helpers_rss_kib: 0,
                    helpers_pss_kib: 0,
                    per_pod_pss_kib: None,
                },
                MemorySnapshot {
                    label: "10 pods".into(),
                    pods: 10,
                    daemon: proc_mem(1, name, daemon_rss * 2),
                    helpers: (0..10).map(|i| proc_mem(10 + i, "helper", 1024)).collect(),
                    helpers_rss_kib: 10240,
                    helpers_pss_kib: 5120,
                    per_pod_pss_kib: Some(512.0),
                },
            ],
            pull: None,
            notes: vec![format!("{name} note")],
        }
    }

    #[test]
    fn ratios_are_runtime_over_baseline_medians() {
        let cmp = Comparison::new(run("corral", 1.0, 8192), run("containerd", 20.0, 46 * 1024), "now".into());
        let r = cmp.ratios.iter().find(|r| r.key == "run_pod_sandbox").unwrap();
        assert_eq!((r.runtime, r.baseline), (5.0, 100.0));
        assert_eq!(r.ratio, Some(0.05));
        let m = cmp.ratios.iter().find(|r| r.key == "daemon_rss@idle").unwrap();
        assert_eq!(m.ratio, Some(8192.0 / (46.0 * 1024.0)));
        assert!(cmp.ratios.iter().any(|r| r.key == "per_pod_pss@10 pods" && r.ratio == Some(1.0)));
    }

    #[test]
    fn markdown_has_every_row_ratio_and_goal() {
        let cmp = Comparison::new(run("corral", 1.0, 8192), run("containerd", 5.0, 46 * 1024), "now".into());
        let md = cmp.markdown(Some("full_cycle.svg"));
        assert!(
            md.contains("| RunPodSandbox | 5.00 | 9.00 | 10.00 | 25.00 | 45.00 | 50.00 | 0.200 | missed |"),
            "{md}"
        );
        assert!(md.contains("| full cycle: RunPodSandbox | 10.00 |"), "{md}");
        assert!(md.contains("| daemon RSS (idle) | 0 | 8.00 MiB | 46.00 MiB | 0.174 | met |"), "{md}");
        assert!(md.contains("| per-pod overhead PSS (10 pods) | 10 | 0.50 MiB | 0.50 MiB | 1.000 | met |"), "{md}");
        assert!(md.contains("10 × `helper`"), "{md}");
        assert!(md.contains("![full cycle latency CDF](full_cycle.svg)"));
        assert!(md.contains("- containerd note"));
        assert!(md.contains("0.50/0.40/0.30 → 1.00/0.90/0.80 (CPUs 50% busy, CPU pressure 25%)"), "{md}");
    }
}
