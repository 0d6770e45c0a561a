//! The one error type of the network crate.

/// What went wrong while wiring or unwiring a pod's network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid (CNI error code 7).
    #[error("invalid network config: {0}")]
    InvalidConfig(String),
    /// A netlink, netfilter or file operation failed (CNI error code 5 or 999).
    #[error("{step}: {source}")]
    Io {
        /// What was being done, e.g. `add veth "veth1a2b3c" to bridge "corral0"`.
        step: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Result of the network crate.
pub type Result<T> = std::result::Result<T, Error>;
