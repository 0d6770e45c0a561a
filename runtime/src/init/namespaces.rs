//! Which namespaces the container joins (by path) and which it gets new.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Context, Error, Result};

/// The namespace part of a spec.
#[derive(Debug)]
pub struct NamespacePlan {
    /// Namespaces to join: (kind, path).
    pub join: Vec<(CloneFlags, PathBuf)>,
    /// Namespaces to create.
    pub new: CloneFlags,
}

/// The clone flag of a namespace type.
pub fn flag(typ: LinuxNamespaceType) -> Result<CloneFlags> {
    Ok(match typ {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => return Err(Error::InvalidSpec("time namespaces are not supported".into())),
    })
}

impl NamespacePlan {
    /// Reads `linux.namespaces`. A mount namespace is required: the rootfs is only ever
    /// mounted inside the container's own mount namespace.
    pub fn from_spec(spec: &Spec) -> Result<NamespacePlan> {
        let mut plan = NamespacePlan { join: Vec::new(), new: CloneFlags::empty() };
        let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().clone()).unwrap_or_default();
        for ns in namespaces {
            let f = flag(ns.typ())?;
            if plan.new.contains(f) || plan.join.iter().any(|(j, _)| *j == f) {
                return Err(Error::InvalidSpec(format!("namespace {:?} listed twice", ns.typ())));
            }
            match ns.path() {
                Some(path) => plan.join.push((f, path.clone())),
                None => plan.new |= f,
            }
        }
        if !plan.new.contains(CloneFlags::CLONE_NEWNS) {
            return Err(Error::InvalidSpec("a new mount namespace is required".into()));
        }
        Ok(plan)
    }

    /// Whether the container has a namespace of this kind other than the host's.
    pub fn has(&self, f: CloneFlags) -> bool {
        self.new.contains(f) || self.join.iter().any(|(j, _)| *j == f)
    }

    /// Whether the container runs in a user namespace.
    pub fn user(&self) -> bool {
        self.has(CloneFlags::CLONE_NEWUSER)
    }

    /// Joins the namespaces given by path. All files are opened first (joining the mount
    /// namespace changes what paths mean). Order: everything owned by the host user
    /// namespace while we are still host root, then the user namespace, then the mount
    /// namespace (which needs capabilities in its owning user namespace).
    pub fn join_all(&self) -> Result<()> {
        let opened = self
            .join
            .iter()
            .map(|(f, p)| {
                open(p, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
                    .map(|fd| (*f, p, fd))
                    .step(|| format!("open namespace {p:?}"))
            })
            .collect::<Result<Vec<(CloneFlags, &PathBuf, OwnedFd)>>>()?;
        let rank = |f: CloneFlags| match f {
            CloneFlags::CLONE_NEWUSER => 1,
            CloneFlags::CLONE_NEWNS => 2,
            _ => 0,
        };
        let mut ordered = opened;
        ordered.sort_by_key(|(f, _, _)| rank(*f));
        for (f, p, fd) in &ordered {
            setns(fd, *f).step(|| format!("setns({p:?}, {f:?})"))?;
        }
        Ok(())
    }

    /// Creates the new namespaces except the user namespace (created first, separately).
    pub fn unshare_rest(&self) -> Result<()> {
        let rest = self.new - CloneFlags::CLONE_NEWUSER;
        unshare(rest).step(|| format!("unshare({rest:?})"))
    }
}
