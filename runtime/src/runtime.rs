//! The runtime API the daemon calls: start, inspect, signal, exec into, delete containers.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use oci_spec::runtime::{LinuxResources, Spec};

use crate::cgroups::{self, Cgroup, Stats, Usage};
use crate::error::{Context, Error, Result};
use crate::init::NamespacePlan;
use crate::monitor::Report;
use crate::process::{pidfd_send_signal, wait_pidfd};
use crate::state::{Bundle, StartRecord};
use crate::types::{
    ContainerState, EXEC_OPTIONS_ENV, ExecOptions, ExitInfo, HELPER_LOG_ENV, RuntimeOptions, StartOptions, StartPhases,
    Started,
};

/// How long `start` waits for the monitor's report (image mounts can be slow, not this slow).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// corral's container runtime. Cheap to construct; holds no state besides its options:
/// everything lives in the state directory, so a restarted daemon sees what it left.
#[derive(Debug, Clone)]
pub struct Runtime {
    opts: RuntimeOptions,
}

/// Container ids become directory names: `[A-Za-z0-9][A-Za-z0-9_.-]{0,127}`.
fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok { Ok(()) } else { Err(Error::InvalidSpec(format!("container id {id:?}"))) }
}

impl Runtime {
    /// A runtime keeping state under `opts.state_dir` (created if missing).
    pub fn new(opts: RuntimeOptions) -> Result<Runtime> {
        std::fs::create_dir_all(&opts.state_dir).step(|| format!("mkdir {:?}", opts.state_dir))?;
        if !opts.exe.is_file() {
            return Err(Error::NotFound(format!("helper binary {:?}", opts.exe)));
        }
        Ok(Runtime { opts })
    }

    fn bundle(&self, id: &str) -> Result<Bundle> {
        validate_id(id)?;
        Ok(Bundle::new(self.opts.state_dir.join(id)))
    }

    fn existing(&self, id: &str) -> Result<Bundle> {
        let b = self.bundle(id)?;
        if !b.dir().is_dir() {
            return Err(Error::NotFound(format!("container {id}")));
        }
        Ok(b)
    }

    /// Starts container `id`: writes its state directory, spawns its monitor and returns
    /// once the container process has `execve`d, or with the error of the step that failed
    /// (the failed start is also recorded as exited with reason `StartError`).
    pub fn start(&self, id: &str, spec: &Spec, opts: &StartOptions) -> Result<Started> {
        let bundle = self.bundle(id)?;
        validate_spec(spec)?;
        let cgroup_path = match spec.linux().as_ref().and_then(|l| l.cgroups_path().as_ref()) {
            Some(p) => p.to_str().ok_or_else(|| Error::InvalidSpec(format!("cgroupsPath {p:?}")))?.to_owned(),
            None => format!("/corral/{id}"),
        };
        cgroups::validate_path(&cgroup_path)?;
        match std::fs::create_dir(bundle.dir()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                if bundle.monitor()?.is_some() {
                    return Err(Error::InvalidState(format!("container {id} was already started")));
                }
            }
            Err(e) => return Err(Error::io(format!("mkdir {:?}", bundle.dir()), e)),
        }
        tracing::debug_span!("write_bundle").in_scope(|| {
            std::fs::create_dir_all(bundle.rootfs()).step(|| format!("mkdir {:?}", bundle.rootfs()))?;
            bundle.write_spec(spec)?;
            bundle.write_start_record(&StartRecord { options: opts.clone(), cgroup_path })
        })?;
        let started = self.spawn_monitor(&bundle)?;
        let StartPhases { setup_us, cgroup_join_us, init_us } = started.phases;
        tracing::debug!(setup_us, cgroup_join_us, init_us, "monitor phases");
        Ok(started)
    }

    fn spawn_monitor(&self, bundle: &Bundle) -> Result<Started> {
        let log_path = bundle.monitor_log();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .step(|| format!("open {log_path:?}"))?;
        let mut cmd = Command::new(&self.opts.exe);
        cmd.arg("monitor").arg(bundle.dir()).env_clear().stdin(Stdio::null()).stdout(Stdio::piped()).stderr(log);
        if let Ok(filter) = std::env::var(HELPER_LOG_ENV) {
            cmd.env(HELPER_LOG_ENV, filter);
        }
        let spawning = tracing::debug_span!("spawn_monitor").entered();
        let mut child = cmd.spawn().step(|| format!("spawn {:?} monitor", self.opts.exe))?;
        let stdout = child.stdout.take().ok_or_else(|| Error::InvalidState("monitor: no stdout pipe".into()))?;
        // The intermediate process exits right after forking the monitor.
        child.wait().step(|| "wait for the monitor's intermediate process")?;
        drop(spawning);
        let _waiting = tracing::debug_span!("monitor_report").entered();
        let stdout = OwnedFd::from(stdout);
        let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(START_TIMEOUT.as_millis() as i32).unwrap_or(PollTimeout::MAX);
        if poll(&mut fds, ms).step(|| "poll monitor report")? == 0 {
            return Err(Error::Start(format!("no report from the monitor within {START_TIMEOUT:?}")));
        }
        let mut line = String::new();
        BufReader::new(std::fs::File::from(stdout)).read_line(&mut line).step(|| "read monitor report")?;
        match serde_json::from_str::<Report>(&line) {
            Ok(Report::Started(started)) => Ok(started),
            Ok(Report::Failed(e)) => Err(Error::Start(e)),
            Err(_) => {
                Err(Error::Start(format!("the monitor exited without reporting (see {:?})", bundle.monitor_log())))
            }
        }
    }

    /// The container's state, from its state directory and /proc.
    pub fn state(&self, id: &str) -> Result<ContainerState> {
        let bundle = self.existing(id)?;
        if let Some(exit) = bundle.exit()? {
            return Ok(ContainerState::Exited(exit));
        }
        let Some(monitor) = bundle.monitor()? else { return Ok(ContainerState::Created) };
        if monitor.is_alive() {
            return Ok(match bundle.init()? {
                Some(init) => ContainerState::Running {
                    pid: init.process.pid,
                    monitor_pid: monitor.pid,
                    started_at: init.started_at,
                },
                None => ContainerState::Starting { monitor_pid: monitor.pid },
            });
        }
        // The monitor may have written exit.json just before we looked at it.
        if let Some(exit) = bundle.exit()? {
            return Ok(ContainerState::Exited(exit));
        }
        Ok(ContainerState::Exited(ExitInfo {
            exit_code: 255,
            signal: None,
            finished_at: std::time::SystemTime::now(),
            oom_killed: false,
            reason: "Unknown".into(),
            message: Some("the container's monitor died without recording the exit".into()),
        }))
    }

    /// A pidfd of the container's monitor: readable once it exited, and then the exit
    /// record is final. Works the same for a daemon that restarted. If the monitor is
    /// already gone the fd is readable at once (the read end of a closed pipe).
    pub fn watch(&self, id: &str) -> Result<OwnedFd> {
        let bundle = self.existing(id)?;
        if let Some(monitor) = bundle.monitor()?
            && let Some(fd) = monitor.pidfd()?
        {
            return Ok(fd);
        }
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).step(|| "pipe2")?;
        drop(write);
        Ok(read)
    }

    /// Sends `sig` to the container's init process through a pidfd (no pid-reuse race).
    pub fn signal(&self, id: &str, sig: Signal) -> Result<()> {
        let bundle = self.existing(id)?;
        let init = bundle.init()?.ok_or_else(|| Error::InvalidState(format!("container {id} has not started")))?;
        let fd = init.process.pidfd()?.ok_or_else(|| Error::InvalidState(format!("container {id} is not running")))?;
        pidfd_send_signal(&fd, sig).step(|| format!("kill({}, {sig})", init.process.pid))
    }

    /// SIGKILLs every process in the container's cgroup, so nothing escapes a stop.
    pub fn kill_all(&self, id: &str) -> Result<()> {
        let record = self.existing(id)?.start_record()?;
        Cgroup::open(&record.cgroup_path)?.kill_all(Duration::from_secs(10))
    }

    /// Removes the container: kills it if it runs, waits for its monitor, removes its
    /// cgroup and state directory. Idempotent.
    pub fn delete(&self, id: &str) -> Result<()> {
        let bundle = self.bundle(id)?;
        if !bundle.dir().exists() {
            return Ok(());
        }
        let record = bundle.start_record().ok();
        if let Some(record) = &record {
            Cgroup::open(&record.cgroup_path)?.kill_all(Duration::from_secs(10))?;
        }
        if let Some(monitor) = bundle.monitor()?
            && let Some(fd) = monitor.pidfd()?
        {
            // The monitor exits right after its container; give it time to record that.
            if !wait_pidfd(&fd, Duration::from_secs(10))? {
                tracing::warn!(
                    id,
                    pid = monitor.pid,
                    "monitor did not exit after its container was killed; killing it"
                );
                let _ = pidfd_send_signal(&fd, Signal::SIGKILL);
                wait_pidfd(&fd, Duration::from_secs(5))?;
            }
        }
        if let Some(record) = &record {
            Cgroup::open(&record.cgroup_path)?.delete()?;
        }
        std::fs::remove_dir_all(bundle.dir()).step(|| format!("remove {:?}", bundle.dir()))
    }

    /// A `Command` running `<exe> exec` for container `id`. The caller sets stdio (pipes,
    /// or a pty slave when `opts.tty`) and spawns it; its exit status is the command's
    /// (128 + signal if killed; 126/127 if the command could not be started). Killing the
    /// `Command`'s process kills the command.
    pub fn exec_command(&self, id: &str, opts: &ExecOptions) -> Result<Command> {
        let bundle = self.existing(id)?;
        if opts.args.is_empty() {
            return Err(Error::InvalidSpec("exec without a command".into()));
        }
        match self.state(id)? {
            ContainerState::Running { .. } => {}
            other => return Err(Error::InvalidState(format!("container {id} is not running: {other:?}"))),
        }
        let json = serde_json::to_string(opts).map_err(|source| Error::Json { path: "exec options".into(), source })?;
        let mut cmd = Command::new(&self.opts.exe);
        cmd.arg("exec").arg(bundle.dir()).env_clear().env(EXEC_OPTIONS_ENV, json);
        Ok(cmd)
    }

    /// Connects to the container's attach server (protocol in [`crate::attach`]).
    pub fn attach(&self, id: &str) -> Result<std::os::unix::net::UnixStream> {
        let bundle = self.existing(id)?;
        match self.state(id)? {
            ContainerState::Running { .. } => {}
            other => return Err(Error::InvalidState(format!("container {id} is not running: {other:?}"))),
        }
        let path = bundle.attach_socket();
        let (_dir, short) = crate::files::socket_path(&path)?;
        std::os::unix::net::UnixStream::connect(&short).step(|| format!("connect {path:?}"))
    }

    /// Asks the monitor to reopen the container's log file (after kubelet rotated it).
    pub fn reopen_log(&self, id: &str) -> Result<()> {
        let bundle = self.existing(id)?;
        let monitor =
            bundle.monitor()?.ok_or_else(|| Error::InvalidState(format!("container {id} has not started")))?;
        let fd = monitor.pidfd()?.ok_or_else(|| Error::InvalidState(format!("container {id} is not running")))?;
        pidfd_send_signal(&fd, Signal::SIGUSR1).step(|| format!("SIGUSR1 to monitor {}", monitor.pid))?;
        // kubelet (and critest) look for the new file as soon as the call returns: wait
        // until the monitor has reopened it, as containerd's synchronous reopen does.
        if let Some(log) = bundle.start_record()?.options.log_path {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while !log.exists() {
                if std::time::Instant::now() > deadline {
                    return Err(Error::InvalidState(format!("monitor of {id} did not reopen {log:?} within 2s")));
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        Ok(())
    }

    /// CPU, memory and pids usage of the container's cgroup.
    pub fn stats(&self, id: &str) -> Result<Stats> {
        let record = self.existing(id)?.start_record()?;
        Cgroup::open(&record.cgroup_path)?.stats()
    }

    /// Everything cAdvisor reports about the container's cgroup and processes (metrics RPCs).
    pub fn usage(&self, id: &str) -> Result<Usage> {
        let record = self.existing(id)?.start_record()?;
        Cgroup::open(&record.cgroup_path)?.usage()
    }

    /// Applies new limits to the running container and stores them in its spec.
    pub fn update_resources(&self, id: &str, res: &LinuxResources) -> Result<()> {
        let bundle = self.existing(id)?;
        let record = bundle.start_record()?;
        Cgroup::open(&record.cgroup_path)?.apply(res)?;
        let mut spec = bundle.spec()?;
        if let Some(linux) = spec.linux_mut() {
            linux.set_resources(Some(res.clone()));
        }
        bundle.write_spec(&spec)
    }

    /// Ids of all containers with a state directory (for recovery after a restart and GC).
    pub fn list(&self) -> Result<Vec<String>> {
        let dir = &self.opts.state_dir;
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(dir).step(|| format!("read {dir:?}"))? {
            let entry = entry.step(|| format!("read {dir:?}"))?;
            if entry.file_type().is_ok_and(|t| t.is_dir())
                && let Some(name) = entry.file_name().to_str()
                && validate_id(name).is_ok()
            {
                ids.push(name.to_owned());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The state directory of container `id` (for the daemon's own files, e.g. upper/work).
    pub fn container_dir(&self, id: &str) -> Result<PathBuf> {
        Ok(self.bundle(id)?.dir().to_path_buf())
    }

    /// The helper binary.
    pub fn exe(&self) -> &Path {
        &self.opts.exe
    }
}

/// Checks what the monitor would otherwise only find out half-way.
fn validate_spec(spec: &Spec) -> Result<()> {
    let process = spec.process().as_ref().ok_or_else(|| Error::InvalidSpec("no process".into()))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::InvalidSpec("process.args is empty".into()));
    }
    if !process.cwd().is_absolute() {
        return Err(Error::InvalidSpec(format!("process.cwd {:?} is not absolute", process.cwd())));
    }
    let plan = NamespacePlan::from_spec(spec)?;
    if plan.user() {
        let linux = spec.linux().as_ref();
        let has = |m: Option<&Vec<oci_spec::runtime::LinuxIdMapping>>| m.is_some_and(|m| !m.is_empty());
        if plan.new.contains(nix::sched::CloneFlags::CLONE_NEWUSER)
            && !(has(linux.and_then(|l| l.uid_mappings().as_ref()))
                && has(linux.and_then(|l| l.gid_mappings().as_ref())))
        {
            return Err(Error::InvalidSpec("a new user namespace needs uidMappings and gidMappings".into()));
        }
    }
    for ns in spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()).into_iter().flatten() {
        if let Some(p) = ns.path()
            && !p.exists()
        {
            return Err(Error::NotFound(format!("namespace path {p:?}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert!(validate_id("abc-1_2.3").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "-x", &"a".repeat(129)] {
            assert!(validate_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn spec_without_args_or_mount_ns_is_rejected() {
        let mut spec = crate::spec::default_spec();
        spec.process_mut().as_mut().unwrap().set_args(Some(vec![]));
        assert!(validate_spec(&spec).unwrap_err().to_string().contains("args"));
        let mut spec = crate::spec::default_spec();
        spec.linux_mut().as_mut().unwrap().set_namespaces(Some(vec![]));
        assert!(validate_spec(&spec).unwrap_err().to_string().contains("mount namespace"));
    }
}
