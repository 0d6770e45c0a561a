//! The monitor's attach server: `attach.sock` in the state dir (protocol in `crate::attach`).

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::attach::{Decoder, Frame};
use crate::error::{Context, Result};

/// How long a client may block output before it is disconnected.
const CLIENT_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long stdin input may wait for the container to read it before it is dropped.
const STDIN_WRITE_TIMEOUT: Duration = Duration::from_secs(5);

struct Client {
    stream: UnixStream,
    decoder: Decoder,
}

/// Listener plus connected clients.
pub struct AttachServer {
    listener: UnixListener,
    clients: Vec<Client>,
}

/// What a client asked for that the monitor must do.
pub enum Request {
    /// Write to the container's stdin.
    Stdin(Vec<u8>),
    /// Resize the terminal.
    Resize(u16, u16),
    /// Close the container's stdin.
    CloseStdin,
    /// The client left.
    Disconnected,
}

impl AttachServer {
    /// Listens on `path` (only root may connect).
    pub fn bind(path: &Path) -> Result<AttachServer> {
        let _ = std::fs::remove_file(path);
        let (_dir, short) = crate::files::socket_path(path)?;
        let listener = UnixListener::bind(&short).step(|| format!("bind {path:?}"))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).step(|| format!("chmod {path:?}"))?;
        listener.set_nonblocking(true).step(|| "set attach listener non-blocking")?;
        Ok(AttachServer { listener, clients: Vec::new() })
    }

    /// The fds to poll: the listener, then each client.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        std::iter::once(self.listener.as_fd()).chain(self.clients.iter().map(|c| c.stream.as_fd())).collect()
    }

    /// Accepts pending connections.
    pub fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            // Reads happen only after poll said readable; writes may block up to the timeout.
            if stream.set_nonblocking(false).is_ok() && stream.set_write_timeout(Some(CLIENT_WRITE_TIMEOUT)).is_ok() {
                tracing::info!("attach client connected");
                self.clients.push(Client { stream, decoder: Decoder::default() });
            }
        }
    }

    /// Reads from client `i`, which poll reported readable.
    pub fn read_client(&mut self, i: usize) -> Vec<Request> {
        let mut buf = [0u8; 8192];
        let client = &mut self.clients[i];
        let frames = match client.stream.read(&mut buf) {
            Ok(0) | Err(_) => Err(()),
            Ok(n) => client.decoder.push(&buf[..n]).map_err(|e| tracing::warn!(error = %e, "attach client dropped")),
        };
        match frames {
            Err(()) => vec![Request::Disconnected],
            Ok(frames) => frames
                .into_iter()
                .filter_map(|f| match f {
                    Frame::Stdin(d) => Some(Request::Stdin(d)),
                    Frame::Resize { rows, cols } => Some(Request::Resize(rows, cols)),
                    Frame::CloseStdin => Some(Request::CloseStdin),
                    Frame::Stdout(_) | Frame::Stderr(_) => None,
                })
                .collect(),
        }
    }

    /// Removes client `i`.
    pub fn remove(&mut self, i: usize) {
        self.clients.remove(i);
        tracing::info!("attach client disconnected");
    }

    /// Sends an output frame to every client; clients that cannot take it are dropped.
    pub fn broadcast(&mut self, frame: &Frame) {
        if self.clients.is_empty() {
            return;
        }
        let wire = frame.encode();
        self.clients.retain_mut(|c| c.stream.write_all(&wire).is_ok());
    }
}

/// Writes `data` to the container's stdin (a non-blocking pipe or pty master), waiting up to
/// [`STDIN_WRITE_TIMEOUT`] for the container to read; what does not fit then is dropped.
pub fn write_stdin(fd: &OwnedFd, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd.as_fd(), data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EAGAIN) => {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLOUT)];
                let ms = PollTimeout::try_from(STDIN_WRITE_TIMEOUT.as_millis() as i32).unwrap_or(PollTimeout::MAX);
                if !matches!(poll(&mut fds, ms), Ok(n) if n > 0) {
                    tracing::warn!(dropped = data.len(), "container does not read its stdin; input dropped");
                    return;
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => {
                tracing::warn!(error = %e, "writing to the container's stdin");
                return;
            }
        }
    }
}

/// Sets the terminal size on the pty master.
pub fn resize(master: &OwnedFd, rows: u16, cols: u16) {
    let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ on a pty master with a pointer to a live winsize.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "TIOCSWINSZ");
    }
}
