//! ExecSync: run a command in a running container and return its output and exit code
//! (kubelet's exec probes, `crictl exec -s`). The streaming Exec/Attach/PortForward RPCs
//! live with the streaming server.
//!
//! The command runs through `corral exec` (a re-exec of this binary, see docs/design.md),
//! spawned with pipes; the daemon only reads the pipes and waits, so a hanging command
//! costs a task, not a thread.

use std::process::Stdio;
use std::time::Duration;

use corral_cri::v1;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::Daemon;
use crate::error::{CriError, CriResult};
use crate::store::records::ContainerState;

/// Output kept per stream; the rest is read and dropped (CVE-2022-1708: a chatty command
/// must not exhaust the daemon's memory).
const MAX_OUTPUT: usize = 16 * 1024 * 1024;

impl Daemon {
    pub(super) async fn exec_sync(&self, req: v1::ExecSyncRequest) -> CriResult<v1::ExecSyncResponse> {
        if req.cmd.is_empty() {
            return Err(CriError::InvalidArgument("exec command is required".into()));
        }
        let id = self.resolve_container(&req.container_id)?;
        let record = self.containers.get(&id).ok_or_else(|| CriError::NotFound(format!("container {id} not found")))?;
        if record.state != ContainerState::Running {
            return Err(CriError::FailedPrecondition(format!("container {id} is not running")));
        }
        let opts = corral_runtime::ExecOptions { args: req.cmd.clone(), tty: false, ..Default::default() };
        let mut command = tokio::process::Command::from(self.runtime.exec_command(&id, &opts)?);
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child =
            command.spawn().map_err(|e| CriError::Internal(format!("starting exec in container {id}: {e}")))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(CriError::Internal("exec pipes missing".into()));
        };
        let readers = tokio::spawn(async move { tokio::join!(read_capped(stdout), read_capped(stderr)) });
        let status = match req.timeout {
            t if t > 0 => match tokio::time::timeout(Duration::from_secs(t as u64), child.wait()).await {
                Ok(status) => status,
                Err(_) => {
                    end_exec(&mut child).await;
                    readers.abort();
                    return Err(CriError::DeadlineExceeded(format!(
                        "command {:?} timed out after {}s",
                        req.cmd, req.timeout
                    )));
                }
            },
            _ => child.wait().await,
        };
        let (stdout, stderr) = readers.await.map_err(|e| CriError::Internal(format!("reading exec output: {e}")))?;
        let status = status.map_err(|e| CriError::Internal(format!("waiting for exec: {e}")))?;
        Ok(v1::ExecSyncResponse {
            stdout: stdout.map_err(|e| CriError::Internal(format!("reading exec stdout: {e}")))?,
            stderr: stderr.map_err(|e| CriError::Internal(format!("reading exec stderr: {e}")))?,
            exit_code: exit_code(status),
        })
    }
}

/// Ends a timed-out exec: SIGTERM makes `corral exec` kill and reap the command, so when
/// this returns the command is gone from the container (critest checks with `pgrep`).
/// SIGKILL if `corral exec` itself does not go within a few seconds.
async fn end_exec(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
    }
    if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

/// Reads a stream to its end, keeping at most [`MAX_OUTPUT`] bytes.
async fn read_capped(mut stream: impl AsyncRead + Unpin) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(kept);
        }
        let room = MAX_OUTPUT.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// The exit code as a shell reports it: the code, or 128 + the signal that ended it.
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(-1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn output_is_capped_but_fully_read() {
        let big = vec![b'x'; MAX_OUTPUT + 1000];
        let kept = read_capped(&big[..]).await.unwrap();
        assert_eq!(kept.len(), MAX_OUTPUT);
    }

    #[test]
    fn exit_codes_follow_the_shell() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(9)), 137);
    }
}
