//! Why a `CreateContainer` request could not be turned into an OCI spec.
//!
//! Almost every failure is the request's fault (a user name the image does not know, a host
//! path that does not exist, a capability with a typo) and maps to gRPC `InvalidArgument`.
//! Only a missing target container maps to `NotFound`, and an unexpected I/O failure while
//! reading the host or the image (permission denied on a layer, say) to `Internal`.

use std::io;
use std::path::PathBuf;

use crate::error::CriError;

/// A failed translation of a CRI container config into an OCI runtime spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Neither the request nor the image says what to run.
    #[error("no command specified: the container config has no command or args and the image has no ENTRYPOINT or CMD")]
    NoCommand,
    /// The working directory is not an absolute path.
    #[error("working directory {0:?} is not an absolute path")]
    RelativeWorkingDir(String),
    /// `run_as_group` without `run_as_user` or `run_as_username` (CRI forbids it).
    #[error("run_as_group {0} is set without run_as_user or run_as_username")]
    GroupWithoutUser(i64),
    /// A uid or gid outside what a runc-like runtime accepts (0..=2^31-1).
    #[error("{what} {value} is out of range (0..=2147483647)")]
    IdOutOfRange {
        /// "run_as_user", "supplemental group", ...
        what: &'static str,
        /// The value as sent.
        value: i64,
    },
    /// An image USER that is not `user`, `uid`, `user:group` or `uid:gid`.
    #[error("invalid user {0:?} in the image config: expected user, uid, user:group or uid:gid")]
    BadUserSpec(String),
    /// A user name the image's `/etc/passwd` does not list.
    #[error("user {name:?} not found in the image's /etc/passwd{}", if *.no_passwd { " (the image has no /etc/passwd)" } else { "" })]
    UnknownUser {
        /// The name asked for.
        name: String,
        /// The image has no `/etc/passwd` at all.
        no_passwd: bool,
    },
    /// A group name the image's `/etc/group` does not list.
    #[error("group {name:?} not found in the image's /etc/group{}", if *.no_group_file { " (the image has no /etc/group)" } else { "" })]
    UnknownGroup {
        /// The name asked for.
        name: String,
        /// The image has no `/etc/group` at all.
        no_group_file: bool,
    },
    /// A mount that cannot be made as asked.
    #[error("mount {container_path:?}: {reason}")]
    BadMount {
        /// Where the mount was to appear in the container.
        container_path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A mount's host path does not exist.
    #[error("mount {container_path:?}: host path {host_path:?} does not exist")]
    MissingHostPath {
        /// Where the mount was to appear in the container.
        container_path: String,
        /// The host path as sent.
        host_path: String,
    },
    /// A device that cannot be passed into the container.
    #[error("device {host_path:?}: {reason}")]
    BadDevice {
        /// The host path as sent.
        host_path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A capability name that is not a Linux capability.
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    /// A seccomp profile that could not be read or is not a valid OCI seccomp profile.
    #[error("seccomp profile {path:?}: {reason}")]
    BadSeccompProfile {
        /// The profile path as sent (`localhost_ref`).
        path: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A security profile (seccomp or AppArmor) that is malformed as a request.
    #[error("{kind} profile: {reason}")]
    BadSecurityProfile {
        /// "seccomp" or "apparmor".
        kind: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An AppArmor profile was requested; corral cannot apply one (see `security_profiles`).
    #[error("apparmor profile {0} requested, but corral does not support AppArmor on this host")]
    AppArmorUnsupported(String),
    /// An optional feature (image volumes, CDI devices) corral does not have.
    #[error("{0}")]
    Unsupported(String),
    /// A privileged container in a pod that is not privileged.
    #[error("privileged container not allowed: the pod sandbox is not privileged")]
    PrivilegedNotAllowed,
    /// A namespace request that cannot be met with what the pod has.
    #[error("namespaces: {0}")]
    BadNamespace(String),
    /// An invalid user namespace request.
    #[error("user namespace: {0}")]
    BadUserNamespace(String),
    /// The target container of a `TARGET` PID namespace was not resolved by the caller.
    #[error("PID namespace mode TARGET: target container {0:?} not found or not running")]
    TargetNotFound(String),
    /// Resource limits that make no sense (negative period, unknown hugepage size, ...).
    #[error("resources: {0}")]
    BadResources(String),
    /// A stop signal that is not a Linux signal.
    #[error("stop signal: {0}")]
    BadStopSignal(String),
    /// An unexpected I/O failure while reading the host or the image.
    #[error("{step} {}: {source}", path.display())]
    Io {
        /// What was being done ("reading", "creating volume directory", ...).
        step: &'static str,
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// The gRPC status class of a [`SpecError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong; retrying the same request fails the same way.
    InvalidArgument,
    /// Something the request names does not exist.
    NotFound,
    /// The host or the image could not be read.
    Internal,
    /// An optional CRI feature corral does not have.
    Unsupported,
}

impl SpecError {
    /// Which gRPC status class this error belongs to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            SpecError::TargetNotFound(_) => ErrorKind::NotFound,
            SpecError::Unsupported(_) => ErrorKind::Unsupported,
            SpecError::Io { .. } => ErrorKind::Internal,
            _ => ErrorKind::InvalidArgument,
        }
    }

    /// Shorthand for `kind() == InvalidArgument`.
    pub fn is_invalid_argument(&self) -> bool {
        self.kind() == ErrorKind::InvalidArgument
    }

    /// Wraps an I/O error with the step and the path it happened on.
    pub(super) fn io(step: &'static str, path: impl Into<PathBuf>, source: io::Error) -> SpecError {
        SpecError::Io { step, path: path.into(), source }
    }
}

impl From<SpecError> for CriError {
    fn from(err: SpecError) -> CriError {
        let message = err.to_string();
        match err.kind() {
            ErrorKind::InvalidArgument => CriError::InvalidArgument(message),
            ErrorKind::NotFound => CriError::NotFound(message),
            ErrorKind::Internal => CriError::Internal(message),
            ErrorKind::Unsupported => CriError::Unsupported(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_grpc_codes() {
        let cases: Vec<(SpecError, tonic::Code)> = vec![
            (SpecError::NoCommand, tonic::Code::InvalidArgument),
            (SpecError::UnknownUser { name: "app".into(), no_passwd: true }, tonic::Code::InvalidArgument),
            (SpecError::TargetNotFound("abc".into()), tonic::Code::NotFound),
            (SpecError::io("reading", "/x", io::Error::from_raw_os_error(libc::EACCES)), tonic::Code::Internal),
        ];
        for (err, code) in cases {
            assert_eq!(CriError::from(err).code(), code);
        }
    }

    #[test]
    fn messages_name_what_is_wrong() {
        let err = SpecError::UnknownUser { name: "app".into(), no_passwd: true };
        assert_eq!(err.to_string(), "user \"app\" not found in the image's /etc/passwd (the image has no /etc/passwd)");
        let err = SpecError::MissingHostPath { container_path: "/data".into(), host_path: "/srv/nope".into() };
        assert_eq!(err.to_string(), "mount \"/data\": host path \"/srv/nope\" does not exist");
        let err = SpecError::io("reading", "/l/etc/passwd", io::Error::from_raw_os_error(libc::EACCES));
        assert!(err.to_string().starts_with("reading /l/etc/passwd: Permission denied"), "{err}");
    }
}
