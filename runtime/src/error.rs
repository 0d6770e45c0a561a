//! The one error type of the runtime crate.

/// What went wrong while building, running or inspecting a container.
///
/// Every variant names the step and the path or object involved, so that an error
/// reaching a kubelet log says exactly which syscall failed on what.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The container, or a file it needs, does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request is not valid for the container's current state.
    #[error("{0}")]
    InvalidState(String),
    /// The spec or an option asks for something invalid.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// A system call failed.
    #[error("{step}: {source}")]
    Sys {
        /// The step and path, e.g. `pivot_root("/run/corral/.../rootfs")`.
        step: String,
        /// The errno.
        #[source]
        source: std::io::Error,
    },
}

/// Result of the runtime crate.
pub type Result<T> = std::result::Result<T, Error>;
