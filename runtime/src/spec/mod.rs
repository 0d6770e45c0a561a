//! Default OCI specs: what a container gets when the caller (the shim) asks for nothing
//! special. Modelled on containerd's `oci.populateDefaultUnixSpec` and the CRI plugin.

mod seccomp_profile;

use std::collections::HashSet;
use std::str::FromStr;

use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxDeviceCgroup, LinuxDeviceType, LinuxNamespace, LinuxNamespaceType,
    LinuxResources, Mount, PosixRlimitBuilder, PosixRlimitType, Process, Root, Spec,
};

pub use seccomp_profile::runtime_default_seccomp;

/// containerd's default capability set (14 capabilities).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths hidden from the container (bind of /dev/null or an empty read-only tmpfs).
pub const DEFAULT_MASKED_PATHS: [&str; 12] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/interrupts",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths made read-only in the container.
pub const DEFAULT_READONLY_PATHS: [&str; 5] =
    ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// The default `PATH` of a container whose image sets none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Parses capability names (`CAP_NET_ADMIN` or `NET_ADMIN`) into the spec's set.
pub fn capabilities(names: &[&str]) -> HashSet<Capability> {
    names.iter().filter_map(|n| Capability::from_str(n.trim_start_matches("CAP_")).ok()).collect()
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(destination.into());
    m.set_typ(Some(typ.into()));
    m.set_source(Some(source.into()));
    m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

/// The standard mounts of a container: /proc, /dev (tmpfs), /dev/pts (new instance),
/// /dev/shm, /dev/mqueue, /sys (ro) and /sys/fs/cgroup (ro).
pub fn default_mounts() -> Vec<Mount> {
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", "ro"]),
    ]
}

/// A containerd-like default spec: runs `sh` as root in `/` with the 14 default
/// capabilities, `no_new_privileges`, new PID/IPC/UTS/mount/network namespaces, the
/// standard mounts, masked and read-only paths, `RLIMIT_NOFILE` 1024 and a device cgroup
/// that denies everything not created by the runtime. No seccomp profile: add
/// [`runtime_default_seccomp`] for `RuntimeDefault`.
pub fn default_spec() -> Spec {
    let caps = capabilities(&DEFAULT_CAPABILITIES);
    let mut capset = LinuxCapabilities::default();
    capset.set_bounding(Some(caps.clone()));
    capset.set_effective(Some(caps.clone()));
    capset.set_permitted(Some(caps));
    capset.set_inheritable(None);
    capset.set_ambient(None);

    // Builders only fail on a missing required field; all are set here.
    let nofile = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .hard(1024u64)
        .soft(1024u64)
        .build()
        .expect("all PosixRlimit fields are set");

    let mut process = Process::default();
    process.set_terminal(Some(false));
    process.set_args(Some(vec!["sh".into()]));
    process.set_env(Some(vec![DEFAULT_PATH.into()]));
    process.set_cwd("/".into());
    process.set_capabilities(Some(capset));
    process.set_rlimits(Some(vec![nofile]));
    process.set_no_new_privileges(Some(true));
    process.set_apparmor_profile(None);
    process.set_oom_score_adj(None);

    let namespaces = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Network,
    ]
    .into_iter()
    .map(|typ| {
        let mut ns = LinuxNamespace::default();
        ns.set_typ(typ);
        ns
    })
    .collect();

    let mut deny_all = LinuxDeviceCgroup::default();
    deny_all.set_allow(false);
    deny_all.set_typ(Some(LinuxDeviceType::A));
    deny_all.set_access(Some("rwm".into()));
    let mut resources = LinuxResources::default();
    resources.set_devices(Some(default_device_rules(deny_all)));

    let mut linux = oci_spec::runtime::Linux::default();
    linux.set_namespaces(Some(namespaces));
    linux.set_masked_paths(Some(DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect()));
    linux.set_readonly_paths(Some(DEFAULT_READONLY_PATHS.iter().map(|s| s.to_string()).collect()));
    linux.set_resources(Some(resources));
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);
    linux.set_seccomp(None);

    let mut root = Root::default();
    root.set_path("rootfs".into());
    root.set_readonly(Some(false));

    let mut spec = Spec::default();
    spec.set_version("1.2.0".into());
    spec.set_hostname(None);
    spec.set_annotations(None);
    spec.set_root(Some(root));
    spec.set_mounts(Some(default_mounts()));
    spec.set_process(Some(process));
    spec.set_linux(Some(linux));
    spec
}

/// Deny everything, then allow the device nodes every container gets (runc's list):
/// null, zero, full, tty, random, urandom, /dev/pts/*, ptmx, and mknod of any char/block.
fn default_device_rules(deny_all: LinuxDeviceCgroup) -> Vec<LinuxDeviceCgroup> {
    let allow = |typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.into()));
        r
    };
    use LinuxDeviceType::{B, C};
    vec![
        deny_all,
        allow(C, None, None, "m"),
        allow(B, None, None, "m"),
        allow(C, Some(1), Some(3), "rwm"),
        allow(C, Some(1), Some(5), "rwm"),
        allow(C, Some(1), Some(7), "rwm"),
        allow(C, Some(5), Some(0), "rwm"),
        allow(C, Some(1), Some(8), "rwm"),
        allow(C, Some(1), Some(9), "rwm"),
        allow(C, Some(136), None, "rwm"),
        allow(C, Some(5), Some(2), "rwm"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_has_containerd_defaults() {
        let spec = default_spec();
        let process = spec.process().as_ref().unwrap();
        let caps = process.capabilities().as_ref().unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 14);
        assert!(caps.effective().as_ref().unwrap().contains(&Capability::NetBindService));
        assert!(!caps.effective().as_ref().unwrap().contains(&Capability::SysAdmin));
        assert_eq!(process.no_new_privileges(), Some(true));
        let mounts: Vec<_> = spec.mounts().as_ref().unwrap().iter().map(|m| m.destination().clone()).collect();
        for want in ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"] {
            assert!(mounts.iter().any(|m| m.as_os_str() == want), "{want} missing");
        }
        let linux = spec.linux().as_ref().unwrap();
        assert!(linux.masked_paths().as_ref().unwrap().contains(&"/proc/kcore".to_string()));
        assert_eq!(linux.namespaces().as_ref().unwrap().len(), 5);
        // The spec survives a JSON round trip (it is stored as config.json).
        let json = serde_json::to_string(&spec).unwrap();
        let back: Spec = serde_json::from_str(&json).unwrap();
        assert_eq!(back, spec);
    }
}
