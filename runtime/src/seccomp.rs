//! Loads an OCI seccomp section into the kernel with libseccomp.
//!
//! Runs in the container init right before `execve` (or before dropping capabilities when
//! `no_new_privileges` is off, since loading a filter then needs CAP_SYS_ADMIN).

use std::str::FromStr;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompOperator};

use crate::error::{Error, Result};

fn err(what: impl std::fmt::Display) -> Error {
    Error::Seccomp(what.to_string())
}

fn action(action: LinuxSeccompAction, errno: Option<u32>) -> Result<ScmpAction> {
    use LinuxSeccompAction::*;
    Ok(match action {
        ScmpActKill | ScmpActKillThread => ScmpAction::KillThread,
        ScmpActKillProcess => ScmpAction::KillProcess,
        ScmpActTrap => ScmpAction::Trap,
        ScmpActErrno => ScmpAction::Errno(errno.unwrap_or(libc::EPERM as u32) as i32),
        ScmpActTrace => ScmpAction::Trace(errno.unwrap_or(libc::EPERM as u32) as u16),
        ScmpActLog => ScmpAction::Log,
        ScmpActAllow => ScmpAction::Allow,
        ScmpActNotify => return Err(err("SCMP_ACT_NOTIFY is not supported")),
    })
}

fn compare(a: &LinuxSeccompArg) -> Result<ScmpArgCompare> {
    use LinuxSeccompOperator::*;
    let op = match a.op() {
        ScmpCmpNe => ScmpCompareOp::NotEqual,
        ScmpCmpLt => ScmpCompareOp::Less,
        ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        ScmpCmpEq => ScmpCompareOp::Equal,
        ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        ScmpCmpGt => ScmpCompareOp::Greater,
        // OCI: (arg & value) == valueTwo.
        ScmpCmpMaskedEq => {
            let index = u32::try_from(a.index()).map_err(|_| err(format!("argument index {}", a.index())))?;
            return Ok(ScmpArgCompare::new(index, ScmpCompareOp::MaskedEqual(a.value()), a.value_two().unwrap_or(0)));
        }
    };
    let index = u32::try_from(a.index()).map_err(|_| err(format!("argument index {}", a.index())))?;
    Ok(ScmpArgCompare::new(index, op, a.value()))
}

/// Compiles `profile` into a filter (not yet loaded). Syscall names this libseccomp does not
/// know are skipped, as runc does, so one profile serves several kernels and architectures.
pub fn build(profile: &LinuxSeccomp) -> Result<ScmpFilterContext> {
    let default = action(profile.default_action(), profile.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(err)?;
    // The spec decides no_new_privs; libseccomp would otherwise set it on load.
    ctx.set_ctl_nnp(false).map_err(err)?;
    for arch in profile.architectures().iter().flatten() {
        let name = serde_json::to_value(arch).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let arch = ScmpArch::from_str(&name).map_err(|e| err(format!("architecture {name}: {e}")))?;
        ctx.add_arch(arch).map_err(|e| err(format!("add architecture {name}: {e}")))?;
    }
    for rule in profile.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue; // libseccomp refuses rules that repeat the default action.
        }
        let args = rule.args().clone().unwrap_or_default();
        let conditions = args.iter().map(compare).collect::<Result<Vec<_>>>()?;
        // Several conditions on the same argument cannot be ANDed by libseccomp; like runc,
        // such a rule becomes one rule per condition (any of them allows).
        let same_index = args.iter().enumerate().any(|(i, a)| args[..i].iter().any(|b| b.index() == a.index()));
        for name in rule.names() {
            let Ok(syscall) = ScmpSyscall::from_name(name) else {
                tracing::debug!(syscall = %name, "seccomp: unknown syscall skipped");
                continue;
            };
            let result = if conditions.is_empty() {
                ctx.add_rule(act, syscall).map(drop)
            } else if same_index {
                conditions.iter().try_for_each(|c| ctx.add_rule_conditional(act, syscall, &[*c]).map(drop))
            } else {
                ctx.add_rule_conditional(act, syscall, &conditions).map(drop)
            };
            result.map_err(|e| err(format!("rule for {name}: {e}")))?;
        }
    }
    Ok(ctx)
}

/// Loads a compiled filter into the calling process.
pub fn load(ctx: &ScmpFilterContext) -> Result<()> {
    ctx.load().map_err(|e| err(format!("load filter: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_default_profile_compiles() {
        let profile = crate::spec::runtime_default_seccomp();
        build(&profile).unwrap();
    }

    #[test]
    fn notify_is_rejected_with_a_clear_error() {
        let mut profile = crate::spec::runtime_default_seccomp();
        profile.set_default_action(LinuxSeccompAction::ScmpActNotify);
        let e = build(&profile).err().unwrap().to_string();
        assert!(e.contains("SCMP_ACT_NOTIFY"), "{e}");
    }
}
