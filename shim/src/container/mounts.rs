//! The container's mount list: the base spec's system mounts, the pod's files, the CRI
//! mounts and the image's volumes, in an order a runc-like runtime can apply one by one.
//!
//! Rules (containerd's `WithMounts` and `linuxContainerMounts`):
//! - The pod provides `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf` (read-only when the
//!   rootfs is read-only) and `/dev/shm` (the pod's shared tmpfs, the host's with host IPC).
//!   A CRI mount at the same path replaces the pod's (kubelet mounts its own `/etc/hosts`).
//! - A base mount whose destination a bind mount takes over is dropped (so `/dev/shm` is the
//!   pod's, not a private tmpfs); a bind mount of `/dev` drops every base mount under `/dev`.
//! - Bind mounts come after the base mounts, sorted by depth (stable), so `/data` is mounted
//!   before `/data/cache` and never hides it.
//! - Host paths must exist (containerd would create a missing one; corral refuses, because a
//!   typo would otherwise create stray directories on the node) and symlinks in them are
//!   resolved, so the runtime mounts the real path.
//! - Options: `rbind`, then the propagation (`rprivate`, `rslave` for HOST_TO_CONTAINER,
//!   `rshared` for BIDIRECTIONAL), then `ro`, `rw` or `rro` (recursive read-only, which needs
//!   `readonly` and private propagation). A non-private propagation needs the host path to be
//!   on a shared (or, for `rslave`, slave) mount, and makes the rootfs propagation at least as
//!   open (`linux.rootfsPropagation`), or mount events could not reach the bind mount.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};

use corral_cri::v1;
use corral_cri::v1::MountPropagation;
use oci_spec::runtime::{LinuxIdMapping, Mount, MountBuilder};

use super::SpecError;
use super::mountinfo::{MountTable, Propagation};
use super::namespaces::id_mapping;
use super::spec::PodPaths;
use super::volumes::Volume;

/// What [`plan`] needs.
pub struct MountRequest<'a> {
    /// The base spec's mounts (`/proc`, `/dev`, `/sys`, ...).
    pub base: &'a [Mount],
    /// The CRI mounts.
    pub cri: &'a [v1::Mount],
    /// The pod whose files are mounted in.
    pub pod: &'a PodPaths,
    /// The image's volumes (see `volumes`); their directories are created after planning.
    pub volumes: &'a [Volume],
    /// The container's rootfs is read-only: so are the pod's `/etc` files.
    pub readonly_rootfs: bool,
    /// A privileged container gets `/sys` and `/sys/fs/cgroup` read-write.
    pub privileged: bool,
    /// The host's mount table, for the propagation check; read on demand when `None`.
    pub mount_table: Option<&'a MountTable>,
}

/// The mounts of the spec and the rootfs propagation they need.
#[derive(Debug)]
pub struct MountPlan {
    pub mounts: Vec<Mount>,
    /// `Some("rslave" | "rshared")` when a bind mount propagates.
    pub rootfs_propagation: Option<String>,
}

/// Builds the mount list (see the module docs).
pub fn plan(request: MountRequest<'_>) -> Result<MountPlan, SpecError> {
    // CRI mounts first; the pod's files and the volumes only where no CRI mount is.
    let mut binds: Vec<(v1::Mount, Origin)> = request.cri.iter().map(|m| (m.clone(), Origin::Request)).collect();
    let extras = pod_mounts(request.pod, request.readonly_rootfs)
        .into_iter()
        .map(|m| (m, Origin::Pod))
        .chain(request.volumes.iter().map(|v| (v.to_mount(), Origin::ImageVolume)));
    for (extra, origin) in extras {
        if !in_cri_mounts(&extra.container_path, request.cri) {
            binds.push((extra, origin));
        }
    }
    for (bind, _) in &binds {
        if !bind.container_path.starts_with('/') {
            return Err(bad(&bind.container_path, "the container path must be absolute".into()));
        }
    }
    binds.sort_by_key(|(m, _)| clean_path(&m.container_path).matches('/').count());

    let taken: HashSet<String> = binds.iter().map(|(m, _)| clean_path(&m.container_path)).collect();
    let dev_taken = taken.contains("/dev");
    let mut mounts: Vec<Mount> = request
        .base
        .iter()
        .filter(|m| {
            let dest = clean_path(&m.destination().to_string_lossy());
            let replaced = taken.contains(&dest) || (dev_taken && dest.starts_with("/dev/"));
            !replaced
        })
        .cloned()
        .map(|m| if request.privileged { writable_if_sys(m) } else { m })
        .collect();

    let mut table = request.mount_table.cloned();
    let mut rootfs_propagation: Option<String> = None;
    for (bind, origin) in &binds {
        let (mount, propagation) = bind_mount(bind, *origin, &mut table)?;
        match propagation {
            Propagation::Shared => rootfs_propagation = Some("rshared".into()),
            Propagation::Slave if rootfs_propagation.is_none() => rootfs_propagation = Some("rslave".into()),
            _ => {}
        }
        mounts.push(mount);
    }
    Ok(MountPlan { mounts, rootfs_propagation })
}

/// Where a bind mount comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A CRI mount of the request.
    Request,
    /// One of the pod's files.
    Pod,
    /// An image volume, whose directory corral creates once the spec is complete.
    ImageVolume,
}

/// The pod's files as CRI mounts.
fn pod_mounts(pod: &PodPaths, readonly_rootfs: bool) -> Vec<v1::Mount> {
    let mount = |container_path: &str, host: &Path, readonly: bool| v1::Mount {
        container_path: container_path.to_string(),
        host_path: host.to_string_lossy().into_owned(),
        readonly,
        ..Default::default()
    };
    vec![
        mount("/etc/hostname", &pod.hostname, readonly_rootfs),
        mount("/etc/hosts", &pod.hosts, readonly_rootfs),
        mount("/etc/resolv.conf", &pod.resolv_conf, readonly_rootfs),
        mount("/dev/shm", &pod.dev_shm, false),
    ]
}

/// Whether a CRI mount targets `path`.
pub fn in_cri_mounts(path: &str, cri: &[v1::Mount]) -> bool {
    let path = clean_path(path);
    cri.iter().any(|m| clean_path(&m.container_path) == path)
}

/// One bind mount, and how it propagates.
fn bind_mount(
    m: &v1::Mount,
    origin: Origin,
    table: &mut Option<MountTable>,
) -> Result<(Mount, Propagation), SpecError> {
    let dest = &m.container_path;
    if m.image.as_ref().is_some_and(|i| !i.image.is_empty()) {
        return Err(SpecError::Unsupported(format!("mount {dest:?}: image volume mounts are not supported by corral")));
    }
    if m.host_path.is_empty() {
        return Err(bad(dest, "no host path".into()));
    }
    if !m.host_path.starts_with('/') {
        return Err(bad(dest, format!("host path {:?} is not absolute", m.host_path)));
    }
    let source = if origin == Origin::ImageVolume {
        PathBuf::from(&m.host_path) // corral's own directory, created after planning
    } else {
        std::fs::canonicalize(&m.host_path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                SpecError::MissingHostPath { container_path: dest.clone(), host_path: m.host_path.clone() }
            }
            _ => SpecError::io("resolving mount source", &m.host_path, e),
        })?
    };

    let mode = MountPropagation::try_from(m.propagation)
        .map_err(|_| bad(dest, format!("unknown mount propagation {}", m.propagation)))?;
    let (option, propagation) = match mode {
        MountPropagation::PropagationPrivate => ("rprivate", Propagation::Private),
        MountPropagation::PropagationHostToContainer => {
            require_propagation(dest, &source, table, &[Propagation::Shared, Propagation::Slave])?;
            ("rslave", Propagation::Slave)
        }
        MountPropagation::PropagationBidirectional => {
            require_propagation(dest, &source, table, &[Propagation::Shared])?;
            ("rshared", Propagation::Shared)
        }
    };
    let access = if m.recursive_read_only {
        if !m.readonly {
            return Err(bad(dest, "recursive read-only needs readonly".into()));
        }
        if mode != MountPropagation::PropagationPrivate {
            return Err(bad(dest, "recursive read-only needs private propagation".into()));
        }
        "rro"
    } else if m.readonly {
        "ro"
    } else {
        "rw"
    };

    let mut builder = MountBuilder::default()
        .destination(PathBuf::from(clean_path(dest)))
        .typ("bind")
        .source(source)
        .options(vec!["rbind".to_string(), option.to_string(), access.to_string()]);
    if !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty() {
        let map = |lines: &[v1::IdMapping]| -> Result<Vec<LinuxIdMapping>, SpecError> {
            lines.iter().map(|l| id_mapping(l).map_err(|e| bad(dest, e.to_string()))).collect()
        };
        builder = builder.uid_mappings(map(&m.uid_mappings)?).gid_mappings(map(&m.gid_mappings)?);
    }
    let mount = builder.build().map_err(|e| bad(dest, e.to_string()))?;
    Ok((mount, propagation))
}

/// Checks that the mount holding `source` propagates as one of `allowed`.
fn require_propagation(
    dest: &str,
    source: &Path,
    table: &mut Option<MountTable>,
    allowed: &[Propagation],
) -> Result<(), SpecError> {
    // Read the host's table at most once per spec, and only when a mount needs it.
    let loaded = match table.take() {
        Some(loaded) => loaded,
        None => MountTable::read_self().map_err(|e| SpecError::io("reading", "/proc/self/mountinfo", e))?,
    };
    let found = loaded.propagation_of(source);
    *table = Some(loaded);
    let Some((mount_point, propagation)) = found else {
        return Err(bad(dest, format!("host path {} is on no mount of the host", source.display())));
    };
    if allowed.contains(&propagation) {
        return Ok(());
    }
    let needed = if allowed.contains(&Propagation::Slave) { "a shared or slave" } else { "a shared" };
    Err(bad(
        dest,
        format!(
            "host path {} is on mount {}, which is private; this propagation needs {needed} mount \
             (e.g. `mount --make-rshared {}`)",
            source.display(),
            mount_point.display(),
            mount_point.display()
        ),
    ))
}

/// Turns `ro` into `rw` on sysfs and cgroup mounts (privileged containers).
fn writable_if_sys(mut m: Mount) -> Mount {
    if matches!(m.typ().as_deref(), Some("sysfs" | "cgroup" | "cgroup2"))
        && let Some(options) = m.options_mut()
    {
        options.iter_mut().filter(|o| *o == "ro").for_each(|o| *o = "rw".to_string());
    }
    m
}

fn bad(container_path: &str, reason: String) -> SpecError {
    SpecError::BadMount { container_path: container_path.to_string(), reason }
}

/// Lexical path cleaning as Go's `filepath.Clean` does for absolute paths: no `//`, `.`,
/// `..` or trailing `/`. Relative paths are returned cleaned but still relative.
pub fn clean_path(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !absolute {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::testutil::{TestPod, base_spec, mkdir};

    fn cri(container: &str, host: &Path) -> v1::Mount {
        v1::Mount { container_path: container.into(), host_path: host.to_string_lossy().into(), ..Default::default() }
    }

    fn request<'a>(base: &'a [Mount], cri: &'a [v1::Mount], pod: &'a PodPaths) -> MountRequest<'a> {
        MountRequest { base, cri, pod, volumes: &[], readonly_rootfs: false, privileged: false, mount_table: None }
    }

    fn summary(plan: &MountPlan) -> Vec<(String, String, Vec<String>)> {
        plan.mounts
            .iter()
            .map(|m| {
                (
                    m.destination().to_string_lossy().into_owned(),
                    m.source().as_ref().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default(),
                    m.options().clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    fn opts(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn clean_path_table() {
        for (input, want) in [
            ("/", "/"),
            ("/a/b/", "/a/b"),
            ("//a//./b", "/a/b"),
            ("/a/../../b", "/b"),
            ("a/b/..", "a"),
            ("", "."),
            ("../a", "../a"),
        ] {
            assert_eq!(clean_path(input), want, "{input}");
        }
    }

    #[test]
    fn pod_files_base_mounts_and_order() {
        let pod = TestPod::new();
        let data = mkdir(&pod.path("host/data"));
        let cache = mkdir(&pod.path("host/cache"));
        let base = base_spec().mounts().clone().unwrap();
        // Deliberately out of order: the child first.
        let cri_mounts = [cri("/data/cache", &cache), cri("/data/", &data)];
        let plan = plan(request(&base, &cri_mounts, &pod.paths)).unwrap();
        let got = summary(&plan);
        let dests: Vec<&str> = got.iter().map(|(d, _, _)| d.as_str()).collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/mqueue",
                "/sys",
                "/sys/fs/cgroup", // base, minus /dev/shm
                "/data",          // depth 1
                "/data/cache",
                "/etc/hostname",
                "/etc/hosts",
                "/etc/resolv.conf",
                "/dev/shm", // depth 2: CRI first
            ]
        );
        let find = |d: &str| got.iter().find(|(dest, _, _)| dest == d).unwrap().clone();
        assert_eq!(
            find("/dev/shm"),
            ("/dev/shm".into(), pod.paths.dev_shm.to_string_lossy().into(), opts(&["rbind", "rprivate", "rw"]))
        );
        assert_eq!(find("/etc/hosts").2, opts(&["rbind", "rprivate", "rw"]));
        assert_eq!(find("/sys").2, opts(&["nosuid", "noexec", "nodev", "ro"]));
        assert!(plan.mounts.iter().filter(|m| m.typ().as_deref() == Some("bind")).count() == 6);
        assert_eq!(plan.rootfs_propagation, None);
    }

    #[test]
    fn cri_mount_replaces_pod_file_and_readonly_rootfs() {
        let pod = TestPod::new();
        let kubelet_hosts = pod.path("kubelet-etc-hosts");
        std::fs::write(&kubelet_hosts, "").unwrap();
        let cri_mounts = [cri("/etc/hosts", &kubelet_hosts)];
        let mut req = request(&[], &cri_mounts, &pod.paths);
        req.readonly_rootfs = true;
        let got = summary(&plan(req).unwrap());
        let hosts: Vec<_> = got.iter().filter(|(d, _, _)| d == "/etc/hosts").collect();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].1, kubelet_hosts.to_string_lossy());
        assert_eq!(hosts[0].2, opts(&["rbind", "rprivate", "rw"]), "a CRI mount keeps its own readonly flag");
        let hostname = got.iter().find(|(d, _, _)| d == "/etc/hostname").unwrap();
        assert_eq!(hostname.2, opts(&["rbind", "rprivate", "ro"]));
        let shm = got.iter().find(|(d, _, _)| d == "/dev/shm").unwrap();
        assert_eq!(shm.2, opts(&["rbind", "rprivate", "rw"]), "/dev/shm stays writable");
    }

    #[test]
    fn a_dev_bind_mount_drops_base_mounts_under_dev() {
        let pod = TestPod::new();
        let dev = mkdir(&pod.path("fake-dev"));
        let base = base_spec().mounts().clone().unwrap();
        let cri_mounts = [cri("/dev", &dev)];
        let got = summary(&plan(request(&base, &cri_mounts, &pod.paths)).unwrap());
        let dests: Vec<&str> = got.iter().map(|(d, _, _)| d.as_str()).collect();
        assert_eq!(
            dests,
            ["/proc", "/sys", "/sys/fs/cgroup", "/dev", "/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/dev/shm"]
        );
    }

    #[test]
    fn symlinked_host_path_is_resolved() {
        let pod = TestPod::new();
        let real = mkdir(&pod.path("real/dir"));
        let link = pod.path("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let cri_mounts = [v1::Mount { readonly: true, ..cri("/mnt", &link) }];
        let got = summary(&plan(request(&[], &cri_mounts, &pod.paths)).unwrap());
        let mnt = got.iter().find(|(d, _, _)| d == "/mnt").unwrap();
        assert_eq!(mnt.1, real.canonicalize().unwrap().to_string_lossy());
        assert_eq!(mnt.2, opts(&["rbind", "rprivate", "ro"]));
    }

    #[test]
    fn propagation_table() {
        let pod = TestPod::new();
        let shared = mkdir(&pod.path("shared/dir"));
        let slave = mkdir(&pod.path("slave/dir"));
        let private = mkdir(&pod.path("private/dir"));
        let mp = |p: &Path| p.parent().unwrap().canonicalize().unwrap().to_string_lossy().into_owned();
        let table = MountTable::parse(&format!(
            "1 0 8:1 / / rw - ext4 /dev/sda1 rw\n\
             2 1 8:1 / {} rw shared:4 - ext4 /dev/sda1 rw\n\
             3 1 8:1 / {} rw master:4 - ext4 /dev/sda1 rw\n\
             4 1 8:1 / {} rw - ext4 /dev/sda1 rw\n",
            mp(&shared),
            mp(&slave),
            mp(&private)
        ));
        use MountPropagation as P;
        // Ok((propagation option, rootfs propagation)) or Err(message part).
        type Want<'a> = Result<(&'a str, Option<&'a str>), &'a str>;
        let cases: &[(&str, &Path, P, Want)] = &[
            ("private on private", &private, P::PropagationPrivate, Ok(("rprivate", None))),
            ("rslave on shared", &shared, P::PropagationHostToContainer, Ok(("rslave", Some("rslave")))),
            ("rslave on slave", &slave, P::PropagationHostToContainer, Ok(("rslave", Some("rslave")))),
            ("rshared on shared", &shared, P::PropagationBidirectional, Ok(("rshared", Some("rshared")))),
            (
                "rslave on private",
                &private,
                P::PropagationHostToContainer,
                Err("which is private; this propagation needs a shared or slave mount"),
            ),
            ("rshared on slave", &slave, P::PropagationBidirectional, Err("needs a shared mount")),
        ];
        for (name, host, mode, want) in cases {
            let cri_mounts = [v1::Mount { propagation: *mode as i32, ..cri("/mnt", host) }];
            let mut req = request(&[], &cri_mounts, &pod.paths);
            req.mount_table = Some(&table);
            match (plan(req), want) {
                (Ok(plan), Ok((option, rootfs))) => {
                    let mnt = summary(&plan).into_iter().find(|(d, _, _)| d == "/mnt").unwrap();
                    assert_eq!(mnt.2, opts(&["rbind", option, "rw"]), "{name}");
                    assert_eq!(plan.rootfs_propagation.as_deref(), *rootfs, "{name}");
                }
                (Err(err), Err(msg)) => {
                    assert!(err.is_invalid_argument(), "{name}");
                    assert!(err.to_string().contains(msg), "{name}: {err}");
                }
                (got, _) => panic!("{name}: unexpected {got:?}"),
            }
        }
        // rshared anywhere wins over rslave for the rootfs.
        let cri_mounts = [
            v1::Mount { propagation: P::PropagationBidirectional as i32, ..cri("/a", &shared) },
            v1::Mount { propagation: P::PropagationHostToContainer as i32, ..cri("/b", &slave) },
        ];
        let mut req = request(&[], &cri_mounts, &pod.paths);
        req.mount_table = Some(&table);
        assert_eq!(plan(req).unwrap().rootfs_propagation.as_deref(), Some("rshared"));
    }

    #[test]
    fn recursive_read_only() {
        let pod = TestPod::new();
        let dir = mkdir(&pod.path("rro"));
        let rro = v1::Mount { readonly: true, recursive_read_only: true, ..cri("/mnt", &dir) };
        let got = summary(&plan(request(&[], std::slice::from_ref(&rro), &pod.paths)).unwrap());
        assert_eq!(got.iter().find(|(d, _, _)| d == "/mnt").unwrap().2, opts(&["rbind", "rprivate", "rro"]));
        // critest's three rejections.
        for (m, want) in [
            (v1::Mount { readonly: false, ..rro.clone() }, "recursive read-only needs readonly"),
            (
                v1::Mount { propagation: MountPropagation::PropagationHostToContainer as i32, ..rro.clone() },
                "needs private propagation",
            ),
            (
                v1::Mount { propagation: MountPropagation::PropagationBidirectional as i32, ..rro.clone() },
                "needs private propagation",
            ),
        ] {
            let table = MountTable::parse("1 0 8:1 / / rw shared:1 - ext4 /dev/sda1 rw\n");
            let cri_mounts = [m];
            let mut req = request(&[], &cri_mounts, &pod.paths);
            req.mount_table = Some(&table);
            let err = plan(req).unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
        }
    }

    #[test]
    fn bad_mounts() {
        let pod = TestPod::new();
        let dir = mkdir(&pod.path("ok"));
        let missing = pod.path("does/not/exist");
        let cases = [
            (cri("/data", &missing), format!("mount \"/data\": host path \"{}\" does not exist", missing.display())),
            (cri("data", &dir), "mount \"data\": the container path must be absolute".to_string()),
            (v1::Mount { host_path: "relative/dir".into(), ..cri("/data", &dir) }, "is not absolute".to_string()),
            (v1::Mount { host_path: String::new(), ..cri("/data", &dir) }, "no host path".to_string()),
            (v1::Mount { propagation: 5, ..cri("/data", &dir) }, "unknown mount propagation 5".to_string()),
        ];
        // Image volumes are an optional feature corral lacks: Unimplemented, not a bad request.
        let image_volume = [v1::Mount {
            host_path: String::new(),
            image: Some(v1::ImageSpec { image: "busybox".into(), ..Default::default() }),
            ..cri("/data", &dir)
        }];
        let err = plan(request(&[], &image_volume, &pod.paths)).unwrap_err();
        assert_eq!(err.kind(), super::super::error::ErrorKind::Unsupported, "{err}");
        assert!(err.to_string().contains("image volume mounts are not supported"), "{err}");
        for (m, want) in cases {
            let cri_mounts = [m];
            let err = plan(request(&[], &cri_mounts, &pod.paths)).unwrap_err();
            assert!(err.is_invalid_argument(), "{err}");
            assert!(err.to_string().contains(&want), "{err}");
        }
    }

    #[test]
    fn privileged_makes_sys_and_cgroup_writable() {
        let pod = TestPod::new();
        let base = base_spec().mounts().clone().unwrap();
        let mut req = request(&base, &[], &pod.paths);
        req.privileged = true;
        let got = summary(&plan(req).unwrap());
        for dest in ["/sys", "/sys/fs/cgroup"] {
            let options = &got.iter().find(|(d, _, _)| d == dest).unwrap().2;
            assert!(options.contains(&"rw".to_string()) && !options.contains(&"ro".to_string()), "{dest}: {options:?}");
        }
    }

    #[test]
    fn id_mapped_mounts_pass_through() {
        let pod = TestPod::new();
        let dir = mkdir(&pod.path("ok"));
        let map = v1::IdMapping { host_id: 100000, container_id: 0, length: 65536 };
        let cri_mounts = [v1::Mount { uid_mappings: vec![map], gid_mappings: vec![map], ..cri("/data", &dir) }];
        let plan = plan(request(&[], &cri_mounts, &pod.paths)).unwrap();
        let m = plan.mounts.iter().find(|m| m.destination() == Path::new("/data")).unwrap();
        let uid = &m.uid_mappings().as_ref().unwrap()[0];
        assert_eq!((uid.host_id(), uid.container_id(), uid.size()), (100000, 0, 65536));
    }
}
