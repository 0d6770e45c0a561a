//! Linux capabilities: CRI `add`/`drop`/`add_ambient` lists applied to the base spec's sets.
//!
//! Rules (containerd's `WithCapabilities`, plus ambient capabilities which containerd drops):
//! - Names are case-insensitive, with or without the `CAP_` prefix (`net_admin`,
//!   `CAP_NET_ADMIN`); an unknown name is an error, not a silent no-op.
//! - `ALL` in `add` first sets bounding/effective/permitted to every capability the daemon
//!   itself holds (a runtime cannot hand out what it lacks); `ALL` in `drop` then empties
//!   them. Individual adds are applied next, individual drops last, so
//!   `add: [ALL], drop: [CHOWN]` is everything but `CAP_CHOWN`, and
//!   `drop: [ALL], add: [NET_ADMIN]` is only `CAP_NET_ADMIN`.
//! - Ambient capabilities: containerd clears them; corral honours the newer CRI field
//!   `add_ambient_capabilities` by putting each one in every set (the kernel requires an
//!   ambient capability to be permitted and inheritable). Without that field the ambient and
//!   inheritable sets end up empty, as in containerd.

use std::collections::HashSet;
use std::str::FromStr;

use corral_cri::v1;
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use super::SpecError;

/// Every capability the kernel defines, indexed by its number (`CAP_CHOWN` = 0, ...).
pub const ALL_CAPABILITIES: [Capability; 41] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::SysModule,
    Capability::SysRawio,
    Capability::SysChroot,
    Capability::SysPtrace,
    Capability::SysPacct,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysNice,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Mknod,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::Setfcap,
    Capability::MacOverride,
    Capability::MacAdmin,
    Capability::Syslog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::Perfmon,
    Capability::Bpf,
    Capability::CheckpointRestore,
];

/// The capabilities whose bits are set in a mask as printed in `/proc/<pid>/status`
/// (`CapEff: 000001fffeffffff`). Bits beyond the known capabilities are ignored.
pub fn from_mask(mask: u64) -> Vec<Capability> {
    ALL_CAPABILITIES.iter().enumerate().filter(|(bit, _)| mask & (1u64 << bit) != 0).map(|(_, cap)| *cap).collect()
}

/// Parses a CRI capability name: any case, `CAP_` prefix optional.
pub fn parse_name(name: &str) -> Result<Capability, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    Capability::from_str(bare).map_err(|_| SpecError::UnknownCapability(name.to_string()))
}

fn is_all(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("ALL")
}

/// The five capability sets of a process, as plain sets to edit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: HashSet<Capability>,
    pub effective: HashSet<Capability>,
    pub permitted: HashSet<Capability>,
    pub inheritable: HashSet<Capability>,
    pub ambient: HashSet<Capability>,
}

impl CapSets {
    /// The sets of an OCI process (missing sets are empty).
    pub fn from_oci(caps: Option<&LinuxCapabilities>) -> CapSets {
        let set = |s: Option<&Capabilities>| s.cloned().unwrap_or_default();
        match caps {
            None => CapSets::default(),
            Some(c) => CapSets {
                bounding: set(c.bounding().as_ref()),
                effective: set(c.effective().as_ref()),
                permitted: set(c.permitted().as_ref()),
                inheritable: set(c.inheritable().as_ref()),
                ambient: set(c.ambient().as_ref()),
            },
        }
    }

    /// The OCI form; empty sets are written as empty lists, never omitted, so a runtime
    /// cannot mistake "none" for "default".
    pub fn to_oci(&self) -> LinuxCapabilities {
        let mut caps = LinuxCapabilities::default();
        caps.set_bounding(Some(self.bounding.clone()));
        caps.set_effective(Some(self.effective.clone()));
        caps.set_permitted(Some(self.permitted.clone()));
        caps.set_inheritable(Some(self.inheritable.clone()));
        caps.set_ambient(Some(self.ambient.clone()));
        caps
    }

    /// Bounding, effective and permitted become exactly `caps`; inheritable keeps only what
    /// is still allowed (containerd's `WithCapabilities`).
    fn set_main(&mut self, caps: &[Capability]) {
        let all: HashSet<Capability> = caps.iter().copied().collect();
        self.bounding = all.clone();
        self.effective = all.clone();
        self.permitted = all.clone();
        self.inheritable.retain(|c| all.contains(c));
    }

    fn add(&mut self, cap: Capability) {
        self.bounding.insert(cap);
        self.effective.insert(cap);
        self.permitted.insert(cap);
    }

    fn drop_cap(&mut self, cap: Capability) {
        self.bounding.remove(&cap);
        self.effective.remove(&cap);
        self.permitted.remove(&cap);
        self.inheritable.remove(&cap);
    }

    fn add_ambient(&mut self, cap: Capability) {
        self.add(cap);
        self.inheritable.insert(cap);
        self.ambient.insert(cap);
    }

    /// A privileged container: everything the daemon holds, nothing ambient.
    pub fn privileged(host_caps: &[Capability]) -> CapSets {
        let mut sets = CapSets::default();
        sets.set_main(host_caps);
        sets
    }

    /// Applies a CRI capability request to these sets (see the module docs for the order).
    /// `host_caps` is what `ALL` means.
    pub fn apply(&mut self, request: Option<&v1::Capability>, host_caps: &[Capability]) -> Result<(), SpecError> {
        // Ambient capabilities come only from the request, never from the base spec.
        self.ambient.clear();
        let Some(request) = request else { return Ok(()) };
        // Parse everything first: a bad name must not leave half-edited sets behind.
        let named = |names: &[String]| -> Result<Vec<Capability>, SpecError> {
            names.iter().filter(|n| !is_all(n)).map(|n| parse_name(n)).collect()
        };
        let adds = named(&request.add_capabilities)?;
        let drops = named(&request.drop_capabilities)?;
        let ambient = named(&request.add_ambient_capabilities)?;

        if request.add_capabilities.iter().any(|n| is_all(n)) {
            self.set_main(host_caps);
        }
        if request.drop_capabilities.iter().any(|n| is_all(n)) {
            self.set_main(&[]);
        }
        adds.into_iter().for_each(|c| self.add(c));
        drops.into_iter().for_each(|c| self.drop_cap(c));
        ambient.into_iter().for_each(|c| self.add_ambient(c));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Capability as C;

    fn set(caps: &[Capability]) -> HashSet<Capability> {
        caps.iter().copied().collect()
    }

    fn request(add: &[&str], drop: &[&str], ambient: &[&str]) -> v1::Capability {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        v1::Capability {
            add_capabilities: strings(add),
            drop_capabilities: strings(drop),
            add_ambient_capabilities: strings(ambient),
        }
    }

    fn base() -> CapSets {
        let defaults = [C::Chown, C::Kill, C::NetRaw, C::NetBindService];
        let mut s = CapSets::default();
        s.set_main(&defaults);
        s
    }

    #[test]
    fn numbers_match_the_kernel() {
        // Spot checks against include/uapi/linux/capability.h.
        assert_eq!(ALL_CAPABILITIES[0], C::Chown);
        assert_eq!(ALL_CAPABILITIES[12], C::NetAdmin);
        assert_eq!(ALL_CAPABILITIES[21], C::SysAdmin);
        assert_eq!(ALL_CAPABILITIES[24], C::SysResource);
        assert_eq!(ALL_CAPABILITIES[27], C::Mknod);
        assert_eq!(ALL_CAPABILITIES[31], C::Setfcap);
        assert_eq!(ALL_CAPABILITIES[40], C::CheckpointRestore);
        // Every name round-trips through the parser, which also proves the table has no
        // duplicates a typo could hide.
        let mut seen = HashSet::new();
        for cap in ALL_CAPABILITIES {
            let json = serde_json::to_string(&cap).unwrap(); // "CAP_..."
            assert_eq!(parse_name(json.trim_matches('"')).unwrap(), cap);
            assert!(seen.insert(cap));
        }
    }

    #[test]
    fn mask_from_proc_status() {
        // This machine's daemon: everything up to CAP_CHECKPOINT_RESTORE except SYS_RESOURCE.
        let caps = from_mask(0x0000_01ff_feff_ffff);
        assert_eq!(caps.len(), 40);
        assert!(!caps.contains(&C::SysResource));
        assert!(caps.contains(&C::CheckpointRestore));
        assert_eq!(from_mask(0b101), vec![C::Chown, C::DacReadSearch]);
        assert!(from_mask(0).is_empty());
    }

    #[test]
    fn names_in_any_spelling() {
        for name in ["NET_ADMIN", "net_admin", "CAP_NET_ADMIN", "cap_net_admin", " Net_Admin "] {
            assert_eq!(parse_name(name).unwrap(), C::NetAdmin, "{name}");
        }
        for bad in ["NET_ADMINN", "CAP_", "", "ALL2", "CAP_CAP_CHOWN"] {
            assert!(matches!(parse_name(bad), Err(SpecError::UnknownCapability(_))), "{bad}");
        }
    }

    #[test]
    fn add_drop_table() {
        let host = [C::Chown, C::Kill, C::NetRaw, C::NetBindService, C::NetAdmin, C::SysAdmin];
        struct Case<'a> {
            name: &'static str,
            add: &'static [&'static str],
            drop: &'static [&'static str],
            want: &'a [Capability],
        }
        let cases = [
            Case { name: "nothing", add: &[], drop: &[], want: &[C::Chown, C::Kill, C::NetRaw, C::NetBindService] },
            Case {
                name: "add one",
                add: &["NET_ADMIN"],
                drop: &[],
                want: &[C::Chown, C::Kill, C::NetRaw, C::NetBindService, C::NetAdmin],
            },
            Case { name: "drop one", add: &[], drop: &["CAP_NET_RAW"], want: &[C::Chown, C::Kill, C::NetBindService] },
            Case { name: "add ALL", add: &["ALL"], drop: &[], want: &host },
            Case { name: "drop ALL", add: &[], drop: &["all"], want: &[] },
            Case {
                name: "add ALL, drop one",
                add: &["ALL"],
                drop: &["CHOWN"],
                want: &[C::Kill, C::NetRaw, C::NetBindService, C::NetAdmin, C::SysAdmin],
            },
            Case { name: "drop ALL, add one", add: &["NET_BIND_SERVICE"], drop: &["ALL"], want: &[C::NetBindService] },
            Case {
                name: "add and drop the same: drop wins",
                add: &["SYS_ADMIN"],
                drop: &["SYS_ADMIN"],
                want: &[C::Chown, C::Kill, C::NetRaw, C::NetBindService],
            },
        ];
        for case in cases {
            let mut sets = base();
            sets.apply(Some(&request(case.add, case.drop, &[])), &host).unwrap();
            let want = set(case.want);
            assert_eq!(sets.bounding, want, "{}: bounding", case.name);
            assert_eq!(sets.effective, want, "{}: effective", case.name);
            assert_eq!(sets.permitted, want, "{}: permitted", case.name);
            assert!(sets.inheritable.is_empty(), "{}", case.name);
            assert!(sets.ambient.is_empty(), "{}", case.name);
        }
    }

    #[test]
    fn ambient_capabilities_land_in_every_set() {
        let mut sets = base();
        sets.ambient.insert(C::Kill); // from a base spec: must not survive
        sets.apply(Some(&request(&[], &["ALL"], &["NET_BIND_SERVICE"])), &[]).unwrap();
        let want = set(&[C::NetBindService]);
        assert_eq!(sets.bounding, want);
        assert_eq!(sets.effective, want);
        assert_eq!(sets.permitted, want);
        assert_eq!(sets.inheritable, want);
        assert_eq!(sets.ambient, want);
    }

    #[test]
    fn bad_name_changes_nothing() {
        let mut sets = base();
        let before = sets.clone();
        let err = sets.apply(Some(&request(&["ALL"], &["NOPE"], &[])), &[C::SysAdmin]).unwrap_err();
        assert_eq!(err.to_string(), "unknown capability \"NOPE\"");
        assert_eq!(sets, before);
    }

    #[test]
    fn no_request_keeps_the_base_but_never_ambient() {
        let mut sets = base();
        sets.ambient.insert(C::Kill);
        sets.apply(None, &[]).unwrap();
        assert_eq!(sets.bounding, base().bounding);
        assert!(sets.ambient.is_empty());
    }

    #[test]
    fn oci_round_trip_writes_empty_sets() {
        let sets = CapSets::privileged(&[C::Chown]);
        let oci = sets.to_oci();
        assert_eq!(oci.ambient().as_ref().map(|s| s.len()), Some(0));
        assert_eq!(CapSets::from_oci(Some(&oci)), sets);
        let json = serde_json::to_value(&oci).unwrap();
        assert_eq!(json["bounding"], serde_json::json!(["CAP_CHOWN"]));
        assert_eq!(json["ambient"], serde_json::json!([]));
    }
}
