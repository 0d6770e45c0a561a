//! Device nodes: the CRI `devices` (e.g. from a device plugin) and, for privileged
//! containers, every device of the host.
//!
//! A device becomes two spec entries, as in containerd: a node to create in the container
//! (`linux.devices`: type, major/minor, mode, owner taken from the host node) and a device
//! cgroup rule allowing it with the requested permissions (`linux.resources.devices`).
//! A host path may be a symlink (`/dev/disk/by-id/...`, resolved) or a directory (every device
//! in it, recursively, placed under the container path). The base spec's rules deny all
//! devices first; the runtime adds the standard ones (`/dev/null`, `/dev/zero`, ...) itself.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use corral_cri::v1;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use super::SpecError;

/// Directories of `/dev` that hold no device nodes of the host's own (skipped when a
/// privileged container takes all host devices, as containerd and runc do).
const SKIPPED_DEV_DIRS: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// Refuses CDI devices (`CDI_devices`): corral has no CDI registry to resolve them, and
/// running the container without the device it asked for would fail later and obscurely.
pub fn reject_cdi(cdi: &[v1::CdiDevice]) -> Result<(), SpecError> {
    match cdi.first() {
        None => Ok(()),
        Some(device) => {
            Err(SpecError::Unsupported(format!("device {:?}: CDI devices are not supported by corral", device.name)))
        }
    }
}

/// The nodes and cgroup rules for the CRI devices.
pub fn cri_devices(devices: &[v1::Device]) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), SpecError> {
    let mut nodes = Vec::new();
    let mut rules = Vec::new();
    for device in devices {
        let bad = |reason: String| SpecError::BadDevice { host_path: device.host_path.clone(), reason };
        let access = permissions(&device.permissions).map_err(bad)?;
        if !device.host_path.starts_with('/') {
            return Err(bad("the host path must be absolute".into()));
        }
        let container_path = if device.container_path.is_empty() { &device.host_path } else { &device.container_path };
        if !container_path.starts_with('/') {
            return Err(bad(format!("container path {container_path:?} must be absolute")));
        }
        let resolved = fs::canonicalize(&device.host_path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => bad("does not exist".into()),
            _ => SpecError::io("resolving device", &device.host_path, e),
        })?;
        let found = if resolved.is_dir() {
            devices_in(&resolved, Some(Path::new(container_path)))
                .map_err(|e| SpecError::io("listing devices in", &resolved, e))?
        } else {
            let node = device_node(&resolved)
                .map_err(|e| SpecError::io("reading device", &resolved, e))?
                .ok_or_else(|| bad("not a device node".into()))?;
            vec![with_path(node, PathBuf::from(container_path))]
        };
        for node in found {
            rules.push(allow_rule(&node, &access));
            nodes.push(node);
        }
    }
    Ok((nodes, rules))
}

/// Every device node of the host's `/dev` (privileged containers).
pub fn host_devices() -> Result<Vec<LinuxDevice>, SpecError> {
    devices_in(Path::new("/dev"), None).map_err(|e| SpecError::io("listing devices in", "/dev", e))
}

/// The device nodes under `dir`, recursively; placed under `container_dir` when given.
/// Symlinks are not followed (each device appears once, under its real name); FIFOs,
/// `console` and the non-device directories are skipped.
fn devices_in(dir: &Path, container_dir: Option<&Path>) -> io::Result<Vec<LinuxDevice>> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    let mut out = Vec::new();
    for entry in entries {
        let name = entry.file_name();
        let path = entry.path();
        let target = container_dir.map(|c| c.join(&name));
        let file_type = entry.file_type()?;
        if file_type.is_dir() {
            if SKIPPED_DEV_DIRS.iter().any(|s| name == *s) {
                continue;
            }
            out.extend(devices_in(&path, target.as_deref())?);
        } else if name != "console" {
            match device_node(&path) {
                Ok(Some(node)) => out.push(match target {
                    Some(t) => with_path(node, t),
                    None => node,
                }),
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {} // gone while listing
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

/// The spec entry for a block or character device node; `None` for anything else.
fn device_node(path: &Path) -> io::Result<Option<LinuxDevice>> {
    let meta = fs::symlink_metadata(path)?;
    let file_type = meta.file_type();
    let typ = if file_type.is_char_device() {
        LinuxDeviceType::C
    } else if file_type.is_block_device() {
        LinuxDeviceType::B
    } else {
        return Ok(None);
    };
    let mut node = LinuxDevice::default();
    node.set_path(path.to_path_buf());
    node.set_typ(typ);
    node.set_major(nix::sys::stat::major(meta.rdev()) as i64);
    node.set_minor(nix::sys::stat::minor(meta.rdev()) as i64);
    node.set_file_mode(Some(meta.mode() & 0o7777));
    node.set_uid(Some(meta.uid()));
    node.set_gid(Some(meta.gid()));
    Ok(Some(node))
}

fn with_path(mut node: LinuxDevice, path: PathBuf) -> LinuxDevice {
    node.set_path(path);
    node
}

fn allow_rule(node: &LinuxDevice, access: &str) -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(true);
    rule.set_typ(Some(node.typ()));
    rule.set_major(Some(node.major()));
    rule.set_minor(Some(node.minor()));
    rule.set_access(Some(access.to_string()));
    rule
}

/// The rule allowing every device (privileged containers).
pub fn allow_all_rule() -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(true);
    rule.set_typ(Some(LinuxDeviceType::A));
    rule.set_access(Some("rwm".to_string()));
    rule
}

/// Validates cgroup device permissions: a non-empty subset of `rwm` (kubelet sends `mrw`).
/// Empty means `rwm`.
fn permissions(requested: &str) -> Result<String, String> {
    if requested.is_empty() {
        return Ok("rwm".to_string());
    }
    if requested.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        Ok(requested.to_string())
    } else {
        Err(format!("invalid permissions {requested:?}: use letters of \"rwm\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(host: &str, container: &str, permissions: &str) -> v1::Device {
        v1::Device { host_path: host.into(), container_path: container.into(), permissions: permissions.into() }
    }

    #[test]
    fn a_char_device_from_the_host() {
        let (nodes, rules) = cri_devices(&[device("/dev/null", "/dev/xnull", "mrw")]).unwrap();
        assert_eq!(nodes.len(), 1);
        let n = &nodes[0];
        assert_eq!(
            (n.path().as_path(), n.typ(), n.major(), n.minor()),
            (Path::new("/dev/xnull"), LinuxDeviceType::C, 1, 3)
        );
        assert_eq!(n.file_mode(), Some(0o666));
        assert_eq!((n.uid(), n.gid()), (Some(0), Some(0)));
        let r = &rules[0];
        assert!(r.allow());
        assert_eq!(
            (r.typ(), r.major(), r.minor(), r.access().as_deref()),
            (Some(LinuxDeviceType::C), Some(1), Some(3), Some("mrw"))
        );
    }

    #[test]
    fn symlinks_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("my-zero");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        // A symlink to a device; the container path defaults to the host path as given.
        let (nodes, _) = cri_devices(&[device(link.to_str().unwrap(), "", "")]).unwrap();
        assert_eq!((nodes[0].path().as_path(), nodes[0].major(), nodes[0].minor()), (link.as_path(), 1, 5));
        // A directory of devices (with a symlink inside, not followed, and a regular file).
        let devdir = dir.path().join("devs");
        fs::create_dir(&devdir).unwrap();
        nix::sys::stat::mknod(
            &devdir.join("c7"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(1, 7),
        )
        .unwrap();
        fs::create_dir(devdir.join("sub")).unwrap();
        nix::sys::stat::mknod(
            &devdir.join("sub/b"),
            nix::sys::stat::SFlag::S_IFBLK,
            nix::sys::stat::Mode::from_bits_truncate(0o660),
            nix::sys::stat::makedev(7, 0),
        )
        .unwrap();
        // mknod honours the umask; set the modes the test expects explicitly.
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(devdir.join("sub/b"), fs::Permissions::from_mode(0o660)).unwrap();
        std::os::unix::fs::symlink("c7", devdir.join("alias")).unwrap();
        fs::write(devdir.join("README"), "not a device").unwrap();
        let (nodes, rules) = cri_devices(&[device(devdir.to_str().unwrap(), "/dev/mine", "rw")]).unwrap();
        let got: Vec<_> = nodes
            .iter()
            .map(|n| (n.path().to_string_lossy().into_owned(), n.typ(), n.major(), n.minor(), n.file_mode()))
            .collect();
        assert_eq!(
            got,
            [
                ("/dev/mine/c7".to_string(), LinuxDeviceType::C, 1, 7, Some(0o600)),
                ("/dev/mine/sub/b".to_string(), LinuxDeviceType::B, 7, 0, Some(0o660)),
            ]
        );
        assert!(rules.iter().all(|r| r.access().as_deref() == Some("rw")));
    }

    #[test]
    fn bad_devices() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let cases = [
            (device("/dev/does-not-exist", "", ""), "device \"/dev/does-not-exist\": does not exist"),
            (device(file.to_str().unwrap(), "/dev/f", ""), "not a device node"),
            (device("/dev/null", "/dev/null", "rwx"), "invalid permissions \"rwx\""),
            (device("dev/null", "", ""), "the host path must be absolute"),
            (device("/dev/null", "null", ""), "container path \"null\" must be absolute"),
        ];
        for (d, want) in cases {
            let err = cri_devices(&[d]).unwrap_err();
            assert!(err.is_invalid_argument(), "{err}");
            assert!(err.to_string().contains(want), "{err}");
        }
    }

    #[test]
    fn cdi_devices_are_refused() {
        assert!(reject_cdi(&[]).is_ok());
        let err = reject_cdi(&[v1::CdiDevice { name: "vendor.com/gpu=0".into() }]).unwrap_err();
        assert_eq!(err.to_string(), "device \"vendor.com/gpu=0\": CDI devices are not supported by corral");
    }

    #[test]
    fn host_devices_of_this_node() {
        let devices = host_devices().unwrap();
        let null = devices.iter().find(|d| d.path() == Path::new("/dev/null")).expect("/dev/null");
        assert_eq!((null.major(), null.minor()), (1, 3));
        assert!(devices.iter().all(|d| !d.path().starts_with("/dev/pts") && d.path() != Path::new("/dev/console")));
        assert!(devices.iter().all(|d| matches!(d.typ(), LinuxDeviceType::C | LinuxDeviceType::B)));
        let rule = allow_all_rule();
        assert_eq!(
            serde_json::to_value(&rule).unwrap(),
            serde_json::json!({"allow": true, "type": "a", "access": "rwm"})
        );
    }
}
