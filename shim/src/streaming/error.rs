//! Errors of the streaming server: what `exec_url`/`attach_url`/`port_forward_url` and
//! `start` return, and their mapping onto the daemon's CRI errors.

use std::net::SocketAddr;

use crate::error::CriError;

/// A streaming request that cannot be served, or a server that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StreamingError {
    /// The CRI request is malformed (kubelet's streaming server rejects the same cases).
    #[error("invalid {request} request: {reason}")]
    InvalidRequest { request: &'static str, reason: &'static str },
    /// Too many URLs were handed out and not used yet.
    #[error(
        "too many pending streaming requests ({limit} URLs handed out and not used within {ttl_secs}s); retry later"
    )]
    TooManyPending { limit: usize, ttl_secs: u64 },
    /// The kernel's random source failed (getrandom).
    #[error("generating a streaming token: {0}")]
    Token(getrandom::Error),
    /// The listening socket could not be created.
    #[error("streaming server: bind {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

impl From<StreamingError> for CriError {
    fn from(e: StreamingError) -> Self {
        match e {
            StreamingError::InvalidRequest { .. } => CriError::InvalidArgument(e.to_string()),
            StreamingError::TooManyPending { .. } => CriError::Unavailable(e.to_string()),
            StreamingError::Token(_) | StreamingError::Bind { .. } => CriError::Internal(e.to_string()),
        }
    }
}
