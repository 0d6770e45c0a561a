//! Netlink connections in the host's and in a pod's network namespace.
//!
//! A netlink socket belongs to the namespace of the thread that created it, for its
//! whole life. So a connection into a pod is made on a throw-away thread that
//! `setns()`es into the pod's namespace, opens the socket and ends; the socket is then
//! driven by the tokio runtime like any other. No process and no long-lived thread
//! ever changes namespace.

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use nix::sys::statfs::{NSFS_MAGIC, fstatfs};
use rtnetlink::Handle;

use crate::{Error, Result};

/// An open network namespace file (e.g. a pod's pinned `.../ns/net`).
#[derive(Debug)]
pub(crate) struct Netns {
    path: PathBuf,
    file: File,
}

impl Netns {
    /// Opens `path`; [`Error::NetnsMissing`] when it does not exist or is not a
    /// namespace (an unpinned bind mount leaves a plain empty file behind).
    pub fn open(path: &Path) -> Result<Self> {
        let missing = |source| Error::NetnsMissing { path: path.to_owned(), source };
        let file = File::open(path).map_err(missing)?;
        let fs = fstatfs(file.as_fd()).map_err(|e| missing(e.into()))?;
        if fs.filesystem_type() != NSFS_MAGIC {
            return Err(missing(io::Error::other("not a namespace file (nothing is mounted there)")));
        }
        Ok(Netns { path: path.to_owned(), file })
    }

    /// Whether this is the namespace the caller runs in (the host's). Wiring it as a
    /// pod would put the pod's address and default route on the host.
    pub fn is_current(&self) -> Result<bool> {
        let here =
            std::fs::metadata("/proc/thread-self/ns/net").map_err(|e| Error::io("stat /proc/thread-self/ns/net", e))?;
        let there = self.file.metadata().map_err(|e| Error::io(format!("stat {}", self.path.display()), e))?;
        Ok((here.dev(), here.ino()) == (there.dev(), there.ino()))
    }

    /// The namespace file, for `IFLA_NET_NS_FD`.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A netlink connection whose socket lives in this namespace.
    pub async fn netlink(&self) -> Result<Handle> {
        let file =
            self.file.try_clone().map_err(|e| Error::io(format!("dup netns fd of {}", self.path.display()), e))?;
        let runtime = tokio::runtime::Handle::current();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let path = self.path.clone();
        std::thread::Builder::new()
            .name("corral-netns".into())
            .spawn(move || {
                let result = nix::sched::setns(file.as_fd(), CloneFlags::CLONE_NEWNET)
                    .map_err(|e| Error::io(format!("setns({})", path.display()), e.into()))
                    .and_then(|()| {
                        // The socket registers with the runtime's reactor on creation.
                        let _enter = runtime.enter();
                        connect(&format!("netlink socket in {}", path.display()))
                    });
                // The receiver is gone only if the caller was cancelled.
                let _ = tx.send(result);
            })
            .map_err(|e| Error::io("spawn netns thread", e))?;
        rx.await.map_err(|_| Error::io("netns thread", io::Error::other("thread died")))?
    }
}

/// A netlink connection in the calling thread's (the host's) namespace.
pub(crate) fn host_netlink() -> Result<Handle> {
    connect("netlink socket")
}

/// Opens a connection and spawns its driver; the driver ends when the last
/// `Handle` clone is dropped.
fn connect(step: &str) -> Result<Handle> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(|e| Error::io(step, e))?;
    tokio::spawn(connection);
    Ok(handle)
}
