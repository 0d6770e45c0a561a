//! End-to-end tests of [`container_spec`]: whole requests in, whole specs out.

use std::collections::{HashMap, HashSet};
use std::fs;

use corral_cri::v1::security_profile::ProfileType;
use corral_cri::v1::{MountPropagation, NamespaceMode};
use oci_spec::runtime::{Capability, LinuxDeviceType, LinuxNamespaceType, Mount};

use super::*;
use crate::container::caps::CapSets;
use crate::container::error::ErrorKind;
use crate::container::signal_number;
use crate::container::testutil::{
    DEFAULT_CAPS, DEFAULT_MASKED, DEFAULT_PATH, DEFAULT_READONLY, Layers, TestPod, base_spec, default_seccomp,
    host_facts, mkdir,
};

/// An image, a pod, a state directory: what a CreateContainer call has at hand.
struct Fixture {
    image_layers: Layers,
    pod: TestPod,
    state: tempfile::TempDir,
    host: HostFacts,
    seccomp: LinuxSeccomp,
    table: MountTable,
}

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\napp:x:1000:1000::/app:/bin/sh\n";
const GROUP: &str = "root:x:0:\nwheel:x:10:root\napp:x:1000:\nstaff:x:50:app\n";

impl Fixture {
    fn new() -> Fixture {
        // Two layers: the base has the account files, the top deletes a lower file.
        let image_layers = Layers::new(2);
        image_layers.file(1, "etc/passwd", PASSWD);
        image_layers.file(1, "etc/group", GROUP);
        image_layers.file(1, "etc/motd", "hello");
        image_layers.file(0, "etc/.wh.motd", "");
        image_layers.file(0, "app/data/seed.txt", "seed");
        let table = MountTable::parse("1 0 8:1 / / rw shared:1 - ext4 /dev/sda1 rw\n");
        Fixture {
            image_layers,
            pod: TestPod::new(),
            state: tempfile::tempdir().unwrap(),
            host: host_facts(),
            seccomp: default_seccomp(),
            table,
        }
    }

    fn build(
        &self,
        config: &v1::ContainerConfig,
        sandbox: &v1::PodSandboxConfig,
        image: &ImageConfig,
    ) -> Result<BuiltSpec, SpecError> {
        container_spec(SpecInputs {
            container_id: "c0ffee",
            sandbox_id: "5a4db0c5",
            config,
            sandbox_config: sandbox,
            image,
            rootfs_layers: self.image_layers.paths(),
            pod: &self.pod.paths,
            target_pid_ns: None,
            cgroups_path: "/corral/pod-5a4db0c5/c0ffee",
            volumes_dir: &self.state.path().join("volumes"),
            host: &self.host,
            mount_table: Some(&self.table),
            base: base_spec(),
            default_seccomp: &self.seccomp,
        })
    }

    /// A pod that shares one PID namespace (crictl's default pod config).
    fn with_shared_pid(mut self) -> Fixture {
        self.pod.paths.pid = Some("/proc/4242/ns/pid".into());
        self
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn kv(key: &str, value: &str) -> v1::KeyValue {
    v1::KeyValue { key: key.into(), value: value.as_bytes().to_vec() }
}

fn busybox() -> ImageConfig {
    ImageConfig { cmd: strings(&["sh"]), env: strings(&[DEFAULT_PATH]), ..Default::default() }
}

fn container(sc: v1::LinuxContainerSecurityContext) -> v1::ContainerConfig {
    v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata { name: "app".into(), attempt: 0 }),
        image: Some(v1::ImageSpec { image: "busybox:1.36".into(), ..Default::default() }),
        command: strings(&["top"]),
        linux: Some(v1::LinuxContainerConfig { resources: None, security_context: Some(sc) }),
        ..Default::default()
    }
}

fn pod_config(privileged: bool, ns: Option<v1::NamespaceOption>) -> v1::PodSandboxConfig {
    v1::PodSandboxConfig {
        metadata: Some(v1::PodSandboxMetadata {
            name: "web-0".into(),
            uid: "0d5c1a8e".into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: "web-0".into(),
        linux: Some(v1::LinuxPodSandboxConfig {
            security_context: Some(v1::LinuxSandboxSecurityContext {
                privileged,
                namespace_options: ns,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pid_ns(mode: NamespaceMode) -> Option<v1::NamespaceOption> {
    Some(v1::NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: mode as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    })
}

fn mount_summary(mounts: &[Mount]) -> Vec<(String, String, String, Vec<String>)> {
    mounts
        .iter()
        .map(|m| {
            (
                m.destination().to_string_lossy().into_owned(),
                m.typ().clone().unwrap_or_default(),
                m.source().as_ref().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
                m.options().clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn caps_of(spec: &Spec) -> CapSets {
    CapSets::from_oci(spec.process().as_ref().unwrap().capabilities().as_ref())
}

fn namespaces_of(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<String>)> {
    spec.linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| (n.typ(), n.path().as_ref().map(|p| p.to_string_lossy().into_owned())))
        .collect()
}

/// A request as kubelet 1.34 sends it for a Deployment pod with
/// `securityContext: {runAsUser: 1000, runAsGroup: 3000, fsGroup: 2000, seccompProfile: RuntimeDefault}`,
/// a service account token, an emptyDir, CPU/memory requests and limits (Burstable).
struct KubeletRequest {
    config: v1::ContainerConfig,
    sandbox: v1::PodSandboxConfig,
    image: ImageConfig,
    cri_mounts: Vec<v1::Mount>,
    token: std::path::PathBuf,
    cache: std::path::PathBuf,
    etc_hosts: std::path::PathBuf,
    termination_log: std::path::PathBuf,
}

fn kubelet_request(fx: &Fixture) -> KubeletRequest {
    let pod_dir = fx.pod.path("kubelet/pods/0d5c1a8e");
    let token = mkdir(&pod_dir.join("volumes/kubernetes.io~projected/kube-api-access-x7k2p"));
    let cache = mkdir(&pod_dir.join("volumes/kubernetes.io~empty-dir/cache"));
    let etc_hosts = pod_dir.join("etc-hosts");
    fs::write(&etc_hosts, "127.0.0.1 localhost\n").unwrap();
    let termination_log = pod_dir.join("containers/app/1b2c3d4e");
    fs::create_dir_all(termination_log.parent().unwrap()).unwrap();
    fs::write(&termination_log, "").unwrap();
    let host = |p: &std::path::Path| p.to_string_lossy().into_owned();

    let sc = v1::LinuxContainerSecurityContext {
        capabilities: Some(v1::Capability::default()),
        namespace_options: pid_ns(NamespaceMode::Container),
        run_as_user: Some(v1::Int64Value { value: 1000 }),
        run_as_group: Some(v1::Int64Value { value: 3000 }),
        supplemental_groups: vec![2000],
        no_new_privs: false,
        masked_paths: strings(&[
            "/proc/asound",
            "/proc/acpi",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/proc/scsi",
            "/sys/firmware",
            "/sys/devices/virtual/powercap",
        ]),
        readonly_paths: strings(&DEFAULT_READONLY),
        seccomp: Some(v1::SecurityProfile {
            profile_type: ProfileType::RuntimeDefault as i32,
            localhost_ref: String::new(),
        }),
        ..Default::default()
    };
    let cri_mounts = vec![
        v1::Mount { container_path: "/cache".into(), host_path: host(&cache), ..Default::default() },
        v1::Mount {
            container_path: "/var/run/secrets/kubernetes.io/serviceaccount".into(),
            host_path: host(&token),
            readonly: true,
            ..Default::default()
        },
        v1::Mount { container_path: "/etc/hosts".into(), host_path: host(&etc_hosts), ..Default::default() },
        v1::Mount {
            container_path: "/dev/termination-log".into(),
            host_path: host(&termination_log),
            ..Default::default()
        },
    ];
    let config = v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata { name: "app".into(), attempt: 0 }),
        image: Some(v1::ImageSpec {
            image: "sha256:7b3ccabffc97de872a30dfd234fd972a66d247c8cfc69b0550f276481852627c".into(),
            user_specified_image: "registry.local/app:1.0".into(),
            ..Default::default()
        }),
        command: vec![],
        args: strings(&["--port=8080"]),
        working_dir: String::new(),
        envs: vec![
            kv("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            kv("KUBERNETES_SERVICE_PORT", "443"),
            kv("POD_NAME", "web-0"),
        ],
        mounts: cri_mounts.clone(),
        labels: HashMap::from([("io.kubernetes.container.name".into(), "app".into())]),
        annotations: HashMap::from([("io.kubernetes.container.restartCount".into(), "0".into())]),
        log_path: "app/0.log".into(),
        linux: Some(v1::LinuxContainerConfig {
            resources: Some(v1::LinuxContainerResources {
                cpu_period: 100_000,
                cpu_quota: 50_000,
                cpu_shares: 256,
                memory_limit_in_bytes: 128 << 20,
                oom_score_adj: 968,
                hugepage_limits: vec![v1::HugepageLimit { page_size: "2MB".into(), limit: 0 }],
                ..Default::default()
            }),
            security_context: Some(sc),
        }),
        ..Default::default()
    };
    let sandbox = pod_config(false, pid_ns(NamespaceMode::Container));
    let image = ImageConfig {
        entrypoint: strings(&["/app/server"]),
        cmd: strings(&["--port=80"]),
        env: strings(&[DEFAULT_PATH, "APP_MODE=prod"]),
        working_dir: "/app".into(),
        user: "app".into(), // overridden by run_as_user
        volumes: vec![],
        stop_signal: String::new(),
    };

    KubeletRequest { config, sandbox, image, cri_mounts, token, cache, etc_hosts, termination_log }
}

#[test]
fn kubelet_like_request() {
    let fx = Fixture::new();
    let KubeletRequest { config, sandbox, image, cri_mounts, token, cache, etc_hosts, termination_log } =
        kubelet_request(&fx);
    let built = fx.build(&config, &sandbox, &image).unwrap();
    let spec = &built.spec;
    let process = spec.process().as_ref().unwrap();

    assert_eq!(process.args().as_ref().unwrap(), &strings(&["/app/server", "--port=8080"]));
    assert_eq!(
        process.env().as_ref().unwrap(),
        &strings(&[
            DEFAULT_PATH,
            "HOSTNAME=web-0",
            "APP_MODE=prod",
            "KUBERNETES_SERVICE_HOST=10.96.0.1",
            "KUBERNETES_SERVICE_PORT=443",
            "POD_NAME=web-0",
        ])
    );
    assert_eq!(process.cwd(), std::path::Path::new("/app"));
    assert_eq!(process.terminal(), Some(false));
    let user = process.user();
    assert_eq!((user.uid(), user.gid()), (1000, 3000));
    // uid 1000 is `app`, a member of `staff` (50); 2000 is the fsGroup.
    assert_eq!(user.additional_gids().as_deref(), Some(&[50, 2000, 3000][..]));
    assert_eq!(built.user, v1::LinuxContainerUser { uid: 1000, gid: 3000, supplemental_groups: vec![50, 2000, 3000] });
    let caps = caps_of(spec);
    assert_eq!(caps.bounding, DEFAULT_CAPS.iter().copied().collect::<HashSet<_>>());
    assert_eq!(caps.effective, caps.bounding);
    assert!(caps.inheritable.is_empty() && caps.ambient.is_empty());
    assert_eq!(process.no_new_privileges(), Some(false));
    assert_eq!(process.apparmor_profile(), &None);
    assert_eq!(process.oom_score_adj(), Some(968));
    assert_eq!(process.rlimits(), &None, "the base spec's RLIMIT_NOFILE is dropped");
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(false));
    assert_eq!(spec.hostname(), &None);

    let p = |path: &std::path::Path| path.canonicalize().unwrap().to_string_lossy().into_owned();
    let pod = &fx.pod.paths;
    let bind = |dest: &str, source: String, access: &str| {
        (dest.to_string(), "bind".to_string(), source, strings(&["rbind", "rprivate", access]))
    };
    let system = |dest: &str, typ: &str, source: &str, options: &[&str]| {
        (dest.to_string(), typ.to_string(), source.to_string(), strings(options))
    };
    assert_eq!(
        mount_summary(spec.mounts().as_ref().unwrap()),
        [
            system("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
            system("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
            system(
                "/dev/pts",
                "devpts",
                "devpts",
                &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]
            ),
            system("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
            system("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", "ro"]),
            system("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", "ro"]),
            bind("/cache", p(&cache), "rw"),
            bind("/etc/hosts", p(&etc_hosts), "rw"),
            bind("/dev/termination-log", p(&termination_log), "rw"),
            bind("/etc/hostname", p(&pod.hostname), "rw"),
            bind("/etc/resolv.conf", p(&pod.resolv_conf), "rw"),
            bind("/dev/shm", p(&pod.dev_shm), "rw"),
            bind("/var/run/secrets/kubernetes.io/serviceaccount", p(&token), "ro"),
        ]
    );
    assert_eq!(built.mounts, cri_mounts, "ContainerStatus reports the CRI mounts as sent");

    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(
        namespaces_of(spec),
        [
            (LinuxNamespaceType::Pid, None),
            (LinuxNamespaceType::Network, pod.net.as_ref().map(|p| p.to_string_lossy().into_owned())),
            (LinuxNamespaceType::Ipc, pod.ipc.as_ref().map(|p| p.to_string_lossy().into_owned())),
            (LinuxNamespaceType::Uts, pod.uts.as_ref().map(|p| p.to_string_lossy().into_owned())),
            (LinuxNamespaceType::Mount, None),
        ]
    );
    assert_eq!(linux.rootfs_propagation(), &None);
    assert_eq!(linux.seccomp().as_ref(), Some(&fx.seccomp));
    assert_eq!(linux.masked_paths().as_ref().unwrap().len(), 11);
    assert!(linux.masked_paths().as_ref().unwrap().contains(&"/sys/devices/virtual/powercap".to_string()));
    assert_eq!(linux.readonly_paths().as_ref().unwrap(), &strings(&DEFAULT_READONLY));
    assert_eq!(linux.cgroups_path().as_deref(), Some(std::path::Path::new("/corral/pod-5a4db0c5/c0ffee")));
    assert_eq!(linux.uid_mappings(), &None);

    let resources = linux.resources().as_ref().unwrap();
    let cpu = resources.cpu().as_ref().unwrap();
    assert_eq!((cpu.period(), cpu.quota(), cpu.shares()), (Some(100_000), Some(50_000), Some(256)));
    let memory = resources.memory().unwrap();
    assert_eq!((memory.limit(), memory.swap()), (Some(128 << 20), Some(128 << 20)));
    assert_eq!(resources.hugepage_limits(), &None, "no hugetlb controller on this node");
    let rules = resources.devices().as_ref().unwrap();
    assert_eq!(rules.len(), 1);
    assert!(!rules[0].allow(), "the base spec's deny-all rule stays first");
    assert_eq!(linux.devices(), &None);

    let annotations = spec.annotations().as_ref().unwrap();
    for (key, value) in [
        ("io.kubernetes.cri.container-type", "container"),
        ("io.kubernetes.cri.sandbox-id", "5a4db0c5"),
        ("io.kubernetes.cri.sandbox-name", "web-0"),
        ("io.kubernetes.cri.sandbox-namespace", "default"),
        ("io.kubernetes.cri.sandbox-uid", "0d5c1a8e"),
        ("io.kubernetes.cri.container-name", "app"),
        ("io.kubernetes.cri.image-name", "registry.local/app:1.0"),
    ] {
        assert_eq!(annotations.get(key).map(String::as_str), Some(value), "{key}");
    }
    assert_eq!(built.stop_signal, v1::Signal::Sigterm);

    // The spec serializes as a runc-style config.json.
    let json = serde_json::to_value(spec).unwrap();
    assert_eq!(json["process"]["noNewPrivileges"], false);
    assert_eq!(json["process"]["user"]["additionalGids"], serde_json::json!([50, 2000, 3000]));
    assert_eq!(json["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert_eq!(json["linux"]["cgroupsPath"], "/corral/pod-5a4db0c5/c0ffee");
}

/// What `crictl create` sends: an image, a command, nothing else.
#[test]
fn minimal_crictl_request() {
    let fx = Fixture::new().with_shared_pid();
    let config = v1::ContainerConfig {
        metadata: Some(v1::ContainerMetadata { name: "box".into(), attempt: 0 }),
        image: Some(v1::ImageSpec { image: "busybox".into(), ..Default::default() }),
        command: strings(&["top"]),
        ..Default::default()
    };
    let sandbox = v1::PodSandboxConfig { hostname: String::new(), ..Default::default() };
    let built = fx.build(&config, &sandbox, &busybox()).unwrap();
    let spec = &built.spec;
    let process = spec.process().as_ref().unwrap();
    assert_eq!(process.args().as_ref().unwrap(), &strings(&["top"]));
    assert_eq!(process.env().as_ref().unwrap(), &strings(&[DEFAULT_PATH, "HOSTNAME=node-1"]), "the node's name");
    assert_eq!((process.user().uid(), process.user().gid()), (0, 0));
    assert_eq!(process.user().additional_gids().as_deref(), Some(&[0, 10][..]), "root is in wheel");
    assert_eq!(process.oom_score_adj(), None);
    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(linux.seccomp(), &None, "no profile means unconfined (critest)");
    assert_eq!(linux.masked_paths().as_ref().unwrap(), &strings(&DEFAULT_MASKED), "the runtime defaults stay");
    assert_eq!(linux.readonly_paths().as_ref().unwrap(), &strings(&DEFAULT_READONLY));
    assert_eq!(namespaces_of(spec)[0], (LinuxNamespaceType::Pid, Some("/proc/4242/ns/pid".to_string())));
    assert_eq!(caps_of(spec).bounding.len(), 14);
    assert!(built.mounts.is_empty());
}

#[test]
fn image_config_fills_the_gaps() {
    let fx = Fixture::new();
    let image = ImageConfig {
        entrypoint: strings(&["/docker-entrypoint.sh"]),
        cmd: strings(&["nginx", "-g", "daemon off;"]),
        env: strings(&["PATH=/usr/local/bin:/usr/bin:/bin", "NGINX_VERSION=1.14"]),
        working_dir: "/srv".into(),
        user: "nobody".into(),
        volumes: strings(&["/app/data", "/var/cache/nginx"]),
        stop_signal: "SIGQUIT".into(),
    };
    let mut config = container(v1::LinuxContainerSecurityContext {
        namespace_options: pid_ns(NamespaceMode::Container),
        ..Default::default()
    });
    config.command.clear();
    config.tty = true;
    let built = fx.build(&config, &pod_config(false, None), &image).unwrap();
    let process = built.spec.process().as_ref().unwrap();
    assert_eq!(process.args().as_ref().unwrap(), &strings(&["/docker-entrypoint.sh", "nginx", "-g", "daemon off;"]));
    assert_eq!(
        process.env().as_ref().unwrap(),
        &strings(&["PATH=/usr/local/bin:/usr/bin:/bin", "TERM=xterm", "HOSTNAME=web-0", "NGINX_VERSION=1.14"])
    );
    assert_eq!(process.terminal(), Some(true));
    assert_eq!(process.cwd(), std::path::Path::new("/srv"));
    assert_eq!((process.user().uid(), process.user().gid()), (65534, 65534));
    assert_eq!(built.stop_signal, v1::Signal::Sigquit);
    assert_eq!(signal_number(built.stop_signal), libc::SIGQUIT);

    // Both volumes are mounted from fresh directories; /app/data is seeded from the image.
    let volumes = fx.state.path().join("volumes");
    let mounts = mount_summary(built.spec.mounts().as_ref().unwrap());
    let data = mounts.iter().find(|m| m.0 == "/app/data").unwrap();
    assert_eq!((data.1.as_str(), data.2.clone()), ("bind", volumes.join("0_app_data").to_string_lossy().into_owned()));
    assert_eq!(data.3, strings(&["rbind", "rprivate", "rw"]));
    assert_eq!(fs::read_to_string(volumes.join("0_app_data/seed.txt")).unwrap(), "seed");
    assert!(volumes.join("1_var_cache_nginx").is_dir());
    assert!(built.mounts.is_empty(), "image volumes are not CRI mounts");

    // The CRI stop signal wins over the image's.
    config.stop_signal = v1::Signal::Sigusr1 as i32;
    assert_eq!(fx.build(&config, &pod_config(false, None), &image).unwrap().stop_signal, v1::Signal::Sigusr1);
}

#[test]
fn privileged_container() {
    let fx = Fixture::new();
    let sc = v1::LinuxContainerSecurityContext {
        privileged: true,
        namespace_options: pid_ns(NamespaceMode::Container),
        capabilities: Some(v1::Capability { drop_capabilities: strings(&["ALL"]), ..Default::default() }),
        seccomp: Some(v1::SecurityProfile::default()),
        masked_paths: strings(&["/proc/kcore"]),
        ..Default::default()
    };
    let mut config = container(sc);
    config.devices = vec![v1::Device {
        container_path: "/dev/fuse0".into(),
        host_path: "/dev/null".into(),
        permissions: "rwm".into(),
    }];
    let host = HostFacts { cgroup_v2: true, ..fx.host.clone() };
    let fx = Fixture { host, ..fx };
    let built = fx.build(&config, &pod_config(true, None), &busybox()).unwrap();
    let spec = &built.spec;

    let caps = caps_of(spec);
    assert_eq!(caps.bounding, fx.host.capabilities.iter().copied().collect::<HashSet<_>>(), "all the daemon has");
    assert!(!caps.bounding.contains(&Capability::SysResource));
    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(linux.seccomp(), &None);
    assert_eq!((linux.masked_paths(), linux.readonly_paths()), (&None, &None));
    let mounts = mount_summary(spec.mounts().as_ref().unwrap());
    for dest in ["/sys", "/sys/fs/cgroup"] {
        let options = &mounts.iter().find(|m| m.0 == dest).unwrap().3;
        assert!(options.contains(&"rw".to_string()), "{dest}: {options:?}");
    }
    let devices = linux.devices().as_ref().unwrap();
    assert!(devices.iter().any(|d| d.path() == std::path::Path::new("/dev/fuse0")), "the CRI device");
    assert!(devices.iter().any(|d| d.path() == std::path::Path::new("/dev/null")), "host devices");
    let rules = linux.resources().as_ref().unwrap().devices().as_ref().unwrap();
    assert_eq!(rules.len(), 1);
    assert!(rules[0].allow() && rules[0].typ() == Some(LinuxDeviceType::A));
    assert!(
        !namespaces_of(spec).iter().any(|(t, _)| *t == LinuxNamespaceType::Cgroup),
        "no cgroup namespace for privileged containers, even on cgroup v2"
    );

    let err = fx.build(&config, &pod_config(false, None), &busybox()).unwrap_err();
    assert!(matches!(err, SpecError::PrivilegedNotAllowed));
    assert_eq!(err.to_string(), "privileged container not allowed: the pod sandbox is not privileged");
}

#[test]
fn unprivileged_details() {
    let fx = Fixture { host: HostFacts { cgroup_v2: true, ..host_facts() }, ..Fixture::new() };
    let sc = v1::LinuxContainerSecurityContext {
        namespace_options: pid_ns(NamespaceMode::Container),
        readonly_rootfs: true,
        no_new_privs: true,
        capabilities: Some(v1::Capability {
            add_capabilities: strings(&["NET_ADMIN"]),
            drop_capabilities: strings(&["CAP_NET_RAW"]),
            ..Default::default()
        }),
        readonly_paths: strings(&["/tmp"]),
        ..Default::default()
    };
    let mut config = container(sc);
    config.devices = vec![v1::Device {
        container_path: "/dev/xnull".into(),
        host_path: "/dev/null".into(),
        permissions: "rw".into(),
    }];
    let built = fx.build(&config, &pod_config(false, None), &busybox()).unwrap();
    let spec = &built.spec;
    let process = spec.process().as_ref().unwrap();
    assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    assert_eq!(process.no_new_privileges(), Some(true));
    let caps = caps_of(spec);
    assert!(caps.bounding.contains(&Capability::NetAdmin) && !caps.bounding.contains(&Capability::NetRaw));
    let mounts = mount_summary(spec.mounts().as_ref().unwrap());
    for (dest, access) in
        [("/etc/hostname", "ro"), ("/etc/hosts", "ro"), ("/etc/resolv.conf", "ro"), ("/dev/shm", "rw")]
    {
        assert_eq!(mounts.iter().find(|m| m.0 == dest).unwrap().3[2], access, "{dest}");
    }
    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(linux.readonly_paths().as_ref().unwrap(), &strings(&["/tmp"]), "the CRI list replaces the defaults");
    assert_eq!(linux.masked_paths().as_ref().unwrap(), &strings(&DEFAULT_MASKED));
    assert_eq!(namespaces_of(spec).last().unwrap().0, LinuxNamespaceType::Cgroup, "cgroup v2 host");
    let rules = linux.resources().as_ref().unwrap().devices().as_ref().unwrap();
    assert_eq!(rules.len(), 2);
    assert!(!rules[0].allow());
    assert_eq!((rules[1].major(), rules[1].minor(), rules[1].access().as_deref()), (Some(1), Some(3), Some("rw")));
    assert_eq!(linux.devices().as_ref().unwrap()[0].path(), std::path::Path::new("/dev/xnull"));
}

#[test]
fn host_network_pod_and_propagation() {
    let mut fx = Fixture::new();
    fx.pod.paths.net = None;
    fx.pod.paths.uts = None;
    let shared = mkdir(&fx.pod.path("shared"));
    let mut config = container(v1::LinuxContainerSecurityContext {
        namespace_options: pid_ns(NamespaceMode::Node),
        ..Default::default()
    });
    config.mounts = vec![v1::Mount {
        container_path: "/mnt/shared".into(),
        host_path: shared.to_string_lossy().into_owned(),
        propagation: MountPropagation::PropagationBidirectional as i32,
        ..Default::default()
    }];
    let built = fx.build(&config, &pod_config(false, None), &busybox()).unwrap();
    assert_eq!(
        namespaces_of(&built.spec),
        [
            (LinuxNamespaceType::Ipc, fx.pod.paths.ipc.as_ref().map(|p| p.to_string_lossy().into_owned())),
            (LinuxNamespaceType::Mount, None),
        ],
        "host PID, host network and UTS: not listed"
    );
    let linux = built.spec.linux().as_ref().unwrap();
    assert_eq!(linux.rootfs_propagation().as_deref(), Some("rshared"));
    let mounts = mount_summary(built.spec.mounts().as_ref().unwrap());
    assert_eq!(mounts.iter().find(|m| m.0 == "/mnt/shared").unwrap().3, strings(&["rbind", "rshared", "rw"]));
}

#[test]
fn user_namespace_pod() {
    let fx = Fixture::new();
    let ns = v1::NamespaceOption {
        pid: NamespaceMode::Container as i32,
        userns_options: Some(v1::UserNamespace {
            mode: NamespaceMode::Pod as i32,
            uids: vec![v1::IdMapping { host_id: 65536, container_id: 0, length: 65536 }],
            gids: vec![v1::IdMapping { host_id: 65536, container_id: 0, length: 65536 }],
        }),
        ..Default::default()
    };
    let config =
        container(v1::LinuxContainerSecurityContext { namespace_options: Some(ns.clone()), ..Default::default() });
    let built = fx.build(&config, &pod_config(false, Some(ns)), &busybox()).unwrap();
    let linux = built.spec.linux().as_ref().unwrap();
    assert_eq!(namespaces_of(&built.spec).last().unwrap(), &(LinuxNamespaceType::User, None));
    let uid = linux.uid_mappings().as_ref().unwrap()[0];
    assert_eq!((uid.container_id(), uid.host_id(), uid.size()), (0, 65536, 65536));
}

/// Every rejection is a clear InvalidArgument and leaves nothing on disk.
#[test]
fn bad_requests_leave_nothing_behind() {
    let fx = Fixture::new();
    let image = ImageConfig { volumes: strings(&["/app/data"]), ..busybox() };
    let empty_image = ImageConfig::default();
    let ns = || pid_ns(NamespaceMode::Container);
    let sc = |f: fn(&mut v1::LinuxContainerSecurityContext)| {
        let mut sc = v1::LinuxContainerSecurityContext { namespace_options: ns(), ..Default::default() };
        f(&mut sc);
        container(sc)
    };
    let missing = fx.pod.path("nope").to_string_lossy().into_owned();
    let mut missing_mount = sc(|_| {});
    missing_mount.mounts =
        vec![v1::Mount { container_path: "/data".into(), host_path: missing.clone(), ..Default::default() }];
    let mut no_command = sc(|_| {});
    no_command.command.clear();
    let mut bad_device = sc(|_| {});
    bad_device.devices =
        vec![v1::Device { container_path: "/dev/x".into(), host_path: "/dev/nope".into(), permissions: "rw".into() }];
    let mut bad_signal = sc(|_| {});
    bad_signal.stop_signal = 1000;

    let cases: Vec<(&str, v1::ContainerConfig, &ImageConfig, String)> = vec![
        (
            "missing host path",
            missing_mount,
            &image,
            format!("mount \"/data\": host path \"{missing}\" does not exist"),
        ),
        ("no command", no_command, &empty_image, "no command specified".into()),
        (
            "bad capability",
            sc(|s| {
                s.capabilities =
                    Some(v1::Capability { add_capabilities: vec!["SYS_ADMINN".into()], ..Default::default() })
            }),
            &image,
            "unknown capability \"SYS_ADMINN\"".into(),
        ),
        ("unknown user", sc(|s| s.run_as_username = "ghost".into()), &image, "user \"ghost\" not found".into()),
        (
            "group without user",
            sc(|s| s.run_as_group = Some(v1::Int64Value { value: 5 })),
            &image,
            "run_as_group 5 is set without run_as_user".into(),
        ),
        (
            "missing seccomp profile",
            sc(|s| {
                s.seccomp = Some(v1::SecurityProfile {
                    profile_type: ProfileType::Localhost as i32,
                    localhost_ref: "/var/lib/kubelet/seccomp/none.json".into(),
                })
            }),
            &image,
            "seccomp profile \"/var/lib/kubelet/seccomp/none.json\": cannot read it".into(),
        ),
        (
            "apparmor",
            sc(|s| s.apparmor = Some(v1::SecurityProfile::default())),
            &image,
            "corral does not support AppArmor".into(),
        ),
        ("bad device", bad_device, &image, "device \"/dev/nope\": does not exist".into()),
        ("bad stop signal", bad_signal, &image, "unknown CRI signal value 1000".into()),
    ];
    for (name, config, image, want) in cases {
        let err = fx.build(&config, &pod_config(false, None), image).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{name}");
        assert!(err.to_string().contains(&want), "{name}: {err}");
        assert!(!fx.state.path().join("volumes").exists(), "{name}: volume directory created");
    }
}

/// Not a test: how long a spec takes to build. `cargo test -p corral bench_ -- --ignored --nocapture`
#[test]
#[ignore]
fn bench_container_spec() {
    let fx = Fixture::new();
    let request = kubelet_request(&fx);
    let mut privileged = container(v1::LinuxContainerSecurityContext {
        privileged: true,
        namespace_options: pid_ns(NamespaceMode::Container),
        ..Default::default()
    });
    privileged.command = strings(&["top"]);
    let privileged_pod = pod_config(true, None);
    for (name, config, sandbox) in
        [("kubelet-like", &request.config, &request.sandbox), ("privileged (walks /dev)", &privileged, &privileged_pod)]
    {
        let mut times: Vec<std::time::Duration> = (0..200)
            .map(|_| {
                let start = std::time::Instant::now();
                fx.build(config, sandbox, &request.image).unwrap();
                start.elapsed()
            })
            .collect();
        times.sort();
        println!("{name}: median {:?}, p90 {:?}", times[100], times[180]);
    }
}
