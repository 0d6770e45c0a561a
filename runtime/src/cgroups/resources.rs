//! OCI `LinuxResources` → cgroup files, through cgroups-rs' controllers.
//!
//! The controllers' own `apply()` ignores some write errors (memory) and has no v2 unit
//! conversions, so each value is written here with the controller's setter, converted for
//! the hierarchy version the way runc does, and every failure is reported with its file.

use cgroups_rs::fs::cgroup::Cgroup;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuset::CpuSetController;
use cgroups_rs::fs::devices::{DevicePermissions, DeviceType, DevicesController};
use cgroups_rs::fs::hugetlb::HugeTlbController;
use cgroups_rs::fs::memory::{MemController, SetMemory};
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::{Controller, MaxValue};
use oci_spec::runtime::{LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxResources};

use crate::error::{Context, Error, Result};

/// Writes every limit `res` sets into `cg`. Unset values are left alone, so this serves both
/// creation and `UpdateContainerResources`.
pub fn apply(cg: &Cgroup, res: &LinuxResources) -> Result<()> {
    let v2 = cg.v2();
    let at = || cg.path().to_owned();
    if let Some(mem) = res.memory() {
        let ctl: &MemController = controller(cg, "memory")?;
        apply_memory(ctl, mem, v2).step(|| format!("{}: memory", at()))?;
    }
    if let Some(cpu) = res.cpu() {
        apply_cpu(cg, cpu, v2)?;
    }
    if let Some(pids) = res.pids() {
        let ctl: &PidController = controller(cg, "pids")?;
        let max = if pids.limit() > 0 { MaxValue::Value(pids.limit()) } else { MaxValue::Max };
        ctl.set_pid_max(max).step(|| format!("{}: pids.max", at()))?;
    }
    for page in res.hugepage_limits().iter().flatten() {
        let ctl: &HugeTlbController = controller(cg, "hugetlb")?;
        let limit = u64::try_from(page.limit()).unwrap_or(u64::MAX);
        ctl.set_limit_in_bytes(page.page_size(), limit).step(|| format!("{}: hugetlb {}", at(), page.page_size()))?;
    }
    if let Some(devices) = res.devices() {
        apply_devices(cg, devices)?;
    }
    if let Some(unified) = res.unified() {
        if !v2 {
            return Err(Error::InvalidSpec("linux.resources.unified needs cgroup v2".into()));
        }
        let dir = cg.subsystems().first().map(|s| s.to_controller().path().to_path_buf());
        for (key, value) in unified {
            if key.contains('/') || key.starts_with('.') {
                return Err(Error::InvalidSpec(format!("linux.resources.unified key {key:?}")));
            }
            if let Some(dir) = &dir {
                let file = dir.join(key);
                std::fs::write(&file, value).step(|| format!("write {file:?}"))?;
            }
        }
    }
    Ok(())
}

fn controller<'a, T>(cg: &'a Cgroup, name: &str) -> Result<&'a T>
where
    &'a T: From<&'a cgroups_rs::fs::Subsystem>,
    T: Controller + cgroups_rs::fs::ControllIdentifier,
{
    cg.controller_of::<T>()
        .ok_or_else(|| Error::InvalidSpec(format!("cgroup {}: the {name} controller is not available", cg.path())))
}

fn apply_memory(ctl: &MemController, mem: &LinuxMemory, v2: bool) -> cgroups_rs::fs::error::Result<()> {
    if v2 {
        // v2 has no memory+swap limit: memory.swap.max is the swap alone (OCI swap - limit).
        if let Some(limit) = mem.limit() {
            ctl.set_limit(limit)?;
        }
        if let Some(swap) = mem.swap() {
            let swap_only = match (swap, mem.limit()) {
                (-1, _) => -1,
                (swap, Some(limit)) if limit > 0 => (swap - limit).max(0),
                (swap, _) => swap,
            };
            ctl.set_memswap_limit(swap_only)?;
        }
        if let Some(low) = mem.reservation() {
            ctl.set_mem(SetMemory { low: Some(MaxValue::Value(low)), high: None, min: None, max: None })?;
        }
        return Ok(());
    }
    if let Some(limit) = mem.limit() {
        // memory.limit_in_bytes must stay <= memory.memsw.limit_in_bytes: when lowering the
        // pair, the limit goes first; when raising, memsw must go first (runc does the same).
        if let Err(e) = ctl.set_limit(limit) {
            match mem.swap() {
                Some(swap) => {
                    ctl.set_memswap_limit(swap)?;
                    ctl.set_limit(limit)?;
                }
                None => return Err(e),
            }
        }
    }
    if let Some(swap) = mem.swap()
        && ctl.path().join("memory.memsw.limit_in_bytes").exists()
    {
        ctl.set_memswap_limit(swap)?;
    }
    if let Some(soft) = mem.reservation() {
        ctl.set_soft_limit(soft)?;
    }
    if let Some(swappiness) = mem.swappiness() {
        ctl.set_swappiness(swappiness)?;
    }
    Ok(())
}

/// runc's conversion of v1 cpu.shares [2, 262144] to v2 cpu.weight [1, 10000].
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + (shares.clamp(2, 262_144) - 2) * 9999 / 262_142
}

fn apply_cpu(cg: &Cgroup, cpu: &LinuxCpu, v2: bool) -> Result<()> {
    let at = cg.path();
    if cpu.shares().is_some() || cpu.quota().is_some() || cpu.period().is_some() {
        let ctl: &CpuController = controller(cg, "cpu")?;
        if let Some(shares) = cpu.shares().filter(|s| *s > 0) {
            let value = if v2 { shares_to_weight(shares) } else { shares };
            ctl.set_shares(value).step(|| format!("{at}: cpu shares/weight {value}"))?;
        }
        if cpu.quota().is_some() || cpu.period().is_some() {
            ctl.set_cfs_quota_and_period(cpu.quota(), cpu.period())
                .step(|| format!("{at}: cpu quota {:?} period {:?}", cpu.quota(), cpu.period()))?;
        }
    }
    if cpu.cpus().is_some() || cpu.mems().is_some() {
        let ctl: &CpuSetController = controller(cg, "cpuset")?;
        if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
            ctl.set_cpus(cpus).step(|| format!("{at}: cpuset.cpus {cpus}"))?;
        }
        if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
            ctl.set_mems(mems).step(|| format!("{at}: cpuset.mems {mems}"))?;
        }
    }
    Ok(())
}

/// Device access rules. Only v1 has a devices controller; v2 needs an eBPF program, which
/// corral does not load (the device nodes themselves are what the container gets).
fn apply_devices(cg: &Cgroup, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    if cg.v2() {
        tracing::debug!(cgroup = cg.path(), "device cgroup rules are not enforced on cgroup v2");
        return Ok(());
    }
    let ctl: &DevicesController = controller(cg, "devices")?;
    for rule in rules {
        let devtype = match rule.typ().map(|t| t.as_str().chars().next()) {
            None => DeviceType::All,
            Some(c) => DeviceType::from_char(c)
                .ok_or_else(|| Error::InvalidSpec(format!("device cgroup rule type {:?}", rule.typ())))?,
        };
        let access = rule.access().clone().unwrap_or_else(|| "rwm".into());
        let perms = DevicePermissions::from_str(&access)
            .map_err(|_| Error::InvalidSpec(format!("device cgroup access {access:?}")))?;
        let (major, minor) = (rule.major().unwrap_or(-1), rule.minor().unwrap_or(-1));
        let result = if rule.allow() {
            ctl.allow_device(devtype, major, minor, &perms)
        } else {
            ctl.deny_device(devtype, major, minor, &perms)
        };
        result.step(|| format!("{}: device rule {rule:?}", cg.path()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::shares_to_weight;

    #[test]
    fn shares_convert_like_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
    }
}
