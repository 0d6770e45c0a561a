//! Wiring a process's stdio to a streaming session: pipes, or a pty whose master the
//! daemon holds (with terminal resizes). Used by corral's backend for `corral exec`, and by
//! the streaming tests for plain host processes.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::process::Stdio;
use std::task::{Context, Poll, ready};

use nix::pty::{Winsize, openpty};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::process::Command;

use super::{BackendError, BoxedWriter, StreamIo, TermSize};

fn failed(what: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::Failed(format!("{what}: {e}"))
}

/// The exit code as a shell reports it: the code, or 128 + the signal that ended it.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

async fn pump(mut from: impl AsyncRead + Unpin, mut to: BoxedWriter) {
    let _ = tokio::io::copy(&mut from, &mut to).await;
    let _ = to.shutdown().await;
}

/// Runs `command` with pipes for the streams the session has, copies them until the
/// process exits and its output is drained, and returns its exit code. Dropping the future
/// kills the process (`kill_on_drop`).
pub async fn run_piped(mut command: Command, io: StreamIo) -> Result<i32, BackendError> {
    let piped = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    let mut child = command
        .stdin(piped(io.stdin.is_some()))
        .stdout(piped(io.stdout.is_some()))
        .stderr(piped(io.stderr.is_some()))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| failed("starting the process", e))?;
    let stdin_task = match (io.stdin, child.stdin.take()) {
        (Some(mut from), Some(mut to)) => Some(tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut to).await;
            // Dropping `to` closes the process's stdin: client EOF becomes process EOF.
        })),
        _ => None,
    };
    let stdout = child.stdout.take().zip(io.stdout).map(|(from, to)| pump(from, to));
    let stderr = child.stderr.take().zip(io.stderr).map(|(from, to)| pump(from, to));
    let outputs = async {
        tokio::join!(
            async {
                if let Some(p) = stdout {
                    p.await
                }
            },
            async {
                if let Some(p) = stderr {
                    p.await
                }
            }
        );
    };
    let (status, ()) = tokio::join!(child.wait(), outputs);
    // The stdin copy may still wait for client input the process no longer wants.
    let _guard = AbortOnDrop::all(stdin_task);
    Ok(exit_code(status.map_err(|e| failed("wait", e))?))
}

/// Aborts its tasks when dropped: helpers of a session end with the session.
pub(crate) struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl AbortOnDrop {
    /// Guards every task in `tasks`.
    pub(crate) fn all(tasks: impl IntoIterator<Item = tokio::task::JoinHandle<()>>) -> Self {
        AbortOnDrop(tasks.into_iter().collect())
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Runs `command` on a new pty (the slave as its stdin, stdout and stderr; making it the
/// controlling terminal is the command's business), copies stdin to and output from the
/// master, applies resizes, and returns the exit code once output is drained.
pub async fn run_in_pty(mut command: Command, io: StreamIo) -> Result<i32, BackendError> {
    let pty = openpty(Some(&Winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 }), None)
        .map_err(|e| failed("openpty", e))?;
    let slave = pty.slave;
    command
        .stdin(slave.try_clone().map_err(|e| failed("dup pty", e))?)
        .stdout(slave.try_clone().map_err(|e| failed("dup pty", e))?)
        .stderr(slave.try_clone().map_err(|e| failed("dup pty", e))?)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|e| failed("starting the process", e))?;
    // Our copies of the slave (the Command keeps the ones it was given) must go, or reading
    // the master never sees the end.
    drop(command);
    drop(slave);
    let master = PtyMaster::new(pty.master).map_err(|e| failed("pty master", e))?;
    let resize_fd = master.fd.get_ref().try_clone().map_err(|e| failed("dup pty", e))?;
    let resize_task = io.resize.map(|mut sizes| {
        tokio::spawn(async move {
            while let Some(size) = sizes.recv().await {
                set_size(&resize_fd, size);
            }
        })
    });
    let (mut reader, mut writer) = tokio::io::split(master);
    let stdin_task = io.stdin.map(|mut from| {
        tokio::spawn(async move {
            let _ = tokio::io::copy(&mut from, &mut writer).await;
        })
    });
    let output = async {
        if let Some(mut to) = io.stdout {
            let _ = tokio::io::copy(&mut reader, &mut to).await;
            let _ = to.shutdown().await;
        }
    };
    let (status, ()) = tokio::join!(child.wait(), output);
    let _guards = AbortOnDrop::all(stdin_task.into_iter().chain(resize_task));
    Ok(exit_code(status.map_err(|e| failed("wait", e))?))
}

pub(crate) fn set_size(fd: &OwnedFd, size: TermSize) {
    let ws = libc::winsize { ws_row: size.height, ws_col: size.width, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize struct from a valid pointer.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// The pty master as a non-blocking tokio stream. EIO (the slave side is all closed) is EOF.
pub(crate) struct PtyMaster {
    fd: AsyncFd<OwnedFd>,
}

impl PtyMaster {
    pub(crate) fn new(fd: OwnedFd) -> io::Result<Self> {
        let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL)?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags))?;
        // SAFETY: the OwnedFd is moved into the AsyncFd, which owns it until dropped, so the
        // descriptor stays open and the same for the AsyncFd's lifetime.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)?;
        Ok(PtyMaster { fd })
    }
}

impl AsyncRead for PtyMaster {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), unfilled).map_err(io::Error::from)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Poll::Ready(Ok(())),
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for PtyMaster {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), buf).map_err(io::Error::from)) {
                Ok(result) => return Poll::Ready(result),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
