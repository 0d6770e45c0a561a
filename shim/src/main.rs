//! `corral`: the daemon binary.
//!
//! `corral serve` runs the CRI gRPC server. The same binary is re-executed for work that
//! must not happen inside the multi-threaded daemon (per-container monitors, see
//! docs/design.md); those modes are dispatched here before any thread or tokio runtime
//! exists.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use corral::config::Config;
use corral::server;

#[derive(Parser)]
#[command(name = "corral", version, about = "corral: a Kubernetes CRI container runtime")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the CRI daemon.
    Serve(ServeArgs),
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the full default configuration as TOML.
    Default,
    /// Print the effective configuration (defaults, then --config, then flags) as TOML.
    Show(ServeArgs),
}

/// Flags of `corral serve`; each overrides the matching key of the config file.
#[derive(clap::Args, Default)]
struct ServeArgs {
    /// TOML configuration file (see `corral config default`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// CRI socket path [default: /run/corral/corral.sock].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Persistent state directory [default: /var/lib/corral].
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Runtime state directory [default: /run/corral].
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Log level or tracing filter [default: info].
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log each traced span's duration when it ends [default: false].
    #[arg(long)]
    log_span_timings: bool,
    /// Cgroup subtree corral owns [default: /corral].
    #[arg(long, value_name = "PATH")]
    cgroup_root: Option<String>,
    /// Pod network bridge name [default: corral0].
    #[arg(long, value_name = "NAME")]
    bridge: Option<String>,
    /// Pod address range [default: 10.88.0.0/16].
    #[arg(long, value_name = "CIDR")]
    pod_cidr: Option<String>,
    /// Streaming server port, 0 for any free port [default: 0].
    #[arg(long, value_name = "PORT")]
    streaming_port: Option<u16>,
}

impl ServeArgs {
    /// Defaults, then the file, then the flags.
    fn effective_config(&self) -> anyhow::Result<Config> {
        let mut cfg = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        if let Some(v) = &self.socket {
            cfg.socket = v.clone();
        }
        if let Some(v) = &self.root {
            cfg.root = v.clone();
        }
        if let Some(v) = &self.state_dir {
            cfg.state_dir = v.clone();
        }
        if let Some(v) = &self.log_level {
            cfg.log_level = v.clone();
        }
        if self.log_span_timings {
            cfg.log_span_timings = true;
        }
        if let Some(v) = &self.cgroup_root {
            cfg.cgroup_root = v.clone();
        }
        if let Some(v) = &self.bridge {
            cfg.network.bridge = v.clone();
        }
        if let Some(v) = &self.pod_cidr {
            cfg.network.pod_cidr = v.clone();
        }
        if let Some(v) = self.streaming_port {
            cfg.streaming.port = v;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

fn main() -> ExitCode {
    // Hidden helper modes (monitor, exec, pause) fork without exec: they must run before
    // clap, logging or tokio create anything, while the process is single-threaded.
    if let Some(code) = corral_runtime::run_helper_mode() {
        return code;
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => args.effective_config().and_then(serve),
        Command::Config { command: ConfigCommand::Default } => {
            print!("{}", Config::default().to_toml());
            Ok(())
        }
        Command::Config { command: ConfigCommand::Show(args) } => args.effective_config().map(|cfg| {
            print!("{}", cfg.to_toml());
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("corral: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    init_logging(&config.log_level, config.log_span_timings)?;
    // glibc gives each thread that allocates its own 64 MiB arena; the blocking-pool threads
    // that come and go would leave pages behind in many of them. Two arenas are plenty for a
    // daemon whose work is mostly waiting on syscalls.
    // SAFETY: plain libc call, made before any other thread exists.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("corral").build()?;
    runtime.block_on(server::serve(config))
}

fn init_logging(level: &str, span_timings: bool) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .map_err(|e| anyhow::anyhow!("invalid --log-level {level:?}: {e}"))?;
    use std::io::IsTerminal;
    use tracing_subscriber::fmt::format::FmtSpan;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .with_span_events(if span_timings { FmtSpan::CLOSE } else { FmtSpan::NONE })
        .init();
    Ok(())
}
