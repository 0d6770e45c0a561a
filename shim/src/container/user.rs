//! Who the container's process runs as: uid, gid and supplementary groups, resolved against
//! the image's `/etc/passwd` and `/etc/group` as containerd 2.x does.
//!
//! Which user:
//! 1. `run_as_username` (looked up in `/etc/passwd`; unknown → error), else
//! 2. `run_as_user` (a uid; its passwd entry gives the gid, an unknown uid gets gid 0), else
//! 3. the image's `USER`: `name`, `uid`, `uid:gid`, `name:group`, `uid:group`, `name:gid`, else
//! 4. root.
//!
//! `run_as_group` replaces the gid (and needs 1. or 2.: CRI forbids a group alone).
//!
//! Supplementary groups (reported back in `ContainerStatus.user`):
//! - always the primary gid itself (containerd's fix for CVE-2023-25173: a process must not
//!   silently lose its primary group from the list),
//! - with the `Merge` policy (the default) every group of `/etc/group` that lists the user
//!   as a member, except a group named like the user (that is its own primary group),
//! - and the CRI `supplemental_groups`.
//!
//! `Strict` keeps only the primary gid and the CRI list. The result is sorted and unique.

use corral_cri::v1;

use super::SpecError;
use super::layers::LayeredFs;

/// The largest id a runc-like runtime accepts.
const MAX_ID: i64 = i32::MAX as i64;

/// The identity the container's process gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Sorted, unique, includes `gid`.
    pub additional_gids: Vec<u32>,
}

impl ResolvedUser {
    /// The CRI form for `ContainerStatus.user.linux`.
    pub fn to_cri(&self) -> v1::LinuxContainerUser {
        v1::LinuxContainerUser {
            uid: self.uid.into(),
            gid: self.gid.into(),
            supplemental_groups: self.additional_gids.iter().map(|&g| g.into()).collect(),
        }
    }
}

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

/// One line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// `/etc/passwd` and `/etc/group` of the image, read once. `None` = the image has no such file.
struct ImageAccounts {
    passwd: Option<Vec<PasswdEntry>>,
    groups: Option<Vec<GroupEntry>>,
}

impl ImageAccounts {
    fn read(image: &LayeredFs) -> Result<ImageAccounts, SpecError> {
        let read = |path: &'static str| {
            image
                .read(path)
                .map(|bytes| bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
                .map_err(|e| SpecError::io("reading the image's", path, e))
        };
        Ok(ImageAccounts {
            passwd: read("/etc/passwd")?.map(|t| parse_passwd(&t)),
            groups: read("/etc/group")?.map(|t| parse_group(&t)),
        })
    }

    fn user_by_name(&self, name: &str) -> Result<&PasswdEntry, SpecError> {
        self.passwd
            .iter()
            .flatten()
            .find(|u| u.name == name)
            .ok_or_else(|| SpecError::UnknownUser { name: name.to_string(), no_passwd: self.passwd.is_none() })
    }

    fn user_by_uid(&self, uid: u32) -> Option<&PasswdEntry> {
        self.passwd.iter().flatten().find(|u| u.uid == uid)
    }

    fn gid_by_name(&self, name: &str) -> Result<u32, SpecError> {
        self.groups
            .iter()
            .flatten()
            .find(|g| g.name == name)
            .map(|g| g.gid)
            .ok_or_else(|| SpecError::UnknownGroup { name: name.to_string(), no_group_file: self.groups.is_none() })
    }

    /// The groups listing `user` as a member, except its own same-named group.
    fn member_gids(&self, user: &str) -> Vec<u32> {
        self.groups
            .iter()
            .flatten()
            .filter(|g| g.name != user && g.members.iter().any(|m| m == user))
            .map(|g| g.gid)
            .collect()
    }
}

/// Resolves the user of a container (see the module docs).
pub fn resolve(
    sc: &v1::LinuxContainerSecurityContext,
    image_user: &str,
    image: &LayeredFs,
) -> Result<ResolvedUser, SpecError> {
    let accounts = ImageAccounts::read(image)?;
    let run_as_group = sc.run_as_group.as_ref().map(|g| checked_id("run_as_group", g.value)).transpose()?;
    let run_as_user = sc.run_as_user.as_ref().map(|u| checked_id("run_as_user", u.value)).transpose()?;

    // Whom to look up: a name or a uid, as the request or the image says.
    let who: UserRef = if !sc.run_as_username.is_empty() {
        UserRef::Name(sc.run_as_username.clone())
    } else if let Some(uid) = run_as_user {
        UserRef::Uid(uid)
    } else if let Some(gid) = run_as_group {
        return Err(SpecError::GroupWithoutUser(gid.into()));
    } else if !image_user.is_empty() {
        UserRef::parse(image_user)?.0
    } else {
        UserRef::Uid(0)
    };
    // An explicit group: the request's, else the image's `user:group`.
    let group: Option<GroupRef> = match run_as_group {
        Some(gid) => Some(GroupRef::Gid(gid)),
        None if sc.run_as_username.is_empty() && run_as_user.is_none() && !image_user.is_empty() => {
            UserRef::parse(image_user)?.1
        }
        None => None,
    };

    let (uid, default_gid, name) = match &who {
        UserRef::Name(name) => {
            let entry = accounts.user_by_name(name)?;
            (entry.uid, entry.gid, Some(entry.name.clone()))
        }
        UserRef::Uid(uid) => match accounts.user_by_uid(*uid) {
            Some(entry) => (entry.uid, entry.gid, Some(entry.name.clone())),
            None => (*uid, 0, None), // an unknown uid runs with gid 0, as in containerd and docker
        },
    };
    let gid = match group {
        None => default_gid,
        Some(GroupRef::Gid(gid)) => gid,
        Some(GroupRef::Name(name)) => accounts.gid_by_name(&name)?,
    };

    let mut gids = vec![gid];
    let policy = v1::SupplementalGroupsPolicy::try_from(sc.supplemental_groups_policy).map_err(|_| {
        SpecError::BadUserSpec(format!("unknown supplemental_groups_policy {}", sc.supplemental_groups_policy))
    })?;
    if policy == v1::SupplementalGroupsPolicy::Merge
        && let Some(name) = name
    {
        gids.extend(accounts.member_gids(&name));
    }
    for &g in &sc.supplemental_groups {
        gids.push(checked_id("supplemental group", g)?);
    }
    gids.sort_unstable();
    gids.dedup();
    Ok(ResolvedUser { uid, gid, additional_gids: gids })
}

fn checked_id(what: &'static str, value: i64) -> Result<u32, SpecError> {
    if (0..=MAX_ID).contains(&value) { Ok(value as u32) } else { Err(SpecError::IdOutOfRange { what, value }) }
}

/// The user half of a user spec.
#[derive(Debug, PartialEq, Eq)]
enum UserRef {
    Name(String),
    Uid(u32),
}

/// The group half of a user spec.
#[derive(Debug, PartialEq, Eq)]
enum GroupRef {
    Name(String),
    Gid(u32),
}

impl UserRef {
    /// Parses an image `USER` value: `user[:group]`, each part a name or a number.
    /// Numbers beyond 2^31-1 are names, as in containerd.
    fn parse(spec: &str) -> Result<(UserRef, Option<GroupRef>), SpecError> {
        let bad = || SpecError::BadUserSpec(spec.to_string());
        let numeric = |s: &str| s.parse::<u32>().ok().filter(|&n| i64::from(n) <= MAX_ID);
        let mut parts = spec.split(':');
        let user = parts.next().filter(|u| !u.is_empty()).ok_or_else(bad)?;
        let group = parts.next();
        if parts.next().is_some() || group == Some("") {
            return Err(bad());
        }
        let user = numeric(user).map(UserRef::Uid).unwrap_or_else(|| UserRef::Name(user.to_string()));
        let group = group.map(|g| numeric(g).map(GroupRef::Gid).unwrap_or_else(|| GroupRef::Name(g.to_string())));
        Ok((user, group))
    }
}

/// Parses `/etc/passwd`, skipping lines that are not `name:pw:uid:gid:...`.
fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.trim().split(':');
            let name = f.next().filter(|n| !n.is_empty() && !n.starts_with('#'))?;
            let _password = f.next()?;
            let uid = f.next()?.trim().parse().ok()?;
            let gid = f.next()?.trim().parse().ok()?;
            Some(PasswdEntry { name: name.to_string(), uid, gid })
        })
        .collect()
}

/// Parses `/etc/group`, skipping lines that are not `name:pw:gid[:members]`.
fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.trim().split(':');
            let name = f.next().filter(|n| !n.is_empty() && !n.starts_with('#'))?;
            let _password = f.next()?;
            let gid = f.next()?.trim().parse().ok()?;
            let members = f
                .next()
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect();
            Some(GroupEntry { name: name.to_string(), gid, members })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::testutil::Layers;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n\
        # a comment line\n\
        broken line\n\
        default-user:x:1000:1000::/home/default-user:/bin/sh\n\
        app:x:2000:2100::/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\n\
        wheel:x:10:root,app\n\
        default-user:x:1000:default-user\n\
        app:x:2100:\n\
        group-defined-in-image:x:50000:default-user\n\
        audio:x:29:app , default-user\n\
        appgroup:x:3000:\n";

    fn image() -> Layers {
        let layers = Layers::new(1);
        layers.file(0, "etc/passwd", PASSWD);
        layers.file(0, "etc/group", GROUP);
        layers
    }

    fn sc() -> v1::LinuxContainerSecurityContext {
        v1::LinuxContainerSecurityContext::default()
    }

    fn uid(v: i64) -> Option<v1::Int64Value> {
        Some(v1::Int64Value { value: v })
    }

    fn run(
        sc: &v1::LinuxContainerSecurityContext,
        image_user: &str,
        layers: &Layers,
    ) -> Result<ResolvedUser, SpecError> {
        resolve(sc, image_user, &LayeredFs::new(layers.paths()))
    }

    fn user(uid: u32, gid: u32, gids: &[u32]) -> ResolvedUser {
        ResolvedUser { uid, gid, additional_gids: gids.to_vec() }
    }

    #[test]
    fn which_user_table() {
        let layers = image();
        struct Case {
            name: &'static str,
            sc: v1::LinuxContainerSecurityContext,
            image_user: &'static str,
            want: ResolvedUser,
        }
        let cases = [
            Case {
                name: "nothing: root, with root's member groups",
                sc: sc(),
                image_user: "",
                want: user(0, 0, &[0, 10]),
            },
            Case {
                name: "run_as_user known: gid from passwd",
                sc: v1::LinuxContainerSecurityContext { run_as_user: uid(2000), ..sc() },
                image_user: "",
                want: user(2000, 2100, &[10, 29, 2100]),
            },
            Case {
                name: "run_as_user unknown: gid 0",
                sc: v1::LinuxContainerSecurityContext { run_as_user: uid(1001), ..sc() },
                image_user: "",
                want: user(1001, 0, &[0]),
            },
            Case {
                name: "run_as_user + run_as_group",
                sc: v1::LinuxContainerSecurityContext { run_as_user: uid(1001), run_as_group: uid(1002), ..sc() },
                image_user: "",
                want: user(1001, 1002, &[1002]),
            },
            Case {
                name: "run_as_username",
                sc: v1::LinuxContainerSecurityContext { run_as_username: "nobody".into(), ..sc() },
                image_user: "",
                want: user(65534, 65534, &[65534]),
            },
            Case {
                name: "run_as_username wins over run_as_user",
                sc: v1::LinuxContainerSecurityContext { run_as_username: "app".into(), run_as_user: uid(5), ..sc() },
                image_user: "",
                want: user(2000, 2100, &[10, 29, 2100]),
            },
            Case {
                name: "request wins over image USER",
                sc: v1::LinuxContainerSecurityContext { run_as_user: uid(0), ..sc() },
                image_user: "app",
                want: user(0, 0, &[0, 10]),
            },
            Case { name: "image USER name", sc: sc(), image_user: "app", want: user(2000, 2100, &[10, 29, 2100]) },
            Case { name: "image USER uid", sc: sc(), image_user: "1000", want: user(1000, 1000, &[29, 1000, 50000]) },
            Case {
                name: "image USER uid:gid (no lookup)",
                sc: sc(),
                image_user: "4242:4343",
                want: user(4242, 4343, &[4343]),
            },
            Case {
                name: "image USER name:group",
                sc: sc(),
                image_user: "app:appgroup",
                want: user(2000, 3000, &[10, 29, 3000]),
            },
            Case { name: "image USER uid:group", sc: sc(), image_user: "7:wheel", want: user(7, 10, &[10]) },
            Case { name: "image USER name:gid", sc: sc(), image_user: "nobody:5", want: user(65534, 5, &[5]) },
        ];
        for case in cases {
            let got = run(&case.sc, case.image_user, &layers).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert_eq!(got, case.want, "{}", case.name);
        }
    }

    #[test]
    fn supplemental_groups_merge_and_strict() {
        // critest's "SupplementalGroupsPolicy" specs: uid 1000 is in group 50000 in the image.
        let layers = image();
        let merge =
            v1::LinuxContainerSecurityContext { run_as_user: uid(1000), supplemental_groups: vec![1234], ..sc() };
        let got = run(&merge, "", &layers).unwrap();
        assert_eq!(got, user(1000, 1000, &[29, 1000, 1234, 50000]));
        assert_eq!(got.to_cri().supplemental_groups, [29, 1000, 1234, 50000]);

        let strict = v1::LinuxContainerSecurityContext {
            supplemental_groups_policy: v1::SupplementalGroupsPolicy::Strict as i32,
            ..merge
        };
        assert_eq!(run(&strict, "", &layers).unwrap(), user(1000, 1000, &[1000, 1234]));
    }

    #[test]
    fn errors_table() {
        let layers = image();
        let empty = Layers::new(1);
        let cases: Vec<(&str, v1::LinuxContainerSecurityContext, &str, &Layers, &str)> = vec![
            (
                "group without user",
                v1::LinuxContainerSecurityContext { run_as_group: uid(5), ..sc() },
                "app",
                &layers,
                "run_as_group 5 is set without run_as_user or run_as_username",
            ),
            (
                "unknown username",
                v1::LinuxContainerSecurityContext { run_as_username: "ghost".into(), ..sc() },
                "",
                &layers,
                "user \"ghost\" not found in the image's /etc/passwd",
            ),
            (
                "username without passwd",
                v1::LinuxContainerSecurityContext { run_as_username: "nobody".into(), ..sc() },
                "",
                &empty,
                "user \"nobody\" not found in the image's /etc/passwd (the image has no /etc/passwd)",
            ),
            ("unknown image user", sc(), "ghost", &layers, "user \"ghost\" not found in the image's /etc/passwd"),
            (
                "unknown image group",
                sc(),
                "app:ghosts",
                &layers,
                "group \"ghosts\" not found in the image's /etc/group",
            ),
            ("bad image user", sc(), "a:b:c", &layers, "invalid user \"a:b:c\""),
            ("empty group", sc(), "app:", &layers, "invalid user \"app:\""),
            (
                "negative uid",
                v1::LinuxContainerSecurityContext { run_as_user: uid(-1), ..sc() },
                "",
                &layers,
                "run_as_user -1 is out of range",
            ),
            (
                "huge gid",
                v1::LinuxContainerSecurityContext { run_as_user: uid(1), run_as_group: uid(1 << 40), ..sc() },
                "",
                &layers,
                "run_as_group 1099511627776 is out of range",
            ),
            (
                "bad supplemental",
                v1::LinuxContainerSecurityContext { supplemental_groups: vec![-3], ..sc() },
                "",
                &layers,
                "supplemental group -3 is out of range",
            ),
            (
                "bad policy",
                v1::LinuxContainerSecurityContext { supplemental_groups_policy: 9, ..sc() },
                "",
                &layers,
                "unknown supplemental_groups_policy 9",
            ),
        ];
        for (name, sc, image_user, layers, want) in cases {
            let err = run(&sc, image_user, layers).expect_err(name);
            assert!(err.is_invalid_argument(), "{name}");
            assert!(err.to_string().contains(want), "{name}: {err}");
        }
    }

    #[test]
    fn an_image_without_account_files_still_runs_numeric_users() {
        let empty = Layers::new(1);
        assert_eq!(run(&sc(), "", &empty).unwrap(), user(0, 0, &[0]));
        assert_eq!(run(&sc(), "1000", &empty).unwrap(), user(1000, 0, &[0]));
        let req = v1::LinuxContainerSecurityContext { run_as_user: uid(33), supplemental_groups: vec![7], ..sc() };
        assert_eq!(run(&req, "", &empty).unwrap(), user(33, 0, &[0, 7]));
    }

    #[test]
    fn parsers_skip_junk() {
        let users = parse_passwd(PASSWD);
        assert_eq!(users.len(), 5);
        assert_eq!(users[3], PasswdEntry { name: "default-user".into(), uid: 1000, gid: 1000 });
        let groups = parse_group(GROUP);
        assert_eq!(
            groups[5],
            GroupEntry { name: "audio".into(), gid: 29, members: vec!["app".into(), "default-user".into()] }
        );
        assert!(parse_group("x:y\nz:x:notanumber:\n").is_empty());
    }
}
