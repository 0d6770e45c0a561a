//! Exec and attach sessions ("remote command"), independent of the transport.
//!
//! The transports ([`spdy`], [`websocket`]) collect the client's streams; [`run`] then hands
//! them to the [`Backend`], and reports the outcome on the error stream. The client can go
//! away at any point: the backend call is then dropped (which ends the exec'd process).

pub mod spdy;
pub mod websocket;

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::backend::{Backend, BackendError, BoxedReader, BoxedWriter, StreamIo};
use super::resize::decode_sizes;
use super::status::Status;

/// What to run.
#[derive(Debug, Clone)]
pub enum Command {
    Exec { container_id: String, cmd: Vec<String> },
    Attach { container_id: String },
}

impl Command {
    fn container_id(&self) -> &str {
        match self {
            Command::Exec { container_id, .. } | Command::Attach { container_id } => container_id,
        }
    }
}

/// Which streams the CRI request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// The client's streams, once the transport has them all.
pub struct Streams {
    pub stdin: Option<BoxedReader>,
    pub stdout: Option<BoxedWriter>,
    pub stderr: Option<BoxedWriter>,
    pub resize: Option<BoxedReader>,
    pub error: BoxedWriter,
}

/// How the exit status is written on the error stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusEncoding {
    /// v4/v5: a `metav1.Status` JSON, always.
    Json,
    /// v1-v3: the message as text, and only on failure.
    Text,
}

/// Runs the session to its end. Returns false if the client went away, true if a status was
/// written. `stop` (server shutdown) ends the backend call and reports that as the error.
pub async fn run(
    backend: &dyn Backend,
    command: &Command,
    tty: bool,
    streams: Streams,
    encoding: StatusEncoding,
    peer_gone: CancellationToken,
    stop: CancellationToken,
) -> bool {
    let Streams { stdin, stdout, stderr, resize, mut error } = streams;
    let io = StreamIo { stdin, stdout, stderr, resize: resize.map(decode_sizes) };
    let container_id = command.container_id();
    let call = async {
        match command {
            Command::Exec { container_id, cmd } => backend.exec(container_id, cmd.clone(), tty, io).await.map(Some),
            Command::Attach { container_id } => backend.attach(container_id, tty, io).await.map(|()| None),
        }
    };
    let result = tokio::select! {
        result = call => result,
        _ = peer_gone.cancelled() => {
            tracing::debug!(container_id, "streaming client went away, session cancelled");
            return false;
        }
        _ = stop.cancelled() => Err(BackendError::Failed("the streaming server is shutting down".into())),
    };
    let status = match (result, command) {
        (Ok(None | Some(0)), _) => Status::success(),
        (Ok(Some(code)), Command::Exec { cmd, .. }) => Status::exit_code(cmd, code),
        (Ok(Some(_)), Command::Attach { .. }) => Status::success(),
        (Err(e), _) => {
            tracing::warn!(container_id, error = %e, "streaming session failed");
            Status::internal_error(&e.to_string())
        }
    };
    let bytes = match encoding {
        StatusEncoding::Json => status.to_json(),
        StatusEncoding::Text => status.to_text(),
    };
    if !bytes.is_empty()
        && let Err(e) = error.write_all(&bytes).await
    {
        tracing::debug!(container_id, error = %e, "writing the exit status failed");
    }
    let _ = error.shutdown().await;
    true
}
