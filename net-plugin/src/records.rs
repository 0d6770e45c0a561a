//! The builtin bridge's attachment records: what ADD did for a pod, so CHECK, DEL and
//! GC know the host veth, the address and the port mappings after a restart.
//!
//! One JSON file per attachment, `<pod id>:<ifname>.json` (`:` occurs in neither).
//! DEL also works without a record (it finds everything by alias, owner and comment);
//! the record just makes the common path fast.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil;
use crate::types::{AddResult, PortMapping};
use crate::{Error, Result};

/// What ADD set up for one attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Record {
    pub pod_id: String,
    pub ifname: String,
    pub netns: PathBuf,
    pub host_veth: String,
    pub ip: Ipv4Addr,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    pub result: AddResult,
}

/// The directory of one network's records.
#[derive(Debug, Clone)]
pub(crate) struct Records {
    dir: PathBuf,
}

impl Records {
    pub fn new(dir: PathBuf) -> Self {
        Records { dir }
    }

    fn path(&self, pod_id: &str, ifname: &str) -> PathBuf {
        self.dir.join(format!("{pod_id}:{ifname}.json"))
    }

    pub fn save(&self, r: &Record) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(r)
            .map_err(|source| Error::Decode { what: "attachment record".into(), source })?;
        fsutil::write_atomic(&self.path(&r.pod_id, &r.ifname), &bytes)
    }

    /// The record, or `None` if absent or unreadable (a torn file counts as absent:
    /// DEL then falls back to searching).
    pub fn load(&self, pod_id: &str, ifname: &str) -> Result<Option<Record>> {
        let path = self.path(pod_id, ifname);
        Ok(fsutil::read_if_exists(&path)?.and_then(|b| decode(&path, &b)))
    }

    pub fn remove(&self, pod_id: &str, ifname: &str) -> Result<()> {
        fsutil::remove_if_exists(&self.path(pod_id, ifname))
    }

    /// Every readable record.
    pub fn list(&self) -> Result<Vec<Record>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("read dir {}", self.dir.display()), e)),
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|x| x == "json")
                && let Some(r) = fsutil::read_if_exists(&path)?.and_then(|b| decode(&path, &b))
            {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// Removes leftovers that [`Records::list`] cannot read (torn writes, temp files).
    pub fn remove_unreadable(&self) -> Result<()> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let garbage = if name.to_string_lossy().starts_with(".tmp-") {
                // A temp file of a write still in flight is young; only old ones are torn.
                entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age.as_secs() > 60)
            } else {
                fsutil::read_if_exists(&path)?.is_some_and(|b| decode(&path, &b).is_none())
            };
            if garbage {
                fsutil::remove_if_exists(&path)?;
            }
        }
        Ok(())
    }
}

fn decode(path: &Path, bytes: &[u8]) -> Option<Record> {
    match serde_json::from_slice(bytes) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable attachment record");
            None
        }
    }
}
