//! The benchmark's one error type: every variant says which step failed and on what.

use std::path::PathBuf;

/// What can stop a benchmark run. Numbers never do: a slow runtime is a result, not an error.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The CRI endpoint could not be reached.
    #[error("connecting to CRI endpoint {endpoint}: {source}")]
    Connect {
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// A CRI call failed.
    #[error("{rpc}: {code:?}: {message}")]
    Rpc { rpc: &'static str, code: tonic::Code, message: String },
    /// A file or directory could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The runtime answered, but not what the scenario needs (a failed exec, a log line
    /// that never came, a pod missing from a list).
    #[error("{scenario}: {what}")]
    Check { scenario: &'static str, what: String },
    /// A results file is not what `bench run` writes.
    #[error("results file {path}: {source}")]
    Results {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// The chart could not be drawn.
    #[error("drawing {path}: {message}")]
    Chart { path: PathBuf, message: String },
    /// A benchmark task panicked or was cancelled.
    #[error("{scenario}: task failed: {message}")]
    Task { scenario: &'static str, message: String },
}

impl BenchError {
    pub(crate) fn rpc(rpc: &'static str, status: tonic::Status) -> Self {
        BenchError::Rpc { rpc, code: status.code(), message: status.message().to_owned() }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BenchError::Io { op, path: path.into(), source }
    }

    pub(crate) fn check(scenario: &'static str, what: impl Into<String>) -> Self {
        BenchError::Check { scenario, what: what.into() }
    }

    pub(crate) fn task(scenario: &'static str, err: tokio::task::JoinError) -> Self {
        BenchError::Task { scenario, message: err.to_string() }
    }
}

pub type Result<T, E = BenchError> = std::result::Result<T, E>;
