//! Executing one plugin binary the way the CNI spec says: parameters in `CNI_*`
//! environment variables, the config on stdin, the result or error on stdout.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::{Error, Result};

/// The `CNI_*` parameters of one invocation.
#[derive(Debug, Clone)]
pub(crate) struct Invocation<'a> {
    pub command: &'a str,
    pub container_id: &'a str,
    pub netns: &'a str,
    pub ifname: &'a str,
    /// `CNI_ARGS`, already joined (`K=V;K=V`).
    pub args: &'a str,
}

/// Finds plugin `kind` in `bin_dirs`, first match wins.
pub(crate) fn find_plugin(bin_dirs: &[PathBuf], kind: &str) -> Result<PathBuf> {
    if kind.contains('/') {
        return Err(Error::InvalidConfig(format!("plugin type {kind:?} must be a bare name")));
    }
    bin_dirs.iter().map(|d| d.join(kind)).find(|p| p.is_file()).ok_or_else(|| Error::NotReady {
        network: "cni".into(),
        reason: format!(
            "CNI plugin {kind:?} not found in {}",
            bin_dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(":")
        ),
    })
}

/// Runs `binary` with `config` on stdin. Returns the parsed stdout (or `Null` when it
/// printed nothing, as DEL does); a failing plugin becomes [`Error::Plugin`].
pub(crate) async fn exec(
    binary: &Path,
    bin_dirs: &[PathBuf],
    inv: &Invocation<'_>,
    config: &Value,
    timeout: Duration,
) -> Result<Value> {
    let kind = binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let cni_path = std::env::join_paths(bin_dirs).map_err(|e| Error::InvalidConfig(format!("bin dirs: {e}")))?;
    let mut child = tokio::process::Command::new(binary)
        .env("CNI_COMMAND", inv.command)
        .env("CNI_CONTAINERID", inv.container_id)
        .env("CNI_NETNS", inv.netns)
        .env("CNI_IFNAME", inv.ifname)
        .env("CNI_ARGS", inv.args)
        .env("CNI_PATH", cni_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::io(format!("exec CNI plugin {}", binary.display()), e))?;
    let stdin_bytes = config.to_string();
    let pipe = child.stdin.take();
    let feed = async move {
        if let Some(mut pipe) = pipe {
            // A plugin may exit without reading stdin (VERSION); that is not an error.
            // Dropping the pipe closes it: the plugin reads to EOF.
            let _ = pipe.write_all(stdin_bytes.as_bytes()).await;
        }
    };
    let finished = tokio::time::timeout(timeout, async { tokio::join!(feed, child.wait_with_output()).1 });
    let out = finished
        .await
        .map_err(|_| {
            Error::io(
                format!("CNI plugin {} {}", binary.display(), inv.command),
                std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer in {timeout:?}, killed")),
            )
        })?
        .map_err(|e| Error::io(format!("wait for CNI plugin {}", binary.display()), e))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        tracing::debug!(plugin = kind, command = inv.command, stderr = %stderr.trim(), "plugin stderr");
    }
    let stdout: Value = if out.stdout.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        match serde_json::from_slice(&out.stdout) {
            Ok(v) => v,
            Err(source) if out.status.success() => {
                return Err(Error::Decode { what: format!("{kind} {} output", inv.command), source });
            }
            Err(_) => Value::Null,
        }
    };
    if out.status.success() {
        return Ok(stdout);
    }
    let msg = stdout["msg"].as_str().map(str::to_owned).unwrap_or_else(|| {
        let text = stderr.trim();
        if text.is_empty() { format!("exited with {}", out.status) } else { text.to_owned() }
    });
    Err(Error::Plugin {
        plugin: kind,
        command: inv.command.to_owned(),
        code: stdout["code"].as_u64().and_then(|c| u32::try_from(c).ok()).unwrap_or(999),
        msg,
        details: stdout["details"].as_str().unwrap_or_default().to_owned(),
    })
}
