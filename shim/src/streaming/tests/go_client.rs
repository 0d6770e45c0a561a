//! Builds and runs `e2e/streaming-client`, the Go program that speaks to our server with
//! client-go's own executors and dialers (the code crictl and kubelet run).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

/// The client binary, built once per test process with `go build`.
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let src = manifest.join("../e2e/streaming-client");
        let out = manifest.join("../target/e2e-bin/streaming-client");
        let status = std::process::Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(&src)
            .status()
            .expect("running `go build` for e2e/streaming-client (is Go installed?)");
        assert!(status.success(), "go build of e2e/streaming-client failed");
        out
    })
}

pub const TRANSPORTS: [&str; 2] = ["spdy", "websocket"];

/// Starts `streaming-client <args>` with piped stdio.
pub fn spawn(args: &[&str]) -> Child {
    Command::new(binary())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn streaming-client")
}

/// What one client run produced.
#[derive(Debug)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// Runs an exec/attach client to completion, feeding `stdin` (then EOF) if given.
pub async fn exec(transport: &str, url: &str, extra: &[&str], stdin: Option<&[u8]>) -> Outcome {
    let mut args = vec!["exec", "-transport", transport, "-url", url];
    args.extend_from_slice(extra);
    if stdin.is_some() {
        args.push("-stdin");
    }
    let mut child = spawn(&args);
    let mut input = child.stdin.take().expect("stdin");
    if let Some(data) = stdin {
        input.write_all(data).await.expect("write client stdin");
    }
    drop(input);
    finish(child).await
}

/// Waits (bounded) for a client and collects its output.
pub async fn finish(mut child: Child) -> Outcome {
    // A caller may have taken stdout already (to read it line by line).
    let stdout = child.stdout.take();
    let mut stderr = child.stderr.take().expect("stderr");
    let (mut out, mut err) = (String::new(), String::new());
    let run = async {
        let read_out = async {
            if let Some(mut stdout) = stdout {
                let _ = stdout.read_to_string(&mut out).await;
            }
        };
        let (_, _, status) = tokio::join!(read_out, stderr.read_to_string(&mut err), child.wait());
        status.expect("wait for streaming-client")
    };
    let status = tokio::time::timeout(Duration::from_secs(60), run).await.expect("streaming-client timed out");
    Outcome { stdout: out, stderr: err, code: status.code().unwrap_or(-1) }
}
