//! The one error type of the network crate.
//!
//! Every variant says which step failed and on what (a path, an interface, a plugin),
//! so an error that reaches kubelet through `RunPodSandbox` is actionable on its own.
//! [`Error::cni_code`] maps each variant onto the CNI error codes, for the
//! `corral-bridge` binary.

use std::path::PathBuf;

/// What went wrong while wiring or unwiring a pod's network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid (CNI error code 7).
    #[error("invalid network config: {0}")]
    InvalidConfig(String),
    /// An argument of the request is invalid: pod id, interface name, port mapping
    /// (CNI error code 4, "invalid environment": they arrive as `CNI_*` variables).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The pod's network namespace does not exist (any more).
    #[error("network namespace {}: {source}", path.display())]
    NetnsMissing {
        /// The pinned namespace file that was asked for.
        path: PathBuf,
        /// Why it could not be opened.
        #[source]
        source: std::io::Error,
    },
    /// Every address of the pod range is taken.
    #[error("no free IP address left in {range} ({allocated} allocated in {})", dir.display())]
    Exhausted {
        /// The range, e.g. `10.88.0.2-10.88.255.254`.
        range: String,
        /// How many records the IPAM directory holds.
        allocated: usize,
        /// The IPAM directory.
        dir: PathBuf,
    },
    /// ADD for an attachment that already exists (CNI: the runtime must DEL first).
    #[error("pod {pod_id} already has interface {ifname} on network {network}; DEL it first")]
    AlreadyAttached {
        /// The network name.
        network: String,
        /// The pod.
        pod_id: String,
        /// The interface inside the pod.
        ifname: String,
    },
    /// CHECK found the attachment not as ADD left it.
    #[error("check of pod {pod_id}: {what}")]
    CheckFailed {
        /// The pod.
        pod_id: String,
        /// What is missing or different.
        what: String,
    },
    /// The network is not ready to wire pods (STATUS; CNI error code 50).
    #[error("network {network} not ready: {reason}")]
    NotReady {
        /// The network name.
        network: String,
        /// Why, e.g. `nft not found`.
        reason: String,
    },
    /// A file or syscall operation failed (CNI error code 5).
    #[error("{step}: {source}")]
    Io {
        /// What was being done, e.g. `create IPAM record /var/lib/corral/network/ipam/corral/10.88.0.5`.
        step: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A netlink request failed.
    #[error("{step}: {source}")]
    Netlink {
        /// What was being done, e.g. `add veth "veth1a2b3c4d5e6" to bridge "corral0"`.
        step: String,
        /// The cause, as the kernel reported it.
        #[source]
        source: rtnetlink::Error,
    },
    /// `nft` refused a batch.
    #[error("nft {step}: {stderr}")]
    Nft {
        /// What the batch was for, e.g. `map hostPorts of pod 1234`.
        step: String,
        /// What nft printed.
        stderr: String,
    },
    /// A hostPort is already mapped to another pod.
    #[error("hostPort {0} is already in use by another pod")]
    PortInUse(String),
    /// The config asks for a CNI version this side does not speak (CNI error code 1).
    #[error("incompatible CNI version {version} (supported: {supported})")]
    IncompatibleVersion {
        /// The version asked for.
        version: String,
        /// The versions supported.
        supported: String,
    },
    /// A JSON document could not be decoded (CNI error code 6).
    #[error("decode {what}: {source}")]
    Decode {
        /// Which document, e.g. `config on stdin`.
        what: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A CNI plugin run by [`crate::cni::CniNetwork`] reported an error.
    #[error("CNI plugin {plugin} {command}: {msg}{}", if details.is_empty() { String::new() } else { format!(" ({details})") })]
    Plugin {
        /// The plugin's `type`.
        plugin: String,
        /// ADD, DEL, ...
        command: String,
        /// The CNI error code it returned.
        code: u32,
        /// Its message.
        msg: String,
        /// Its details.
        details: String,
    },
}

impl Error {
    /// Shorthand for an [`Error::Io`] with its step.
    pub(crate) fn io(step: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { step: step.into(), source }
    }

    /// Shorthand for an [`Error::Netlink`] with its step.
    pub(crate) fn netlink(step: impl Into<String>, source: rtnetlink::Error) -> Self {
        Error::Netlink { step: step.into(), source }
    }

    /// The CNI error code of this error (spec 1.1, "Error").
    pub fn cni_code(&self) -> u32 {
        match self {
            Error::InvalidConfig(_) => 7,
            Error::IncompatibleVersion { .. } => 1,
            Error::InvalidArgument(_) | Error::NetnsMissing { .. } => 4,
            Error::Decode { .. } => 6,
            Error::Io { .. } => 5,
            Error::NotReady { .. } => 50,
            Error::Plugin { code, .. } => *code,
            // The range may free up when pods go away: "try again later".
            Error::Exhausted { .. } => 11,
            Error::AlreadyAttached { .. }
            | Error::CheckFailed { .. }
            | Error::Netlink { .. }
            | Error::Nft { .. }
            | Error::PortInUse(_) => 999,
        }
    }
}

/// Result of the network crate.
pub type Result<T> = std::result::Result<T, Error>;
