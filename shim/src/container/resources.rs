//! CPU, memory, hugepage and unified cgroup limits, and the OOM score, from the CRI
//! `LinuxContainerResources` (containerd's `WithResources` and `WithOOMScoreAdj`).
//!
//! Zero means "not set" for every CRI number, so only non-zero values reach the spec. Two
//! host-dependent rules:
//! - a memory limit without a swap limit also limits memory+swap to the same value when the
//!   host accounts swap, so a limited container cannot escape its limit by swapping;
//! - hugepage limits need the hugetlb controller; without it they are dropped with a warning
//!   (containerd's default), since kubelet sends them for every page size the node has.
//!
//! The OOM score is clamped to the daemon's own when the daemon lacks `CAP_SYS_RESOURCE`
//! (this node): the kernel would refuse a lower one and the container would not start.
//! containerd needs `restrict_oom_score_adj = true` for the same.

use corral_cri::v1;
use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxMemory, LinuxResources};
use tracing::warn;

use super::SpecError;
use super::host::HostFacts;

/// Applies the CRI limits to the spec's resources.
pub fn apply(
    resources: &mut LinuxResources,
    cri: Option<&v1::LinuxContainerResources>,
    host: &HostFacts,
) -> Result<(), SpecError> {
    let Some(cri) = cri else { return Ok(()) };
    let bad = |what: &str, value: i64| SpecError::BadResources(format!("{what} {value} is negative"));

    let mut cpu = resources.cpu().clone().unwrap_or_default();
    if cri.cpu_period < 0 {
        return Err(bad("cpu_period", cri.cpu_period));
    }
    if cri.cpu_shares < 0 {
        return Err(bad("cpu_shares", cri.cpu_shares));
    }
    if cri.cpu_period != 0 {
        cpu.set_period(Some(cri.cpu_period as u64));
    }
    if cri.cpu_quota != 0 {
        cpu.set_quota(Some(cri.cpu_quota));
    }
    if cri.cpu_shares != 0 {
        cpu.set_shares(Some(cri.cpu_shares as u64));
    }
    if !cri.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(cri.cpuset_cpus.clone()));
    }
    if !cri.cpuset_mems.is_empty() {
        cpu.set_mems(Some(cri.cpuset_mems.clone()));
    }
    if cpu != LinuxCpu::default() {
        resources.set_cpu(Some(cpu));
    }

    let mut memory = resources.memory().unwrap_or_default();
    if cri.memory_limit_in_bytes < 0 {
        return Err(bad("memory_limit_in_bytes", cri.memory_limit_in_bytes));
    }
    if cri.memory_limit_in_bytes != 0 {
        memory.set_limit(Some(cri.memory_limit_in_bytes));
        if cri.memory_swap_limit_in_bytes == 0 && host.swap_controller {
            memory.set_swap(Some(cri.memory_limit_in_bytes));
        }
    }
    if cri.memory_swap_limit_in_bytes != 0 && host.swap_controller {
        memory.set_swap(Some(cri.memory_swap_limit_in_bytes));
    }
    if memory != LinuxMemory::default() {
        resources.set_memory(Some(memory));
    }

    if !cri.hugepage_limits.is_empty() {
        if host.hugetlb_controller {
            let mut limits = resources.hugepage_limits().clone().unwrap_or_default();
            for limit in &cri.hugepage_limits {
                if limit.page_size.is_empty() {
                    return Err(SpecError::BadResources("hugepage limit without a page size".into()));
                }
                let mut l = LinuxHugepageLimit::default();
                l.set_page_size(limit.page_size.clone());
                l.set_limit(i64::try_from(limit.limit).unwrap_or(i64::MAX));
                limits.push(l);
            }
            resources.set_hugepage_limits(Some(limits));
        } else {
            // kubelet sends hugepage limits with every container: say it once, not per create.
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED.call_once(|| warn!("hugetlb cgroup controller is missing: hugepage limits are ignored"));
        }
    }

    if !cri.unified.is_empty() {
        let mut unified = resources.unified().clone().unwrap_or_default();
        unified.extend(cri.unified.iter().map(|(k, v)| (k.clone(), v.clone())));
        resources.set_unified(Some(unified));
    }
    Ok(())
}

/// The process's `oom_score_adj`: `None` without CRI resources (the runtime leaves it
/// inherited), else the CRI value, clamped to the daemon's floor.
pub fn oom_score_adj(cri: Option<&v1::LinuxContainerResources>, host: &HostFacts) -> Result<Option<i32>, SpecError> {
    let Some(cri) = cri else { return Ok(None) };
    let requested = cri.oom_score_adj;
    if !(-1000..=1000).contains(&requested) {
        return Err(SpecError::BadResources(format!("oom_score_adj {requested} is outside -1000..=1000")));
    }
    let requested = requested as i32;
    match host.oom_score_adj_floor {
        Some(floor) if requested < floor => {
            warn!(requested, applied = floor, "oom_score_adj raised to the daemon's own: it lacks CAP_SYS_RESOURCE");
            Ok(Some(floor))
        }
        _ => Ok(Some(requested)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::testutil::host_facts;

    fn resources(f: impl FnOnce(&mut v1::LinuxContainerResources)) -> v1::LinuxContainerResources {
        let mut r = v1::LinuxContainerResources::default();
        f(&mut r);
        r
    }

    #[test]
    fn cpu_and_memory() {
        let cri = resources(|r| {
            r.cpu_period = 100_000;
            r.cpu_quota = 50_000;
            r.cpu_shares = 512;
            r.cpuset_cpus = "0-1".into();
            r.cpuset_mems = "0".into();
            r.memory_limit_in_bytes = 16 << 20;
            r.unified.insert("memory.high".into(), "12582912".into());
        });
        let mut out = LinuxResources::default();
        apply(&mut out, Some(&cri), &host_facts()).unwrap();
        let cpu = out.cpu().clone().unwrap();
        assert_eq!((cpu.period(), cpu.quota(), cpu.shares()), (Some(100_000), Some(50_000), Some(512)));
        assert_eq!((cpu.cpus().as_deref(), cpu.mems().as_deref()), (Some("0-1"), Some("0")));
        let mem = out.memory().unwrap();
        assert_eq!((mem.limit(), mem.swap()), (Some(16 << 20), Some(16 << 20)), "no swap beyond the limit");
        assert_eq!(out.unified().as_ref().unwrap()["memory.high"], "12582912");
    }

    #[test]
    fn swap_rules_table() {
        // (limit, swap, host has swap accounting) -> (limit, swap)
        let cases = [
            ((16, 0, true), (Some(16), Some(16))),
            ((16, 0, false), (Some(16), None)),
            ((16, 32, true), (Some(16), Some(32))),
            ((16, -1, true), (Some(16), Some(-1))),
            ((16, 32, false), (Some(16), None)),
            ((0, 0, true), (None, None)),
        ];
        for ((limit, swap, accounting), want) in cases {
            let cri = resources(|r| {
                r.memory_limit_in_bytes = limit;
                r.memory_swap_limit_in_bytes = swap;
            });
            let host = HostFacts { swap_controller: accounting, ..host_facts() };
            let mut out = LinuxResources::default();
            apply(&mut out, Some(&cri), &host).unwrap();
            let mem = out.memory().unwrap_or_default();
            assert_eq!((mem.limit(), mem.swap()), want, "{limit} {swap} {accounting}");
        }
    }

    #[test]
    fn hugepages_need_the_controller() {
        let cri =
            resources(|r| r.hugepage_limits = vec![v1::HugepageLimit { page_size: "2MB".into(), limit: 4 << 20 }]);
        let mut out = LinuxResources::default();
        apply(&mut out, Some(&cri), &host_facts()).unwrap();
        assert_eq!(out.hugepage_limits(), &None, "this node has no hugetlb controller");
        let host = HostFacts { hugetlb_controller: true, ..host_facts() };
        apply(&mut out, Some(&cri), &host).unwrap();
        let limits = out.hugepage_limits().clone().unwrap();
        assert_eq!((limits[0].page_size().as_str(), limits[0].limit()), ("2MB", 4 << 20));
    }

    #[test]
    fn nothing_set_changes_nothing() {
        let mut out = LinuxResources::default();
        let before = out.clone();
        apply(&mut out, Some(&v1::LinuxContainerResources::default()), &host_facts()).unwrap();
        apply(&mut out, None, &host_facts()).unwrap();
        assert_eq!(out, before);
    }

    #[test]
    fn bad_values() {
        for (cri, want) in [
            (resources(|r| r.cpu_period = -1), "cpu_period -1 is negative"),
            (resources(|r| r.cpu_shares = -2), "cpu_shares -2 is negative"),
            (resources(|r| r.memory_limit_in_bytes = -3), "memory_limit_in_bytes -3 is negative"),
        ] {
            let err = apply(&mut LinuxResources::default(), Some(&cri), &host_facts()).unwrap_err();
            assert!(err.is_invalid_argument());
            assert!(err.to_string().contains(want), "{err}");
        }
    }

    #[test]
    fn oom_score_table() {
        let floor_0 = host_facts(); // floor Some(0)
        let any = HostFacts { oom_score_adj_floor: None, ..host_facts() };
        let r = |v| resources(|r| r.oom_score_adj = v);
        assert_eq!(oom_score_adj(None, &floor_0).unwrap(), None);
        assert_eq!(oom_score_adj(Some(&r(1000)), &floor_0).unwrap(), Some(1000));
        assert_eq!(oom_score_adj(Some(&r(-997)), &floor_0).unwrap(), Some(0), "clamped");
        assert_eq!(oom_score_adj(Some(&r(-997)), &any).unwrap(), Some(-997));
        assert!(oom_score_adj(Some(&r(1001)), &any).unwrap_err().to_string().contains("outside -1000..=1000"));
    }
}
