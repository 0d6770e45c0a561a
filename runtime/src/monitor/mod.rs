//! `corral monitor <state-dir>`: the per-container supervisor.
//!
//! Started by `Runtime::start` (fork + exec of the corral binary), it forks once more and
//! the first process exits, so the monitor is never a child of the daemon. The monitor then
//! runs in its own session as a child subreaper, single-threaded and without tokio:
//!
//! 1. records itself in `monitor.json`, creates the container's cgroup and limits;
//! 2. creates the stdio pipes (or pty) and forks the container init (see `init`), moves it
//!    into the cgroup, writes user namespace id maps when asked, and waits for end-of-file
//!    on the channel, which means `execve` succeeded (or for the failed step's error);
//! 3. reports the outcome as one JSON line on its stdout, which the daemon reads;
//! 4. relays the container's output into the CRI log (`SIGUSR1` reopens it), reaps
//!    children, and when the container's init exits writes `exit.json` atomically
//!    (OOM-killed if the cgroup's OOM kill counter grew), removes the cgroup and exits.
//!
//! Attach: the monitor keeps the stdin pipe's write end (when `stdin`) and serves
//! `attach.sock` in the state dir (protocol in `crate::attach`): client input goes to the
//! container's stdin, output goes to clients as well as the log, resizes go to the pty.

mod attach;
mod io;

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::signalfd::SignalFd;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};
use serde::{Deserialize, Serialize};

use crate::attach::Frame;
use crate::cgroups::Cgroup;
use crate::channel::{self, Channel, ChildMessage};
use crate::error::{Context, Error, Result};
use crate::init::{self, InitContext, NamespacePlan};
use crate::logs::{CriLogWriter, Stream};
use crate::process::ProcessId;
use crate::state::{Bundle, InitRecord};
use crate::types::{ExitInfo, StartPhases, Started};
use attach::{AttachServer, Request};
use io::{LogFile, MonitorIo};

/// The one line the monitor writes to the daemon.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Report {
    /// The container process exec'd.
    Started(Started),
    /// Building the container failed at the given step.
    Failed(String),
}

/// How long output is still drained after the init process exited, for processes of a
/// shared PID namespace that keep the pipes open.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Entry point of the `monitor` helper mode.
pub(crate) fn main(dir: &Path) -> ExitCode {
    // SAFETY: run_helper_mode runs before any thread exists.
    match unsafe { fork() } {
        Err(e) => {
            eprintln!("corral monitor: fork: {e}");
            return ExitCode::FAILURE;
        }
        // The intermediate: exits at once, so the monitor is reparented away from the daemon.
        Ok(ForkResult::Parent { .. }) => return ExitCode::SUCCESS,
        Ok(ForkResult::Child) => {}
    }
    let report = match take_stdout() {
        Ok(fd) => std::fs::File::from(fd),
        Err(e) => {
            eprintln!("corral monitor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let bundle = Bundle::new(dir);
    let _span = tracing::info_span!("monitor", dir = %dir.display()).entered();
    let started = Monitor::start(&bundle);
    let (monitor, line) = match started {
        Ok(m) => {
            let r = Report::Started(m.started);
            (Some(m), r)
        }
        Err(e) => {
            tracing::error!(error = %e, "start failed");
            record_start_failure(&bundle, &e);
            (None, Report::Failed(e.to_string()))
        }
    };
    let mut report = report;
    let _ =
        serde_json::to_writer(&mut report, &line).map_err(std::io::Error::from).and_then(|()| report.write_all(b"\n"));
    drop(report);
    match monitor {
        Some(m) => m.supervise(),
        None => ExitCode::FAILURE,
    }
}

/// Moves our stdout (the daemon's report pipe) to a close-on-exec fd and puts /dev/null on
/// fd 1, so that no container process inherits the pipe.
fn take_stdout() -> Result<OwnedFd> {
    let stdout = std::io::stdout();
    let fd = stdout.as_fd().try_clone_to_owned().step(|| "dup stdout")?;
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null").step(|| "open /dev/null")?;
    // SAFETY: dup2 of a valid fd onto fd 1.
    nix::errno::Errno::result(unsafe { libc::dup2(null.as_raw_fd(), 1) }).step(|| "dup2 /dev/null onto stdout")?;
    Ok(fd)
}

/// A failed start still leaves a record (CRI shows the container exited with the error).
fn record_start_failure(bundle: &Bundle, e: &Error) {
    let info = ExitInfo {
        exit_code: 128,
        signal: None,
        finished_at: SystemTime::now(),
        oom_killed: false,
        reason: "StartError".into(),
        message: Some(e.to_string()),
    };
    if let Err(e) = bundle.write_exit(&info) {
        tracing::error!(error = %e, "cannot record the failed start");
    }
    if let Ok(record) = bundle.start_record()
        && let Ok(cg) = Cgroup::open(&record.cgroup_path)
        && let Err(e) = cg.delete()
    {
        tracing::warn!(error = %e, "cannot remove the cgroup of the failed container");
    }
}

struct Monitor {
    bundle: Bundle,
    started: Started,
    init_pid: Pid,
    cgroup: Cgroup,
    oom_baseline: u64,
    own_pid_namespace: bool,
    io: MonitorIo,
    log: CriLogWriter<LogFile>,
    signals: SignalFd,
    attach: Option<AttachServer>,
    stdin_once: bool,
}

impl Monitor {
    fn start(bundle: &Bundle) -> Result<Monitor> {
        let began = Instant::now();
        let me = ProcessId::of(std::process::id() as i32)?;
        nix::unistd::setsid().step(|| "setsid")?;
        nix::sys::prctl::set_child_subreaper(true).step(|| "prctl(PR_SET_CHILD_SUBREAPER)")?;
        bundle.write_monitor(&me)?;

        let spec = bundle.spec()?;
        let record = bundle.start_record()?;
        let plan = NamespacePlan::from_spec(&spec)?;
        let process = spec.process().as_ref().ok_or_else(|| Error::InvalidSpec("no process".into()))?;
        let cgroup = Cgroup::open(&record.cgroup_path)?;
        cgroup.create()?;
        if let Some(res) = spec.linux().as_ref().and_then(|l| l.resources().as_ref()) {
            cgroup.apply(res)?;
        }
        let oom_baseline = cgroup.oom_kill_count();
        let tty = record.options.tty || process.terminal().unwrap_or(false);
        let (io, child_stdio) = io::create(record.options.stdin, tty)?;
        let log = CriLogWriter::new(LogFile::open(record.options.log_path.as_deref())?);
        let attach = AttachServer::bind(&bundle.attach_socket())
            .map_err(|e| tracing::warn!(error = %e, "attach is not available for this container"))
            .ok();

        // Blocked before the fork so no signal is lost; the child restores the mask.
        let mut mask = SigSet::empty();
        for s in [Signal::SIGCHLD, Signal::SIGUSR1, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
            mask.add(s);
        }
        mask.thread_block().step(|| "sigprocmask(SIG_BLOCK)")?;
        let signals = SignalFd::with_flags(
            &mask,
            nix::sys::signalfd::SfdFlags::SFD_CLOEXEC | nix::sys::signalfd::SfdFlags::SFD_NONBLOCK,
        )
        .step(|| "signalfd")?;

        let (monitor_end, child_end) = channel::pair()?;
        let ctx = InitContext {
            spec: &spec,
            bundle,
            rootfs: record.options.rootfs.clone(),
            cgroup_path: record.cgroup_path.clone(),
            cgroup_dirs: cgroup.dirs(),
            cgroup_v2: cgroup.is_v2(),
            in_userns: plan.user(),
            plan,
        };
        let own_pid_namespace = ctx.plan.new.contains(CloneFlags::CLONE_NEWPID);
        let setup = began.elapsed();
        // SAFETY: the monitor is single-threaded.
        let child = match unsafe { fork() }.step(|| "fork container init")? {
            ForkResult::Child => {
                drop(monitor_end);
                drop(io);
                init::stage1(ctx, child_stdio, child_end)
            }
            ForkResult::Parent { child } => child,
        };
        drop(child_end);
        drop(child_stdio);
        let (init_pid, mut phases) = handshake(child, &monitor_end, &cgroup, &spec)?;
        phases.setup_us = micros(setup);
        let started = Started { pid: init_pid.as_raw(), monitor_pid: me.pid, started_at: SystemTime::now(), phases };
        bundle
            .write_init(&InitRecord { process: ProcessId::of(init_pid.as_raw())?, started_at: started.started_at })?;
        tracing::info!(pid = started.pid, "container started");
        drop(spec);
        // The spec and setup garbage are freed; give the pages back so the monitor's steady
        // state stays small.
        // SAFETY: plain libc call without pointers.
        unsafe { libc::malloc_trim(0) };
        Ok(Monitor {
            bundle: bundle.clone(),
            started,
            init_pid,
            cgroup,
            oom_baseline,
            own_pid_namespace,
            io,
            log,
            signals,
            attach,
            stdin_once: record.options.stdin_once,
        })
    }

    /// Relays output and waits for the container's end; returns the monitor's exit code.
    fn supervise(mut self) -> ExitCode {
        let mut status: Option<WaitStatus> = None;
        let mut drain_deadline: Option<Instant> = None;
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            if status.is_none() {
                status = self.reap();
                if status.is_some() {
                    self.after_init_exit();
                    drain_deadline = Some(Instant::now() + DRAIN_AFTER_EXIT);
                }
            }
            if status.is_some() && (self.io.outputs.is_empty() || drain_deadline.is_some_and(|d| Instant::now() >= d)) {
                break;
            }
            let timeout = match drain_deadline {
                Some(d) => PollTimeout::try_from(d.saturating_duration_since(Instant::now()).as_millis() as i32)
                    .unwrap_or(PollTimeout::ZERO),
                None => PollTimeout::NONE,
            };
            let mut fds: Vec<PollFd<'_>> = Vec::with_capacity(1 + self.io.outputs.len());
            fds.push(PollFd::new(self.signals.as_fd(), PollFlags::POLLIN));
            for (_, fd) in &self.io.outputs {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
            let attach_fds = self.attach.as_ref().map(AttachServer::fds).unwrap_or_default();
            for fd in &attach_fds {
                fds.push(PollFd::new(*fd, PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => {
                    tracing::error!(error = %e, "poll");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
            drop(fds);
            drop(attach_fds);
            if ready[0] {
                self.handle_signals();
            }
            let outputs = self.io.outputs.len();
            self.serve_attach(&ready[1 + outputs..]);
            let mut closed = Vec::new();
            for (i, is_ready) in ready[1..1 + outputs].iter().enumerate() {
                if *is_ready && self.read_output(i, &mut buf) {
                    closed.push(i);
                }
            }
            for i in closed.into_iter().rev() {
                let (stream, _) = self.io.outputs.remove(i);
                let _ = self.log.finish(stream, SystemTime::now());
            }
        }
        for (stream, _) in std::mem::take(&mut self.io.outputs) {
            let _ = self.log.finish(stream, SystemTime::now());
        }
        let status = status.unwrap_or(WaitStatus::StillAlive);
        self.record_exit(status)
    }

    /// Reads what is available on output `i`; true when it reached end-of-file.
    fn read_output(&mut self, i: usize, buf: &mut [u8]) -> bool {
        let (stream, fd) = &self.io.outputs[i];
        let stream: Stream = *stream;
        loop {
            match nix::unistd::read(fd.as_fd(), buf) {
                Ok(0) => return true,
                Ok(n) => {
                    let _ = self.log.write(stream, &buf[..n], SystemTime::now());
                    if let Some(attach) = &mut self.attach {
                        let data = buf[..n].to_vec();
                        attach.broadcast(&if stream == Stream::Stderr {
                            Frame::Stderr(data)
                        } else {
                            Frame::Stdout(data)
                        });
                    }
                    if n < buf.len() {
                        return false;
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => return false,
                Err(nix::errno::Errno::EINTR) => continue,
                // EIO: the pty's last slave fd closed.
                Err(_) => return true,
            }
        }
    }

    /// Accepts attach clients and carries out what they ask. `ready` holds the poll
    /// results of the listener, then of each client.
    fn serve_attach(&mut self, ready: &[bool]) {
        let Some(attach) = &mut self.attach else { return };
        let mut requests = Vec::new();
        let mut gone = Vec::new();
        for (i, is_ready) in ready.iter().enumerate().skip(1) {
            if *is_ready {
                let client_requests = attach.read_client(i - 1);
                if client_requests.iter().any(|r| matches!(r, Request::Disconnected)) {
                    gone.push(i - 1);
                }
                requests.extend(client_requests);
            }
        }
        for i in gone.into_iter().rev() {
            attach.remove(i);
        }
        if ready.first() == Some(&true) {
            attach.accept();
        }
        for request in requests {
            match request {
                Request::Stdin(data) => match &self.io.stdin {
                    Some(fd) => attach::write_stdin(fd, &data),
                    None => tracing::debug!("attach input dropped: the container's stdin is closed"),
                },
                Request::Resize(rows, cols) => {
                    if let Some(master) = &self.io.terminal {
                        attach::resize(master, rows, cols);
                    }
                }
                // With a terminal, closing our master copy would not signal EOF; the
                // client sends ^D itself. For pipes, dropping the write end is EOF.
                Request::CloseStdin => self.io.stdin = None,
                Request::Disconnected if self.stdin_once => self.io.stdin = None,
                Request::Disconnected => {}
            }
        }
    }

    fn handle_signals(&mut self) {
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGUSR1) => match self.log.output().reopen() {
                    Ok(file) => {
                        self.log.set_output(file);
                        tracing::info!("container log reopened");
                    }
                    Err(e) => tracing::error!(error = %e, "reopening the container log failed"),
                },
                Ok(Signal::SIGCHLD) => {} // reaped in the main loop
                Ok(other) => tracing::info!(signal = %other, "ignored; the monitor ends when the container does"),
                Err(_) => {}
            }
        }
    }

    /// Reaps every exited child; returns the init's status once it exited.
    fn reap(&mut self) -> Option<WaitStatus> {
        let mut init_status = None;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return init_status,
                Ok(s) if s.pid() == Some(self.init_pid) => init_status = Some(s),
                Ok(_) => {} // an orphan reparented to us (we are a subreaper)
            }
        }
    }

    /// The init died: in a PID namespace of its own the kernel kills the rest; otherwise
    /// (a pod-shared or host PID namespace) kill what is left of the container, like runc.
    fn after_init_exit(&mut self) {
        if !self.own_pid_namespace
            && let Err(e) = self.cgroup.kill_all(Duration::from_secs(5))
        {
            tracing::warn!(error = %e, "killing the container's remaining processes");
        }
        // Keep stdin closed from now on.
        self.io.stdin = None;
    }

    fn record_exit(mut self, status: WaitStatus) -> ExitCode {
        let (exit_code, signal) = match status {
            WaitStatus::Exited(_, code) => (code, None),
            WaitStatus::Signaled(_, sig, _) => (128 + sig as i32, Some(sig as i32)),
            _ => (255, None),
        };
        let oom_killed = self.cgroup.oom_kill_count() > self.oom_baseline;
        let reason = if oom_killed {
            "OOMKilled"
        } else if exit_code == 0 {
            "Completed"
        } else {
            "Error"
        };
        let info = ExitInfo {
            exit_code,
            signal,
            finished_at: SystemTime::now(),
            oom_killed,
            reason: reason.into(),
            message: None,
        };
        tracing::info!(exit_code, ?signal, oom_killed, "container exited");
        if self.attach.take().is_some() {
            let _ = std::fs::remove_file(self.bundle.attach_socket());
        }
        let recorded = self.bundle.write_exit(&info);
        if let Err(e) = &recorded {
            tracing::error!(error = %e, "cannot record the exit");
        }
        if let Err(e) = self.cgroup.delete() {
            tracing::warn!(error = %e, "cannot remove the container's cgroup");
        }
        if recorded.is_ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
    }
}

/// The monitor's half of starting the container init (see `init`).
fn handshake(
    child: Pid,
    channel: &Channel,
    cgroup: &Cgroup,
    spec: &oci_spec::runtime::Spec,
) -> Result<(Pid, StartPhases)> {
    let mut init_pid: Option<Pid> = None;
    let mut phases = StartPhases::default();
    let result = (|| {
        let joining = Instant::now();
        cgroup.add_process(child.as_raw())?;
        phases.cgroup_join_us = micros(joining.elapsed());
        let going = Instant::now();
        channel.go()?;
        let mut error = None;
        while let Some(msg) = channel.next()? {
            match msg {
                ChildMessage::UserNamespace => {
                    write_id_maps(child, spec)?;
                    channel.go()?;
                }
                ChildMessage::Pid(pid) => init_pid = Some(Pid::from_raw(pid)),
                ChildMessage::Error(e) => error = Some(e),
            }
        }
        phases.init_us = micros(going.elapsed());
        match (error, init_pid) {
            (Some(e), _) => Err(Error::Start(e)),
            (None, Some(pid)) => Ok(pid),
            (None, None) => Err(Error::Start("the container init exited without starting the process".into())),
        }
    })();
    if result.is_err() {
        let _ = kill(child, Signal::SIGKILL);
        if let Some(pid) = init_pid {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
    // The intermediate exits right after reporting (or failing).
    let _ = waitpid(child, None);
    if result.is_err()
        && let Some(pid) = init_pid
    {
        // Reparented to us once the intermediate is gone.
        let _ = waitpid(pid, None);
    }
    result.map(|pid| (pid, phases))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Writes `/proc/<pid>/{uid_map,gid_map}` of a child that created a user namespace.
fn write_id_maps(pid: Pid, spec: &oci_spec::runtime::Spec) -> Result<()> {
    let linux = spec.linux().as_ref();
    let maps = [
        ("uid_map", linux.and_then(|l| l.uid_mappings().as_ref())),
        ("gid_map", linux.and_then(|l| l.gid_mappings().as_ref())),
    ];
    for (file, mappings) in maps {
        let mappings = mappings.filter(|m| !m.is_empty()).ok_or_else(|| {
            Error::InvalidSpec(format!(
                "a user namespace needs linux.{}",
                if file == "uid_map" { "uidMappings" } else { "gidMappings" }
            ))
        })?;
        let content: String =
            mappings.iter().map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size())).collect();
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, &content).step(|| format!("write {path} ({})", content.trim()))?;
    }
    Ok(())
}
