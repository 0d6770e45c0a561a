//! The result cache: what ADD returned and with which config, one file per
//! attachment (`<cacheDir>/results/<network>-<containerID>-<ifname>`, as libcni names
//! them), so DEL and CHECK work after a restart even if the conflist changed.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::types::PortMapping;
use crate::{Error, Result, fsutil};

/// One cached attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CachedAttachment {
    /// Always `cniCacheV1`.
    pub kind: String,
    #[serde(rename = "containerId")]
    pub container_id: String,
    pub if_name: String,
    pub network_name: String,
    pub netns: String,
    /// `CNI_ARGS` as it was passed.
    pub cni_args: String,
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// The config list used for ADD.
    pub config: Value,
    /// The final ADD result.
    pub result: Value,
}

/// The cache directory of a runner.
#[derive(Debug, Clone)]
pub(crate) struct ResultCache {
    dir: PathBuf,
}

impl ResultCache {
    pub fn new(cache_dir: &Path) -> Self {
        ResultCache { dir: cache_dir.join("results") }
    }

    fn path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.dir.join(format!("{network}-{container_id}-{ifname}"))
    }

    pub fn save(&self, entry: &CachedAttachment) -> Result<()> {
        let bytes = serde_json::to_vec(entry)
            .map_err(|source| Error::Decode { what: "CNI result cache entry".into(), source })?;
        fsutil::write_atomic(&self.path(&entry.network_name, &entry.container_id, &entry.if_name), &bytes)
    }

    pub fn load(&self, network: &str, container_id: &str, ifname: &str) -> Result<Option<CachedAttachment>> {
        let path = self.path(network, container_id, ifname);
        let Some(bytes) = fsutil::read_if_exists(&path)? else {
            return Ok(None);
        };
        match serde_json::from_slice(&bytes) {
            Ok(entry) => Ok(Some(entry)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable CNI cache entry, ignoring");
                Ok(None)
            }
        }
    }

    pub fn remove(&self, network: &str, container_id: &str, ifname: &str) -> Result<()> {
        fsutil::remove_if_exists(&self.path(network, container_id, ifname))
    }

    /// Every readable entry of `network`.
    pub fn list(&self, network: &str) -> Result<Vec<CachedAttachment>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(format!("read dir {}", self.dir.display()), e)),
        };
        let prefix = format!("{network}-");
        let mut out = Vec::new();
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with(&prefix) {
                continue;
            }
            let Some(bytes) = fsutil::read_if_exists(&entry.path())? else {
                continue;
            };
            if let Ok(e) = serde_json::from_slice::<CachedAttachment>(&bytes)
                && e.network_name == network
            {
                out.push(e);
            }
        }
        Ok(out)
    }
}
