//! The runtime side of CNI: run standard plugin binaries (bridge, host-local, portmap,
//! Calico, Flannel, Cilium...) from a conflist, as containerd's CRI plugin does.
//!
//! - The config is the first file by name in the conf dir ([`NetworkConfigList`]),
//!   re-read on every ADD so a config dropped in later (by a cluster's network
//!   DaemonSet) is picked up without a restart.
//! - Each plugin of the list gets the list's `name` and `cniVersion`, the previous
//!   plugin's result as `prevResult`, and the `runtimeConfig` entries its
//!   `capabilities` ask for (`portMappings`).
//! - The ADD result and the config it was made with are cached on disk; DEL and CHECK
//!   use them, so they work after a restart and after the conflist changed.

mod cache;
mod conf;
mod exec;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

pub use conf::NetworkConfigList;

use crate::types::PortMapping;
use crate::{AddResult, Attachment, Error, PodNetwork, Result};
use cache::{CachedAttachment, ResultCache};
use conf::version_at_least;
use exec::Invocation;

/// Where the runner finds configs and plugins and keeps its cache.
#[derive(Debug, Clone, PartialEq)]
pub struct CniConfig {
    /// The conf dir (`/etc/cni/net.d`).
    pub conf_dir: PathBuf,
    /// The plugin dirs, searched in order (`/opt/cni/bin`; Debian: `/usr/lib/cni`).
    pub bin_dirs: Vec<PathBuf>,
    /// The result cache (`<root>/network/cni`, as containerd uses `/var/lib/cni`).
    pub cache_dir: PathBuf,
    /// How long one plugin invocation may take before it is killed.
    pub plugin_timeout: Duration,
}

impl Default for CniConfig {
    fn default() -> Self {
        CniConfig {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            bin_dirs: vec![PathBuf::from("/opt/cni/bin")],
            cache_dir: PathBuf::from("/var/lib/corral/network/cni"),
            plugin_timeout: Duration::from_secs(60),
        }
    }
}

/// A [`PodNetwork`] backed by CNI plugin binaries.
#[derive(Debug, Clone)]
pub struct CniNetwork {
    cfg: CniConfig,
    cache: ResultCache,
}

impl CniNetwork {
    /// A runner; nothing is read until the first request.
    pub fn new(cfg: CniConfig) -> Self {
        CniNetwork { cache: ResultCache::new(&cfg.cache_dir), cfg }
    }

    /// The network config currently in force.
    pub fn load_config(&self) -> Result<NetworkConfigList> {
        NetworkConfigList::load_first(&self.cfg.conf_dir)
    }

    /// Asks every plugin of the current config which versions it supports (CNI VERSION).
    /// Returns `(plugin type, its VERSION answer)`.
    pub async fn plugin_versions(&self) -> Result<Vec<(String, Value)>> {
        let list = self.load_config()?;
        let mut out = Vec::new();
        for plugin in &list.plugins {
            let kind = plugin_type(plugin);
            let binary = exec::find_plugin(&self.cfg.bin_dirs, &kind)?;
            let inv = Invocation { command: "VERSION", container_id: "", netns: "", ifname: "", args: "" };
            let answer = exec::exec(
                &binary,
                &self.cfg.bin_dirs,
                &inv,
                &json!({ "cniVersion": list.cni_version }),
                self.cfg.plugin_timeout,
            )
            .await?;
            out.push((kind, answer));
        }
        Ok(out)
    }

    /// One plugin's stdin: its own config plus the list's name and version, the
    /// previous result, and the runtime config its capabilities ask for.
    fn plugin_config(list: &NetworkConfigList, plugin: &Value, prev: Option<&Value>, ports: &[PortMapping]) -> Value {
        let mut conf = plugin.clone();
        conf["name"] = json!(list.name);
        conf["cniVersion"] = json!(list.cni_version);
        if let Some(prev) = prev.filter(|p| !p.is_null()) {
            conf["prevResult"] = prev.clone();
        }
        let wants_ports = plugin["capabilities"]["portMappings"].as_bool() == Some(true);
        if let Some(obj) = conf.as_object_mut() {
            obj.remove("capabilities");
            obj.remove("runtimeConfig");
        }
        if wants_ports && !ports.is_empty() {
            conf["runtimeConfig"] = json!({ "portMappings": ports });
        }
        conf
    }

    /// Runs `command` on every plugin, in order (reversed for DEL), threading results.
    #[allow(clippy::too_many_arguments)]
    async fn run_list(
        &self,
        list: &NetworkConfigList,
        command: &str,
        a: &Attachment<'_>,
        netns: &str,
        cni_args: &str,
        ports: &[PortMapping],
        prev: Option<&Value>,
    ) -> Result<Value> {
        let inv = Invocation { command, container_id: a.pod_id, netns, ifname: a.ifname, args: cni_args };
        // Resolve every binary first: a missing plugin fails ADD before any plugin ran.
        let mut plugins = Vec::new();
        for plugin in &list.plugins {
            plugins.push((plugin, exec::find_plugin(&self.cfg.bin_dirs, &plugin_type(plugin))));
        }
        if command == "DEL" {
            plugins.reverse();
        } else if let Some(pos) = plugins.iter().position(|(_, b)| b.is_err())
            && let (_, Err(e)) = plugins.swap_remove(pos)
        {
            return Err(e);
        }
        let mut result = prev.cloned().unwrap_or(Value::Null);
        let mut first_err = None;
        for (plugin, binary) in plugins {
            // prevResult: ADD threads each plugin's result to the next; DEL and CHECK
            // give every plugin the cached final result (DEL only from 0.4.0 on).
            let prev = match command {
                "ADD" => Some(&result),
                "DEL" if !version_at_least(&list.cni_version, "0.4.0") => None,
                _ => prev,
            };
            let conf = Self::plugin_config(list, plugin, prev, ports);
            let out = match binary {
                Ok(binary) => exec::exec(&binary, &self.cfg.bin_dirs, &inv, &conf, self.cfg.plugin_timeout).await,
                Err(e) => Err(e),
            };
            match out {
                Ok(out) if command == "ADD" => result = out,
                Ok(_) => {}
                // DEL goes on through the list, so one failing plugin does not keep the
                // others from releasing what they hold; the first error is returned
                // (and the cache kept, so a retry runs them all again).
                Err(e) if command == "DEL" => {
                    tracing::warn!(plugin = plugin_type(plugin), pod = a.pod_id, error = %e, "CNI DEL failed");
                    first_err.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        first_err.map_or(Ok(result), Err)
    }

    /// DEL of one cached (or uncached) attachment, then its cache entry.
    async fn del_with(&self, a: &Attachment<'_>, cached: Option<CachedAttachment>) -> Result<()> {
        let (list, netns, args, ports, prev) = match cached {
            Some(c) => {
                let list = NetworkConfigList::parse(Path::new("<cached config>"), c.config.to_string().as_bytes())?;
                (list, c.netns, c.cni_args, c.port_mappings, Some(c.result))
            }
            None => (self.load_config()?, a.netns.display().to_string(), cni_args(a), a.port_mappings.to_vec(), None),
        };
        // A gone netns is passed as empty: plugins then only release what they hold.
        let netns = if Path::new(&netns).exists() { netns } else { String::new() };
        self.run_list(&list, "DEL", a, &netns, &args, &ports, prev.as_ref()).await?;
        self.cache.remove(&list.name, a.pod_id, a.ifname)
    }
}

fn plugin_type(plugin: &Value) -> String {
    plugin["type"].as_str().unwrap_or_default().to_owned()
}

/// `CNI_ARGS`: `IgnoreUnknown=1` (so plugins that do not know K8S_* accept them) and
/// the attachment's args.
fn cni_args(a: &Attachment<'_>) -> String {
    let mut s = String::from("IgnoreUnknown=1");
    for (k, v) in a.args {
        s.push_str(&format!(";{k}={v}"));
    }
    s
}

#[async_trait::async_trait]
impl PodNetwork for CniNetwork {
    async fn add(&self, a: &Attachment<'_>) -> Result<AddResult> {
        a.validate()?;
        // Fail before any plugin runs, like the builtin: nothing to roll back.
        std::fs::metadata(a.netns).map_err(|source| Error::NetnsMissing { path: a.netns.to_owned(), source })?;
        let list = self.load_config()?;
        let netns = a.netns.display().to_string();
        let args = cni_args(a);
        let raw = match self.run_list(&list, "ADD", a, &netns, &args, a.port_mappings, None).await {
            Ok(raw) => raw,
            Err(e) => {
                // As libcni's callers do: DEL whatever the chain half-did.
                tracing::warn!(pod = a.pod_id, error = %e, "CNI ADD failed, running DEL");
                if let Err(del) = self.run_list(&list, "DEL", a, &netns, &args, a.port_mappings, None).await {
                    tracing::warn!(pod = a.pod_id, error = %del, "CNI DEL after failed ADD");
                }
                return Err(e);
            }
        };
        let result: AddResult = serde_json::from_value(raw.clone())
            .map_err(|source| Error::Decode { what: format!("result of network {}", list.name), source })?;
        self.cache.save(&CachedAttachment {
            kind: "cniCacheV1".into(),
            container_id: a.pod_id.to_owned(),
            if_name: a.ifname.to_owned(),
            network_name: list.name.clone(),
            netns,
            cni_args: args,
            port_mappings: a.port_mappings.to_vec(),
            config: list.to_json(),
            result: raw,
        })?;
        Ok(result)
    }

    async fn del(&self, a: &Attachment<'_>) -> Result<()> {
        a.validate()?;
        let network = match self.load_config() {
            Ok(list) => list.name,
            Err(_) => String::new(),
        };
        // The cache names the network the pod was attached to; look for it under the
        // current name first, then under any name.
        let cached = match self.cache.load(&network, a.pod_id, a.ifname)? {
            Some(c) => Some(c),
            None => self.find_cached(a.pod_id, a.ifname)?,
        };
        if cached.is_none() && network.is_empty() {
            // No config and no cache: nothing was ever set up by us.
            return Ok(());
        }
        self.del_with(a, cached).await
    }

    async fn check(&self, a: &Attachment<'_>) -> Result<()> {
        a.validate()?;
        let list = self.load_config()?;
        let Some(cached) = self.cache.load(&list.name, a.pod_id, a.ifname)? else {
            return Err(Error::CheckFailed {
                pod_id: a.pod_id.to_owned(),
                what: format!("no cached result on network {}", list.name),
            });
        };
        if list.disable_check || !version_at_least(&list.cni_version, "0.4.0") {
            return Ok(());
        }
        self.run_list(&list, "CHECK", a, &cached.netns, &cached.cni_args, &cached.port_mappings, Some(&cached.result))
            .await
            .map(drop)
    }

    async fn status(&self) -> Result<()> {
        let list = self.load_config()?;
        for plugin in &list.plugins {
            exec::find_plugin(&self.cfg.bin_dirs, &plugin_type(plugin))?;
        }
        if version_at_least(&list.cni_version, "1.1.0") {
            let a = Attachment::new("", Path::new(""));
            self.run_list(&list, "STATUS", &a, "", "", &[], None).await?;
        }
        Ok(())
    }

    async fn gc(&self, live_pod_ids: &[String]) -> Result<()> {
        let live: HashSet<&str> = live_pod_ids.iter().map(String::as_str).collect();
        let list = self.load_config()?;
        let mut first_err = None;
        for entry in self.cache.list(&list.name)? {
            if live.contains(entry.container_id.as_str()) {
                continue;
            }
            tracing::info!(pod = entry.container_id, "CNI GC: deleting stale attachment");
            let (pod_id, ifname, netns) =
                (entry.container_id.clone(), entry.if_name.clone(), PathBuf::from(&entry.netns));
            let a = Attachment { ifname: &ifname, ..Attachment::new(&pod_id, &netns) };
            if let Err(e) = self.del_with(&a, Some(entry)).await {
                first_err.get_or_insert(e);
            }
        }
        if version_at_least(&list.cni_version, "1.1.0") {
            // Valid: every cached attachment left, and every live pod's eth0 even if its
            // cache entry was lost (a live pod must never be collected).
            let mut valid: Vec<(String, String)> =
                self.cache.list(&list.name)?.into_iter().map(|e| (e.container_id, e.if_name)).collect();
            valid.extend(live.iter().map(|id| (id.to_string(), "eth0".to_string())));
            valid.sort();
            valid.dedup();
            let valid: Vec<Value> =
                valid.iter().map(|(id, ifname)| json!({ "containerID": id, "ifname": ifname })).collect();
            let inv = Invocation { command: "GC", container_id: "", netns: "", ifname: "", args: "" };
            for plugin in &list.plugins {
                let binary = exec::find_plugin(&self.cfg.bin_dirs, &plugin_type(plugin))?;
                let mut conf = Self::plugin_config(&list, plugin, None, &[]);
                conf["cni.dev/valid-attachments"] = json!(valid);
                if let Err(e) = exec::exec(&binary, &self.cfg.bin_dirs, &inv, &conf, self.cfg.plugin_timeout).await {
                    first_err.get_or_insert(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl CniNetwork {
    /// A cache entry of this attachment under any network name (the conflist may
    /// have been renamed or removed since ADD).
    fn find_cached(&self, pod_id: &str, ifname: &str) -> Result<Option<CachedAttachment>> {
        let dir = self.cfg.cache_dir.join("results");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(None);
        };
        let suffix = format!("-{pod_id}-{ifname}");
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(network) = name.strip_suffix(&suffix)
                && let Some(c) = self.cache.load(network, pod_id, ifname)?
            {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }
}
