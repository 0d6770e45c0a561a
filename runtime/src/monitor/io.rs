//! The container's stdio as the monitor holds it, and the CRI log file it writes.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{FcntlArg, OFlag, fcntl};

use crate::error::{Context, Result};
use crate::init::ChildStdio;
use crate::logs::Stream;

/// The monitor's ends of the container's stdio.
pub struct MonitorIo {
    /// Write end of the stdin pipe (or the pty master), kept open while `stdin` was asked for,
    /// so the container does not see end-of-file; an attach relay writes into it.
    pub stdin: Option<OwnedFd>,
    /// Read ends (non-blocking) of stdout and stderr, or the pty master once.
    pub outputs: Vec<(Stream, OwnedFd)>,
    /// The pty master, for resizing the terminal.
    pub terminal: Option<OwnedFd>,
}

fn set_nonblocking(fd: &OwnedFd) -> Result<()> {
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL).step(|| "fcntl(F_GETFL)")?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags)).step(|| "fcntl(F_SETFL, O_NONBLOCK)").map(drop)
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).step(|| "pipe2")
}

/// Creates the container's stdio: pipes, or a pty when `tty`. stdin is `/dev/null` unless
/// `stdin` is set.
pub fn create(stdin: bool, tty: bool) -> Result<(MonitorIo, ChildStdio)> {
    if tty {
        let pty = nix::pty::openpty(None, None).step(|| "openpty")?;
        let master = pty.master;
        let clone = |fd: &OwnedFd| fd.try_clone().step(|| "dup pty");
        set_nonblocking(&master)?;
        for fd in [&master, &pty.slave] {
            nix::fcntl::fcntl(fd.as_fd(), FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))
                .step(|| "fcntl(FD_CLOEXEC)")?;
        }
        let fds = [clone(&pty.slave)?, clone(&pty.slave)?, pty.slave];
        let io = MonitorIo {
            stdin: if stdin { Some(clone(&master)?) } else { None },
            terminal: Some(clone(&master)?),
            outputs: vec![(Stream::Stdout, master)],
        };
        return Ok((io, ChildStdio { fds, tty: true }));
    }
    let (stdin_child, stdin_monitor) = if stdin {
        let (r, w) = pipe()?;
        set_nonblocking(&w)?;
        (r, Some(w))
    } else {
        let null =
            OpenOptions::new().read(true).custom_flags(libc::O_CLOEXEC).open("/dev/null").step(|| "open /dev/null")?;
        (OwnedFd::from(null), None)
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    set_nonblocking(&out_r)?;
    set_nonblocking(&err_r)?;
    let io = MonitorIo {
        stdin: stdin_monitor,
        outputs: vec![(Stream::Stdout, out_r), (Stream::Stderr, err_r)],
        terminal: None,
    };
    Ok((io, ChildStdio { fds: [stdin_child, out_w, err_w], tty: false }))
}

/// The CRI log file (or nothing, when the container has no log path). Reopened on SIGUSR1
/// after kubelet renamed it for rotation.
pub struct LogFile {
    path: Option<PathBuf>,
    file: Option<File>,
    /// A write error is logged once, not once per line.
    failed: bool,
}

fn open_log(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).step(|| format!("mkdir {dir:?}"))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .step(|| format!("open log {path:?}"))
}

impl LogFile {
    /// Opens (creates, appends to) `path`.
    pub fn open(path: Option<&Path>) -> Result<LogFile> {
        let file = path.map(open_log).transpose()?;
        Ok(LogFile { path: path.map(Path::to_path_buf), file, failed: false })
    }

    /// A new `LogFile` on the same path (the old one keeps writing until swapped).
    pub fn reopen(&self) -> Result<LogFile> {
        LogFile::open(self.path.as_deref())
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(file) = &mut self.file else { return Ok(buf.len()) };
        match file.write_all(buf) {
            Ok(()) => self.failed = false,
            Err(e) if !self.failed => {
                self.failed = true;
                tracing::warn!(path = ?self.path, error = %e, "writing the container log failed; output is dropped");
            }
            Err(_) => {}
        }
        // Never fail the relay: a full disk must not block or kill the container.
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
