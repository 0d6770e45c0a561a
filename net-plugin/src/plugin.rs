//! The CNI protocol front end of the builtin bridge: what the `corral-bridge` binary
//! does with its environment and stdin (spec 1.1, "Protocol parameters").
//!
//! The network config is the plugin-specific part of a CNI config:
//! ```json
//! { "cniVersion": "1.1.0", "name": "corral", "type": "corral-bridge",
//!   "bridge": "corral0", "subnet": "10.88.0.0/16", "mtu": 1500,
//!   "dataDir": "/var/lib/corral/network", "nftTable": "corral",
//!   "ipMasq": true, "hairpin": true,
//!   "capabilities": { "portMappings": true } }
//! ```
//! `runtimeConfig.portMappings` carries the hostPorts. Results and errors go to
//! stdout; the exit code is 0 or 1.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::types::PortMapping;
use crate::{Attachment, Bridge, BridgeConfig, CNI_VERSION, Error, PodNetwork, Result};

/// The versions `corral-bridge` accepts in `cniVersion`.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// What the plugin prints and how it exits.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// 0 on success, 1 on error.
    pub exit_code: i32,
    /// The JSON document for stdout (empty for a successful DEL/STATUS/GC).
    pub stdout: Vec<u8>,
}

/// The part of the stdin config the front end reads besides the bridge settings.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    #[serde(default)]
    runtime_config: RuntimeConfig,
    #[serde(default, rename = "cni.dev/valid-attachments")]
    valid_attachments: Vec<ValidAttachment>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuntimeConfig {
    #[serde(default)]
    port_mappings: Vec<PortMapping>,
}

#[derive(Debug, Deserialize)]
struct ValidAttachment {
    #[serde(rename = "containerID")]
    container_id: String,
}

/// Runs one CNI command. `env` looks up `CNI_*` variables; `stdin` is the config.
pub async fn run(env: impl Fn(&str) -> Option<String>, stdin: &[u8]) -> Reply {
    let version = serde_json::from_slice::<Value>(stdin)
        .ok()
        .and_then(|v| v["cniVersion"].as_str().map(str::to_owned))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| CNI_VERSION.to_owned());
    match dispatch(&env, stdin, &version).await {
        Ok(out) => Reply { exit_code: 0, stdout: out.map(|v| v.to_string().into_bytes()).unwrap_or_default() },
        Err(e) => {
            tracing::error!(error = %e, "corral-bridge failed");
            Reply { exit_code: 1, stdout: error_json(&version, e.cni_code(), &e.to_string()) }
        }
    }
}

/// The CNI error document.
pub fn error_json(version: &str, code: u32, msg: &str) -> Vec<u8> {
    json!({ "cniVersion": version, "code": code, "msg": msg }).to_string().into_bytes()
}

async fn dispatch(env: &impl Fn(&str) -> Option<String>, stdin: &[u8], version: &str) -> Result<Option<Value>> {
    let command = env("CNI_COMMAND").unwrap_or_default();
    if command == "VERSION" {
        return Ok(Some(json!({ "cniVersion": CNI_VERSION, "supportedVersions": SUPPORTED_VERSIONS })));
    }
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(Error::IncompatibleVersion {
            version: version.to_owned(),
            supported: SUPPORTED_VERSIONS.join(", "),
        });
    }
    let decode = |source| Error::Decode { what: "network config on stdin".into(), source };
    let envelope: Envelope = serde_json::from_slice(stdin).map_err(decode)?;
    let cfg: BridgeConfig = serde_json::from_slice(stdin).map_err(decode)?;
    let bridge = Bridge::new(cfg)?;

    let required = |name: &str| {
        env(name).filter(|v| !v.is_empty()).ok_or_else(|| Error::InvalidArgument(format!("{name} is not set")))
    };
    match command.as_str() {
        "STATUS" => bridge.status().await.map(|()| None),
        "GC" => {
            let live: Vec<String> = envelope.valid_attachments.into_iter().map(|a| a.container_id).collect();
            bridge.gc(&live).await.map(|()| None)
        }
        "ADD" | "DEL" | "CHECK" => {
            let pod_id = required("CNI_CONTAINERID")?;
            let ifname = required("CNI_IFNAME")?;
            // DEL may come without a netns (the pod is gone).
            let netns = if command == "DEL" { env("CNI_NETNS").unwrap_or_default() } else { required("CNI_NETNS")? };
            let a = Attachment {
                pod_id: &pod_id,
                netns: Path::new(&netns),
                ifname: &ifname,
                port_mappings: &envelope.runtime_config.port_mappings,
                args: &[],
            };
            match command.as_str() {
                "ADD" => {
                    let mut result = bridge.add(&a).await?;
                    result.cni_version = version.to_owned();
                    let mut value = serde_json::to_value(&result)
                        .map_err(|source| Error::Decode { what: "result".into(), source })?;
                    downgrade_result(&mut value, version);
                    Ok(Some(value))
                }
                "DEL" => bridge.del(&a).await.map(|()| None),
                _ => bridge.check(&a).await.map(|()| None),
            }
        }
        "" => Err(Error::InvalidArgument("CNI_COMMAND is not set".into())),
        other => Err(Error::InvalidArgument(format!("unknown CNI_COMMAND {other:?}"))),
    }
}

/// Results before 1.0.0 carry `"version": "4"` on each address.
fn downgrade_result(result: &mut Value, version: &str) {
    if version.starts_with("0.")
        && let Some(ips) = result["ips"].as_array_mut()
    {
        for ip in ips {
            let v = if ip["address"].as_str().is_some_and(|a| a.contains(':')) { "6" } else { "4" };
            ip["version"] = json!(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
    }

    #[tokio::test]
    async fn version_lists_supported_versions() {
        let r = run(env_of(&[("CNI_COMMAND", "VERSION")]), b"{\"cniVersion\":\"1.0.0\"}").await;
        assert_eq!(r.exit_code, 0);
        let v: Value = serde_json::from_slice(&r.stdout).unwrap();
        assert_eq!(v["cniVersion"], "1.1.0");
        assert!(v["supportedVersions"].as_array().unwrap().contains(&json!("0.4.0")));
    }

    #[tokio::test]
    async fn errors_carry_cni_codes() {
        type Env = &'static [(&'static str, &'static str)];
        let cases: [(Env, &[u8], u64); 4] = [
            (&[("CNI_COMMAND", "ADD")], b"{\"cniVersion\":\"9.9.9\"}", 1),
            (&[("CNI_COMMAND", "ADD")], b"{not json", 6),
            (&[("CNI_COMMAND", "ADD")], b"{\"cniVersion\":\"1.0.0\",\"subnet\":\"nope\"}", 7),
            (&[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")], b"{\"cniVersion\":\"1.0.0\"}", 4),
        ];
        for (env, stdin, code) in cases {
            let r = run(env_of(env), stdin).await;
            assert_eq!(r.exit_code, 1);
            let v: Value = serde_json::from_slice(&r.stdout).unwrap();
            assert_eq!(v["code"], code, "{v}");
            assert!(!v["msg"].as_str().unwrap().is_empty());
        }
    }

    #[test]
    fn old_versions_get_ip_version_field() {
        let mut v = json!({"ips": [{"address": "10.0.0.2/24"}]});
        downgrade_result(&mut v, "0.4.0");
        assert_eq!(v["ips"][0]["version"], "4");
        let mut v = json!({"ips": [{"address": "10.0.0.2/24"}]});
        downgrade_result(&mut v, "1.0.0");
        assert!(v["ips"][0].get("version").is_none());
    }
}
