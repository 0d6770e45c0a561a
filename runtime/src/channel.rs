//! The message channel between the monitor and the container init it is building.
//!
//! A `SOCK_SEQPACKET` socketpair, close-on-exec: message boundaries are kept, and once the
//! container process `execve`s (and the intermediate child has exited) the monitor reads
//! end-of-file, which is how it learns that the start succeeded (like runc's exec fifo).

use std::os::fd::{AsFd, OwnedFd};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};

use crate::error::{Context, Result};

/// What the container side tells the monitor.
#[derive(Debug, PartialEq, Eq)]
pub enum ChildMessage {
    /// A new user namespace was created: write its uid/gid maps, then answer [`GO`].
    UserNamespace,
    /// The host pid of the process that will `execve` the container's command.
    Pid(i32),
    /// A step failed; the text names the step and path.
    Error(String),
}

/// The monitor's answer: continue.
pub const GO: &[u8] = b"go";

/// One end of the channel.
pub struct Channel {
    fd: OwnedFd,
}

/// Creates the (monitor end, container end) pair.
pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC)
        .step(|| "socketpair(monitor channel)")?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    fn send(&self, msg: &[u8]) -> Result<()> {
        loop {
            match nix::unistd::write(self.fd.as_fd(), msg) {
                Err(nix::errno::Errno::EINTR) => continue,
                r => return r.map(drop).step(|| "write(monitor channel)"),
            }
        }
    }

    /// Receives one message; `None` at end-of-file.
    fn recv(&self, buf: &mut [u8]) -> Result<Option<usize>> {
        loop {
            match nix::unistd::read(self.fd.as_fd(), buf) {
                Err(nix::errno::Errno::EINTR) => continue,
                Ok(0) => return Ok(None),
                r => return r.map(Some).step(|| "read(monitor channel)"),
            }
        }
    }

    /// Container side: sends a message.
    pub fn tell(&self, msg: &ChildMessage) -> Result<()> {
        match msg {
            ChildMessage::UserNamespace => self.send(b"userns"),
            ChildMessage::Pid(pid) => self.send(format!("pid {pid}").as_bytes()),
            ChildMessage::Error(e) => self.send(format!("error {e}").as_bytes()),
        }
    }

    /// Monitor side: the next message, `None` at end-of-file.
    pub fn next(&self) -> Result<Option<ChildMessage>> {
        let mut buf = [0u8; 4096];
        let Some(n) = self.recv(&mut buf)? else { return Ok(None) };
        let text = String::from_utf8_lossy(&buf[..n]);
        Ok(Some(match text.split_once(' ') {
            _ if text == "userns" => ChildMessage::UserNamespace,
            Some(("pid", pid)) => match pid.parse() {
                Ok(pid) => ChildMessage::Pid(pid),
                Err(_) => ChildMessage::Error(format!("bad pid message {text:?}")),
            },
            Some(("error", e)) => ChildMessage::Error(e.to_owned()),
            _ => ChildMessage::Error(format!("unexpected message {text:?}")),
        }))
    }

    /// Monitor side: lets the container side continue.
    pub fn go(&self) -> Result<()> {
        self.send(GO)
    }

    /// Container side: blocks until the monitor says [`GO`].
    pub fn wait_go(&self) -> Result<()> {
        let mut buf = [0u8; 16];
        match self.recv(&mut buf)? {
            Some(n) if &buf[..n] == GO => Ok(()),
            _ => Err(crate::Error::Start("monitor went away before the container was set up".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_eof() {
        let (monitor, child) = pair().unwrap();
        child.tell(&ChildMessage::UserNamespace).unwrap();
        child.tell(&ChildMessage::Pid(42)).unwrap();
        child.tell(&ChildMessage::Error("mount \"/x\": EPERM".into())).unwrap();
        monitor.go().unwrap();
        child.wait_go().unwrap();
        drop(child);
        assert_eq!(monitor.next().unwrap(), Some(ChildMessage::UserNamespace));
        assert_eq!(monitor.next().unwrap(), Some(ChildMessage::Pid(42)));
        assert_eq!(monitor.next().unwrap(), Some(ChildMessage::Error("mount \"/x\": EPERM".into())));
        assert_eq!(monitor.next().unwrap(), None);
    }
}
