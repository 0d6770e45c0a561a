//! The host's mount table (`/proc/self/mountinfo`), to check that a host path asked to
//! propagate mounts really sits on a shared (or slave) mount.
//!
//! A bind mount with `rshared` propagation of a path on a private mount silently propagates
//! nothing; containerd refuses it with a clear error instead, and so does corral.

use std::io;
use std::path::{Path, PathBuf};

/// One line of mountinfo, the parts we need.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountEntry {
    mount_point: PathBuf,
    /// The optional fields: `shared:N`, `master:N`, `propagate_from:N`, `unbindable`.
    optional: Vec<String>,
}

/// A parsed mount table.
#[derive(Debug, Clone, Default)]
pub struct MountTable {
    entries: Vec<MountEntry>,
}

/// How a mount propagates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Shared,
    Slave,
    Private,
}

impl MountTable {
    /// The daemon's mount table.
    pub fn read_self() -> io::Result<MountTable> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| io::Error::new(e.kind(), format!("reading /proc/self/mountinfo: {e}")))?;
        Ok(MountTable::parse(&text))
    }

    /// Parses mountinfo text (see proc(5)); malformed lines are skipped.
    pub fn parse(text: &str) -> MountTable {
        let entries = text
            .lines()
            .filter_map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                let separator = fields.iter().position(|f| *f == "-")?;
                if separator < 6 {
                    return None;
                }
                Some(MountEntry {
                    mount_point: PathBuf::from(unescape(fields[4])),
                    optional: fields[6..separator].iter().map(|s| s.to_string()).collect(),
                })
            })
            .collect();
        MountTable { entries }
    }

    /// The mount `path` lives on and how it propagates: the deepest mount point containing
    /// it, the last one listed when several are stacked on the same point.
    pub fn propagation_of(&self, path: &Path) -> Option<(PathBuf, Propagation)> {
        let entry =
            self.entries.iter().filter(|e| path.starts_with(&e.mount_point)).fold(None::<&MountEntry>, |best, e| {
                match best {
                    Some(b) if b.mount_point.components().count() > e.mount_point.components().count() => Some(b),
                    _ => Some(e),
                }
            })?;
        let propagation = if entry.optional.iter().any(|o| o.starts_with("shared:")) {
            Propagation::Shared
        } else if entry.optional.iter().any(|o| o.starts_with("master:")) {
            Propagation::Slave
        } else {
            Propagation::Private
        };
        Some((entry.mount_point.clone(), propagation))
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let value = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
30 27 0:25 / /tmp rw,nosuid shared:5 - tmpfs tmpfs rw
41 30 254:1 /tmp/x/mnt /tmp/x/mnt rw,relatime shared:12 master:1 - ext4 /dev/vda1 rw
42 30 254:1 /tmp/y /tmp/y rw,relatime master:7 - ext4 /dev/vda1 rw
43 30 254:1 /tmp/z /tmp/z rw,relatime - ext4 /dev/vda1 rw
44 43 254:1 /tmp/w /tmp/z rw,relatime shared:9 - ext4 /dev/vda1 rw
45 30 254:1 /a /tmp/with\\040space rw shared:3 - ext4 /dev/vda1 rw
garbage line
";

    #[test]
    fn finds_the_deepest_mount_and_its_propagation() {
        let table = MountTable::parse(TABLE);
        let cases = [
            ("/etc", "/", Propagation::Shared),
            ("/proc/1", "/proc", Propagation::Private),
            ("/tmp/x/mnt/sub", "/tmp/x/mnt", Propagation::Shared),
            ("/tmp/x", "/tmp", Propagation::Shared),
            ("/tmp/y/a", "/tmp/y", Propagation::Slave),
            ("/tmp/z", "/tmp/z", Propagation::Shared), // stacked: the last one wins
            ("/tmp/with space/f", "/tmp/with space", Propagation::Shared),
            ("/tmp/yy", "/tmp", Propagation::Shared), // a path prefix is not a parent
        ];
        for (path, mount_point, want) in cases {
            let (mp, got) = table.propagation_of(Path::new(path)).unwrap();
            assert_eq!((mp.to_str().unwrap(), got), (mount_point, want), "{path}");
        }
    }

    #[test]
    fn reads_this_host() {
        let table = MountTable::read_self().unwrap();
        let (mount_point, _) = table.propagation_of(Path::new("/proc/self")).unwrap();
        assert_eq!(mount_point, Path::new("/proc"));
    }
}
