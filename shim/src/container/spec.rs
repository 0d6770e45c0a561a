//! [`container_spec`]: one CRI `CreateContainer` request in, one OCI runtime spec out.
//!
//! The steps run in the order containerd's CRI plugin applies its spec options, each in its
//! own module; read them top to bottom to learn what corral does with a pod spec:
//!
//! 1. privileged check: a privileged container needs a privileged pod;
//! 2. process: argv, env, cwd, tty (`process`);
//! 3. user: uid, gid, supplementary groups from the image's `/etc/passwd` & `/etc/group` (`user`);
//! 4. mounts: system mounts, pod files, CRI mounts, image volumes (`mounts`, `volumes`);
//! 5. namespaces (`namespaces`);
//! 6. security: capabilities (`caps`), masked/read-only paths, seccomp and AppArmor
//!    (`security_profiles`), no_new_privs, read-only rootfs, privileged overrides;
//! 7. devices (`devices`), resources and OOM score (`resources`), cgroup path;
//! 8. annotations and the stop signal (`stop_signal`).
//!
//! Nothing here starts a process or mounts anything. The only side effects are reads (image
//! layers, a localhost seccomp profile, host paths, `/dev`, the host mount table) and the
//! creation of the image-volume directories under `volumes_dir`, done last so that a rejected
//! request leaves nothing behind.

use std::path::{Path, PathBuf};

use corral_cri::v1;
use oci_spec::runtime::{LinuxSeccomp, Process, Root, Spec};

use super::SpecError;
use super::caps::CapSets;
use super::devices;
use super::host::HostFacts;
use super::layers::LayeredFs;
use super::mountinfo::MountTable;
use super::mounts::{self, MountRequest};
use super::namespaces::{self, NamespaceRequest};
use super::process;
use super::resources;
use super::security_profiles;
use super::stop_signal;
use super::user;
use super::volumes;

/// The parts of an OCI image config a container spec uses (the image store's record is
/// adapted to this).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageConfig {
    /// `ENTRYPOINT`.
    pub entrypoint: Vec<String>,
    /// `CMD`.
    pub cmd: Vec<String>,
    /// `ENV`, as `KEY=value` (an entry without `=` unsets the key).
    pub env: Vec<String>,
    /// `WORKDIR`.
    pub working_dir: String,
    /// `USER`: `name`, `uid`, `name:group`, `uid:gid`, ...
    pub user: String,
    /// `VOLUME` paths.
    pub volumes: Vec<String>,
    /// `STOPSIGNAL`: `SIGQUIT`, `3`, `SIGRTMIN+3`, ...
    pub stop_signal: String,
}

/// Where a pod's shared things are on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPaths {
    /// The pinned network namespace; `None` = the host's (host network).
    pub net: Option<PathBuf>,
    /// The pinned IPC namespace; `None` = the host's (host IPC).
    pub ipc: Option<PathBuf>,
    /// The pinned UTS namespace; `None` = the host's (host network pods).
    pub uts: Option<PathBuf>,
    /// The pod's shared PID namespace (its pause process's) when the pod shares one.
    pub pid: Option<PathBuf>,
    /// The pinned user namespace when the pod has one; `None` with a user namespace request
    /// creates a new one from the mappings.
    pub user: Option<PathBuf>,
    /// The pod's `/etc/hostname`, `/etc/hosts` and `/etc/resolv.conf` files.
    pub hostname: PathBuf,
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
    /// The pod's `/dev/shm` directory, or the host's `/dev/shm` for host IPC.
    pub dev_shm: PathBuf,
}

/// Everything [`container_spec`] needs.
pub struct SpecInputs<'a> {
    /// The new container's id.
    pub container_id: &'a str,
    /// The pod's id (annotations only).
    pub sandbox_id: &'a str,
    pub config: &'a v1::ContainerConfig,
    pub sandbox_config: &'a v1::PodSandboxConfig,
    pub image: &'a ImageConfig,
    /// The image's unpacked layer directories, top first.
    pub rootfs_layers: &'a [PathBuf],
    pub pod: &'a PodPaths,
    /// The target container's PID namespace, for PID mode `TARGET` (the caller resolves
    /// `target_id`).
    pub target_pid_ns: Option<&'a Path>,
    /// The container's cgroup path, as computed by the caller.
    pub cgroups_path: &'a str,
    /// Where to create the image-volume directories (part of the container's state).
    pub volumes_dir: &'a Path,
    pub host: &'a HostFacts,
    /// The host's mount table; read on demand when `None` (only needed for non-private
    /// mount propagation).
    pub mount_table: Option<&'a MountTable>,
    /// The runtime's default spec, which this request is applied to.
    pub base: Spec,
    /// The seccomp profile `RuntimeDefault` means.
    pub default_seccomp: &'a LinuxSeccomp,
}

/// The result: the spec and what `ContainerStatus` reports about it.
#[derive(Debug, Clone)]
pub struct BuiltSpec {
    pub spec: Spec,
    /// uid, gid and supplementary groups as applied (`ContainerStatus.user.linux`).
    pub user: v1::LinuxContainerUser,
    /// `ContainerStatus.stop_signal`; [`super::signal_number`] gives the number to send.
    pub stop_signal: v1::Signal,
    /// The CRI mounts exactly as requested (`ContainerStatus.mounts`, as containerd reports
    /// them; the pod's own files and image volumes are not listed).
    pub mounts: Vec<v1::Mount>,
}

/// Annotation keys containerd sets on every container spec; tools (NRI plugins, `runc list`
/// users) rely on them, so corral sets the same.
mod annotation {
    pub const CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
    pub const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
    pub const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
    pub const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
    pub const SANDBOX_UID: &str = "io.kubernetes.cri.sandbox-uid";
    pub const CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
    pub const IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
}

/// Translates a CRI container config into an OCI runtime spec (see the module docs).
pub fn container_spec(inputs: SpecInputs<'_>) -> Result<BuiltSpec, SpecError> {
    let config = inputs.config;
    let no_security = v1::LinuxContainerSecurityContext::default();
    let sc = config.linux.as_ref().and_then(|l| l.security_context.as_ref()).unwrap_or(&no_security);
    let cri_resources = config.linux.as_ref().and_then(|l| l.resources.as_ref());
    let pod_sc = inputs.sandbox_config.linux.as_ref().and_then(|l| l.security_context.as_ref());
    let image = LayeredFs::new(inputs.rootfs_layers);
    let mut spec = inputs.base;

    // 1. A privileged container needs a privileged pod.
    let privileged = sc.privileged;
    if privileged && !pod_sc.is_some_and(|s| s.privileged) {
        return Err(SpecError::PrivilegedNotAllowed);
    }

    // 2.-3. The process: what runs, as whom.
    let resolved = user::resolve(sc, &inputs.image.user, &image)?;
    let hostname =
        if inputs.sandbox_config.hostname.is_empty() { &inputs.host.hostname } else { &inputs.sandbox_config.hostname };
    let base_process = spec.process().clone().unwrap_or_default();
    let mut proc = process_of(config, inputs.image, hostname, &resolved, base_process)?;

    // 4. Mounts. Image volume directories are created at the very end.
    let image_volumes = volumes::plan(&inputs.image.volumes, &config.mounts, inputs.volumes_dir);
    let mount_plan = mounts::plan(MountRequest {
        base: spec.mounts().as_deref().unwrap_or_default(),
        cri: &config.mounts,
        pod: inputs.pod,
        volumes: &image_volumes,
        readonly_rootfs: sc.readonly_rootfs,
        privileged,
        mount_table: inputs.mount_table,
    })?;
    spec.set_mounts(Some(mount_plan.mounts));

    // 5. Namespaces.
    let ns_plan = namespaces::plan(NamespaceRequest {
        container: sc.namespace_options.as_ref(),
        sandbox: pod_sc.and_then(|s| s.namespace_options.as_ref()),
        pod: inputs.pod,
        target_pid_ns: inputs.target_pid_ns,
        cgroup_ns: inputs.host.cgroup_v2 && !privileged,
    })?;

    // 6. Security: capabilities, no_new_privs, AppArmor, seccomp, OOM score, read-only root.
    let mut caps = CapSets::from_oci(proc.capabilities().as_ref());
    caps.apply(sc.capabilities.as_ref(), &inputs.host.capabilities)?;
    if privileged {
        caps = CapSets::privileged(&inputs.host.capabilities);
    }
    proc.set_capabilities(Some(caps.to_oci()));
    proc.set_no_new_privileges(Some(sc.no_new_privs));
    security_profiles::check_apparmor(sc)?;
    proc.set_apparmor_profile(None);
    let seccomp = security_profiles::seccomp(sc, inputs.default_seccomp)?;
    proc.set_oom_score_adj(resources::oom_score_adj(cri_resources, inputs.host)?.or(proc.oom_score_adj()));
    spec.set_process(Some(proc));

    let mut root = spec.root().clone().unwrap_or_else(|| {
        let mut root = Root::default();
        root.set_path(PathBuf::from("rootfs"));
        root
    });
    root.set_readonly(Some(sc.readonly_rootfs));
    spec.set_root(Some(root));

    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_namespaces(Some(ns_plan.namespaces));
    linux.set_uid_mappings(ns_plan.uid_mappings);
    linux.set_gid_mappings(ns_plan.gid_mappings);
    linux.set_rootfs_propagation(mount_plan.rootfs_propagation.or_else(|| linux.rootfs_propagation().clone()));
    linux.set_seccomp(seccomp);
    let (masked, readonly) = if privileged {
        (None, None)
    } else {
        (
            replace_if_given(&sc.masked_paths, linux.masked_paths()),
            replace_if_given(&sc.readonly_paths, linux.readonly_paths()),
        )
    };
    linux.set_masked_paths(masked);
    linux.set_readonly_paths(readonly);

    // 7. Devices, resources, cgroup.
    devices::reject_cdi(&config.cdi_devices)?;
    let (mut device_nodes, device_rules) = devices::cri_devices(&config.devices)?;
    let mut res = linux.resources().clone().unwrap_or_default();
    let mut rules = res.devices().clone().unwrap_or_default();
    rules.extend(device_rules);
    if privileged {
        device_nodes.extend(devices::host_devices()?);
        rules = vec![devices::allow_all_rule()];
    }
    res.set_devices(Some(rules));
    resources::apply(&mut res, cri_resources, inputs.host)?;
    linux.set_resources(Some(res));
    let mut all_nodes = linux.devices().clone().unwrap_or_default();
    all_nodes.extend(device_nodes);
    linux.set_devices(if all_nodes.is_empty() { None } else { Some(all_nodes) });
    linux.set_cgroups_path(if inputs.cgroups_path.is_empty() {
        None
    } else {
        Some(PathBuf::from(inputs.cgroups_path))
    });
    spec.set_linux(Some(linux));

    // 8. Annotations and stop signal. The pod joins UTS: the container sets no hostname.
    spec.set_hostname(None);
    let mut annotations = spec.annotations().clone().unwrap_or_default();
    annotations.extend(cri_annotations(config, inputs.sandbox_config, inputs.sandbox_id));
    spec.set_annotations(Some(annotations));
    let stop_signal = stop_signal::stop_signal(config.stop_signal, &inputs.image.stop_signal)?;

    // Everything is valid: only now touch the disk.
    volumes::create(&image_volumes, &image)?;

    tracing::debug!(container = inputs.container_id, uid = resolved.uid, privileged, "built container spec");
    Ok(BuiltSpec { spec, user: resolved.to_cri(), stop_signal, mounts: config.mounts.clone() })
}

/// The process's argv, env, cwd, terminal and identity, on top of the base spec's process.
fn process_of(
    config: &v1::ContainerConfig,
    image: &ImageConfig,
    hostname: &str,
    user: &user::ResolvedUser,
    mut proc: Process,
) -> Result<Process, SpecError> {
    proc.set_args(Some(process::args(config, image)?));
    let base_env = proc.env().clone().unwrap_or_default();
    proc.set_env(Some(process::env(&base_env, config, image, hostname)));
    proc.set_cwd(process::cwd(config, image)?);
    proc.set_terminal(Some(config.tty));
    // A runtime default spec's rlimits would cap every container (containerd removes them
    // too): containers inherit the runtime's own limits instead.
    proc.set_rlimits(None);
    let mut process_user = proc.user().clone(); // keeps the base's umask, if any
    process_user.set_uid(user.uid);
    process_user.set_gid(user.gid);
    process_user.set_additional_gids(Some(user.additional_gids.clone()));
    proc.set_user(process_user);
    Ok(proc)
}

/// The annotations containerd puts on every container spec.
fn cri_annotations(
    config: &v1::ContainerConfig,
    sandbox_config: &v1::PodSandboxConfig,
    sandbox_id: &str,
) -> Vec<(String, String)> {
    let metadata = sandbox_config.metadata.clone().unwrap_or_default();
    let image_name = config
        .image
        .as_ref()
        .map(|i| if i.user_specified_image.is_empty() { i.image.clone() } else { i.user_specified_image.clone() })
        .unwrap_or_default();
    [
        (annotation::CONTAINER_TYPE, "container".to_string()),
        (annotation::SANDBOX_ID, sandbox_id.to_string()),
        (annotation::SANDBOX_NAME, metadata.name),
        (annotation::SANDBOX_NAMESPACE, metadata.namespace),
        (annotation::SANDBOX_UID, metadata.uid),
        (annotation::CONTAINER_NAME, config.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default()),
        (annotation::IMAGE_NAME, image_name),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A CRI path list replaces the base spec's when it is non-empty. (containerd instead treats
/// an empty list as "no paths at all"; kubelet always sends its defaults, so the difference
/// only shows for clients such as crictl that send none: corral keeps them masked.)
fn replace_if_given(cri: &[String], base: &Option<Vec<String>>) -> Option<Vec<String>> {
    if cri.is_empty() { base.clone() } else { Some(cri.to_vec()) }
}

#[cfg(test)]
mod tests;
