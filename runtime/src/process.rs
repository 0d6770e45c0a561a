//! Process identity and signalling without pid-reuse races: start times and pidfds.

use std::os::fd::{FromRawFd, OwnedFd};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A process as recorded on disk: its pid plus its start time (clock ticks since boot, field
/// 22 of `/proc/<pid>/stat`), so that a reused pid is never mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessId {
    /// Pid in the host's PID namespace.
    pub pid: i32,
    /// Start time in clock ticks after boot.
    pub start_time: u64,
}

impl ProcessId {
    /// Identifies the live process `pid`.
    pub fn of(pid: i32) -> Result<ProcessId> {
        Ok(ProcessId { pid, start_time: start_time(pid)? })
    }

    /// Whether this very process still runs. A zombie (exited, not yet reaped by its
    /// parent, which for a monitor is init) counts as gone.
    pub fn is_alive(&self) -> bool {
        stat(self.pid).is_ok_and(|(state, t)| t == self.start_time && !matches!(state, 'Z' | 'X'))
    }

    /// A pidfd of this process, or `None` if it is gone (or the pid now names another process).
    pub fn pidfd(&self) -> Result<Option<OwnedFd>> {
        let fd = match pidfd_open(self.pid) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ESRCH) => return Ok(None),
            Err(e) => return Err(Error::sys(format!("pidfd_open({})", self.pid), e)),
        };
        // Checked after opening: if the start time still matches now, the pidfd refers to
        // the recorded process and stays bound to it whatever happens to the pid later.
        Ok(self.is_alive().then_some(fd))
    }
}

/// The start time (clock ticks after boot) of `pid`, from `/proc/<pid>/stat`.
pub fn start_time(pid: i32) -> Result<u64> {
    stat(pid).map(|(_, t)| t)
}

/// State letter and start time of `pid`.
fn stat(pid: i32) -> Result<(char, u64)> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| Error::io(format!("read {path}"), e))?;
    parse_stat(&stat).ok_or_else(|| Error::InvalidState(format!("{path}: cannot parse")))
}

/// Fields 3 (state) and 22 (start time) of a `/proc/<pid>/stat` line. The command name
/// (field 2) may contain spaces and parentheses, so fields are counted after the last `)`.
fn parse_stat(stat: &str) -> Option<(char, u64)> {
    let mut fields = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    // Field 3 (state) was index 0, so field 22 is index 19, i.e. 18 after it.
    Some((state, fields.nth(18)?.parse().ok()?))
}

/// `pidfd_open(2)`.
pub fn pidfd_open(pid: i32) -> std::result::Result<OwnedFd, nix::errno::Errno> {
    // SAFETY: plain syscall with integer arguments; on success it returns a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: the kernel just returned this fd; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `pidfd_send_signal(2)`: signals exactly the process the pidfd refers to.
pub fn pidfd_send_signal(pidfd: &OwnedFd, signal: Signal) -> std::result::Result<(), nix::errno::Errno> {
    use std::os::fd::AsRawFd;
    // SAFETY: valid pidfd, a valid signal number, no siginfo (NULL), flags 0.
    let rc = unsafe {
        libc::syscall(libc::SYS_pidfd_send_signal, pidfd.as_raw_fd(), signal as i32, std::ptr::null::<u8>(), 0)
    };
    if rc < 0 { Err(nix::errno::Errno::last()) } else { Ok(()) }
}

/// Waits up to `timeout` for a pidfd to become readable (the process exited).
pub fn wait_pidfd(pidfd: &OwnedFd, timeout: std::time::Duration) -> Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::sys("poll(pidfd)", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_parses_comm_with_spaces_and_parens() {
        let stat = "42 (a b) c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 123456 1000 10";
        assert_eq!(parse_stat(stat), Some(('S', 123456)));
    }

    #[test]
    fn own_process_is_alive_and_pidfd_opens() {
        let me = ProcessId::of(std::process::id() as i32).unwrap();
        assert!(me.is_alive());
        assert!(me.pidfd().unwrap().is_some());
        let stale = ProcessId { start_time: me.start_time + 1, ..me };
        assert!(!stale.is_alive());
        assert!(stale.pidfd().unwrap().is_none());
    }
}
