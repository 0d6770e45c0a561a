//! The seam between the streaming server and the container runtime.
//!
//! The server speaks the protocols (SPDY, WebSocket, the Kubernetes subprotocols); the
//! [`Backend`] runs things. It sees plain tokio byte streams and never a protocol detail.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// A terminal size, as Kubernetes clients send it on the resize stream:
/// `{"Width":80,"Height":24}` (Go field names, no JSON tags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TermSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// Bytes coming from the client (stdin).
pub type BoxedReader = Box<dyn AsyncRead + Send + Unpin>;
/// Bytes going to the client (stdout, stderr).
pub type BoxedWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// A bidirectional byte stream (the port-forward target connection).
pub trait AsyncReadWrite: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncReadWrite for T {}

/// The client's streams for one exec or attach session. A field is `Some` exactly when the
/// CRI request asked for it (`stderr` is always `None` with `tty`; `resize` only with `tty`).
pub struct StreamIo {
    /// The client's stdin. EOF means the client closed its stdin: close the process's stdin
    /// (with a tty there is nothing to close; ignoring EOF is fine).
    pub stdin: Option<BoxedReader>,
    /// The process's stdout (with `tty`: the terminal's output). Dropping it ends the stream.
    pub stdout: Option<BoxedWriter>,
    /// The process's stderr (never with `tty`).
    pub stderr: Option<BoxedWriter>,
    /// Terminal sizes, the first one usually right after the start; apply each with
    /// TIOCSWINSZ on the pty. Sizes are coalesced if the backend reads them slowly.
    pub resize: Option<mpsc::Receiver<TermSize>>,
}

/// Why the backend could not do what was asked; sent to the client as the session's error.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("container {0} not found")]
    ContainerNotFound(String),
    #[error("pod sandbox {0} not found")]
    SandboxNotFound(String),
    /// Anything else, with its context (`"exec sh: no such file or directory"`).
    #[error("{0}")]
    Failed(String),
}

/// What the streaming server needs from the container runtime.
///
/// Cancellation: when the client disconnects (or the server shuts down) the server DROPS the
/// future of a running call. For `exec` and `port_forward` that must end the process /
/// connection (e.g. `kill_on_drop`, owning the socket); for `attach` it must only detach,
/// never stop the container.
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Runs `cmd` in the container with its stdio wired to `io`, and returns the exit code
    /// (0..=255; a process killed by signal N is 128+N, as shells report it).
    ///
    /// Return only after the process exited AND everything it wrote was written to
    /// `io.stdout`/`io.stderr` and those writers were dropped: the exit status is sent right
    /// after, and output arriving later is lost. `Err` is for failures to run at all (no
    /// such container, exec failed); the client sees it as an internal error.
    async fn exec(&self, container_id: &str, cmd: Vec<String>, tty: bool, io: StreamIo) -> Result<i32, BackendError>;

    /// Attaches `io` to the container's main process stdio (its terminal with `tty`) until
    /// the process exits or the client ends the session. Output rules as for `exec`.
    async fn attach(&self, container_id: &str, tty: bool, io: StreamIo) -> Result<(), BackendError>;

    /// Connects to TCP `port` in the pod's network namespace (the host's for a host-network
    /// pod). The server copies both ways with half-close (FIN) semantics and drops the
    /// connection when either side is done.
    async fn port_forward(&self, pod_sandbox_id: &str, port: u16) -> Result<Box<dyn AsyncReadWrite>, BackendError>;
}
