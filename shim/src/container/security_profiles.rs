//! Seccomp and AppArmor: which profile a container gets.
//!
//! Seccomp (containerd's rules, which critest checks):
//! - privileged → no filter, whatever was asked (the profile is not even read);
//! - no profile at all (`seccomp` unset and no deprecated `seccomp_profile_path`) → no filter.
//!   kubelet always sends one; critest's "nil profile, which is unconfined" sends none;
//! - `Unconfined` → no filter; `RuntimeDefault` → the runtime's default profile;
//! - `Localhost` → the JSON file at `localhost_ref`, an absolute path on the node (kubelet
//!   joins its seccomp root and the pod's `localhostProfile`). The file is an OCI
//!   `LinuxSeccomp` object (`defaultAction`, `syscalls`, ...), as containerd reads it;
//! - the deprecated `seccomp_profile_path` strings: `runtime/default`, `docker/default`,
//!   `unconfined`, `localhost/<path>`.
//!
//! AppArmor: corral cannot load or apply AppArmor profiles (the runtime crate has no AppArmor
//! support and this node's kernel has no AppArmor). It behaves like containerd on a node
//! without AppArmor: no profile or `Unconfined` is fine, anything else (`RuntimeDefault`,
//! `Localhost`) fails loudly instead of silently running unconfined. kubelet never sends a
//! profile unless the pod asks for one, and refuses such pods itself on nodes without
//! AppArmor; critest skips its AppArmor specs when the node has none.

use std::path::Path;

use corral_cri::v1;
use corral_cri::v1::security_profile::ProfileType;
use oci_spec::runtime::LinuxSeccomp;

use super::SpecError;

/// Prefix of a localhost profile in the deprecated string form (and tolerated in `localhost_ref`).
const LOCALHOST_PREFIX: &str = "localhost/";

/// The seccomp filter of a container: `None` = unconfined.
#[allow(deprecated)] // `seccomp_profile_path`: old clients still send it
pub fn seccomp(
    sc: &v1::LinuxContainerSecurityContext,
    runtime_default: &LinuxSeccomp,
) -> Result<Option<LinuxSeccomp>, SpecError> {
    if sc.privileged {
        return Ok(None);
    }
    let profile = match &sc.seccomp {
        Some(profile) => Some(profile.clone()),
        None => from_deprecated_string("seccomp", &sc.seccomp_profile_path)?,
    };
    let Some(profile) = profile else { return Ok(None) };
    match checked_type("seccomp", &profile)? {
        ProfileType::Unconfined => Ok(None),
        ProfileType::RuntimeDefault => Ok(Some(runtime_default.clone())),
        ProfileType::Localhost => load_localhost(&profile.localhost_ref).map(Some),
    }
}

/// Checks the AppArmor request (see the module docs): only "none" and `Unconfined` pass.
#[allow(deprecated)] // `apparmor_profile`: old clients still send it
pub fn check_apparmor(sc: &v1::LinuxContainerSecurityContext) -> Result<(), SpecError> {
    let profile = match &sc.apparmor {
        Some(profile) => Some(profile.clone()),
        None => from_deprecated_string("apparmor", &sc.apparmor_profile)?,
    };
    let Some(profile) = profile else { return Ok(()) };
    match checked_type("apparmor", &profile)? {
        ProfileType::Unconfined => Ok(()),
        ProfileType::RuntimeDefault => Err(SpecError::AppArmorUnsupported("RuntimeDefault".into())),
        ProfileType::Localhost => Err(SpecError::AppArmorUnsupported(format!("{:?}", profile.localhost_ref))),
    }
}

/// The profile type, after the shape checks containerd makes.
fn checked_type(kind: &'static str, profile: &v1::SecurityProfile) -> Result<ProfileType, SpecError> {
    let bad = |reason: String| SpecError::BadSecurityProfile { kind, reason };
    let typ = ProfileType::try_from(profile.profile_type)
        .map_err(|_| bad(format!("unknown profile type {}", profile.profile_type)))?;
    if typ != ProfileType::Localhost && !profile.localhost_ref.is_empty() {
        return Err(bad(format!(
            "localhost_ref {:?} is only allowed with profile type Localhost",
            profile.localhost_ref
        )));
    }
    if typ == ProfileType::Localhost && profile.localhost_ref.is_empty() {
        return Err(bad("profile type Localhost needs a localhost_ref".into()));
    }
    Ok(typ)
}

/// The deprecated string form (`seccomp_profile_path`, `apparmor_profile`); "" = not set.
fn from_deprecated_string(kind: &'static str, value: &str) -> Result<Option<v1::SecurityProfile>, SpecError> {
    let profile = |typ: ProfileType, localhost_ref: &str| v1::SecurityProfile {
        profile_type: typ as i32,
        localhost_ref: localhost_ref.to_string(),
    };
    match value {
        "" => Ok(None),
        "runtime/default" | "docker/default" => Ok(Some(profile(ProfileType::RuntimeDefault, ""))),
        "unconfined" => Ok(Some(profile(ProfileType::Unconfined, ""))),
        other => match other.strip_prefix(LOCALHOST_PREFIX) {
            Some(path) if !path.is_empty() => Ok(Some(profile(ProfileType::Localhost, path))),
            _ => Err(SpecError::BadSecurityProfile { kind, reason: format!("invalid profile {other:?}") }),
        },
    }
}

/// Reads a localhost seccomp profile.
fn load_localhost(localhost_ref: &str) -> Result<LinuxSeccomp, SpecError> {
    let bad = |reason: String| SpecError::BadSeccompProfile { path: localhost_ref.to_string(), reason };
    // Tolerate the old "localhost/<path>" spelling inside the new field, as containerd does.
    let path = localhost_ref.strip_prefix(LOCALHOST_PREFIX).unwrap_or(localhost_ref);
    if !Path::new(path).is_absolute() {
        return Err(bad("not an absolute path".into()));
    }
    let text = std::fs::read(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    serde_json::from_slice::<LinuxSeccomp>(&text).map_err(|e| bad(format!("not a valid seccomp profile: {e}")))
}

#[cfg(test)]
#[allow(deprecated)]
mod tests {
    use super::*;
    use crate::container::testutil::default_seccomp;
    use oci_spec::runtime::LinuxSeccompAction;

    // critest's "block hostname" profile, byte for byte.
    const BLOCK_HOSTNAME: &str = r#"{
     "defaultAction": "SCMP_ACT_ALLOW",
     "syscalls": [
         {
             "names": ["sethostname"],
             "action": "SCMP_ACT_ERRNO"
         }
     ]
}"#;

    fn profile(typ: ProfileType, localhost_ref: &str) -> Option<v1::SecurityProfile> {
        Some(v1::SecurityProfile { profile_type: typ as i32, localhost_ref: localhost_ref.into() })
    }

    fn sc(seccomp: Option<v1::SecurityProfile>, deprecated: &str) -> v1::LinuxContainerSecurityContext {
        v1::LinuxContainerSecurityContext { seccomp, seccomp_profile_path: deprecated.into(), ..Default::default() }
    }

    #[test]
    fn seccomp_table() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("block-host-name.json");
        std::fs::write(&file, BLOCK_HOSTNAME).unwrap();
        let file = file.to_str().unwrap().to_string();
        let default = default_seccomp();

        #[derive(Debug, PartialEq)]
        enum Want {
            None,
            Default,
            BlockHostname,
        }
        let cases = [
            ("nil profile is unconfined", sc(None, ""), Want::None),
            ("empty profile is RuntimeDefault", sc(Some(v1::SecurityProfile::default()), ""), Want::Default),
            ("Unconfined", sc(profile(ProfileType::Unconfined, ""), ""), Want::None),
            ("RuntimeDefault", sc(profile(ProfileType::RuntimeDefault, ""), ""), Want::Default),
            ("Localhost", sc(profile(ProfileType::Localhost, &file), ""), Want::BlockHostname),
            (
                "Localhost with old prefix",
                sc(profile(ProfileType::Localhost, &format!("localhost/{file}")), ""),
                Want::BlockHostname,
            ),
            ("deprecated runtime/default", sc(None, "runtime/default"), Want::Default),
            ("deprecated docker/default", sc(None, "docker/default"), Want::Default),
            ("deprecated unconfined", sc(None, "unconfined"), Want::None),
            ("deprecated localhost", sc(None, &format!("localhost/{file}")), Want::BlockHostname),
            ("new field wins", sc(profile(ProfileType::Unconfined, ""), "runtime/default"), Want::None),
            (
                "privileged ignores everything",
                v1::LinuxContainerSecurityContext {
                    privileged: true,
                    ..sc(profile(ProfileType::Localhost, "/nonexistent.json"), "")
                },
                Want::None,
            ),
        ];
        for (name, sc, want) in cases {
            let got = seccomp(&sc, &default).unwrap_or_else(|e| panic!("{name}: {e}"));
            let got = match got {
                None => Want::None,
                Some(p) if p == default => Want::Default,
                Some(p) => {
                    assert_eq!(p.default_action(), LinuxSeccompAction::ScmpActAllow, "{name}");
                    let syscalls = p.syscalls().as_ref().unwrap();
                    assert_eq!(syscalls[0].names(), &["sethostname".to_string()], "{name}");
                    assert_eq!(syscalls[0].action(), LinuxSeccompAction::ScmpActErrno, "{name}");
                    Want::BlockHostname
                }
            };
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn seccomp_errors() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.json");
        std::fs::write(&junk, "{\"syscalls\": []}").unwrap();
        let junk = junk.to_str().unwrap();
        let missing = dir.path().join("missing.json");
        let missing = missing.to_str().unwrap();
        let cases = [
            (sc(profile(ProfileType::Localhost, missing), ""), "cannot read it: No such file or directory"),
            (
                sc(profile(ProfileType::Localhost, junk), ""),
                "not a valid seccomp profile: missing field `defaultAction`",
            ),
            (sc(profile(ProfileType::Localhost, "profiles/x.json"), ""), "not an absolute path"),
            (sc(profile(ProfileType::Localhost, ""), ""), "profile type Localhost needs a localhost_ref"),
            (sc(profile(ProfileType::RuntimeDefault, "/x.json"), ""), "is only allowed with profile type Localhost"),
            (
                sc(Some(v1::SecurityProfile { profile_type: 7, localhost_ref: String::new() }), ""),
                "unknown profile type 7",
            ),
            (sc(None, "foo/bar"), "invalid profile \"foo/bar\""),
            (sc(None, "localhost/"), "invalid profile \"localhost/\""),
        ];
        for (sc, want) in cases {
            let err = seccomp(&sc, &default_seccomp()).unwrap_err();
            assert!(err.is_invalid_argument());
            assert!(err.to_string().contains(want), "{err}");
        }
        // The path in the message is the one the client sent.
        let err = seccomp(&sc(profile(ProfileType::Localhost, missing), ""), &default_seccomp()).unwrap_err();
        assert!(err.to_string().starts_with(&format!("seccomp profile {missing:?}: ")), "{err}");
    }

    #[test]
    fn apparmor_table() {
        let aa = |profile: Option<v1::SecurityProfile>, deprecated: &str| v1::LinuxContainerSecurityContext {
            apparmor: profile,
            apparmor_profile: deprecated.into(),
            ..Default::default()
        };
        assert!(check_apparmor(&aa(None, "")).is_ok());
        assert!(check_apparmor(&aa(profile(ProfileType::Unconfined, ""), "")).is_ok());
        assert!(check_apparmor(&aa(None, "unconfined")).is_ok());
        for (sc, want) in [
            (aa(profile(ProfileType::RuntimeDefault, ""), ""), "apparmor profile RuntimeDefault requested"),
            (aa(profile(ProfileType::Localhost, "k8s-nginx"), ""), "apparmor profile \"k8s-nginx\" requested"),
            (aa(None, "runtime/default"), "apparmor profile RuntimeDefault requested"),
            (aa(None, "localhost/k8s-nginx"), "apparmor profile \"k8s-nginx\" requested"),
            (aa(None, "bogus"), "apparmor profile: invalid profile \"bogus\""),
        ] {
            let err = check_apparmor(&sc).unwrap_err();
            assert!(err.is_invalid_argument());
            assert!(err.to_string().contains(want), "{err}");
        }
    }
}
