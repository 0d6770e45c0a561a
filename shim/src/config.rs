//! The daemon's configuration: embedded defaults, an optional TOML file, then flags.
//!
//! Every key has a default, so `corral serve` needs no file at all; `corral config default`
//! prints this whole structure as TOML. Later layers win: defaults < `--config FILE` < flags.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything the daemon can be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The CRI gRPC unix socket.
    pub socket: PathBuf,
    /// Persistent state: sandbox and container records, images, IPAM records.
    pub root: PathBuf,
    /// Runtime state that dies with the machine: pinned namespaces, monitor sockets, rootfs mounts.
    pub state_dir: PathBuf,
    /// `error`, `warn`, `info`, `debug` or `trace`, or a full `tracing` filter directive.
    pub log_level: String,
    /// Also log how long every traced span took (a `close` line with `time.busy` and
    /// `time.idle` when a span ends). With `log_level = "info,corral=debug,corral_runtime=debug"`
    /// this shows where RunPodSandbox and StartContainer spend their time, step by step
    /// (`e2e/bench.sh --profile` tabulates it). Off by default: it doubles the log volume.
    pub log_span_timings: bool,
    /// Cgroup path (relative to each hierarchy's root) that corral owns and puts pods under
    /// when the pod config names no `cgroup_parent`. Two daemons on one host need two.
    pub cgroup_root: String,
    /// Pod networking.
    pub network: NetworkConfig,
    /// Image pulls and the image store.
    pub images: ImagesConfig,
    /// The exec/attach/port-forward HTTP server.
    pub streaming: StreamingConfig,
}

/// How pods get their network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// `builtin` (corral's own bridge plugin, in-process) or `cni` (plugins from `cni_conf_dir`).
    pub mode: NetworkMode,
    /// Host bridge the pods' veths are attached to.
    pub bridge: String,
    /// The pod address range; the bridge takes its first address as the pods' gateway.
    pub pod_cidr: String,
    /// MTU of the pod interfaces.
    pub mtu: u32,
    /// Directory of CNI network configs (`mode = "cni"`); the first file by name is used.
    pub cni_conf_dir: PathBuf,
    /// Directory of CNI plugin binaries (`mode = "cni"`).
    pub cni_bin_dir: PathBuf,
}

/// Which network implementation the daemon uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// corral's own bridge + host-local + NAT + hostPort, called in-process.
    Builtin,
    /// Standard CNI plugins run as binaries, as containerd does.
    Cni,
}

/// Image pulls and storage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImagesConfig {
    /// Registries reached over plain HTTP (host or host:port). Loopback is always allowed.
    pub insecure_registries: Vec<String>,
    /// Registry mirrors, tried in order before the registry itself.
    pub mirrors: Vec<MirrorConfig>,
    /// A pull that makes no progress for this many seconds is cancelled.
    pub pull_progress_timeout_secs: u64,
    /// Layers downloaded (and unpacked) at the same time, per pull.
    pub max_concurrent_downloads: usize,
    /// Images reported as pinned, so kubelet's image garbage collector keeps them
    /// (`repo:tag` or `repo@digest`, normalized like image names).
    pub pinned_images: Vec<String>,
}

/// One registry served from other endpoints (an air-gapped cluster's local copy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// The registry host as written in image names, e.g. `registry.k8s.io`.
    pub registry: String,
    /// Base URLs to pull from instead, e.g. `http://127.0.0.1:5000`.
    pub endpoints: Vec<String>,
    /// Only use the mirrors: never fall back to the registry itself.
    #[serde(default)]
    pub no_fallback: bool,
}

/// The streaming (exec/attach/port-forward) server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingConfig {
    /// Address to listen on. Loopback: kubelet reaches it on the same node.
    pub address: IpAddr,
    /// Port to listen on; 0 picks a free one.
    pub port: u16,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            socket: PathBuf::from("/run/corral/corral.sock"),
            root: PathBuf::from("/var/lib/corral"),
            state_dir: PathBuf::from("/run/corral"),
            log_level: "info".into(),
            log_span_timings: false,
            cgroup_root: "/corral".into(),
            network: NetworkConfig::default(),
            images: ImagesConfig::default(),
            streaming: StreamingConfig::default(),
        }
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            mode: NetworkMode::Builtin,
            bridge: "corral0".into(),
            pod_cidr: "10.88.0.0/16".into(),
            mtu: 1500,
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            cni_bin_dir: PathBuf::from("/opt/cni/bin"),
        }
    }
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig {
            insecure_registries: vec!["localhost".into(), "127.0.0.1".into()],
            mirrors: Vec::new(),
            pull_progress_timeout_secs: 300,
            max_concurrent_downloads: 3,
            pinned_images: vec!["registry.k8s.io/pause:3.10".into()],
        }
    }
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig { address: IpAddr::from([127, 0, 0, 1]), port: 0 }
    }
}

/// A configuration that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is not valid TOML for this structure.
    #[error("parsing config {path}: {source}")]
    Parse { path: PathBuf, source: toml::de::Error },
    /// A value is out of range or inconsistent.
    #[error("invalid config: {0}")]
    Invalid(String),
}

impl ImagesConfig {
    /// Checks limits and mirror URLs (plain-HTTP mirrors only for insecure or loopback hosts).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_concurrent_downloads == 0 {
            return Err(ConfigError::Invalid("images.max_concurrent_downloads must be at least 1".into()));
        }
        if self.pull_progress_timeout_secs == 0 {
            return Err(ConfigError::Invalid("images.pull_progress_timeout_secs must be at least 1".into()));
        }
        crate::images::registry::check_config(self).map_err(ConfigError::Invalid)
    }
}

impl Config {
    /// Reads a TOML file; keys it does not set keep their defaults.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse { path: path.into(), source })
    }

    /// The full configuration as TOML, for `corral config default` and `Status` verbose info.
    pub fn to_toml(&self) -> String {
        // Serializing a plain struct of strings, numbers and paths cannot fail.
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }

    /// Checks what serde cannot: paths absolute, the CIDR parseable, names short enough.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, path) in [("socket", &self.socket), ("root", &self.root), ("state_dir", &self.state_dir)] {
            if !path.is_absolute() {
                return Err(ConfigError::Invalid(format!("{key} must be an absolute path, got {path:?}")));
            }
        }
        if !self.cgroup_root.starts_with('/') || self.cgroup_root.contains("..") {
            return Err(ConfigError::Invalid(format!(
                "cgroup_root must be an absolute cgroup path without '..', got {:?}",
                self.cgroup_root
            )));
        }
        let bridge = &self.network.bridge;
        if bridge.is_empty() || bridge.len() > 15 || bridge.contains(['/', ' ']) {
            return Err(ConfigError::Invalid(format!(
                "network.bridge must be a Linux interface name of 1-15 characters, got {bridge:?}"
            )));
        }
        let (addr, prefix) = self.network.pod_cidr.split_once('/').ok_or_else(|| {
            ConfigError::Invalid(format!("network.pod_cidr must be ADDRESS/PREFIX, got {:?}", self.network.pod_cidr))
        })?;
        let prefix_ok = match (addr.parse::<IpAddr>(), prefix.parse::<u8>()) {
            (Ok(IpAddr::V4(_)), Ok(p)) => (8..=30).contains(&p),
            (Ok(IpAddr::V6(_)), Ok(p)) => (64..=126).contains(&p),
            _ => false,
        };
        if !prefix_ok {
            return Err(ConfigError::Invalid(format!(
                "network.pod_cidr {:?} is not an IPv4 /8../30 or IPv6 /64../126 network",
                self.network.pod_cidr
            )));
        }
        if !(576..=65535).contains(&self.network.mtu) {
            return Err(ConfigError::Invalid(format!("network.mtu {} is outside 576..65535", self.network.mtu)));
        }
        self.images.validate()?;
        Ok(())
    }

    /// Where the image store lives.
    pub fn image_dir(&self) -> PathBuf {
        self.root.join("images")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_round_trips_through_toml() {
        let text = Config::default().to_toml();
        let back: Config = toml::from_str(&text).expect("default TOML parses");
        assert_eq!(back, Config::default());
        assert!(text.contains("socket = \"/run/corral/corral.sock\""), "{text}");
        assert!(text.contains("[network]"), "{text}");
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let cfg: Config = toml::from_str("root = \"/tmp/r\"\n[network]\nbridge = \"br-test\"\n").unwrap();
        assert_eq!(cfg.root, PathBuf::from("/tmp/r"));
        assert_eq!(cfg.network.bridge, "br-test");
        assert_eq!(cfg.network.pod_cidr, "10.88.0.0/16");
        assert_eq!(cfg.socket, PathBuf::from("/run/corral/corral.sock"));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<Config>("rooot = \"/x\"\n").unwrap_err();
        assert!(err.to_string().contains("rooot"), "{err}");
    }

    #[test]
    fn mirrors_parse() {
        let cfg: Config = toml::from_str(
            "[[images.mirrors]]\nregistry = \"registry.k8s.io\"\nendpoints = [\"http://127.0.0.1:5000\"]\n",
        )
        .unwrap();
        assert_eq!(cfg.images.mirrors[0].registry, "registry.k8s.io");
        assert!(!cfg.images.mirrors[0].no_fallback);
        assert!(cfg.validate().is_ok());
        let cfg: Config = toml::from_str(
            "[[images.mirrors]]\nregistry = \"registry.k8s.io\"\nendpoints = [\"http://10.0.0.1:5000\"]\n",
        )
        .unwrap();
        assert!(cfg.validate().unwrap_err().to_string().contains("insecure_registries"));
    }

    #[test]
    fn validation_names_the_bad_key() {
        let mut cfg = Config::default();
        cfg.network.pod_cidr = "10.88.0.0".into();
        assert!(cfg.validate().unwrap_err().to_string().contains("pod_cidr"));
        let mut cfg = Config::default();
        cfg.network.bridge = "a-bridge-name-too-long".into();
        assert!(cfg.validate().unwrap_err().to_string().contains("bridge"));
        let cfg = Config { root: "relative".into(), ..Config::default() };
        assert!(cfg.validate().unwrap_err().to_string().contains("root"));
        assert!(Config::default().validate().is_ok());
    }
}
