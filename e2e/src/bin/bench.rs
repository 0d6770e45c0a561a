//! `bench`: benchmark a CRI runtime, and compare two runs.
//!
//! ```text
//! bench run --endpoint unix:///run/x.sock --name corral --kind corral --daemon-pid 123 \
//!           --image 127.0.0.1:5000/busybox:latest --log-root /tmp/logs --out corral.json
//! bench report --runtime corral.json --baseline containerd.json --out-dir e2e/results
//! ```
//! `e2e/bench.sh` starts both runtimes and calls these; see there for a complete run.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use corral_e2e::bench::chart::{Series, latency_cdf};
use corral_e2e::bench::memory::RuntimeProcesses;
use corral_e2e::bench::population::Plan;
use corral_e2e::bench::pull::PullPlan;
use corral_e2e::bench::report::Comparison;
use corral_e2e::bench::results::{RunResults, write_json};
use corral_e2e::bench::runner::{RunOptions, run};
use corral_e2e::bench::scenarios::{Repeat, SCENARIOS};

#[derive(Parser)]
#[command(name = "bench", about = "Benchmark a CRI runtime over its unix socket")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every scenario against one endpoint and write its results as JSON.
    Run(Box<RunArgs>),
    /// Compare two `run` results: combined JSON, markdown table, latency chart.
    Report(ReportArgs),
}

/// How the runtime's processes are recognized for the memory figures.
#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    /// Helpers are re-executions of the daemon's binary.
    Corral,
    /// Helpers are `containerd-shim-runc-v2` processes serving the endpoint's socket.
    Containerd,
}

#[derive(clap::Args)]
struct RunArgs {
    /// CRI endpoint, `unix:///path/to.sock`.
    #[arg(long)]
    endpoint: String,
    /// Name of the runtime in the results.
    #[arg(long)]
    name: String,
    #[arg(long, value_enum)]
    kind: Kind,
    /// PID of the runtime's daemon.
    #[arg(long)]
    daemon_pid: u32,
    /// Image of every container (pulled before anything is timed).
    #[arg(long)]
    image: String,
    /// More images to pull before anything is timed (containerd's sandbox image).
    #[arg(long)]
    pre_pull: Vec<String>,
    /// Image for the cold-pull scenario (skipped without it).
    #[arg(long)]
    pull_image: Option<String>,
    /// Layer digest of the pull image that must be gone from the store after RemoveImage.
    #[arg(long)]
    pull_layer: Vec<String>,
    /// The runtime's image store directory, checked after each RemoveImage.
    #[arg(long)]
    image_store: Option<PathBuf>,
    /// Directory for the pods' log directories.
    #[arg(long)]
    log_root: PathBuf,
    /// Where to write the results.
    #[arg(long)]
    out: PathBuf,
    /// Single-pod scenarios to run, by key (default: all of them).
    #[arg(long, value_delimiter = ',', value_parser = scenario_key)]
    scenarios: Vec<String>,
    #[arg(long, default_value_t = 50)]
    iterations: usize,
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    #[arg(long, default_value_t = 10)]
    pull_iterations: usize,
    /// Pulls before the timed ones (the first pull also warms the runtime's HTTP client).
    #[arg(long, default_value_t = 1)]
    pull_warmup: usize,
    #[arg(long, default_value_t = 20)]
    concurrent_pods: usize,
    #[arg(long, default_value_t = 5)]
    concurrent_rounds: usize,
    /// Populations at which RunPodSandbox and ListContainers are timed (none: no value).
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "10,100,300")]
    scale_levels: Vec<usize>,
    /// Populations at which memory is measured (none: no value).
    #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "10,100")]
    memory_levels: Vec<usize>,
    /// Samples per operation and population.
    #[arg(long, default_value_t = 20)]
    scale_samples: usize,
    /// Pods started or removed at once while growing or clearing the population.
    #[arg(long, default_value_t = 4)]
    parallel: usize,
    /// Wait before each memory snapshot, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    settle_ms: u64,
}

#[derive(clap::Args)]
struct ReportArgs {
    /// Results of the runtime under test.
    #[arg(long)]
    runtime: PathBuf,
    /// Results of the runtime it is compared with.
    #[arg(long)]
    baseline: PathBuf,
    /// Writes latest.json, latest.md and full_cycle.svg here.
    #[arg(long)]
    out_dir: PathBuf,
}

/// Accepts the key of a single-pod scenario.
fn scenario_key(key: &str) -> Result<String, String> {
    if SCENARIOS.iter().any(|(k, _)| *k == key) {
        return Ok(key.to_owned());
    }
    let known: Vec<&str> = SCENARIOS.iter().map(|(k, _)| *k).collect();
    Err(format!("unknown scenario {key:?}; known: {}", known.join(", ")))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    match Cli::parse().command {
        Command::Run(args) => run_command(*args).await,
        Command::Report(args) => report_command(args),
    }
}

async fn run_command(args: RunArgs) -> anyhow::Result<()> {
    let processes = match args.kind {
        Kind::Corral => RuntimeProcesses::Corral { daemon: args.daemon_pid },
        Kind::Containerd => {
            let path = args.endpoint.strip_prefix("unix://").unwrap_or(&args.endpoint);
            RuntimeProcesses::Containerd { daemon: args.daemon_pid, socket: PathBuf::from(path) }
        }
    };
    let opts = RunOptions {
        endpoint: args.endpoint,
        name: args.name,
        processes,
        image: args.image,
        pre_pull: args.pre_pull,
        pull: args.pull_image.map(|image| PullPlan { image, layers: args.pull_layer, store: args.image_store }),
        log_root: args.log_root,
        repeat: Repeat { warmup: args.warmup, iterations: args.iterations },
        scenarios: args.scenarios,
        pull_iterations: args.pull_iterations,
        pull_warmup: args.pull_warmup,
        concurrent_pods: args.concurrent_pods,
        concurrent_rounds: args.concurrent_rounds,
        population: Plan {
            scale_levels: args.scale_levels,
            memory_levels: args.memory_levels,
            samples: args.scale_samples,
            parallel: args.parallel,
            settle: Duration::from_millis(args.settle_ms),
        },
    };
    let results = run(&opts).await.with_context(|| format!("benchmark of {}", opts.name))?;
    write_json(&args.out, &results)?;
    tracing::info!(out = %args.out.display(), secs = results.host.duration_s, "results written");
    Ok(())
}

fn report_command(args: ReportArgs) -> anyhow::Result<()> {
    let runtime = RunResults::read(&args.runtime)?;
    let baseline = RunResults::read(&args.baseline)?;
    std::fs::create_dir_all(&args.out_dir).with_context(|| format!("creating {}", args.out_dir.display()))?;

    let chart_name = "full_cycle.svg";
    let cycle = |r: &RunResults| r.row("full_cycle").map(|row| row.samples.ms.clone()).unwrap_or_default();
    let (a, b) = (cycle(&runtime), cycle(&baseline));
    let series = [
        Series { label: &runtime.runtime.name, samples_ms: &a },
        Series { label: &baseline.runtime.name, samples_ms: &b },
    ];
    let chart = match latency_cdf(&args.out_dir.join(chart_name), "Full pod cycle latency (CDF)", &series) {
        Ok(()) => Some(chart_name),
        Err(e) => {
            tracing::warn!("no chart: {e}");
            None
        }
    };

    let generated_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let comparison = Comparison::new(runtime, baseline, generated_at);
    write_json(&args.out_dir.join("latest.json"), &comparison)?;
    let md_path = args.out_dir.join("latest.md");
    std::fs::write(&md_path, comparison.markdown(chart)).with_context(|| format!("writing {}", md_path.display()))?;
    tracing::info!(dir = %args.out_dir.display(), "report written");
    Ok(())
}
