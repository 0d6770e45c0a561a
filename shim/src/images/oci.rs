//! The registry documents corral reads: manifests, indexes (manifest lists) and image configs,
//! in both their Docker schema2 and OCI forms (the JSON shapes are the same; the media types
//! differ). Only the fields corral uses are modelled; unknown fields are ignored.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::error::{ImageError, Result};

/// Media types of manifests and configs.
pub mod media {
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

    /// The `Accept` header of a manifest request: every form corral can pull.
    pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
        application/vnd.docker.distribution.manifest.list.v2+json, \
        application/vnd.oci.image.manifest.v1+json, \
        application/vnd.docker.distribution.manifest.v2+json";
}

/// A pointer to content: what it is, its digest and size, and for index entries its platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// The platform of an index entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
}

/// An image manifest (OCI or Docker schema2).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

/// An index / manifest list: one manifest per platform.
#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    pub manifests: Vec<Descriptor>,
}

/// What a manifest request returned.
#[derive(Debug)]
pub enum ManifestKind {
    /// A multi-platform index; pick an entry, then fetch it.
    Index(Index),
    /// A single-platform image manifest.
    Image(Manifest),
}

/// The shape shared by all manifest documents, to tell them apart when the media type is missing.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    schema_version: Option<u32>,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
    #[serde(default)]
    layers: Option<serde_json::Value>,
}

impl ManifestKind {
    /// Parses a manifest body; `content_type` is the registry's `Content-Type` header.
    pub fn parse(body: &[u8], content_type: Option<&str>, what: &str) -> Result<ManifestKind> {
        let invalid = |e: serde_json::Error| ImageError::Verification {
            what: what.into(),
            reason: format!("not a valid manifest: {e}"),
        };
        let probe: Probe = serde_json::from_slice(body).map_err(invalid)?;
        let media = probe.media_type.as_deref().or(content_type.map(|c| c.split(';').next().unwrap_or(c).trim()));
        if probe.schema_version == Some(1) || media == Some(media::DOCKER_SCHEMA1) {
            return Err(ImageError::Unsupported(format!(
                "{what}: Docker schema1 manifests are deprecated and not supported; rebuild or re-push the image"
            )));
        }
        let is_index = match media {
            Some(media::OCI_INDEX | media::DOCKER_LIST) => true,
            Some(media::OCI_MANIFEST | media::DOCKER_MANIFEST) => false,
            _ => probe.manifests.is_some() && probe.layers.is_none(),
        };
        if is_index {
            Ok(ManifestKind::Index(serde_json::from_slice(body).map_err(invalid)?))
        } else {
            Ok(ManifestKind::Image(serde_json::from_slice(body).map_err(invalid)?))
        }
    }
}

/// The platform corral runs images for: the host's (`linux/amd64` on x86_64).
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    ("linux", arch)
}

impl Index {
    /// The entry for `os`/`arch` (on arm64 a `v8` or missing variant), first match wins, as
    /// containerd's platform matcher does for an exact platform.
    pub fn select(&self, os: &str, arch: &str) -> Option<&Descriptor> {
        self.manifests.iter().find(|d| {
            d.platform.as_ref().is_some_and(|p| {
                p.os == os
                    && p.architecture == arch
                    && (arch != "arm64" || matches!(p.variant.as_deref(), None | Some("") | Some("v8")))
            })
        })
    }
}

/// An image config blob: what to run and the layer diff ids.
#[derive(Debug, Clone, Deserialize)]
pub struct ConfigFile {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<RunConfig>,
    pub rootfs: RootFs,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, Deserialize)]
pub struct RootFs {
    pub diff_ids: Vec<Digest>,
}

/// The `config` object of an image config (Docker's capitalized keys, shared by OCI).
/// Every field may be missing or `null`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub stop_signal: Option<String>,
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_manifests_from_indexes_without_media_type() {
        let d = Digest::of(b"x");
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{}","digest":"{d}","size":1}},"layers":[]}}"#,
            media::OCI_CONFIG
        );
        assert!(matches!(ManifestKind::parse(manifest.as_bytes(), None, "m").unwrap(), ManifestKind::Image(_)));
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{}","digest":"{d}","size":1,
                "platform":{{"architecture":"arm64","os":"linux","variant":"v8"}}}},
                {{"digest":"{d}","size":2,"platform":{{"architecture":"amd64","os":"linux"}}}}]}}"#,
            media::OCI_MANIFEST
        );
        let ManifestKind::Index(index) = ManifestKind::parse(index.as_bytes(), None, "i").unwrap() else {
            panic!("index expected")
        };
        assert_eq!(index.select("linux", "amd64").unwrap().size, 2);
        assert_eq!(index.select("linux", "arm64").unwrap().size, 1);
        assert!(index.select("linux", "s390x").is_none());
        let schema1 = br#"{"schemaVersion":1,"fsLayers":[]}"#;
        assert!(ManifestKind::parse(schema1, None, "old").unwrap_err().to_string().contains("schema1"));
    }

    #[test]
    fn docker_config_with_nulls_parses() {
        let cfg: ConfigFile = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"User":"","Env":null,"Cmd":["sh"],
                "ExposedPorts":{"80/tcp":{}}},"rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        let run = cfg.config.unwrap();
        assert_eq!(run.cmd.unwrap(), ["sh"]);
        assert!(run.env.is_none());
        assert!(run.exposed_ports.unwrap().contains_key("80/tcp"));
    }
}
