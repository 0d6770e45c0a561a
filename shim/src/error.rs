//! The daemon's error type and its one mapping to gRPC status codes.
//!
//! Handlers return `Result<T, CriError>`; errors from the runtime, network and image
//! layers convert into it here, and `From<CriError> for tonic::Status` is the only place
//! that picks a gRPC code. Messages are written for the person reading `crictl` output.

use tonic::{Code, Status};

/// A failed CRI request.
#[derive(Debug, thiserror::Error)]
pub enum CriError {
    /// The object named in the request does not exist.
    #[error("{0}")]
    NotFound(String),
    /// A name or id is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// The request itself is malformed or asks for something impossible.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request is valid but the object is not in a state that allows it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A dependency (network, registry, disk) is not available right now; retrying may help.
    #[error("{0}")]
    Unavailable(String),
    /// The RPC is not implemented by corral (yet).
    #[error("{0} is not implemented by corral")]
    Unimplemented(&'static str),
    /// An optional feature the request asks for is not supported (gRPC Unimplemented, which
    /// kubelet and critest read as "this runtime does not have it").
    #[error("{0}")]
    Unsupported(String),
    /// The request ran out of time.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// Anything else: a bug or an unexpected system failure.
    #[error("{0}")]
    Internal(String),
}

/// Result of a CRI request handler.
pub type CriResult<T> = Result<T, CriError>;

impl CriError {
    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            CriError::NotFound(_) => Code::NotFound,
            CriError::AlreadyExists(_) => Code::AlreadyExists,
            CriError::InvalidArgument(_) => Code::InvalidArgument,
            CriError::FailedPrecondition(_) => Code::FailedPrecondition,
            CriError::Unavailable(_) => Code::Unavailable,
            CriError::Unimplemented(_) | CriError::Unsupported(_) => Code::Unimplemented,
            CriError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            CriError::Internal(_) => Code::Internal,
        }
    }
}

impl From<CriError> for Status {
    fn from(err: CriError) -> Status {
        Status::new(err.code(), err.to_string())
    }
}

impl From<corral_runtime::Error> for CriError {
    fn from(err: corral_runtime::Error) -> CriError {
        use corral_runtime::Error as E;
        match err {
            E::NotFound(_) => CriError::NotFound(err.to_string()),
            E::InvalidState(_) => CriError::FailedPrecondition(err.to_string()),
            E::InvalidSpec(_) => CriError::InvalidArgument(err.to_string()),
            E::Sys { .. } | E::Cgroup { .. } | E::Seccomp(_) | E::Json { .. } | E::Start(_) => {
                CriError::Internal(err.to_string())
            }
        }
    }
}

impl From<corral_net::Error> for CriError {
    fn from(err: corral_net::Error) -> CriError {
        use corral_net::Error as E;
        match err {
            E::InvalidConfig(_) | E::InvalidArgument(_) | E::NetnsMissing { .. } => {
                CriError::InvalidArgument(err.to_string())
            }
            E::PortInUse(_) | E::AlreadyAttached { .. } => CriError::AlreadyExists(err.to_string()),
            E::Exhausted { .. } | E::NotReady { .. } => CriError::Unavailable(err.to_string()),
            E::CheckFailed { .. } => CriError::FailedPrecondition(err.to_string()),
            E::IncompatibleVersion { .. }
            | E::Decode { .. }
            | E::Io { .. }
            | E::Netlink { .. }
            | E::Nft { .. }
            | E::Plugin { .. } => CriError::Internal(err.to_string()),
        }
    }
}

impl From<crate::images::ImageError> for CriError {
    fn from(err: crate::images::ImageError) -> CriError {
        use crate::images::ImageError as E;
        let msg = err.to_string();
        match err {
            E::InvalidReference { .. } | E::InvalidDigest { .. } | E::InvalidAuth(_) => CriError::InvalidArgument(msg),
            E::Unsupported(_) | E::UnsafeLayer { .. } | E::BadLayer { .. } => CriError::InvalidArgument(msg),
            E::Unauthorized { .. } => CriError::InvalidArgument(msg),
            E::NotFound { .. } | E::UnknownImage(_) => CriError::NotFound(msg),
            E::InUse { .. } => CriError::FailedPrecondition(msg),
            E::Registry { .. } | E::Verification { .. } => CriError::Unavailable(msg),
            E::Stalled { .. } => CriError::DeadlineExceeded(msg),
            E::Io { .. } => CriError::Internal(msg),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages() {
        let status = Status::from(CriError::NotFound("pod sandbox \"abc\" not found".into()));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "pod sandbox \"abc\" not found");
        let status = Status::from(CriError::Unimplemented("RunPodSandbox"));
        assert_eq!(status.code(), Code::Unimplemented);
        assert_eq!(status.message(), "RunPodSandbox is not implemented by corral");
    }

    #[test]
    fn runtime_errors_map_by_kind() {
        let sys = corral_runtime::Error::Sys {
            step: "pivot_root(\"/x\")".into(),
            source: std::io::Error::from_raw_os_error(libc::EINVAL),
        };
        let status = Status::from(CriError::from(sys));
        assert_eq!(status.code(), Code::Internal);
        assert!(status.message().starts_with("pivot_root(\"/x\"): "), "{}", status.message());
        let spec = CriError::from(corral_runtime::Error::InvalidSpec("no process".into()));
        assert_eq!(spec.code(), Code::InvalidArgument);
    }
}
