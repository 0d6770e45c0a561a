//! Loading the network config: the first `.conflist`/`.conf`/`.json` file by name in
//! the conf dir, as containerd's CRI plugin picks it.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::{Error, Result};

/// A network configuration list, kept as JSON so plugin-specific keys pass through
/// untouched.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    /// `name`.
    pub name: String,
    /// `cniVersion`.
    pub cni_version: String,
    /// `disableCheck`.
    pub disable_check: bool,
    /// The plugin configs, in order.
    pub plugins: Vec<Value>,
    /// Where it was loaded from.
    pub source: PathBuf,
}

impl NetworkConfigList {
    /// Parses a `.conflist` document, or wraps a single-plugin `.conf` into a list.
    pub fn parse(source: &Path, bytes: &[u8]) -> Result<Self> {
        let doc: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::Decode { what: format!("CNI config {}", source.display()), source: e })?;
        let invalid = |what: &str| Error::InvalidConfig(format!("{}: {what}", source.display()));
        let name = doc["name"].as_str().filter(|n| !n.is_empty()).ok_or_else(|| invalid("no \"name\""))?;
        let cni_version = doc["cniVersion"].as_str().unwrap_or("0.1.0").to_owned();
        let plugins = match doc.get("plugins") {
            Some(Value::Array(list)) if !list.is_empty() => list.clone(),
            Some(_) => return Err(invalid("\"plugins\" is empty or not a list")),
            // A single-plugin .conf file.
            None => vec![doc.clone()],
        };
        for p in &plugins {
            if p["type"].as_str().is_none_or(str::is_empty) {
                return Err(invalid("a plugin has no \"type\""));
            }
        }
        Ok(NetworkConfigList {
            name: name.to_owned(),
            cni_version,
            disable_check: doc["disableCheck"].as_bool().unwrap_or(false),
            plugins,
            source: source.to_owned(),
        })
    }

    /// The list as one JSON document (what the result cache stores).
    pub fn to_json(&self) -> Value {
        json!({
            "cniVersion": self.cni_version,
            "name": self.name,
            "disableCheck": self.disable_check,
            "plugins": self.plugins,
        })
    }

    /// Reads the first config file of `dir` by name. A file that fails to parse is
    /// skipped with a warning, as containerd does.
    pub fn load_first(dir: &Path) -> Result<Self> {
        let not_ready = |reason: String| Error::NotReady { network: "cni".into(), reason };
        let entries =
            std::fs::read_dir(dir).map_err(|e| not_ready(format!("no network config: read {}: {e}", dir.display())))?;
        let mut files: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "conflist" || x == "conf" || x == "json") && p.is_file())
            .collect();
        files.sort();
        for path in files {
            let parsed = std::fs::read(&path)
                .map_err(|e| Error::io(format!("read {}", path.display()), e))
                .and_then(|b| Self::parse(&path, &b));
            match parsed {
                Ok(list) => return Ok(list),
                Err(e) => tracing::warn!(path = %path.display(), error = %e, "skipping CNI config"),
            }
        }
        Err(not_ready(format!("no network config found in {}", dir.display())))
    }
}

/// Orders CNI versions (`"0.4.0" < "1.0.0"`); unparsable parts count as 0.
pub(crate) fn version_at_least(version: &str, min: &str) -> bool {
    let parse = |v: &str| -> Vec<u32> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(version) >= parse(min)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_file_by_name_and_conf_wrapping() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("99-last.conflist"),
            r#"{"cniVersion":"1.0.0","name":"late","plugins":[{"type":"bridge"}]}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("10-broken.conflist"), "{oops").unwrap();
        std::fs::write(
            dir.path().join("20-single.conf"),
            r#"{"cniVersion":"0.4.0","name":"one","type":"ptp","ipam":{}}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("05-ignored.txt"), "x").unwrap();
        let list = NetworkConfigList::load_first(dir.path()).unwrap();
        assert_eq!(list.name, "one");
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.plugins[0]["type"], "ptp");

        let empty = tempfile::tempdir().unwrap();
        let err = NetworkConfigList::load_first(empty.path()).unwrap_err();
        assert!(matches!(err, Error::NotReady { .. }), "{err}");
    }

    #[test]
    fn versions_compare() {
        assert!(version_at_least("1.1.0", "1.1.0"));
        assert!(version_at_least("1.0.0", "0.4.0"));
        assert!(!version_at_least("0.3.1", "0.4.0"));
        assert!(!version_at_least("1.0.0", "1.1.0"));
    }
}
