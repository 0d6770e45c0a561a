//! One benchmark run against one CRI endpoint: every scenario in a fixed order, then the
//! clean-up, which also runs after a failure or Ctrl-C.
//!
//! Order matters: the cold pull runs first, while the store is empty (the benchmark image
//! shares its base layer with the container image); the workload images are pulled next,
//! outside any timing; idle memory is measured before the first pod and again after the last.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use super::client::Cri;
use super::concurrent::concurrent_starts;
use super::error::{BenchError, Result};
use super::memory::RuntimeProcesses;
use super::pods::teardown_run;
use super::population::{Plan, Population};
use super::pull::{PullPlan, cold_pulls};
use super::results::{CpuMeter, HostInfo, RunResults, RuntimeInfo, Settings, kernel, loadavg};
use super::scenarios::{self, Repeat};
use super::workload::Workload;

/// Everything `bench run` needs to know.
pub struct RunOptions {
    /// `unix:///path/to.sock`.
    pub endpoint: String,
    /// The name the results carry (`corral`, `containerd`).
    pub name: String,
    pub processes: RuntimeProcesses,
    /// The image every container runs.
    pub image: String,
    /// Images pulled before anything is timed (containerd's sandbox image).
    pub pre_pull: Vec<String>,
    /// The cold-pull scenario; skipped when `None`.
    pub pull: Option<PullPlan>,
    /// Pod log directories go here.
    pub log_root: PathBuf,
    pub repeat: Repeat,
    /// Keys of the single-pod scenarios to run (all when empty), see [`scenarios::SCENARIOS`].
    pub scenarios: Vec<String>,
    pub pull_iterations: usize,
    pub pull_warmup: usize,
    pub concurrent_pods: usize,
    pub concurrent_rounds: usize,
    pub population: Plan,
}

/// Runs every scenario; on success, failure or Ctrl-C removes every pod it created.
pub async fn run(opts: &RunOptions) -> Result<RunResults> {
    let cri = Cri::connect(&opts.endpoint).await?;
    let run_id = format!(
        "{}-{}",
        opts.name,
        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs()
    );
    let wl = Workload::new(&opts.image, &opts.log_root, &run_id);
    let outcome = tokio::select! {
        outcome = scenarios(&cri, &wl, opts) => outcome,
        signal = interrupted() => Err(BenchError::check("run", format!("interrupted by {signal}"))),
    };
    tracing::info!("cleaning up");
    let cleanup = teardown_run(&cri, &wl, opts.population.parallel).await;
    match (outcome, cleanup) {
        (Ok(results), Ok(_)) => Ok(results),
        (Ok(_), Err(e)) => Err(e),
        (Err(e), Ok(left)) => {
            if left > 0 {
                tracing::info!(pods = left, "removed the pods the failed run left");
            }
            Err(e)
        }
        (Err(e), Err(cleanup)) => {
            tracing::error!("clean-up failed too: {cleanup}");
            Err(e)
        }
    }
}

async fn scenarios(cri: &Cri, wl: &Workload, opts: &RunOptions) -> Result<RunResults> {
    let started = Instant::now();
    let started_at = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let loadavg_start = loadavg();
    let cpu = CpuMeter::start();
    let version = cri.version().await?;
    tracing::info!(runtime = %version.runtime_name, version = %version.runtime_version, "connected");
    let mut notes = Vec::new();
    let mut latency = Vec::new();

    let pull_check = match &opts.pull {
        Some(plan) => {
            tracing::info!(image = %plan.image, "scenario: cold pull");
            let (row, check) = cold_pulls(cri, plan, opts.pull_warmup, opts.pull_iterations).await?;
            if !check.leftovers.is_empty() {
                notes.push(format!(
                    "{} kept content named after a layer digest after RemoveImage (e.g. {}): those pulls were not fully cold",
                    opts.name, check.leftovers[0]
                ));
            }
            latency.push(row);
            Some(check)
        }
        None => None,
    };

    for image in std::iter::once(&opts.image).chain(&opts.pre_pull) {
        cri.pull_image(image).await?;
    }
    let mut population = Population::new(cri, wl, &opts.processes);
    tokio::time::sleep(opts.population.settle).await;
    let mut memory = vec![population.snapshot("idle").await?];

    latency.extend(scenarios::run(cri, wl, opts.repeat, &opts.scenarios).await?);

    if opts.concurrent_rounds > 0 {
        tracing::info!(pods = opts.concurrent_pods, rounds = opts.concurrent_rounds, "scenario: concurrent starts");
        latency.extend(
            concurrent_starts(cri, wl, opts.concurrent_pods, opts.concurrent_rounds, opts.repeat.warmup > 0).await?,
        );
    }

    let (scaling, at_levels) = population.measure(&opts.population).await?;
    latency.extend(scaling);
    memory.extend(at_levels);
    population.clear(opts.population.parallel).await?;
    tokio::time::sleep(opts.population.settle).await;
    memory.push(population.snapshot("idle after").await?);

    Ok(RunResults {
        runtime: RuntimeInfo {
            name: opts.name.clone(),
            reported: format!("{} {}", version.runtime_name, version.runtime_version),
            endpoint: opts.endpoint.clone(),
        },
        host: HostInfo {
            kernel: kernel(),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            loadavg_start,
            loadavg_end: loadavg(),
            cpu: cpu.finish(),
            started_at,
            duration_s: Duration::as_secs_f64(&started.elapsed()),
        },
        settings: Settings {
            iterations: opts.repeat.iterations,
            warmup: opts.repeat.warmup,
            pull_iterations: opts.pull_iterations,
            concurrent_pods: opts.concurrent_pods,
            concurrent_rounds: opts.concurrent_rounds,
            scale_levels: opts.population.scale_levels.clone(),
            memory_levels: opts.population.memory_levels.clone(),
            scale_samples: opts.population.samples,
            image: opts.image.clone(),
        },
        latency,
        memory,
        pull: pull_check,
        notes,
    })
}

/// Resolves on SIGINT or SIGTERM (with the signal's name), so that an interrupted run
/// still removes its pods before the runtime is stopped.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut int), Ok(mut term)) => tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        },
        // Without signal handlers the run cannot be interrupted cleanly; it still completes.
        _ => std::future::pending().await,
    }
}
