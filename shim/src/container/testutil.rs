//! Test fixtures: image layers on disk, a containerd-like base spec, a default seccomp
//! profile, host facts, pod files.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxDeviceCgroupBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxResourcesBuilder, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder, Mount,
    MountBuilder, ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use tempfile::TempDir;

use super::caps::{ALL_CAPABILITIES, CapSets};
use super::host::HostFacts;
use super::spec::PodPaths;

/// Unpacked image layers in a temporary directory; layer 0 is the top.
pub struct Layers {
    _dir: TempDir,
    paths: Vec<PathBuf>,
}

impl Layers {
    pub fn new(count: usize) -> Layers {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..count).map(|i| dir.path().join(format!("layer{i}"))).collect();
        paths.iter().for_each(|p| fs::create_dir(p).unwrap());
        Layers { _dir: dir, paths }
    }

    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    pub fn path(&self, layer: usize, rel: &str) -> PathBuf {
        self.paths[layer].join(rel)
    }

    pub fn file(&self, layer: usize, rel: &str, content: &str) {
        let path = self.path(layer, rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
    }

    pub fn dir(&self, layer: usize, rel: &str) {
        fs::create_dir_all(self.path(layer, rel)).unwrap();
    }

    pub fn symlink(&self, layer: usize, rel: &str, target: &str) {
        let path = self.path(layer, rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, path).unwrap();
    }

    /// An overlayfs whiteout: a character device 0/0.
    pub fn overlay_whiteout(&self, layer: usize, rel: &str) {
        let path = self.path(layer, rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        nix::sys::stat::mknod(&path, nix::sys::stat::SFlag::S_IFCHR, nix::sys::stat::Mode::empty(), 0).unwrap();
    }

    /// Marks a directory opaque the overlayfs way (`trusted.overlay.opaque=y`).
    pub fn set_overlay_opaque(&self, layer: usize, rel: &str) {
        let path = CString::new(self.path(layer, rel).as_os_str().as_bytes()).unwrap();
        let name = CString::new("trusted.overlay.opaque").unwrap();
        // SAFETY: NUL-terminated strings and a 1-byte value that outlive the call.
        let rc = unsafe { libc::lsetxattr(path.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
        assert_eq!(rc, 0, "setxattr: {}", std::io::Error::last_os_error());
    }
}

/// containerd's 14 default capabilities.
pub const DEFAULT_CAPS: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

pub const DEFAULT_MASKED: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

pub const DEFAULT_READONLY: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    MountBuilder::default()
        .destination(dest)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .unwrap()
}

/// A base spec like containerd's default (and what `corral_runtime::spec::default_spec()` is
/// to provide): the standard mounts, 14 capabilities, default masked/readonly paths, all
/// devices denied, new namespaces, an rlimit that the builder must drop.
pub fn base_spec() -> Spec {
    let mut caps = CapSets::default();
    for c in DEFAULT_CAPS {
        caps.bounding.insert(c);
        caps.effective.insert(c);
        caps.permitted.insert(c);
    }
    let process = ProcessBuilder::default()
        .user(UserBuilder::default().uid(0u32).gid(0u32).build().unwrap())
        .args(vec!["sh".to_string()])
        .env(vec![DEFAULT_PATH.to_string()])
        .cwd("/")
        .capabilities(caps.to_oci())
        .rlimits(vec![
            oci_spec::runtime::PosixRlimitBuilder::default()
                .typ(oci_spec::runtime::PosixRlimitType::RlimitNofile)
                .hard(1024u64)
                .soft(1024u64)
                .build()
                .unwrap(),
        ])
        .no_new_privileges(true)
        .build()
        .unwrap();
    let namespaces = [
        LinuxNamespaceType::Pid,
        LinuxNamespaceType::Ipc,
        LinuxNamespaceType::Uts,
        LinuxNamespaceType::Mount,
        LinuxNamespaceType::Network,
    ]
    .into_iter()
    .map(|t| LinuxNamespaceBuilder::default().typ(t).build().unwrap())
    .collect::<Vec<_>>();
    let linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .masked_paths(DEFAULT_MASKED.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .readonly_paths(DEFAULT_READONLY.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .resources(
            LinuxResourcesBuilder::default()
                .devices(vec![LinuxDeviceCgroupBuilder::default().allow(false).access("rwm").build().unwrap()])
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    SpecBuilder::default()
        .version("1.2.0")
        .root(RootBuilder::default().path("rootfs").readonly(false).build().unwrap())
        .process(process)
        .mounts(vec![
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
        ])
        .linux(linux)
        .build()
        .unwrap()
}

/// A stand-in RuntimeDefault profile: recognisable, not the real one.
pub fn default_seccomp() -> LinuxSeccomp {
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .syscalls(vec![
            LinuxSyscallBuilder::default()
                .names(vec!["read".to_string(), "write".to_string()])
                .action(LinuxSeccompAction::ScmpActAllow)
                .build()
                .unwrap(),
        ])
        .build()
        .unwrap()
}

/// This machine's shape: cgroup v1 with swap accounting, no hugetlb, no CAP_SYS_RESOURCE.
pub fn host_facts() -> HostFacts {
    HostFacts {
        cgroup_v2: false,
        swap_controller: true,
        hugetlb_controller: false,
        capabilities: ALL_CAPABILITIES.iter().copied().filter(|c| *c != Capability::SysResource).collect(),
        oom_score_adj_floor: Some(0),
        hostname: "node-1".to_string(),
    }
}

/// A pod with its own network, IPC and UTS namespaces and its files, in a temp dir.
pub struct TestPod {
    pub dir: TempDir,
    pub paths: PodPaths,
}

impl TestPod {
    pub fn new() -> TestPod {
        let dir = tempfile::tempdir().unwrap();
        let p = |name: &str| dir.path().join(name);
        for file in ["hostname", "hosts", "resolv.conf"] {
            fs::write(p(file), "").unwrap();
        }
        fs::create_dir(p("shm")).unwrap();
        fs::create_dir(p("ns")).unwrap();
        let paths = PodPaths {
            net: Some(p("ns/net")),
            ipc: Some(p("ns/ipc")),
            uts: Some(p("ns/uts")),
            pid: None,
            user: None,
            hostname: p("hostname"),
            hosts: p("hosts"),
            resolv_conf: p("resolv.conf"),
            dev_shm: p("shm"),
        };
        TestPod { dir, paths }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Makes `dir` and returns it (for host paths of mounts).
pub fn mkdir(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    dir.to_path_buf()
}
