//! Stand-ins for records that could not be read at start-up: truncated or garbage files, or
//! records written by a newer corral.
//!
//! Losing a record must not lose the object: its pinned namespaces, address, pause process
//! and containers are still on the host. So each unreadable record becomes a stand-in that
//! kubelet sees and cleans up with its usual calls: a NOTREADY pod whose verbose status says
//! why, or a container in state UNKNOWN whose message says why. Stop and Remove then take
//! down whatever is found of it (the host side is found from the state dir, not from the
//! record), and Remove deletes the bad file. Until then the file stays on disk as it is.
//!
//! What the file still holds is kept when it parses as JSON: the CRI config (kubelet matches
//! pods by their metadata and labels), the name, the creation time.

use std::path::PathBuf;

use corral_cri::v1;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::Config;
use crate::store::Unreadable;
use crate::store::records::{ContainerRecord, ContainerState, RECORD_VERSION, SandboxRecord, SandboxState};

/// The stand-in for the pod whose record `bad` is.
pub(super) fn sandbox(config: &Config, bad: &Unreadable) -> SandboxRecord {
    let salvaged = Salvaged::read(bad);
    let dir = config.state_dir.join("pods").join(&bad.id);
    let pinned = |kind: &str| Some(dir.join("ns").join(kind)).filter(|p| p.exists());
    let pause_pid =
        corral_runtime::pause::running(&dir).ok().flatten().and_then(|pause| u32::try_from(pause.process.pid).ok());
    let mut pod_config: v1::PodSandboxConfig = salvaged.field("config").unwrap_or_default();
    // kubelet (and crictl) refuse a pod status without name, namespace and uid.
    let meta = pod_config.metadata.get_or_insert_with(Default::default);
    fill(&mut meta.name, || stand_in_name(&bad.id));
    fill(&mut meta.namespace, || STAND_IN_NAMESPACE.into());
    fill(&mut meta.uid, || bad.id.clone());
    SandboxRecord {
        version: RECORD_VERSION,
        id: bad.id.clone(),
        name: salvaged.field("name").unwrap_or_else(|| stand_in_name(&bad.id)),
        config: pod_config,
        created_at: salvaged.created_at(bad),
        state: SandboxState::NotReady,
        netns: pinned("net"),
        ipcns: pinned("ipc"),
        utsns: pinned("uts"),
        pause_pid,
        cgroup_parent: format!("{}/{}", config.cgroup_root.trim_end_matches('/'), bad.id),
        dir,
        unreadable: Some(bad.reason.clone()),
        ..Default::default()
    }
}

/// The stand-in for the container whose record `bad` is: state UNKNOWN, the reason in its
/// message. Stopping it kills whatever runs in its cgroup.
pub(super) fn container(bad: &Unreadable) -> ContainerRecord {
    let salvaged = Salvaged::read(bad);
    let mut ctr_config: v1::ContainerConfig = salvaged.field("config").unwrap_or_default();
    // kubelet (and crictl) refuse a container status without name, image and image ref.
    fill(&mut ctr_config.metadata.get_or_insert_with(Default::default).name, || stand_in_name(&bad.id));
    let mut image_spec: String = salvaged.field("image_spec").unwrap_or_default();
    let mut image_id: String = salvaged.field("image_id").unwrap_or_default();
    fill(&mut image_spec, || "unknown".into());
    fill(&mut image_id, || "unknown".into());
    ContainerRecord {
        version: RECORD_VERSION,
        id: bad.id.clone(),
        name: salvaged.field("name").unwrap_or_else(|| stand_in_name(&bad.id)),
        sandbox_id: salvaged.field("sandbox_id").unwrap_or_default(),
        image_spec,
        image_id,
        created_at: salvaged.created_at(bad),
        log_path: salvaged.field::<PathBuf>("log_path"),
        config: ctr_config,
        state: ContainerState::Unknown,
        exit_code: 255,
        reason: "Unknown".into(),
        message: format!("corral could not read the container's record: {}", bad.reason),
        ..Default::default()
    }
}

/// The namespace of a stand-in pod whose metadata is lost.
const STAND_IN_NAMESPACE: &str = "corral-unreadable";

/// A name no real pod or container has (real ones have four or five `_`-separated parts).
fn stand_in_name(id: &str) -> String {
    format!("unreadable-{}", id.get(..12).unwrap_or(id))
}

/// Sets an empty `field` to `value()`.
fn fill(field: &mut String, value: impl FnOnce() -> String) {
    if field.is_empty() {
        *field = value();
    }
}

/// The JSON of an unreadable record, if it is JSON at all.
struct Salvaged(Value);

impl Salvaged {
    fn read(bad: &Unreadable) -> Salvaged {
        let value = std::fs::read(&bad.path).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok());
        Salvaged(value.unwrap_or(Value::Null))
    }

    /// A top-level field, if present and of the right shape.
    fn field<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        self.0.get(name).and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// The recorded creation time, else the file's modification time (never 0: kubelet
    /// refuses a status without one).
    fn created_at(&self, bad: &Unreadable) -> i64 {
        let modified = || {
            let mtime = std::fs::metadata(&bad.path).and_then(|m| m.modified()).ok()?;
            Some(super::container::nanos(mtime))
        };
        self.field::<i64>("created_at").filter(|t| *t > 0).or_else(modified).unwrap_or_else(super::now_nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreadable(dir: &std::path::Path, id: &str, content: &str) -> Unreadable {
        let path = dir.join(format!("{id}.json"));
        std::fs::write(&path, content).unwrap();
        Unreadable { id: id.into(), path, reason: "because".into() }
    }

    #[test]
    fn garbage_gives_a_notready_pod_named_after_its_id() {
        let tmp = tempfile::tempdir().unwrap();
        let config = Config { state_dir: tmp.path().join("state"), ..Config::default() };
        let s = sandbox(&config, &unreadable(tmp.path(), "0123456789abcdef", "\0\0garbage"));
        assert_eq!(s.state, SandboxState::NotReady);
        assert_eq!(s.name, "unreadable-0123456789ab");
        let meta = s.config.metadata.unwrap();
        assert_eq!(
            (meta.name.as_str(), meta.namespace.as_str(), meta.uid.as_str()),
            ("unreadable-0123456789ab", "corral-unreadable", "0123456789abcdef")
        );
        assert!(s.created_at > 0, "the file's time stands in for the creation time");
        assert_eq!(s.unreadable.as_deref(), Some("because"));
        assert_eq!(s.dir, tmp.path().join("state/pods/0123456789abcdef"));
        assert!(s.netns.is_none() && s.pause_pid.is_none(), "nothing is pinned for it");
    }

    #[test]
    fn a_record_of_a_newer_version_keeps_its_config_and_name() {
        let tmp = tempfile::tempdir().unwrap();
        let config = Config { state_dir: tmp.path().join("state"), ..Config::default() };
        let pinned = config.state_dir.join("pods/abc/ns");
        std::fs::create_dir_all(&pinned).unwrap();
        std::fs::write(pinned.join("net"), "").unwrap();
        let json = r#"{"version": 99, "id": "abc", "name": "web_ns_u1_0", "created_at": 5, "future": true,
            "config": {"metadata": {"name": "web", "uid": "u1", "namespace": "ns", "attempt": 0},
                       "labels": {"app": "web"}}}"#;
        let s = sandbox(&config, &unreadable(tmp.path(), "abc", json));
        assert_eq!(s.name, "web_ns_u1_0");
        assert_eq!(s.created_at, 5);
        assert_eq!(s.config.labels.get("app").map(String::as_str), Some("web"));
        assert_eq!(s.netns, Some(pinned.join("net")), "the pinned netns is found on disk");
        assert_eq!(s.ipcns, None);
    }

    #[test]
    fn a_truncated_container_record_is_unknown_with_the_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let c = container(&unreadable(tmp.path(), "c1", r#"{"id":"c1","sandbox_id":"p1","na"#));
        assert_eq!(c.state, ContainerState::Unknown);
        assert_eq!(c.sandbox_id, "", "nothing is salvaged from a truncated file");
        assert!(c.message.contains("because"), "{}", c.message);
        assert_eq!(c.config.metadata.unwrap().name, "unreadable-c1");
        assert_eq!((c.image_spec.as_str(), c.image_id.as_str()), ("unknown", "unknown"));
        assert!(c.created_at > 0);
        let json = r#"{"version": 7, "id": "c2", "sandbox_id": "p1", "name": "app_web_ns_u1_0",
            "config": {"metadata": {"name": "app", "attempt": 0}}}"#;
        let c = container(&unreadable(tmp.path(), "c2", json));
        assert_eq!((c.sandbox_id.as_str(), c.name.as_str()), ("p1", "app_web_ns_u1_0"));
    }
}
