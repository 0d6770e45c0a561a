//! Untimed pod plumbing shared by the scenarios: start a pod with one container, tear
//! pods down (one, many at once, or every pod of the run).

use std::sync::Arc;

use corral_cri::v1;
use tokio::task::JoinSet;

use super::client::Cri;
use super::error::{BenchError, Result};
use super::workload::Workload;

/// A running pod with one started container.
pub struct Pod {
    pub id: String,
    pub config: v1::PodSandboxConfig,
    pub container: String,
}

/// RunPodSandbox, CreateContainer, StartContainer.
pub async fn start_pod(cri: &Cri, wl: &Workload, scenario: &str, container: v1::ContainerConfig) -> Result<Pod> {
    let config = wl.pod(scenario)?;
    let id = cri.run_pod(config.clone()).await?;
    let started = async {
        let cid = cri.create_container(&id, container, config.clone()).await?;
        cri.start_container(&cid).await?;
        Ok(cid)
    };
    match started.await {
        Ok(cid) => Ok(Pod { id, config, container: cid }),
        Err(e) => {
            // Do not leave a half-started pod behind; the original error is the one to report.
            let _ = teardown(cri, &id).await;
            Err(e)
        }
    }
}

/// StopPodSandbox then RemovePodSandbox (which removes the pod's containers).
pub async fn teardown(cri: &Cri, id: &str) -> Result<()> {
    cri.stop_pod(id).await?;
    cri.remove_pod(id).await
}

/// Tears down `ids` with at most `parallel` pods in flight; reports the first failure
/// after trying every pod.
pub async fn teardown_many(cri: &Cri, ids: Vec<String>, parallel: usize) -> Result<()> {
    let ids = Arc::new(tokio::sync::Mutex::new(ids));
    let mut workers = JoinSet::new();
    for _ in 0..parallel.max(1) {
        let (cri, ids) = (cri.clone(), ids.clone());
        workers.spawn(async move {
            let mut first_error = None;
            loop {
                let Some(id) = ids.lock().await.pop() else { break };
                if let Err(e) = teardown(&cri, &id).await {
                    first_error.get_or_insert(e);
                }
            }
            first_error.map_or(Ok(()), Err)
        });
    }
    let mut result = Ok(());
    while let Some(done) = workers.join_next().await {
        let outcome = done.map_err(|e| BenchError::task("teardown", e)).and_then(|r| r);
        if result.is_ok() {
            result = outcome;
        }
    }
    result
}

/// Removes every pod carrying this run's label: the clean-up after a run, a failure or an
/// interrupt.
pub async fn teardown_run(cri: &Cri, wl: &Workload, parallel: usize) -> Result<usize> {
    let ids: Vec<String> = cri.list_pods(&wl.selector()).await?.into_iter().map(|p| p.id).collect();
    let count = ids.len();
    teardown_many(cri, ids, parallel).await?;
    Ok(count)
}
