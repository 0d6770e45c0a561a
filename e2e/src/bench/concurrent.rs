//! Many pods started at once, as kubelet does when a node gets a batch of pods: each pod
//! is RunPodSandbox + CreateContainer + StartContainer, all pods in parallel over the one
//! connection. Measures the wall time of a round and every pod's own latency.

use std::time::Instant;

use tokio::task::JoinSet;

use super::client::Cri;
use super::error::{BenchError, Result};
use super::pods::teardown_many;
use super::results::{Group, LatencyRow};
use super::stats::{Samples, ms};
use super::workload::Workload;

/// `rounds` rounds of `pods` concurrent pod starts (after one warm-up round if `warmup`).
pub async fn concurrent_starts(
    cri: &Cri,
    wl: &Workload,
    pods: usize,
    rounds: usize,
    warmup: bool,
) -> Result<Vec<LatencyRow>> {
    let mut wall = Samples::default();
    let mut per_pod = Samples::default();
    for round in 0..rounds + usize::from(warmup) {
        // Log directories are made before the clock starts, as kubelet makes them.
        let configs = (0..pods).map(|_| wl.pod("concurrent")).collect::<Result<Vec<_>>>()?;
        let start = Instant::now();
        let mut tasks = JoinSet::new();
        for config in configs {
            let (cri, container) = (cri.clone(), wl.sleeper());
            tasks.spawn(async move {
                let t = Instant::now();
                let id = cri.run_pod(config.clone()).await?;
                let started = async {
                    let cid = cri.create_container(&id, container, config).await?;
                    cri.start_container(&cid).await
                }
                .await;
                Ok::<_, BenchError>((id, started.map(|()| t.elapsed())))
            });
        }
        let mut ids = Vec::new();
        let mut latencies = Vec::new();
        let mut first_error = None;
        while let Some(done) = tasks.join_next().await {
            match done.map_err(|e| BenchError::task("concurrent", e)).and_then(|r| r) {
                Ok((id, started)) => {
                    ids.push(id);
                    match started {
                        Ok(d) => latencies.push(d),
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let round_wall = start.elapsed();
        let cleanup = teardown_many(cri, ids, pods).await;
        if let Some(e) = first_error {
            return Err(e);
        }
        cleanup?;
        if round >= usize::from(warmup) {
            tracing::info!(pods, wall_ms = ms(round_wall), "concurrent round done");
            wall.push(round_wall);
            latencies.into_iter().for_each(|d| per_pod.push(d));
        }
    }
    Ok(vec![
        LatencyRow::new(
            format!("concurrent_{pods}.wall"),
            format!("{pods} pods started concurrently: wall time"),
            Group::Concurrent,
            wall,
        ),
        LatencyRow::new(
            format!("concurrent_{pods}.per_pod"),
            format!("{pods} pods started concurrently: per-pod latency"),
            Group::Concurrent,
            per_pod,
        ),
    ])
}
