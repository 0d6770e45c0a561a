//! Process security settings from the spec, applied by the container init and by `exec`
//! just before `execve`: oom_score_adj, rlimits, user and groups, capabilities,
//! no_new_privs. (Seccomp is in `seccomp`.)
//!
//! Order matters (as in runc): the bounding set is dropped while still root with
//! CAP_SETPCAP, then uid/gid change with KEEPCAPS so the permitted set survives, then the
//! effective/permitted/inheritable/ambient sets are set to exactly what the spec says.

use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability};
use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
use oci_spec::runtime::{LinuxCapabilities, PosixRlimit, PosixRlimitType, User};

use crate::error::{Context, Error, Result};

/// Sets `/proc/self/oom_score_adj`. Lowering it needs CAP_SYS_RESOURCE; without it the
/// inherited value is kept and a warning logged, never failing the container.
pub fn set_oom_score_adj(score: Option<i32>) -> Result<()> {
    let Some(score) = score else { return Ok(()) };
    let path = "/proc/self/oom_score_adj";
    if let Err(e) = std::fs::write(path, score.to_string()) {
        if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) {
            let current = std::fs::read_to_string(path).unwrap_or_default();
            tracing::warn!(
                wanted = score,
                kept = current.trim(),
                "oom_score_adj: not permitted (no CAP_SYS_RESOURCE), keeping the inherited value"
            );
            return Ok(());
        }
        return Err(Error::io(format!("write {path} {score}"), e));
    }
    Ok(())
}

fn resource(typ: PosixRlimitType) -> libc::__rlimit_resource_t {
    use PosixRlimitType::*;
    (match typ {
        RlimitCpu => libc::RLIMIT_CPU,
        RlimitFsize => libc::RLIMIT_FSIZE,
        RlimitData => libc::RLIMIT_DATA,
        RlimitStack => libc::RLIMIT_STACK,
        RlimitCore => libc::RLIMIT_CORE,
        RlimitRss => libc::RLIMIT_RSS,
        RlimitNproc => libc::RLIMIT_NPROC,
        RlimitNofile => libc::RLIMIT_NOFILE,
        RlimitMemlock => libc::RLIMIT_MEMLOCK,
        RlimitAs => libc::RLIMIT_AS,
        RlimitLocks => libc::RLIMIT_LOCKS,
        RlimitSigpending => libc::RLIMIT_SIGPENDING,
        RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        RlimitNice => libc::RLIMIT_NICE,
        RlimitRtprio => libc::RLIMIT_RTPRIO,
        RlimitRttime => libc::RLIMIT_RTTIME,
    }) as libc::__rlimit_resource_t
}

fn setrlimit(res: libc::__rlimit_resource_t, soft: u64, hard: u64) -> nix::Result<()> {
    let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: a valid resource number and a pointer to a live rlimit struct.
    nix::errno::Errno::result(unsafe { libc::setrlimit(res, &lim) }).map(drop)
}

fn getrlimit(res: libc::__rlimit_resource_t) -> nix::Result<(u64, u64)> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: a valid resource number and a pointer to a writable rlimit struct.
    nix::errno::Errno::result(unsafe { libc::getrlimit(res, &mut lim) })?;
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Applies the spec's rlimits. Raising a hard limit needs CAP_SYS_RESOURCE; without it the
/// limit is clamped to the current hard limit, with a warning.
pub fn set_rlimits(rlimits: &[PosixRlimit]) -> Result<()> {
    for r in rlimits {
        let res = resource(r.typ());
        match setrlimit(res, r.soft(), r.hard()) {
            Ok(()) => {}
            Err(nix::errno::Errno::EPERM) => {
                let (_, current_hard) = getrlimit(res).step(|| format!("getrlimit({:?})", r.typ()))?;
                let hard = r.hard().min(current_hard);
                let soft = r.soft().min(hard);
                tracing::warn!(rlimit = ?r.typ(), wanted_hard = r.hard(), hard, "cannot raise hard rlimit (no CAP_SYS_RESOURCE), clamped");
                setrlimit(res, soft, hard).step(|| format!("setrlimit({:?}, {soft}, {hard})", r.typ()))?;
            }
            Err(e) => return Err(Error::sys(format!("setrlimit({:?}, {}, {})", r.typ(), r.soft(), r.hard()), e)),
        }
    }
    Ok(())
}

fn to_caps(set: &Option<oci_spec::runtime::Capabilities>) -> Result<HashSet<Capability>> {
    set.iter()
        .flatten()
        .map(|c| {
            let name = format!("CAP_{c}");
            // Capabilities newer than the caps crate knows are an error, not silently dropped.
            Capability::from_str(&name).map_err(|_| Error::InvalidSpec(format!("unknown capability {name}")))
        })
        .collect()
}

/// Drops every capability not in the spec's bounding set (needs CAP_SETPCAP, so first).
pub fn drop_bounding_set(caps: Option<&LinuxCapabilities>) -> Result<()> {
    let Some(caps) = caps else { return Ok(()) };
    let keep = to_caps(caps.bounding())?;
    for cap in caps::all() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|e| Error::Sys {
                step: format!("drop {cap} from the bounding set"),
                source: std::io::Error::other(e.to_string()),
            })?;
        }
    }
    Ok(())
}

/// Becomes the spec's user: supplementary groups, gid, uid, umask. KEEPCAPS keeps the
/// permitted set across the uid change so [`set_capabilities`] can choose from it.
pub fn switch_user(user: &User, setgroups_allowed: bool) -> Result<()> {
    nix::sys::prctl::set_keepcaps(true).step(|| "prctl(PR_SET_KEEPCAPS)")?;
    if setgroups_allowed {
        let groups: Vec<Gid> = user.additional_gids().iter().flatten().map(|g| Gid::from_raw(*g)).collect();
        setgroups(&groups).step(|| format!("setgroups({:?})", user.additional_gids()))?;
    }
    let gid = Gid::from_raw(user.gid());
    setresgid(gid, gid, gid).step(|| format!("setresgid({gid})"))?;
    let uid = Uid::from_raw(user.uid());
    setresuid(uid, uid, uid).step(|| format!("setresuid({uid})"))?;
    nix::sys::prctl::set_keepcaps(false).step(|| "prctl(PR_SET_KEEPCAPS, 0)")?;
    if let Some(mask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    Ok(())
}

/// Sets the effective, permitted, inheritable and ambient sets exactly as the spec says.
pub fn set_capabilities(caps: Option<&LinuxCapabilities>) -> Result<()> {
    let Some(caps) = caps else { return Ok(()) };
    let set = |which: CapSet, value: &HashSet<Capability>| {
        caps::set(None, which, value).map_err(|e| Error::Sys {
            step: format!("capset {which:?} {value:?}"),
            source: std::io::Error::other(e.to_string()),
        })
    };
    set(CapSet::Effective, &to_caps(caps.effective())?)?;
    set(CapSet::Permitted, &to_caps(caps.permitted())?)?;
    set(CapSet::Inheritable, &to_caps(caps.inheritable())?)?;
    // Ambient capabilities must be permitted and inheritable; raising one that is not fails.
    let ambient = to_caps(caps.ambient())?;
    caps::clear(None, CapSet::Ambient).ok();
    for cap in ambient {
        caps::raise(None, CapSet::Ambient, cap).map_err(|e| Error::Sys {
            step: format!("raise ambient {cap}"),
            source: std::io::Error::other(e.to_string()),
        })?;
    }
    Ok(())
}

/// `prctl(PR_SET_NO_NEW_PRIVS)`.
pub fn set_no_new_privs() -> Result<()> {
    nix::sys::prctl::set_no_new_privs().step(|| "prctl(PR_SET_NO_NEW_PRIVS)")
}
