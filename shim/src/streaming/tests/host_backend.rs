//! A test [`Backend`] made of real things: host processes (with a real pty for `tty`) and
//! real TCP connections to 127.0.0.1. It follows the contract the daemon's backend must:
//! output fully written before `exec` returns, process killed when the future is dropped.

use std::io;

use async_trait::async_trait;
use tokio::net::TcpStream;
use tokio::process::Command;

use crate::streaming::{AsyncReadWrite, Backend, BackendError, StreamIo, stdio};

/// Runs commands on the host; `attach` runs `cat` (a "container" echoing its stdin).
pub struct HostBackend;

fn failed(what: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::Failed(format!("{what}: {e}"))
}

#[async_trait]
impl Backend for HostBackend {
    async fn exec(&self, container_id: &str, cmd: Vec<String>, tty: bool, io: StreamIo) -> Result<i32, BackendError> {
        if container_id == "missing" {
            return Err(BackendError::ContainerNotFound(container_id.into()));
        }
        run(&cmd, tty, io).await
    }

    async fn attach(&self, _container_id: &str, tty: bool, io: StreamIo) -> Result<(), BackendError> {
        run(&["cat".to_string()], tty, io).await.map(|_| ())
    }

    async fn port_forward(&self, pod: &str, port: u16) -> Result<Box<dyn AsyncReadWrite>, BackendError> {
        if pod == "missing" {
            return Err(BackendError::SandboxNotFound(pod.into()));
        }
        let conn =
            TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| failed(&format!("dial 127.0.0.1:{port}"), e))?;
        Ok(Box::new(conn))
    }
}

/// A host process for `cmd`, on a pty (as its controlling terminal) or on pipes.
async fn run(cmd: &[String], tty: bool, io: StreamIo) -> Result<i32, BackendError> {
    let (prog, args) = cmd.split_first().ok_or_else(|| failed("exec", "empty command"))?;
    let mut command = Command::new(prog);
    command.args(args);
    if !tty {
        return stdio::run_piped(command, io).await;
    }
    // SAFETY: only async-signal-safe calls (setsid, ioctl) between fork and exec.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    stdio::run_in_pty(command, io).await
}
