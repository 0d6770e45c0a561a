//! cgroups v1 and v2 for containers and pods, on top of `cgroups-rs`.
//!
//! A [`Cgroup`] is one cgroupfs-style path (`/corral/<pod>/<ctr>`), present in every v1
//! hierarchy or once in the v2 tree. The monitor creates the container's cgroup, applies the
//! spec's resources and moves the container into it before anything runs; `kill_all` uses it
//! so that no process escapes a stop; the OOM kill counter decides `OOMKilled`.

mod hierarchy;
mod resources;
mod stats;
mod usage;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgroups_rs::CgroupPid;
use cgroups_rs::fs::Controller;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::memory::MemController;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

pub use hierarchy::V2At;
pub use resources::shares_to_weight;
pub use stats::Stats;
pub use usage::{DeviceIo, ProcessCounts, Usage, block_device_name, process_counts, weight_to_shares};

use crate::error::{Context, Error, Result};

/// One cgroup path across the host's hierarchies.
pub struct Cgroup {
    inner: cgroups_rs::fs::cgroup::Cgroup,
}

impl std::fmt::Debug for Cgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cgroup({:?}, v2={})", self.inner.path(), self.inner.v2())
    }
}

/// Checks a cgroupfs-style path: absolute, no `..`, no systemd `slice:prefix:name` form.
pub fn validate_path(path: &str) -> Result<()> {
    let bad = |why: &str| Err(Error::InvalidSpec(format!("cgroupsPath {path:?}: {why}")));
    if !path.starts_with('/') {
        return bad("must be an absolute cgroupfs path (the systemd driver is not supported)");
    }
    if path.split('/').any(|c| c == ".." || c == ".") {
        return bad("must not contain . or ..");
    }
    if path.trim_matches('/').is_empty() {
        return bad("must not be the root cgroup");
    }
    Ok(())
}

impl Cgroup {
    /// The cgroup `path` on this host's cgroup mounts (v1 or v2, detected like cgroups-rs does).
    pub fn open(path: &str) -> Result<Cgroup> {
        validate_path(path)?;
        let relative = path.trim_start_matches('/');
        Ok(Cgroup { inner: cgroups_rs::fs::cgroup::Cgroup::load(cgroups_rs::fs::hierarchies::auto(), relative) })
    }

    /// The cgroup `path` in a cgroup v2 tree mounted (or faked) at `root`.
    pub fn open_v2_at(root: &Path, path: &str) -> Result<Cgroup> {
        validate_path(path)?;
        let relative = path.trim_start_matches('/');
        Ok(Cgroup { inner: cgroups_rs::fs::cgroup::Cgroup::load(Box::new(V2At::new(root)), relative) })
    }

    /// The cgroupfs-style path.
    pub fn path(&self) -> String {
        format!("/{}", self.inner.path())
    }

    /// Whether this is the v2 unified hierarchy.
    pub fn is_v2(&self) -> bool {
        self.inner.v2()
    }

    /// The directory of this cgroup in each hierarchy (one entry on v2), keyed by controller.
    pub fn dirs(&self) -> Vec<(String, PathBuf)> {
        self.inner.subsystems().iter().map(|s| (s.controller_name(), s.to_controller().path().to_path_buf())).collect()
    }

    /// Creates the cgroup (and missing parents) in every hierarchy; fine if it exists.
    pub fn create(&self) -> Result<()> {
        self.inner.create().step(|| format!("create {}", self.path()))
    }

    /// Whether the cgroup exists.
    pub fn exists(&self) -> bool {
        self.inner.exists()
    }

    /// Writes the limits `res` sets (see `resources::apply`).
    pub fn apply(&self, res: &LinuxResources) -> Result<()> {
        resources::apply(&self.inner, res)
    }

    /// Moves process `pid` (all its threads) into the cgroup.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        let tgid = CgroupPid::from(pid as u64);
        self.inner.add_task_by_tgid(tgid).step(|| format!("add pid {pid} to {}", self.path()))
    }

    /// The processes in the cgroup (of the first hierarchy; in v1 all hold the same set).
    pub fn pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self.inner.procs().into_iter().map(|p| p.pid as i32).collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// SIGKILLs every process in the cgroup and waits (up to `timeout`) until it is empty.
    ///
    /// v2 ≥ 5.14 has `cgroup.kill`. Otherwise the cgroup is frozen first, so nothing can fork
    /// between listing and killing, then every listed pid is killed and the cgroup thawed.
    pub fn kill_all(&self, timeout: Duration) -> Result<()> {
        if !self.exists() {
            return Ok(());
        }
        let deadline = Instant::now() + timeout;
        if self.inner.v2() && self.inner.kill().is_ok() {
            return self.wait_empty(deadline);
        }
        let freezer: Option<&FreezerController> = self.inner.controller_of();
        loop {
            let frozen = freezer.is_some_and(|f| f.freeze().is_ok());
            let pids = self.pids();
            for &pid in &pids {
                // ESRCH: it exited meanwhile, which is what we want.
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            if frozen && let Some(f) = freezer {
                f.thaw().step(|| format!("thaw {}", self.path()))?;
            }
            if pids.is_empty() || self.wait_empty(Instant::now() + Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::InvalidState(format!("cgroup {}: processes left after SIGKILL", self.path())));
            }
        }
    }

    fn wait_empty(&self, deadline: Instant) -> Result<()> {
        // A killed process is usually gone within a millisecond: poll often at first, then
        // back off (the kernel offers no notification for "cgroup empty" in v1).
        let mut pause = Duration::from_micros(250);
        while !self.pids().is_empty() {
            if Instant::now() >= deadline {
                return Err(Error::InvalidState(format!("cgroup {}: still has processes", self.path())));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
        Ok(())
    }

    /// How many processes the kernel's OOM killer killed in this cgroup
    /// (`memory.oom_control` in v1, `memory.events` in v2).
    pub fn oom_kill_count(&self) -> u64 {
        let Some(mem) = self.inner.controller_of::<MemController>() else { return 0 };
        // One small file, read at every start and exit: not cgroups-rs's `memory_stat()`,
        // which reads and parses ten files of the memory controller to return this number.
        let file = if self.inner.v2() { "memory.events" } else { "memory.oom_control" };
        let text = std::fs::read_to_string(mem.path().join(file)).unwrap_or_default();
        stats::field(&text, "oom_kill").unwrap_or(0)
    }

    /// Usage statistics.
    pub fn stats(&self) -> Result<Stats> {
        if !self.exists() {
            return Err(Error::NotFound(format!("cgroup {}", self.path())));
        }
        Ok(stats::read(self))
    }

    /// Every counter and limit cAdvisor reports (see [`Usage`]): read when metrics are scraped.
    pub fn usage(&self) -> Result<Usage> {
        if !self.exists() {
            return Err(Error::NotFound(format!("cgroup {}", self.path())));
        }
        Ok(usage::read(self))
    }

    /// Kills what is left and removes the cgroup from every hierarchy. Idempotent; parents
    /// are left alone (they belong to the pod or the caller).
    pub fn delete(&self) -> Result<()> {
        self.kill_all(Duration::from_secs(10))?;
        for (_, dir) in self.dirs() {
            remove_dir_retrying(&dir)?;
        }
        Ok(())
    }
}

/// `rmdir` of a cgroup directory, retrying while the kernel still counts exiting tasks.
fn remove_dir_retrying(dir: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => return Err(Error::io(format!("rmdir {dir:?}"), e)),
        }
    }
}

/// Creates a pod-level cgroup (the parent of its containers' cgroups) with optional limits.
pub fn create_pod_cgroup(path: &str, resources: Option<&LinuxResources>) -> Result<Cgroup> {
    let cg = Cgroup::open(path)?;
    cg.create()?;
    if let Some(res) = resources {
        cg.apply(res)?;
    }
    Ok(cg)
}

/// Removes a pod-level cgroup, killing anything still in it. Idempotent.
pub fn remove_pod_cgroup(path: &str) -> Result<()> {
    Cgroup::open(path)?.delete()
}
