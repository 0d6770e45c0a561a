//! The single-pod latency scenarios. Each iteration does its setup untimed, times exactly
//! the operations the scenario names, and tears down untimed; `warmup` iterations run
//! first and are discarded.
//!
//! Containers are stopped with a grace period of 0 (SIGKILL at once) in every scenario:
//! `sleep` is PID 1 of its PID namespace and ignores SIGTERM, so a grace period would
//! measure the grace period, not the runtime.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::client::Cri;
use super::error::{BenchError, Result};
use super::pods::{Pod, start_pod, teardown};
use super::results::{Group, LatencyRow};
use super::stats::Samples;
use super::workload::{Workload, log_file};

/// How long a container may take to write its first log line before the scenario fails.
const FIRST_LOG_LINE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the startup-latency scenario looks at the log file: the resolution of that row.
const LOG_POLL_INTERVAL: Duration = Duration::from_micros(250);
/// The ExecSync timeout, in seconds.
const EXEC_TIMEOUT_SECS: i64 = 10;

/// How many times to run each scenario.
#[derive(Clone, Copy, Debug)]
pub struct Repeat {
    pub warmup: usize,
    pub iterations: usize,
}

impl Repeat {
    /// Runs `one` warmup + iterations times and keeps the timed durations of the last
    /// `iterations`.
    async fn run<F, Fut>(self, mut one: F) -> Result<Samples>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Duration>>,
    {
        let mut samples = Samples::default();
        for i in 0..self.warmup + self.iterations {
            let d = one().await?;
            if i >= self.warmup {
                samples.push(d);
            }
        }
        Ok(samples)
    }
}

/// The single-pod scenarios in report order: key (for `--scenarios` and the results) and title.
pub const SCENARIOS: [(&str, &str); 7] = [
    ("run_pod_sandbox", "RunPodSandbox"),
    ("create_start_container", "CreateContainer + StartContainer"),
    ("exec_sync", "ExecSync `true`"),
    ("stop_remove_container", "StopContainer + RemoveContainer"),
    ("stop_remove_pod", "StopPodSandbox + RemovePodSandbox (running container)"),
    ("full_cycle", "Full pod cycle (run, create, start, exec, stop, remove)"),
    ("startup_to_first_log_line", "Pod startup: RunPodSandbox call to first log line"),
];

/// Runs the scenarios named in `only` (every one when empty), then adds the phases of the
/// full cycle if it ran.
pub async fn run(cri: &Cri, wl: &Workload, repeat: Repeat, only: &[String]) -> Result<Vec<LatencyRow>> {
    let mut rows = Vec::new();
    let mut phases = Vec::new();
    for (key, title) in SCENARIOS {
        if !only.is_empty() && !only.iter().any(|o| o == key) {
            continue;
        }
        tracing::info!("scenario: {title}");
        let samples = match key {
            "run_pod_sandbox" => repeat.run(|| run_pod_sandbox(cri, wl)).await?,
            "create_start_container" => repeat.run(|| create_start_container(cri, wl)).await?,
            "exec_sync" => exec_sync(cri, wl, repeat).await?,
            "stop_remove_container" => repeat.run(|| stop_remove_container(cri, wl)).await?,
            "stop_remove_pod" => repeat.run(|| stop_remove_pod(cri, wl)).await?,
            "full_cycle" => {
                let (total, cycle_phases) = full_cycle(cri, wl, repeat).await?;
                phases = cycle_phases;
                total
            }
            _ => repeat.run(|| startup_to_first_log_line(cri, wl)).await?,
        };
        rows.push(LatencyRow::new(key, title, Group::Latency, samples));
    }
    rows.extend(phases);
    Ok(rows)
}

async fn run_pod_sandbox(cri: &Cri, wl: &Workload) -> Result<Duration> {
    let config = wl.pod("runp")?;
    let t = Instant::now();
    let id = cri.run_pod(config).await?;
    let d = t.elapsed();
    teardown(cri, &id).await?;
    Ok(d)
}

async fn create_start_container(cri: &Cri, wl: &Workload) -> Result<Duration> {
    let config = wl.pod("create-start")?;
    let id = cri.run_pod(config.clone()).await?;
    let timed = async {
        let t = Instant::now();
        let cid = cri.create_container(&id, wl.sleeper(), config).await?;
        cri.start_container(&cid).await?;
        Ok(t.elapsed())
    }
    .await;
    teardown(cri, &id).await?;
    timed
}

/// ExecSync `true` in one long-running container, `repeat` times.
async fn exec_sync(cri: &Cri, wl: &Workload, repeat: Repeat) -> Result<Samples> {
    let pod = start_pod(cri, wl, "exec", wl.sleeper()).await?;
    let samples = repeat
        .run(|| async {
            let t = Instant::now();
            exec_true(cri, &pod.container).await?;
            Ok(t.elapsed())
        })
        .await;
    teardown(cri, &pod.id).await?;
    samples
}

async fn exec_true(cri: &Cri, container: &str) -> Result<()> {
    let out = cri.exec_sync(container, &["true"], EXEC_TIMEOUT_SECS).await?;
    if out.exit_code != 0 {
        return Err(BenchError::check(
            "exec_sync",
            format!(
                "`true` exited with {}: {}{}",
                out.exit_code,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ));
    }
    Ok(())
}

async fn stop_remove_container(cri: &Cri, wl: &Workload) -> Result<Duration> {
    let pod = start_pod(cri, wl, "stop-rm", wl.sleeper()).await?;
    let timed = async {
        let t = Instant::now();
        cri.stop_container(&pod.container, 0).await?;
        cri.remove_container(&pod.container).await?;
        Ok(t.elapsed())
    }
    .await;
    teardown(cri, &pod.id).await?;
    timed
}

async fn stop_remove_pod(cri: &Cri, wl: &Workload) -> Result<Duration> {
    let Pod { id, .. } = start_pod(cri, wl, "stopp-rmp", wl.sleeper()).await?;
    let t = Instant::now();
    let result = teardown(cri, &id).await;
    let d = t.elapsed();
    result.map(|()| d)
}

/// The phases of one full cycle, in order, with their keys and titles.
const PHASES: [(&str, &str); 8] = [
    ("run", "RunPodSandbox"),
    ("create", "CreateContainer"),
    ("start", "StartContainer"),
    ("exec", "ExecSync `true`"),
    ("stop_container", "StopContainer"),
    ("remove_container", "RemoveContainer"),
    ("stop_pod", "StopPodSandbox"),
    ("remove_pod", "RemovePodSandbox"),
];

/// Run, create, start, exec `true`, stop and remove the container, stop and remove the
/// pod: the whole life of a short pod, as kubelet drives it. Every phase is timed too.
async fn full_cycle(cri: &Cri, wl: &Workload, repeat: Repeat) -> Result<(Samples, Vec<LatencyRow>)> {
    let mut total = Samples::default();
    let mut phases = vec![Samples::default(); PHASES.len()];
    for i in 0..repeat.warmup + repeat.iterations {
        let config = wl.pod("cycle")?;
        let mut marks = Vec::with_capacity(PHASES.len() + 1);
        let mut pod_id = None;
        let cycle = async {
            marks.push(Instant::now());
            let id = cri.run_pod(config.clone()).await?;
            pod_id = Some(id.clone());
            marks.push(Instant::now());
            let cid = cri.create_container(&id, wl.sleeper(), config).await?;
            marks.push(Instant::now());
            cri.start_container(&cid).await?;
            marks.push(Instant::now());
            exec_true(cri, &cid).await?;
            marks.push(Instant::now());
            cri.stop_container(&cid, 0).await?;
            marks.push(Instant::now());
            cri.remove_container(&cid).await?;
            marks.push(Instant::now());
            cri.stop_pod(&id).await?;
            marks.push(Instant::now());
            cri.remove_pod(&id).await?;
            marks.push(Instant::now());
            Ok::<_, BenchError>(())
        }
        .await;
        if let Err(e) = cycle {
            if let Some(id) = pod_id {
                let _ = teardown(cri, &id).await;
            }
            return Err(e);
        }
        if i >= repeat.warmup {
            total.push(marks[PHASES.len()] - marks[0]);
            for (p, samples) in phases.iter_mut().enumerate() {
                samples.push(marks[p + 1] - marks[p]);
            }
        }
    }
    let rows = PHASES
        .iter()
        .zip(phases)
        .map(|((key, title), samples)| {
            LatencyRow::new(format!("full_cycle.{key}"), format!("full cycle: {title}"), Group::CyclePhase, samples)
        })
        .collect();
    Ok((total, rows))
}

/// From the RunPodSandbox call to the container's first line in its CRI log file: pod
/// startup latency in the Kubernetes SLO sense (minus the image pull, which is warm here).
async fn startup_to_first_log_line(cri: &Cri, wl: &Workload) -> Result<Duration> {
    let config = wl.pod("startup")?;
    let container = wl.greeter();
    let log = log_file(&config, &container);
    let t = Instant::now();
    let id = cri.run_pod(config.clone()).await?;
    let timed = async {
        let cid = cri.create_container(&id, container, config).await?;
        cri.start_container(&cid).await?;
        let seen = wait_for_line(log, "ready", Instant::now() + FIRST_LOG_LINE_TIMEOUT).await?;
        Ok(seen - t)
    }
    .await;
    teardown(cri, &id).await?;
    timed
}

/// Polls `path` (on a blocking thread, every [`LOG_POLL_INTERVAL`]) until it holds a
/// complete line containing `text`; returns when it was seen.
async fn wait_for_line(path: PathBuf, text: &'static str, deadline: Instant) -> Result<Instant> {
    let poll = move || loop {
        if has_line_with(&path, text) {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err(BenchError::check(
                "startup_to_first_log_line",
                format!("no line with {text:?} in {} after {FIRST_LOG_LINE_TIMEOUT:?}", path.display()),
            ));
        }
        std::thread::sleep(LOG_POLL_INTERVAL);
    };
    tokio::task::spawn_blocking(poll).await.map_err(|e| BenchError::task("startup_to_first_log_line", e))?
}

/// Whether the CRI log at `path` has a complete line containing `text` (a missing file
/// is simply not there yet).
fn has_line_with(path: &Path, text: &str) -> bool {
    std::fs::read(path).is_ok_and(|bytes| {
        bytes.split_inclusive(|&b| b == b'\n').any(|line| line.ends_with(b"\n") && contains(line, text.as_bytes()))
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_counts_only_once_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        assert!(!has_line_with(&path, "ready"), "no file yet");
        std::fs::write(&path, "2026-01-01T00:00:00.1Z stdout P rea").unwrap();
        assert!(!has_line_with(&path, "ready"));
        std::fs::write(&path, "2026-01-01T00:00:00.1Z stdout F ready\n").unwrap();
        assert!(has_line_with(&path, "ready"));
    }

    #[tokio::test]
    async fn waiting_for_a_line_sees_it_appear_or_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let writer = {
            let path = path.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(30));
                std::fs::write(path, "t stdout F ready\n").unwrap();
            })
        };
        let start = Instant::now();
        let seen = wait_for_line(path.clone(), "ready", start + Duration::from_secs(5)).await.unwrap();
        assert!(seen - start >= Duration::from_millis(30));
        writer.join().unwrap();

        let err = wait_for_line(dir.path().join("never.log"), "ready", Instant::now() + Duration::from_millis(20))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("never.log"), "{err}");
    }

    #[tokio::test]
    async fn repeat_discards_the_warmup() {
        let mut calls = 0u64;
        let samples = Repeat { warmup: 2, iterations: 3 }
            .run(|| {
                calls += 1;
                let d = Duration::from_millis(calls);
                async move { Ok(d) }
            })
            .await
            .unwrap();
        assert_eq!(samples.ms, vec![3.0, 4.0, 5.0]);
    }
}
