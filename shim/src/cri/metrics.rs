//! Metrics RPCs: ListMetricDescriptors, ListPodSandboxMetrics (StreamPodSandboxMetrics pages
//! the same list).
//!
//! With the `PodAndContainerStatsFromCRI` gate, kubelet builds `/metrics/cadvisor` from
//! these instead of running cAdvisor: the descriptors once at start, the values at every
//! scrape. So names, help texts, types and labels are cAdvisor's, and dashboards and alerts
//! written against cAdvisor keep working: every metric carries kubelet's cAdvisor labels
//! (`container`, `id` = cgroup, `image`, `name` = runtime id, `namespace`, `pod`) and then
//! its own (`cpu`, `interface`, `device`, ...). The CRI carries values as integers, so
//! seconds are whole seconds, as with containerd and CRI-O.

use std::path::Path;

use corral_cri::v1;
use corral_runtime::cgroups::{Usage, block_device_name};
use v1::MetricType::{Counter, Gauge};

use super::stats::{parse_net_dev, read_net_dev_in};
use super::{Daemon, now_nanos};
use crate::images::fs_usage;
use crate::store::records::{ContainerRecord, ContainerState, SandboxRecord, SandboxState};

/// One metric family: what ListMetricDescriptors says of it.
struct Family {
    name: &'static str,
    help: &'static str,
    /// Labels after the [`BASE_LABELS`].
    labels: &'static [&'static str],
    kind: v1::MetricType,
}

/// The labels every metric starts with (kubelet's cAdvisor labels, in its order).
const BASE_LABELS: [&str; 6] = ["container", "id", "image", "name", "namespace", "pod"];

const NONE: &[&str] = &[];
const DEVICE: &[&str] = &["device"];
const INTERFACE: &[&str] = &["interface"];

const fn family(
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    kind: v1::MetricType,
) -> Family {
    Family { name, help, labels, kind }
}

/// Every family corral reports. Each is emitted for every running container (or, for the
/// network, for every pod with its own network namespace); the block I/O families only for
/// devices the container did I/O on, as cAdvisor.
#[rustfmt::skip]
const FAMILIES: &[Family] = &[
    family("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", &["cpu"], Counter),
    family("container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", NONE, Counter),
    family("container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", NONE, Counter),
    family("container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", NONE, Counter),
    family("container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", NONE, Counter),
    family("container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", NONE, Counter),
    family("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", NONE, Gauge),
    family("container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes (0 where the kernel keeps no peak).", NONE, Gauge),
    family("container_memory_working_set_bytes", "Current working set in bytes.", NONE, Gauge),
    family("container_memory_cache", "Number of bytes of page cache memory.", NONE, Gauge),
    family("container_memory_rss", "Size of RSS in bytes.", NONE, Gauge),
    family("container_memory_mapped_file", "Size of memory mapped files in bytes.", NONE, Gauge),
    family("container_memory_swap", "Container swap usage in bytes (0 without swap accounting).", NONE, Gauge),
    family("container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", NONE, Gauge),
    family("container_memory_failcnt", "Number of memory usage hits limits.", NONE, Counter),
    family("container_memory_failures_total", "Cumulative count of memory allocation failures.", &["failure_type", "scope"], Counter),
    family("container_oom_events_total", "Count of out of memory events observed for the container.", NONE, Counter),
    family("container_processes", "Number of processes running inside the container.", NONE, Gauge),
    family("container_threads", "Number of threads running inside the container.", NONE, Gauge),
    family("container_threads_max", "Maximum number of threads allowed inside the container, infinity if value is zero.", NONE, Gauge),
    family("container_file_descriptors", "Number of open file descriptors for the container.", NONE, Gauge),
    family("container_sockets", "Number of open sockets for the container.", NONE, Gauge),
    family("container_ulimits_soft", "Soft ulimit values for the container root process.", &["ulimit"], Gauge),
    family("container_spec_cpu_period", "CPU period of the container.", NONE, Gauge),
    family("container_spec_cpu_quota", "CPU quota of the container (absent when unlimited).", NONE, Gauge),
    family("container_spec_cpu_shares", "CPU share of the container.", NONE, Gauge),
    family("container_spec_memory_limit_bytes", "Memory limit for the container, 0 when unlimited.", NONE, Gauge),
    family("container_spec_memory_reservation_limit_bytes", "Memory reservation limit for the container, 0 when none.", NONE, Gauge),
    family("container_spec_memory_swap_limit_bytes", "Memory swap limit for the container, 0 when unlimited.", NONE, Gauge),
    family("container_start_time_seconds", "Start time of the container since unix epoch in seconds.", NONE, Gauge),
    family("container_last_seen", "Last time a container was seen by the exporter.", NONE, Gauge),
    family("container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", DEVICE, Gauge),
    family("container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", DEVICE, Gauge),
    family("container_fs_inodes_free", "Number of available Inodes.", DEVICE, Gauge),
    family("container_fs_inodes_total", "Number of Inodes.", DEVICE, Gauge),
    family("container_fs_reads_bytes_total", "Cumulative count of bytes read.", DEVICE, Counter),
    family("container_fs_reads_total", "Cumulative count of reads completed.", DEVICE, Counter),
    family("container_fs_writes_bytes_total", "Cumulative count of bytes written.", DEVICE, Counter),
    family("container_fs_writes_total", "Cumulative count of writes completed.", DEVICE, Counter),
    family("container_blkio_device_usage_total", "Blkio device bytes usage.", &["device", "major", "minor", "operation"], Counter),
    family("container_network_receive_bytes_total", "Cumulative count of bytes received.", INTERFACE, Counter),
    family("container_network_receive_packets_total", "Cumulative count of packets received.", INTERFACE, Counter),
    family("container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", INTERFACE, Counter),
    family("container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", INTERFACE, Counter),
    family("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", INTERFACE, Counter),
    family("container_network_transmit_packets_total", "Cumulative count of packets transmitted.", INTERFACE, Counter),
    family("container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.", INTERFACE, Counter),
    family("container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", INTERFACE, Counter),
];

/// ListMetricDescriptors: the same list at every call (kubelet reads it once).
pub(super) fn list_metric_descriptors() -> v1::ListMetricDescriptorsResponse {
    let descriptors = FAMILIES
        .iter()
        .map(|f| v1::MetricDescriptor {
            name: f.name.into(),
            help: f.help.into(),
            label_keys: BASE_LABELS.iter().chain(f.labels).map(|l| l.to_string()).collect(),
        })
        .collect();
    v1::ListMetricDescriptorsResponse { descriptors }
}

impl Daemon {
    /// Metrics of every ready pod: its network, and each running container's cgroup,
    /// processes and writable layer, read now.
    pub(super) fn list_pod_sandbox_metrics(&self) -> v1::ListPodSandboxMetricsResponse {
        let containers = self.containers.list();
        let pod_metrics = self
            .sandboxes
            .list()
            .iter()
            .filter(|s| s.state == SandboxState::Ready)
            .map(|s| v1::PodSandboxMetrics {
                pod_sandbox_id: s.id.clone(),
                metrics: self.pod_network_metrics(s),
                container_metrics: containers
                    .iter()
                    .filter(|c| c.sandbox_id == s.id && c.state == ContainerState::Running)
                    .filter_map(|c| self.container_metrics(s, c))
                    .collect(),
            })
            .collect();
        v1::ListPodSandboxMetricsResponse { pod_metrics }
    }

    fn container_metrics(&self, s: &SandboxRecord, c: &ContainerRecord) -> Option<v1::ContainerMetrics> {
        // A container that exits between the listing and here has no cgroup: skip it.
        let u = self.runtime.usage(&c.id).map_err(|e| tracing::debug!(container = %c.id, "metrics: {e}")).ok()?;
        let meta = |m: &Option<v1::ContainerMetadata>| m.as_ref().map(|m| m.name.clone()).unwrap_or_default();
        let pod = s.config.metadata.clone().unwrap_or_default();
        let mut out = Metrics::new([
            meta(&c.config.metadata),
            u.cgroup.clone(),
            c.image_spec.clone(),
            c.id.clone(),
            pod.namespace,
            pod.name,
        ]);
        cgroup_metrics(&mut out, &u);
        out.add("container_start_time_seconds", &[], (c.started_at / 1_000_000_000) as u64);
        out.add("container_last_seen", &[], (now_nanos() / 1_000_000_000) as u64);
        writable_layer_metrics(&mut out, &self.upper_dir(c));
        Some(v1::ContainerMetrics { container_id: c.id.clone(), metrics: out.metrics })
    }

    /// The pod's interfaces (not `lo`), read inside its network namespace; none for
    /// host-network pods (the node's interfaces are the node's metrics).
    fn pod_network_metrics(&self, s: &SandboxRecord) -> Vec<v1::Metric> {
        let Some(netns) = &s.netns else { return Vec::new() };
        let text = match read_net_dev_in(netns) {
            Ok(text) => text,
            Err(e) => {
                tracing::debug!(pod = %s.id, "network metrics: {e}");
                return Vec::new();
            }
        };
        let pod = s.config.metadata.clone().unwrap_or_default();
        let mut out = Metrics::new([
            String::new(),
            s.cgroup_parent.clone(),
            String::new(),
            s.id.clone(),
            pod.namespace,
            pod.name,
        ]);
        for i in parse_net_dev(&text).into_iter().filter(|i| i.name != "lo") {
            for (family, value) in [
                ("container_network_receive_bytes_total", i.rx_bytes),
                ("container_network_receive_packets_total", i.rx_packets),
                ("container_network_receive_errors_total", i.rx_errors),
                ("container_network_receive_packets_dropped_total", i.rx_dropped),
                ("container_network_transmit_bytes_total", i.tx_bytes),
                ("container_network_transmit_packets_total", i.tx_packets),
                ("container_network_transmit_errors_total", i.tx_errors),
                ("container_network_transmit_packets_dropped_total", i.tx_dropped),
            ] {
                out.add(family, &[&i.name], value);
            }
        }
        out.metrics
    }
}

/// Collects metrics that share the base label values.
struct Metrics {
    base: [String; 6],
    metrics: Vec<v1::Metric>,
}

impl Metrics {
    fn new(base: [String; 6]) -> Metrics {
        Metrics { base, metrics: Vec::new() }
    }

    /// Adds one value of `family` (which must be in [`FAMILIES`], with as many `labels` as it
    /// declares: the unit tests hold every call site to that).
    fn add(&mut self, family: &str, labels: &[&str], value: u64) {
        let Some(f) = FAMILIES.iter().find(|f| f.name == family) else {
            debug_assert!(false, "metric family {family} is not declared");
            return;
        };
        debug_assert_eq!(f.labels.len(), labels.len(), "labels of {family}");
        self.metrics.push(v1::Metric {
            name: f.name.into(),
            // 0: read on demand, not a cached sample (kubelet then stamps the scrape time).
            timestamp: 0,
            metric_type: f.kind as i32,
            label_values: self.base.iter().cloned().chain(labels.iter().map(|l| l.to_string())).collect(),
            value: Some(v1::UInt64Value { value }),
        });
    }
}

const NS_PER_SECOND: u64 = 1_000_000_000;

fn cgroup_metrics(out: &mut Metrics, u: &Usage) {
    out.add("container_cpu_usage_seconds_total", &["total"], u.cpu_total_ns / NS_PER_SECOND);
    out.add("container_cpu_user_seconds_total", &[], u.cpu_user_ns / NS_PER_SECOND);
    out.add("container_cpu_system_seconds_total", &[], u.cpu_system_ns / NS_PER_SECOND);
    out.add("container_cpu_cfs_periods_total", &[], u.cfs_periods);
    out.add("container_cpu_cfs_throttled_periods_total", &[], u.cfs_throttled_periods);
    out.add("container_cpu_cfs_throttled_seconds_total", &[], u.cfs_throttled_ns / NS_PER_SECOND);
    out.add("container_memory_usage_bytes", &[], u.memory_usage);
    out.add("container_memory_max_usage_bytes", &[], u.memory_max_usage);
    out.add("container_memory_working_set_bytes", &[], u.memory_working_set);
    out.add("container_memory_cache", &[], u.memory_cache);
    out.add("container_memory_rss", &[], u.memory_rss);
    out.add("container_memory_mapped_file", &[], u.memory_mapped_file);
    out.add("container_memory_swap", &[], u.memory_swap);
    out.add("container_memory_kernel_usage", &[], u.memory_kernel);
    out.add("container_memory_failcnt", &[], u.memory_failcnt);
    for (kind, scope, value) in [
        ("pgfault", "container", u.pgfault),
        ("pgmajfault", "container", u.pgmajfault),
        ("pgfault", "hierarchy", u.pgfault_hierarchy),
        ("pgmajfault", "hierarchy", u.pgmajfault_hierarchy),
    ] {
        out.add("container_memory_failures_total", &[kind, scope], value);
    }
    out.add("container_oom_events_total", &[], u.oom_kills);
    let p = &u.processes;
    out.add("container_processes", &[], p.processes);
    out.add("container_threads", &[], p.threads);
    out.add("container_threads_max", &[], u.tasks_max.unwrap_or(0));
    out.add("container_file_descriptors", &[], p.file_descriptors);
    out.add("container_sockets", &[], p.sockets);
    if let Some(nofile) = p.max_open_files {
        out.add("container_ulimits_soft", &["max_open_files"], nofile);
    }
    out.add("container_spec_cpu_period", &[], u.cpu_period_us);
    if let Some(quota) = u.cpu_quota_us {
        out.add("container_spec_cpu_quota", &[], quota);
    }
    out.add("container_spec_cpu_shares", &[], u.cpu_shares);
    out.add("container_spec_memory_limit_bytes", &[], u.memory_limit.unwrap_or(0));
    out.add("container_spec_memory_reservation_limit_bytes", &[], u.memory_reservation.unwrap_or(0));
    out.add("container_spec_memory_swap_limit_bytes", &[], u.memory_swap_limit.unwrap_or(0));
    for d in &u.io {
        let device = block_device_name(d.major, d.minor);
        let (major, minor) = (d.major.to_string(), d.minor.to_string());
        out.add("container_blkio_device_usage_total", &[&device, &major, &minor, "Read"], d.read_bytes);
        out.add("container_blkio_device_usage_total", &[&device, &major, &minor, "Write"], d.write_bytes);
        out.add("container_fs_reads_bytes_total", &[&device], d.read_bytes);
        out.add("container_fs_reads_total", &[&device], d.reads);
        out.add("container_fs_writes_bytes_total", &[&device], d.write_bytes);
        out.add("container_fs_writes_total", &[&device], d.writes);
    }
}

/// The writable layer: what the container wrote, and the filesystem holding it.
fn writable_layer_metrics(out: &mut Metrics, upper: &Path) {
    use std::os::unix::fs::MetadataExt;
    let (Ok(meta), Ok(fs)) = (std::fs::metadata(upper), nix::sys::statvfs::statvfs(upper)) else { return };
    let dev = meta.dev();
    let device = block_device_name(nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let used = fs_usage::measure(upper).unwrap_or_default();
    out.add("container_fs_usage_bytes", &[&device], used.bytes);
    out.add("container_fs_limit_bytes", &[&device], fs.blocks() * fs.fragment_size());
    out.add("container_fs_inodes_free", &[&device], fs.files_free());
    out.add("container_fs_inodes_total", &[&device], fs.files());
}

#[cfg(test)]
mod tests {
    use super::*;
    use corral_runtime::cgroups::{DeviceIo, ProcessCounts};

    fn family_names(metrics: &[v1::Metric]) -> Vec<&str> {
        let mut names: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// What critest and kubelet check: every emitted metric is declared, with exactly as
    /// many label values as its descriptor has keys, and every declared family is emitted
    /// by some code path.
    #[test]
    fn every_family_is_emitted_with_its_declared_labels() {
        let usage = Usage {
            cpu_quota_us: Some(20_000),
            io: vec![DeviceIo { major: 8, minor: 0, read_bytes: 4096, write_bytes: 0, reads: 1, writes: 0 }],
            processes: ProcessCounts { processes: 1, threads: 1, max_open_files: Some(1024), ..Default::default() },
            ..Default::default()
        };
        let mut out = Metrics::new(Default::default());
        cgroup_metrics(&mut out, &usage);
        out.add("container_start_time_seconds", &[], 1);
        out.add("container_last_seen", &[], 2);
        let upper = tempfile::tempdir().unwrap();
        std::fs::write(upper.path().join("f"), "hi").unwrap();
        writable_layer_metrics(&mut out, upper.path());
        let descriptors = list_metric_descriptors().descriptors;
        for m in &out.metrics {
            let d = descriptors.iter().find(|d| d.name == m.name).unwrap_or_else(|| panic!("{} undeclared", m.name));
            assert_eq!(d.label_keys.len(), m.label_values.len(), "{}", m.name);
            assert!(!d.help.is_empty());
        }
        let emitted = family_names(&out.metrics);
        let not_emitted: Vec<&str> = FAMILIES
            .iter()
            .map(|f| f.name)
            .filter(|n| !emitted.contains(n) && !n.starts_with("container_network_"))
            .collect();
        assert!(not_emitted.is_empty(), "declared but never emitted: {not_emitted:?}");
        let usage_bytes = out.metrics.iter().find(|m| m.name == "container_fs_usage_bytes").unwrap();
        assert!(usage_bytes.value.as_ref().unwrap().value >= 2);
    }

    #[test]
    fn unlimited_limits_read_as_zero_and_absent_quota_is_left_out() {
        let mut out = Metrics::new(Default::default());
        cgroup_metrics(&mut out, &Usage { cpu_total_ns: 2_500_000_000, ..Default::default() });
        let value = |name: &str| out.metrics.iter().find(|m| m.name == name).map(|m| m.value.as_ref().unwrap().value);
        assert_eq!(value("container_spec_memory_limit_bytes"), Some(0));
        assert_eq!(value("container_threads_max"), Some(0));
        assert_eq!(value("container_spec_cpu_quota"), None);
        assert_eq!(value("container_cpu_usage_seconds_total"), Some(2), "whole seconds");
        assert_eq!(value("container_blkio_device_usage_total"), None, "no I/O, no device");
    }
}
