//! Which namespaces the container joins or creates.
//!
//! | namespace | rule |
//! |---|---|
//! | network, IPC, UTS | the pod's pinned namespace; the host's when the pod has none (host network / host IPC) |
//! | PID | `POD`: the pod's shared one (its pause process); `CONTAINER`: a new one; `NODE`: the host's; `TARGET`: the target container's |
//! | mount | always a new one |
//! | cgroup | a new one on cgroup v2 hosts for unprivileged containers (as containerd) |
//! | user | the pod's when it asks for one (`userns_options` mode `POD`, with one uid and one gid mapping from container id 0) |
//!
//! Network, IPC and UTS follow the pod, never the container's own `NamespaceOption` (as in
//! containerd, which joins the sandbox's namespaces unconditionally): a container cannot
//! leave its pod's network. The PID mode is the container's (kubelet sends `CONTAINER` unless
//! the pod sets `shareProcessNamespace`); a container without namespace options takes the
//! pod's. Namespaces of the base spec are replaced, not merged: this table is the whole truth.

use std::path::Path;

use corral_cri::v1;
use corral_cri::v1::NamespaceMode;
use oci_spec::runtime::{LinuxIdMapping, LinuxIdMappingBuilder, LinuxNamespace, LinuxNamespaceType};

use super::SpecError;
use super::spec::PodPaths;

/// The namespaces of a container and, with a user namespace, its id mappings.
#[derive(Debug, Default)]
pub struct NamespacePlan {
    pub namespaces: Vec<LinuxNamespace>,
    pub uid_mappings: Option<Vec<LinuxIdMapping>>,
    pub gid_mappings: Option<Vec<LinuxIdMapping>>,
}

/// The uid and gid mappings of a user namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdMappings {
    pub uids: Vec<LinuxIdMapping>,
    pub gids: Vec<LinuxIdMapping>,
}

/// Inputs of [`plan`].
pub struct NamespaceRequest<'a> {
    /// The container's `security_context.namespace_options`.
    pub container: Option<&'a v1::NamespaceOption>,
    /// The pod's `security_context.namespace_options`.
    pub sandbox: Option<&'a v1::NamespaceOption>,
    pub pod: &'a PodPaths,
    /// The PID namespace of the target container (mode `TARGET`), resolved by the caller.
    pub target_pid_ns: Option<&'a Path>,
    /// Give the container its own cgroup namespace.
    pub cgroup_ns: bool,
}

/// Decides the namespaces (see the module docs).
pub fn plan(request: NamespaceRequest<'_>) -> Result<NamespacePlan, SpecError> {
    let default = v1::NamespaceOption::default();
    let opts = request.container.or(request.sandbox).unwrap_or(&default);
    let pod = request.pod;
    let mut namespaces = Vec::new();

    let pid_mode = NamespaceMode::try_from(opts.pid)
        .map_err(|_| SpecError::BadNamespace(format!("unknown PID namespace mode {}", opts.pid)))?;
    match pid_mode {
        NamespaceMode::Pod => match &pod.pid {
            Some(path) => namespaces.push(ns(LinuxNamespaceType::Pid, Some(path))),
            None => {
                return Err(SpecError::BadNamespace(
                    "the container asks for the pod's PID namespace, but the pod does not share one \
                     (its PID mode is not POD)"
                        .into(),
                ));
            }
        },
        NamespaceMode::Container => namespaces.push(ns(LinuxNamespaceType::Pid, None)),
        NamespaceMode::Node => {}
        NamespaceMode::Target => match request.target_pid_ns {
            Some(path) => namespaces.push(ns(LinuxNamespaceType::Pid, Some(path))),
            None => return Err(SpecError::TargetNotFound(opts.target_id.clone())),
        },
    }
    for (typ, path) in [
        (LinuxNamespaceType::Network, &pod.net),
        (LinuxNamespaceType::Ipc, &pod.ipc),
        (LinuxNamespaceType::Uts, &pod.uts),
    ] {
        if let Some(path) = path {
            namespaces.push(ns(typ, Some(path)));
        }
    }
    namespaces.push(ns(LinuxNamespaceType::Mount, None));
    if request.cgroup_ns {
        namespaces.push(ns(LinuxNamespaceType::Cgroup, None));
    }

    let userns = opts.userns_options.as_ref();
    let sandbox_userns = request.sandbox.and_then(|s| s.userns_options.as_ref());
    if userns != sandbox_userns {
        return Err(SpecError::BadUserNamespace(format!(
            "the container's user namespace config ({userns:?}) differs from the pod's ({sandbox_userns:?})"
        )));
    }
    let mut plan = NamespacePlan { namespaces, uid_mappings: None, gid_mappings: None };
    if let Some(mappings) = user_namespace_mappings(userns)? {
        plan.namespaces.push(ns(LinuxNamespaceType::User, pod.user.as_deref()));
        plan.uid_mappings = Some(mappings.uids);
        plan.gid_mappings = Some(mappings.gids);
    }
    Ok(plan)
}

/// Validates a pod's user namespace request; `Some(mappings)` when it wants one.
///
/// Also meant for `RunPodSandbox`, so that a bad request fails before anything is created
/// (critest's "should fail if more than one mapping provided", "... if container ID 0 is not
/// mapped", "... with NamespaceMode_CONTAINER/TARGET").
pub fn user_namespace_mappings(userns: Option<&v1::UserNamespace>) -> Result<Option<IdMappings>, SpecError> {
    let Some(userns) = userns else { return Ok(None) };
    let mode = NamespaceMode::try_from(userns.mode)
        .map_err(|_| SpecError::BadUserNamespace(format!("unknown mode {}", userns.mode)))?;
    match mode {
        NamespaceMode::Node => {
            if !userns.uids.is_empty() || !userns.gids.is_empty() {
                return Err(SpecError::BadUserNamespace("mode NODE takes no uid/gid mappings".into()));
            }
            Ok(None)
        }
        NamespaceMode::Pod => {
            Ok(Some(IdMappings { uids: mapping("uid", &userns.uids)?, gids: mapping("gid", &userns.gids)? }))
        }
        NamespaceMode::Container | NamespaceMode::Target => {
            Err(SpecError::BadUserNamespace(format!("unsupported mode {}", mode.as_str_name())))
        }
    }
}

/// The single mapping line of a pod user namespace (one range from container id 0, as
/// kubelet allocates it and the layers' id shifting needs).
fn mapping(what: &str, lines: &[v1::IdMapping]) -> Result<Vec<LinuxIdMapping>, SpecError> {
    let bad = |reason: String| SpecError::BadUserNamespace(format!("{what} mapping: {reason}"));
    let [line] = lines else {
        return Err(bad(format!("exactly one mapping line is supported, got {}", lines.len())));
    };
    if line.length == 0 {
        return Err(bad("length 0".into()));
    }
    if line.container_id != 0 {
        return Err(bad(format!("container id 0 must be mapped (the range starts at {})", line.container_id)));
    }
    if line.host_id.checked_add(line.length).is_none() {
        return Err(bad(format!("host range {}+{} overflows", line.host_id, line.length)));
    }
    Ok(vec![id_mapping(line).map_err(|e| bad(e.to_string()))?])
}

/// The OCI form of a CRI id mapping.
pub(super) fn id_mapping(m: &v1::IdMapping) -> Result<LinuxIdMapping, oci_spec::OciSpecError> {
    LinuxIdMappingBuilder::default().host_id(m.host_id).container_id(m.container_id).size(m.length).build()
}

fn ns(typ: LinuxNamespaceType, path: Option<&Path>) -> LinuxNamespace {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(path.map(Path::to_path_buf));
    ns
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::testutil::TestPod;
    use std::path::PathBuf;

    /// (type, path) pairs, for readable assertions.
    fn summary(plan: &NamespacePlan) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
        plan.namespaces.iter().map(|n| (n.typ(), n.path().clone())).collect()
    }

    fn opts(pid: NamespaceMode) -> v1::NamespaceOption {
        v1::NamespaceOption { pid: pid as i32, ..Default::default() }
    }

    #[test]
    fn pid_modes_table() {
        let mut pod = TestPod::new().paths;
        pod.pid = Some(PathBuf::from("/proc/42/ns/pid"));
        let target = PathBuf::from("/proc/77/ns/pid");
        use LinuxNamespaceType as T;
        let cases = [
            (NamespaceMode::Pod, Some((T::Pid, Some(PathBuf::from("/proc/42/ns/pid"))))),
            (NamespaceMode::Container, Some((T::Pid, None))),
            (NamespaceMode::Node, None),
            (NamespaceMode::Target, Some((T::Pid, Some(target.clone())))),
        ];
        for (mode, want) in cases {
            let o = opts(mode);
            let plan = plan(NamespaceRequest {
                container: Some(&o),
                sandbox: None,
                pod: &pod,
                target_pid_ns: Some(&target),
                cgroup_ns: false,
            })
            .unwrap();
            let got = summary(&plan).into_iter().find(|(t, _)| *t == T::Pid);
            assert_eq!(got, want, "{mode:?}");
        }
    }

    #[test]
    fn pod_namespaces_and_host_namespaces() {
        let pod = TestPod::new().paths;
        use LinuxNamespaceType as T;
        let o = opts(NamespaceMode::Container);
        let req = |pod, cgroup_ns| NamespaceRequest {
            container: Some(&o),
            sandbox: None,
            pod,
            target_pid_ns: None,
            cgroup_ns,
        };
        assert_eq!(
            summary(&plan(req(&pod, false)).unwrap()),
            [
                (T::Pid, None),
                (T::Network, pod.net.clone()),
                (T::Ipc, pod.ipc.clone()),
                (T::Uts, pod.uts.clone()),
                (T::Mount, None),
            ]
        );
        // A host-network, host-IPC pod: those namespaces are simply not listed.
        let host = PodPaths { net: None, ipc: None, uts: None, ..pod.clone() };
        assert_eq!(summary(&plan(req(&host, true)).unwrap()), [(T::Pid, None), (T::Mount, None), (T::Cgroup, None)]);
    }

    #[test]
    fn container_without_options_takes_the_pods() {
        let mut pod = TestPod::new().paths;
        pod.pid = Some(PathBuf::from("/proc/42/ns/pid"));
        let sandbox = opts(NamespaceMode::Pod);
        let plan = plan(NamespaceRequest {
            container: None,
            sandbox: Some(&sandbox),
            pod: &pod,
            target_pid_ns: None,
            cgroup_ns: false,
        })
        .unwrap();
        assert_eq!(summary(&plan)[0], (LinuxNamespaceType::Pid, pod.pid.clone()));
    }

    #[test]
    fn namespace_errors() {
        let pod = TestPod::new().paths; // no shared PID namespace
        let pod_pid = opts(NamespaceMode::Pod);
        let err = plan(NamespaceRequest {
            container: Some(&pod_pid),
            sandbox: None,
            pod: &pod,
            target_pid_ns: None,
            cgroup_ns: false,
        })
        .unwrap_err();
        assert!(err.is_invalid_argument());
        assert!(err.to_string().contains("the pod does not share one"), "{err}");

        let target =
            v1::NamespaceOption { pid: NamespaceMode::Target as i32, target_id: "abc123".into(), ..Default::default() };
        let err = plan(NamespaceRequest {
            container: Some(&target),
            sandbox: None,
            pod: &pod,
            target_pid_ns: None,
            cgroup_ns: false,
        })
        .unwrap_err();
        assert_eq!(err.kind(), crate::container::error::ErrorKind::NotFound);
        assert!(err.to_string().contains("\"abc123\""), "{err}");

        let bogus = v1::NamespaceOption { pid: 9, ..Default::default() };
        let err = plan(NamespaceRequest {
            container: Some(&bogus),
            sandbox: None,
            pod: &pod,
            target_pid_ns: None,
            cgroup_ns: false,
        })
        .unwrap_err();
        assert!(err.to_string().contains("unknown PID namespace mode 9"));
    }

    fn userns(mode: NamespaceMode, lines: &[(u32, u32, u32)]) -> v1::UserNamespace {
        let maps: Vec<v1::IdMapping> = lines
            .iter()
            .map(|&(container_id, host_id, length)| v1::IdMapping { container_id, host_id, length })
            .collect();
        v1::UserNamespace { mode: mode as i32, uids: maps.clone(), gids: maps }
    }

    #[test]
    fn user_namespace_of_the_pod() {
        let mut pod = TestPod::new().paths;
        let ns_opts = v1::NamespaceOption {
            pid: NamespaceMode::Container as i32,
            userns_options: Some(userns(NamespaceMode::Pod, &[(0, 1000, 100000)])),
            ..Default::default()
        };
        let req = |pod: &PodPaths| {
            plan(NamespaceRequest {
                container: Some(&ns_opts),
                sandbox: Some(&ns_opts),
                pod,
                target_pid_ns: None,
                cgroup_ns: false,
            })
        };
        let got = req(&pod).unwrap();
        assert_eq!(summary(&got).last().unwrap(), &(LinuxNamespaceType::User, None));
        let uid = &got.uid_mappings.as_ref().unwrap()[0];
        assert_eq!((uid.container_id(), uid.host_id(), uid.size()), (0, 1000, 100000));
        assert_eq!(got.gid_mappings.as_ref().unwrap().len(), 1);
        // A pinned pod user namespace is joined.
        pod.user = Some(PathBuf::from("/run/corral/pods/p/ns/user"));
        assert_eq!(summary(&req(&pod).unwrap()).last().unwrap(), &(LinuxNamespaceType::User, pod.user.clone()));
    }

    #[test]
    fn user_namespace_validation_table() {
        let cases = [
            (
                userns(NamespaceMode::Pod, &[(0, 1000, 100000), (0, 2000, 100000)]),
                "exactly one mapping line is supported, got 2",
            ),
            (userns(NamespaceMode::Pod, &[(1, 1000, 100000)]), "container id 0 must be mapped"),
            (userns(NamespaceMode::Pod, &[]), "exactly one mapping line is supported, got 0"),
            (userns(NamespaceMode::Pod, &[(0, 1000, 0)]), "length 0"),
            (userns(NamespaceMode::Pod, &[(0, u32::MAX, 2)]), "overflows"),
            (userns(NamespaceMode::Node, &[(0, 1000, 10)]), "mode NODE takes no uid/gid mappings"),
            (userns(NamespaceMode::Container, &[]), "unsupported mode CONTAINER"),
            (userns(NamespaceMode::Target, &[]), "unsupported mode TARGET"),
        ];
        for (u, want) in cases {
            let err = user_namespace_mappings(Some(&u)).unwrap_err();
            assert!(err.is_invalid_argument());
            assert!(err.to_string().contains(want), "{err}");
        }
        assert!(user_namespace_mappings(Some(&userns(NamespaceMode::Node, &[]))).unwrap().is_none());
        assert!(user_namespace_mappings(None).unwrap().is_none());
    }

    #[test]
    fn container_and_pod_user_namespaces_must_agree() {
        let pod = TestPod::new().paths;
        let with = v1::NamespaceOption {
            pid: NamespaceMode::Container as i32,
            userns_options: Some(userns(NamespaceMode::Pod, &[(0, 1000, 65536)])),
            ..Default::default()
        };
        let without = opts(NamespaceMode::Container);
        let err = plan(NamespaceRequest {
            container: Some(&without),
            sandbox: Some(&with),
            pod: &pod,
            target_pid_ns: None,
            cgroup_ns: false,
        })
        .unwrap_err();
        assert!(err.to_string().contains("differs from the pod's"), "{err}");
    }
}
