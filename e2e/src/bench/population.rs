//! The runtime with many pods running: memory at each population, and whether
//! RunPodSandbox and ListContainers stay flat as pods pile up.
//!
//! The population grows level by level (10, then 100, then 300 pods, each with one running
//! `sleep` container), a few pods in parallel. At each level the requested measurements run:
//! a memory snapshot after the runtime settled, RunPodSandbox samples (each extra pod is
//! removed again untimed, so the population stays at the level), ListContainers samples.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::client::Cri;
use super::error::{BenchError, Result};
use super::memory::{MemorySnapshot, RuntimeProcesses, sandbox_pid};
use super::pods::{teardown, teardown_many};
use super::results::{Group, LatencyRow};
use super::stats::Samples;
use super::workload::Workload;

/// What to measure at which population.
pub struct Plan {
    /// Populations at which RunPodSandbox and ListContainers are timed.
    pub scale_levels: Vec<usize>,
    /// Populations at which memory is measured.
    pub memory_levels: Vec<usize>,
    /// Samples per timed operation and level.
    pub samples: usize,
    /// Pods started (and removed) at the same time while growing (and shrinking).
    pub parallel: usize,
    /// Wait before a memory snapshot, so start-up allocations are not what gets measured.
    pub settle: Duration,
}

/// The running pods of the population.
pub struct Population<'a> {
    cri: &'a Cri,
    wl: &'a Workload,
    procs: &'a RuntimeProcesses,
    pods: Vec<String>,
}

impl<'a> Population<'a> {
    pub fn new(cri: &'a Cri, wl: &'a Workload, procs: &'a RuntimeProcesses) -> Self {
        Population { cri, wl, procs, pods: Vec::new() }
    }

    /// Grows through every level of `plan` and measures there.
    pub async fn measure(&mut self, plan: &Plan) -> Result<(Vec<LatencyRow>, Vec<MemorySnapshot>)> {
        let mut levels: Vec<usize> = plan.scale_levels.iter().chain(&plan.memory_levels).copied().collect();
        levels.sort_unstable();
        levels.dedup();
        let (mut runp_rows, mut list_rows, mut memory) = (Vec::new(), Vec::new(), Vec::new());
        for level in levels {
            let t = Instant::now();
            self.grow_to(level, plan.parallel).await?;
            tracing::info!(pods = level, secs = t.elapsed().as_secs_f64(), "population reached");
            if plan.memory_levels.contains(&level) {
                tokio::time::sleep(plan.settle).await;
                memory.push(self.snapshot(&format!("{level} pods")).await?);
            }
            if plan.scale_levels.contains(&level) {
                runp_rows.push(self.time_run_pod(level, plan.samples).await?);
                list_rows.push(self.time_list_containers(level, plan.samples).await?);
            }
        }
        runp_rows.extend(list_rows);
        Ok((runp_rows, memory))
    }

    /// Memory now, with the sandbox processes the runtime reports for the population's pods.
    pub async fn snapshot(&self, label: &str) -> Result<MemorySnapshot> {
        let mut sandbox_pids = Vec::new();
        for id in &self.pods {
            sandbox_pids.extend(sandbox_pid(&self.cri.pod_info(id).await?));
        }
        let snap = self.procs.snapshot(label, self.pods.len(), &sandbox_pids)?;
        if !self.pods.is_empty() && snap.helpers.is_empty() {
            return Err(BenchError::check(
                "memory",
                format!(
                    "no runtime helper process found for {} running pods: cannot attribute overhead",
                    self.pods.len()
                ),
            ));
        }
        tracing::info!(
            label,
            daemon_rss_kib = snap.daemon.rss_kib,
            daemon_pss_kib = snap.daemon.pss_kib,
            helpers = snap.helpers.len(),
            per_pod_pss_kib = snap.per_pod_pss_kib,
            "memory"
        );
        Ok(snap)
    }

    /// Removes every pod of the population.
    pub async fn clear(&mut self, parallel: usize) -> Result<()> {
        teardown_many(self.cri, std::mem::take(&mut self.pods), parallel).await
    }

    async fn grow_to(&mut self, target: usize, parallel: usize) -> Result<()> {
        let mut tasks = JoinSet::new();
        let mut first_error = None;
        let mut wanted = target.saturating_sub(self.pods.len());
        loop {
            while wanted > 0 && tasks.len() < parallel.max(1) && first_error.is_none() {
                let (cri, config) = (self.cri.clone(), self.wl.pod("population")?);
                let container = self.wl.sleeper();
                tasks.spawn(async move {
                    let id = cri.run_pod(config.clone()).await?;
                    let started = async {
                        let cid = cri.create_container(&id, container, config).await?;
                        cri.start_container(&cid).await
                    }
                    .await;
                    Ok::<_, BenchError>((id, started))
                });
                wanted -= 1;
            }
            let Some(done) = tasks.join_next().await else { break };
            match done.map_err(|e| BenchError::task("population", e)).and_then(|r| r) {
                // A pod whose container failed is kept in the list so the clean-up removes it.
                Ok((id, started)) => {
                    self.pods.push(id);
                    if let Err(e) = started {
                        first_error.get_or_insert(e);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn time_run_pod(&self, level: usize, samples: usize) -> Result<LatencyRow> {
        let mut timed = Samples::default();
        for _ in 0..samples {
            let config = self.wl.pod("scale-runp")?;
            let t = Instant::now();
            let id = self.cri.run_pod(config).await?;
            timed.push(t.elapsed());
            teardown(self.cri, &id).await?;
        }
        Ok(LatencyRow::new(
            format!("scale.run_pod_sandbox@{level}"),
            format!("RunPodSandbox with {level} pods running"),
            Group::Scaling,
            timed,
        ))
    }

    async fn time_list_containers(&self, level: usize, samples: usize) -> Result<LatencyRow> {
        let mut timed = Samples::default();
        for _ in 0..samples {
            let t = Instant::now();
            let listed = self.cri.list_containers().await?;
            timed.push(t.elapsed());
            if listed.len() < level {
                return Err(BenchError::check(
                    "scaling",
                    format!("ListContainers returned {} containers with {level} pods running", listed.len()),
                ));
            }
        }
        Ok(LatencyRow::new(
            format!("scale.list_containers@{level}"),
            format!("ListContainers with {level} pods running"),
            Group::Scaling,
            timed,
        ))
    }
}
