//! The one error type of the image code.
//!
//! Every variant names what was being done and to what (a reference, a digest, a path), because
//! the message ends up in `crictl pull` output and in kubelet events. `shim/src/error.rs` maps the
//! variants to gRPC codes.

use std::path::PathBuf;

/// A failed image operation.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The string is not a valid image reference or id.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },

    /// A digest string is malformed or uses an unsupported algorithm.
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest { digest: String, reason: String },

    /// The registry (and every mirror) answered that the image or blob does not exist.
    #[error("{what} not found in {registry}")]
    NotFound { what: String, registry: String },

    /// The image is not known locally.
    #[error("image {0:?} not found")]
    UnknownImage(String),

    /// The pull's credentials cannot be used as given.
    #[error("invalid registry credentials: {0}")]
    InvalidAuth(String),

    /// The registry refused the credentials (or their absence).
    #[error("{registry}: not authorized to pull {repository}: {message}")]
    Unauthorized { registry: String, repository: String, message: String },

    /// The registry could not be reached or answered with a server error.
    #[error("{registry}: {step}: {message}")]
    Registry { registry: String, step: String, message: String },

    /// The registry served content that is not what was asked for (digest or size mismatch).
    #[error("{what}: content verification failed: {reason}")]
    Verification { what: String, reason: String },

    /// The content is well-formed but something corral does not pull (schema1, a non-container
    /// artifact, no linux/amd64 entry in an index).
    #[error("{0}")]
    Unsupported(String),

    /// A layer holds an entry that could write outside its directory or is otherwise refused.
    #[error("refusing layer {layer}: entry {entry:?}: {reason}")]
    UnsafeLayer { layer: String, entry: String, reason: String },

    /// A layer is not a readable tar stream or does not match its diff id.
    #[error("layer {layer}: {reason}")]
    BadLayer { layer: String, reason: String },

    /// The pull made no progress for the configured time and was cancelled.
    #[error("pull of {reference} cancelled: no progress for {secs}s while {step}")]
    Stalled { reference: String, secs: u64, step: String },

    /// The image is used by a container and cannot be removed.
    #[error("image {image} is in use by a container; remove the container first")]
    InUse { image: String },

    /// A system call or file operation on the store failed.
    #[error("{step} {path}: {source}", path = .path.display())]
    Io { step: &'static str, path: PathBuf, source: std::io::Error },
}

/// Result of an image operation.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

impl ImageError {
    /// An I/O error with the step and path that failed.
    pub fn io(step: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> ImageError {
        ImageError::Io { step, path: path.into(), source }
    }
}

/// Adds step + path context to `io::Result`s, so call sites stay one line.
pub trait IoContext<T> {
    /// Wraps the error as [`ImageError::Io`].
    fn ctx(self, step: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, step: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| ImageError::io(step, path, e))
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn ctx(self, step: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| ImageError::io(step, path, e.into()))
    }
}
