//! Containers: what corral does with a CRI `CreateContainer` request.
//!
//! The heart of it is [`container_spec`], which turns the request (container config, pod
//! config, image config, the pod's namespaces and files) into the OCI runtime spec the
//! runtime crate executes, with the semantics of containerd's CRI plugin (1.6/1.7, and 2.x
//! for what kubelet 1.34 adds: supplemental groups policy, user namespaces, recursive
//! read-only mounts) so that kubelet and critest see the same behaviour. Start reading at `spec.rs`; each step of
//! the translation lives in its own file:
//!
//! | file | decides |
//! |---|---|
//! | `process.rs` | argv (command/args vs. ENTRYPOINT/CMD), env, working directory |
//! | `user.rs` | uid, gid, supplementary groups (image `/etc/passwd`, `/etc/group`) |
//! | `layers.rs` | reading files of the image straight from its layers (whiteouts) |
//! | `mounts.rs`, `volumes.rs`, `mountinfo.rs` | the mount list, image volumes, propagation checks |
//! | `namespaces.rs` | which namespaces are joined or created, user namespace mappings |
//! | `caps.rs` | capabilities |
//! | `security_profiles.rs` | seccomp and AppArmor |
//! | `devices.rs` | device nodes and device cgroup rules |
//! | `resources.rs` | cgroup limits and OOM score |
//! | `stop_signal.rs` | the signal that stops the container |
//! | `host.rs` | facts about the node (cgroup version, the daemon's capabilities, ...) |
//! | `error.rs` | [`SpecError`] and its gRPC status |

// The CreateContainer handler (lifecycle issue) is the caller; until it is wired in, the
// items here are used only by their tests.

mod caps;
mod devices;
mod error;
mod host;
mod layers;
mod mountinfo;
mod mounts;
mod namespaces;
mod process;
mod resources;
mod security_profiles;
mod spec;
mod stop_signal;
mod user;
mod volumes;

#[cfg(test)]
mod testutil;

pub use error::SpecError;
pub use host::HostFacts;
pub use namespaces::user_namespace_mappings;
pub use spec::{ImageConfig, PodPaths, SpecInputs, container_spec};
pub use stop_signal::signal_number;

/// The OCI resources for a CRI resource update (UpdateContainerResources), with the same
/// rules as at create.
pub fn linux_resources(
    cri: &corral_cri::v1::LinuxContainerResources,
    host: &HostFacts,
) -> Result<oci_spec::runtime::LinuxResources, SpecError> {
    let mut resources = oci_spec::runtime::LinuxResources::default();
    resources::apply(&mut resources, Some(cri), host)?;
    Ok(resources)
}
