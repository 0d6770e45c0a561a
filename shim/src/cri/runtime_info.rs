//! Version, Status, RuntimeConfig and UpdateRuntimeConfig: what the runtime is and whether
//! it is ready. kubelet calls Version on connect and Status every few seconds.

use std::collections::HashMap;
use std::path::Path;

use corral_cri::v1;

use super::Daemon;
use crate::error::{CriError, CriResult};

/// The name reported as `runtime_name`.
pub const RUNTIME_NAME: &str = "corral";
/// The kubelet runtime API version corral speaks (what containerd and CRI-O report too).
const KUBELET_API_VERSION: &str = "0.1.0";

impl Daemon {
    pub(super) fn version(&self, _req: v1::VersionRequest) -> CriResult<v1::VersionResponse> {
        Ok(v1::VersionResponse {
            version: KUBELET_API_VERSION.into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: corral_cri::CRI_API_VERSION.into(),
        })
    }

    pub(super) async fn status(&self, req: v1::StatusRequest) -> CriResult<v1::StatusResponse> {
        let conditions = vec![self.runtime_condition(), self.network_condition().await];
        let mut info = HashMap::new();
        if req.verbose {
            info.insert("config".to_string(), self.config.to_toml());
            if let Some(server) = self.streaming.get() {
                info.insert("streamingAddress".to_string(), server.local_addr().to_string());
            }
            if let Ok(guard) = self.runtime_pod_cidr.read()
                && let Some(cidr) = guard.as_ref()
            {
                info.insert("runtimePodCIDR".to_string(), cidr.clone());
            }
        }
        Ok(v1::StatusResponse {
            status: Some(v1::RuntimeStatus { conditions }),
            info,
            runtime_handlers: vec![v1::RuntimeHandler {
                name: String::new(),
                features: Some(v1::RuntimeHandlerFeatures {
                    // mount_setattr(AT_RECURSIVE) makes `rro` bind mounts (kernel >= 5.12).
                    recursive_read_only_mounts: true,
                    // Needs idmapped image layers for a user-namespaced rootfs: not yet.
                    user_namespaces: false,
                }),
            }],
            features: Some(v1::RuntimeFeatures {
                supplemental_groups_policy: true,
                user_namespaces_host_network: false,
                mount_options: false,
            }),
        })
    }

    /// Ready when corral can write its state: without that no pod can be created.
    fn runtime_condition(&self) -> v1::RuntimeCondition {
        let problem = [&self.config.root, &self.config.state_dir]
            .into_iter()
            .find_map(|dir| writable(dir).err().map(|e| format!("{}: {e}", dir.display())));
        condition("RuntimeReady", problem, "RuntimeNotReady")
    }

    /// Ready when the network plugin says so (CNI STATUS, or the builtin bridge's checks).
    async fn network_condition(&self) -> v1::RuntimeCondition {
        let problem = self.network.status().await.err().map(|e| e.to_string());
        condition("NetworkReady", problem, "NetworkPluginNotReady")
    }

    pub(super) fn runtime_config(&self, _req: v1::RuntimeConfigRequest) -> CriResult<v1::RuntimeConfigResponse> {
        Ok(v1::RuntimeConfigResponse {
            linux: Some(v1::LinuxRuntimeConfiguration { cgroup_driver: v1::CgroupDriver::Cgroupfs as i32 }),
        })
    }

    pub(super) fn update_runtime_config(
        &self,
        req: v1::UpdateRuntimeConfigRequest,
    ) -> CriResult<v1::UpdateRuntimeConfigResponse> {
        let cidr = req.runtime_config.and_then(|c| c.network_config).map(|n| n.pod_cidr).unwrap_or_default();
        if cidr.is_empty() {
            return Ok(v1::UpdateRuntimeConfigResponse {});
        }
        if !is_cidr(&cidr) {
            return Err(CriError::InvalidArgument(format!("pod CIDR {cidr:?} is not ADDRESS/PREFIX")));
        }
        if cidr != self.config.network.pod_cidr {
            tracing::info!(
                %cidr,
                configured = %self.config.network.pod_cidr,
                "kubelet's pod CIDR differs from corral's network.pod_cidr; pods keep using the configured range"
            );
        }
        if let Ok(mut guard) = self.runtime_pod_cidr.write() {
            *guard = Some(cidr);
        }
        Ok(v1::UpdateRuntimeConfigResponse {})
    }
}

fn condition(kind: &str, problem: Option<String>, reason: &str) -> v1::RuntimeCondition {
    match problem {
        None => {
            v1::RuntimeCondition { r#type: kind.into(), status: true, reason: String::new(), message: String::new() }
        }
        Some(message) => v1::RuntimeCondition { r#type: kind.into(), status: false, reason: reason.into(), message },
    }
}

fn writable(dir: &Path) -> nix::Result<()> {
    nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK)
}

fn is_cidr(text: &str) -> bool {
    match text.split_once('/') {
        Some((addr, prefix)) => match (addr.parse::<std::net::IpAddr>(), prefix.parse::<u8>()) {
            (Ok(std::net::IpAddr::V4(_)), Ok(p)) => p <= 32,
            (Ok(std::net::IpAddr::V6(_)), Ok(p)) => p <= 128,
            _ => false,
        },
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn daemon(dir: &Path) -> crate::cri::TestDaemon {
        crate::cri::test_daemon(dir).await
    }

    #[tokio::test]
    async fn status_reports_both_conditions_and_verbose_config() {
        let dir = tempfile::tempdir().unwrap();
        let d = daemon(dir.path()).await;
        let resp = d.status(v1::StatusRequest { verbose: true }).await.unwrap();
        let conds = resp.status.unwrap().conditions;
        let runtime = conds.iter().find(|c| c.r#type == "RuntimeReady").unwrap();
        assert!(runtime.status, "{runtime:?}");
        let network = conds.iter().find(|c| c.r#type == "NetworkReady").unwrap();
        assert!(!network.reason.is_empty() || network.status);
        assert!(resp.info["config"].contains(&dir.path().join("root").display().to_string()));
        assert!(d.status(v1::StatusRequest { verbose: false }).await.unwrap().info.is_empty());
    }

    #[tokio::test]
    async fn runtime_not_ready_when_state_dir_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let d = daemon(dir.path()).await;
        std::fs::remove_dir_all(dir.path().join("state")).unwrap();
        let conds = d.status(v1::StatusRequest::default()).await.unwrap().status.unwrap().conditions;
        let runtime = conds.iter().find(|c| c.r#type == "RuntimeReady").unwrap();
        assert!(!runtime.status);
        assert_eq!(runtime.reason, "RuntimeNotReady");
        assert!(runtime.message.contains("state"), "{}", runtime.message);
    }

    #[tokio::test]
    async fn runtime_config_says_cgroupfs() {
        let dir = tempfile::tempdir().unwrap();
        let resp = daemon(dir.path()).await.runtime_config(v1::RuntimeConfigRequest {}).unwrap();
        assert_eq!(resp.linux.unwrap().cgroup_driver, v1::CgroupDriver::Cgroupfs as i32);
    }

    #[tokio::test]
    async fn update_runtime_config_validates_and_keeps_the_cidr() {
        let dir = tempfile::tempdir().unwrap();
        let d = daemon(dir.path()).await;
        let req = |cidr: &str| v1::UpdateRuntimeConfigRequest {
            runtime_config: Some(v1::RuntimeConfig {
                network_config: Some(v1::NetworkConfig { pod_cidr: cidr.into() }),
            }),
        };
        assert!(matches!(d.update_runtime_config(req("nope")), Err(CriError::InvalidArgument(_))));
        d.update_runtime_config(req("10.244.1.0/24")).unwrap();
        d.update_runtime_config(req("")).unwrap();
        assert_eq!(d.runtime_pod_cidr.read().unwrap().as_deref(), Some("10.244.1.0/24"));
    }
}
