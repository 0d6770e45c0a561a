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
    /// The cgroup library refused an operation.
    #[error("cgroup {step}: {source}")]
    Cgroup {
        /// What was being done, with the cgroup path.
        step: String,
        /// The library's error.
        #[source]
        source: cgroups_rs::fs::error::Error,
    },
    /// Building or loading the seccomp filter failed.
    #[error("seccomp: {0}")]
    Seccomp(String),
    /// A state file could not be parsed or written.
    #[error("{path}: {source}")]
    Json {
        /// The state file.
        path: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// The container process could not be started; the message comes from the step that
    /// failed inside the new container (e.g. `exec "nosuchcmd": No such file or directory`).
    #[error("start container: {0}")]
    Start(String),
}

impl Error {
    /// A failed system call at `step`, from an errno.
    pub(crate) fn sys(step: impl Into<String>, errno: nix::errno::Errno) -> Error {
        Error::Sys { step: step.into(), source: std::io::Error::from(errno) }
    }

    /// A failed system call at `step`, from an I/O error.
    pub(crate) fn io(step: impl Into<String>, source: std::io::Error) -> Error {
        Error::Sys { step: step.into(), source }
    }

    /// Whether this error means "the thing is not there" (ENOENT or [`Error::NotFound`]).
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::NotFound(_) => true,
            Error::Sys { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        }
    }
}

/// Result of the runtime crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Adds the step to a `nix` or `std::io` result: `mount(...).step(|| format!("mount {dst:?}"))?`.
pub(crate) trait Context<T> {
    /// Wraps the error with the step (evaluated only on error).
    fn step<S: Into<String>>(self, step: impl FnOnce() -> S) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, nix::errno::Errno> {
    fn step<S: Into<String>>(self, step: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::sys(step(), e))
    }
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn step<S: Into<String>>(self, step: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::io(step(), e))
    }
}

impl<T> Context<T> for std::result::Result<T, cgroups_rs::fs::error::Error> {
    fn step<S: Into<String>>(self, step: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|source| Error::Cgroup { step: step().into(), source })
    }
}
