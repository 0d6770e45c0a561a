//! `corral-bridge`: corral's builtin pod network as a CNI plugin, so containerd (or any
//! CNI runtime) can use it. The protocol lives in [`corral_net::plugin`]; this is I/O.

use std::io::{Read, Write};

fn main() {
    // Logs go to stderr, which runtimes capture; stdout is reserved for the protocol.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CORRAL_NET_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();

    let version_only = std::env::var("CNI_COMMAND").is_ok_and(|c| c == "VERSION");
    let mut stdin = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut stdin) {
        // VERSION may come without stdin at all.
        if !version_only {
            finish(1, &corral_net::plugin::error_json(corral_net::CNI_VERSION, 5, &format!("read stdin: {e}")));
        }
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            finish(1, &corral_net::plugin::error_json(corral_net::CNI_VERSION, 5, &format!("start runtime: {e}")))
        }
    };
    let reply = runtime.block_on(corral_net::plugin::run(|k| std::env::var(k).ok(), &stdin));
    finish(reply.exit_code, &reply.stdout);
}

fn finish(code: i32, stdout: &[u8]) -> ! {
    let mut out = std::io::stdout().lock();
    // Nothing sensible is left to do if stdout is gone.
    let _ = out.write_all(stdout);
    let _ = out.flush();
    std::process::exit(code);
}
