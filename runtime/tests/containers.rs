//! Real-kernel tests of the runtime (run as root): containers from a busybox rootfs.

mod common;

use std::time::Duration;

use common::{Fixture, cgroup_dirs};
use corral_runtime::spec::capabilities;
use corral_runtime::{ContainerState, ExecOptions, Rootfs, Signal};
use oci_spec::runtime::{
    LinuxCpu, LinuxIdMappingBuilder, LinuxMemory, LinuxNamespace, LinuxNamespaceType, LinuxPids, LinuxResources,
};

const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn init_is_pid_1_and_ps_sees_only_the_container() {
    let f = Fixture::new("pid1");
    let spec = f.spec("pid1", &["sh", "-c", "echo pid=$$; ps -o pid,comm; true"]);
    let started = f.runtime.start("pid1", &spec, &f.options("pid1")).unwrap();
    assert!(started.pid > 1 && started.monitor_pid > 1);
    let exit = f.wait_exit("pid1", EXIT_TIMEOUT);
    assert_eq!((exit.exit_code, exit.reason.as_str()), (0, "Completed"));
    let log = f.log_text("pid1");
    assert!(log.contains("pid=1\n"), "{log}");
    // ps: the header, sh (PID 1) and ps itself; nothing from the host.
    let rows: Vec<&str> = log.lines().filter(|l| l.trim_start().starts_with(char::is_numeric)).collect();
    assert_eq!(rows.len(), 2, "{log}");
    assert!(rows[0].trim_start().starts_with("1 "), "{log}");
    // CRI log format: RFC3339Nano timestamp, stream, F tag.
    let raw = std::fs::read_to_string(f.log_path("pid1")).unwrap();
    let first = raw.lines().next().unwrap();
    let parts: Vec<&str> = first.splitn(4, ' ').collect();
    assert!(parts[0].ends_with('Z') && parts[0].contains('T'), "{first}");
    assert_eq!((parts[1], parts[2]), ("stdout", "F"), "{first}");
}

#[test]
fn hostname_and_stderr() {
    let f = Fixture::new("hostname");
    let mut spec = f.spec("host", &["sh", "-c", "hostname; echo oops >&2"]);
    spec.set_hostname(Some("corral-box".into()));
    f.runtime.start("host", &spec, &f.options("host")).unwrap();
    assert_eq!(f.wait_exit("host", EXIT_TIMEOUT).exit_code, 0);
    let raw = std::fs::read_to_string(f.log_path("host")).unwrap();
    assert!(raw.lines().any(|l| l.ends_with(" stdout F corral-box")), "{raw}");
    assert!(raw.lines().any(|l| l.ends_with(" stderr F oops")), "{raw}");
}

#[test]
fn proc_self_cgroup_shows_the_container_cgroup() {
    let f = Fixture::new("cgroup");
    let spec = f.spec("cg", &["cat", "/proc/self/cgroup"]);
    f.runtime.start("cg", &spec, &f.options("cg")).unwrap();
    assert_eq!(f.wait_exit("cg", EXIT_TIMEOUT).exit_code, 0);
    let log = f.log_text("cg");
    let want = format!("{}/cg", f.cgroup_parent);
    let memory = log.lines().find(|l| l.contains(":memory:")).unwrap_or_else(|| panic!("{log}"));
    assert!(memory.ends_with(&want), "{memory} (want {want})");
    assert!(log.lines().filter(|l| l.contains(":pids:") || l.contains(":cpu:")).all(|l| l.ends_with(&want)), "{log}");
}

#[test]
fn memory_limit_oom_kills_with_137() {
    let f = Fixture::new("oom");
    // `tail` keeps the current line; /dev/zero has no newline, so it grows until killed.
    let mut spec = f.spec("oom", &["tail", "/dev/zero"]);
    let mut mem = LinuxMemory::default();
    mem.set_limit(Some(32 << 20));
    mem.set_swap(Some(32 << 20));
    let mut res = LinuxResources::default();
    res.set_memory(Some(mem));
    spec.linux_mut().as_mut().unwrap().set_resources(Some(res));
    f.runtime.start("oom", &spec, &f.options("oom")).unwrap();
    let exit = f.wait_exit("oom", EXIT_TIMEOUT);
    assert_eq!(exit.exit_code, 137, "{exit:?}");
    assert_eq!(exit.signal, Some(9));
    assert!(exit.oom_killed);
    assert_eq!(exit.reason, "OOMKilled");
}

#[test]
fn fork_bomb_stops_at_the_pids_limit() {
    let f = Fixture::new("forkbomb");
    // PID 1 execs (no fork) so it outlives the bomb, which may die out once forks fail.
    let mut spec = f.spec("bomb", &["sh", "-c", "b() { b | b & }; b; exec sleep 60"]);
    let mut res = LinuxResources::default();
    let mut pids = LinuxPids::default();
    pids.set_limit(32);
    res.set_pids(Some(pids));
    spec.linux_mut().as_mut().unwrap().set_resources(Some(res));
    f.runtime.start("bomb", &spec, &f.options("bomb")).unwrap();
    // The kernel counts the forks it refused because of the limit in pids.events.
    let events = format!("/sys/fs/cgroup/pids{}/bomb/pids.events", f.cgroup_parent);
    let refused =
        || std::fs::read_to_string(&events).ok().and_then(|e| e.strip_prefix("max ")?.trim().parse::<u64>().ok());
    assert!(f.eventually(Duration::from_secs(10), || refused().is_some_and(|n| n > 0)), "{:?}", refused());
    std::thread::sleep(Duration::from_millis(500));
    let stats = f.runtime.stats("bomb").unwrap();
    assert!(stats.pids <= 32, "{stats:?}");
    // The host is unharmed: it still forks and execs.
    assert!(std::process::Command::new("/bin/true").status().unwrap().success());
    f.runtime.kill_all("bomb").unwrap();
    let exit = f.wait_exit("bomb", EXIT_TIMEOUT);
    assert_eq!(exit.exit_code, 137);
    assert!(!exit.oom_killed);
}

#[test]
fn read_only_rootfs_rejects_writes() {
    let f = Fixture::new("readonly");
    let mut spec = f.spec("ro", &["sh", "-c", "touch /newfile; echo rc=$?; touch /dev/shm/ok && echo shm-ok"]);
    spec.root_mut().as_mut().unwrap().set_readonly(Some(true));
    f.runtime.start("ro", &spec, &f.options("ro")).unwrap();
    assert_eq!(f.wait_exit("ro", EXIT_TIMEOUT).exit_code, 0);
    let log = f.log_text("ro");
    assert!(log.contains("Read-only file system"), "{log}");
    assert!(log.contains("rc=1"), "{log}");
    assert!(log.contains("shm-ok"), "{log}");
    assert!(!f.rootfs.join("newfile").exists());
}

fn cap_eff(log: &str) -> u64 {
    let line = log.lines().find(|l| l.starts_with("CapEff:")).unwrap_or_else(|| panic!("{log}"));
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

#[test]
fn dropped_capability_is_missing_from_capeff() {
    let f = Fixture::new("caps");
    let mut spec = f.spec("caps", &["grep", "Cap", "/proc/self/status"]);
    let names: Vec<&str> =
        corral_runtime::spec::DEFAULT_CAPABILITIES.iter().copied().filter(|c| *c != "CAP_NET_RAW").collect();
    let set = capabilities(&names);
    let process = spec.process_mut().as_mut().unwrap();
    let mut caps = process.capabilities().clone().unwrap();
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    process.set_capabilities(Some(caps));
    f.runtime.start("caps", &spec, &f.options("caps")).unwrap();
    assert_eq!(f.wait_exit("caps", EXIT_TIMEOUT).exit_code, 0);
    let eff = cap_eff(&f.log_text("caps"));
    const CAP_CHOWN: u64 = 1 << 0;
    const CAP_NET_RAW: u64 = 1 << 13;
    const CAP_SYS_ADMIN: u64 = 1 << 21;
    assert_ne!(eff & CAP_CHOWN, 0, "CapEff {eff:x}");
    assert_eq!(eff & CAP_NET_RAW, 0, "CapEff {eff:x}");
    assert_eq!(eff & CAP_SYS_ADMIN, 0, "CapEff {eff:x}");
    assert_eq!(eff.count_ones(), 13, "CapEff {eff:x}");
}

#[test]
fn user_namespaced_root_is_an_unprivileged_host_uid() {
    let f = Fixture::new("userns");
    let mut spec = f.spec("userns", &["sh", "-c", "id -u; id -g; sleep 60"]);
    let mapping =
        |host: u32| LinuxIdMappingBuilder::default().container_id(0u32).host_id(host).size(65536u32).build().unwrap();
    let linux = spec.linux_mut().as_mut().unwrap();
    let mut namespaces = linux.namespaces().clone().unwrap();
    let mut user = LinuxNamespace::default();
    user.set_typ(LinuxNamespaceType::User);
    namespaces.push(user);
    linux.set_namespaces(Some(namespaces));
    linux.set_uid_mappings(Some(vec![mapping(100_000)]));
    linux.set_gid_mappings(Some(vec![mapping(100_000)]));
    let started = f.runtime.start("userns", &spec, &f.options("userns")).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", started.pid)).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    let host_uids: Vec<u32> = uid_line.split_whitespace().skip(1).map(|u| u.parse().unwrap()).collect();
    assert_eq!(host_uids, [100_000; 4], "{uid_line}");
    assert!(f.eventually(Duration::from_secs(5), || f.log_text("userns").lines().count() >= 2));
    assert_eq!(f.log_text("userns"), "0\n0\n");
    f.runtime.signal("userns", Signal::SIGKILL).unwrap();
    assert_eq!(f.wait_exit("userns", EXIT_TIMEOUT).exit_code, 137);
}

#[test]
fn exec_joins_the_same_pid_namespace() {
    let f = Fixture::new("exec");
    let spec = f.spec("exec", &["sleep", "60"]);
    let started = f.runtime.start("exec", &spec, &f.options("exec")).unwrap();
    let out = f
        .runtime
        .exec_command(
            "exec",
            &ExecOptions {
                args: vec!["sh".into(), "-c".into(), "cat /proc/1/comm; echo $FOO; ps -o pid,comm; true".into()],
                tty: false,
                env: vec!["FOO=bar".into()],
            },
        )
        .unwrap()
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("sleep"), "{stdout}");
    assert_eq!(lines.next(), Some("bar"), "{stdout}");
    // ps in the container: sleep (1), sh, ps; host processes are invisible.
    assert_eq!(stdout.lines().filter(|l| l.trim_start().starts_with(char::is_numeric)).count(), 3, "{stdout}");
    // Exit codes pass through; a missing command is 127.
    let code = |args: &[&str]| {
        let opts = ExecOptions { args: args.iter().map(|a| a.to_string()).collect(), ..Default::default() };
        f.runtime.exec_command("exec", &opts).unwrap().output().unwrap().status.code()
    };
    assert_eq!(code(&["sh", "-c", "exit 3"]), Some(3));
    assert_eq!(code(&["nosuchcmd"]), Some(127));
    // The exec'd process is in the container's cgroup.
    let cg = f
        .runtime
        .exec_command(
            "exec",
            &ExecOptions { args: vec!["cat".into(), "/proc/self/cgroup".into()], ..Default::default() },
        )
        .unwrap()
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&cg.stdout).contains(&format!("{}/exec", f.cgroup_parent)));
    // PID 1 without a handler ignores SIGTERM (kernel rule); SIGKILL always works.
    f.runtime.signal("exec", Signal::SIGKILL).unwrap();
    let exit = f.wait_exit("exec", EXIT_TIMEOUT);
    assert_eq!((exit.exit_code, exit.signal, exit.reason.as_str()), (137, Some(9), "Error"));
    assert!(!std::path::Path::new(&format!("/proc/{}", started.pid)).exists());
}

#[test]
fn failed_start_reports_the_step_and_leaves_nothing() {
    let f = Fixture::new("badstart");
    let spec = f.spec("bad", &["nosuchcmd"]);
    let err = f.runtime.start("bad", &spec, &f.options("bad")).unwrap_err().to_string();
    assert!(err.contains("nosuchcmd") && err.contains("not found"), "{err}");
    match f.runtime.state("bad").unwrap() {
        ContainerState::Exited(info) => assert_eq!(info.reason, "StartError"),
        other => panic!("{other:?}"),
    }
    for dir in cgroup_dirs(&format!("{}/bad", f.cgroup_parent)) {
        assert!(!dir.exists(), "{dir:?} left behind");
    }
    // A bad bind mount names the mount.
    let mut spec = f.spec("badmount", &["true"]);
    let mut mounts = spec.mounts().clone().unwrap();
    let mut m = oci_spec::runtime::Mount::default();
    m.set_destination("/data".into());
    m.set_source(Some("/nonexistent/corral-test".into()));
    m.set_options(Some(vec!["rbind".into()]));
    mounts.push(m);
    spec.set_mounts(Some(mounts));
    let err = f.runtime.start("badmount", &spec, &f.options("badmount")).unwrap_err().to_string();
    assert!(err.contains("/nonexistent/corral-test"), "{err}");
}

#[test]
fn overlay_rootfs_and_delete_leaves_nothing() {
    let f = Fixture::new("delete");
    let upper = f.dir.path().join("upper");
    let work = f.dir.path().join("work");
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let mut opts = f.options("ovl");
    opts.rootfs = Rootfs::Overlay { lower: vec![f.rootfs.clone()], upper: upper.clone(), work };
    let spec = f.spec("ovl", &["sh", "-c", "echo hi > /written; sleep 60"]);
    let started = f.runtime.start("ovl", &spec, &opts).unwrap();
    assert!(f.eventually(Duration::from_secs(5), || upper.join("written").exists()));
    assert!(!f.rootfs.join("written").exists(), "the lower layer stays untouched");
    let tmp = f.dir.path().to_str().unwrap().to_owned();
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!host_mounts.contains(&tmp), "the overlay must not be mounted on the host");
    let monitor = match f.runtime.state("ovl").unwrap() {
        ContainerState::Running { monitor_pid, .. } => monitor_pid,
        other => panic!("{other:?}"),
    };
    f.runtime.delete("ovl").unwrap();
    f.runtime.delete("ovl").unwrap(); // idempotent
    let gone = |pid: i32| !std::path::Path::new(&format!("/proc/{pid}")).exists();
    assert!(gone(started.pid));
    // The monitor has exited; init reaps it (it is nobody's child we know of).
    assert!(f.eventually(Duration::from_secs(5), || gone(monitor)));
    for dir in cgroup_dirs(&format!("{}/ovl", f.cgroup_parent)) {
        assert!(!dir.exists(), "{dir:?} left behind");
    }
    assert!(!std::fs::read_to_string("/proc/self/mountinfo").unwrap().contains(&tmp));
    assert!(f.runtime.state("ovl").unwrap_err().is_not_found());
    assert!(f.runtime.list().unwrap().is_empty());
}

#[test]
fn log_reopen_after_rotation() {
    let f = Fixture::new("reopen");
    let spec =
        f.spec("logs", &["sh", "-c", "echo one; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo two; sleep 60"]);
    f.runtime.start("logs", &spec, &f.options("logs")).unwrap();
    assert!(f.eventually(Duration::from_secs(5), || f.log_text("logs") == "one\n"));
    let rotated = f.log_path("logs").with_extension("log.1");
    std::fs::rename(f.log_path("logs"), &rotated).unwrap();
    f.runtime.reopen_log("logs").unwrap();
    assert!(f.eventually(Duration::from_secs(5), || f.log_path("logs").exists()));
    let out = f
        .runtime
        .exec_command("logs", &ExecOptions { args: vec!["touch".into(), "/tmp/go".into()], ..Default::default() })
        .unwrap()
        .status()
        .unwrap();
    assert!(out.success());
    assert!(f.eventually(Duration::from_secs(5), || f.log_text("logs") == "two\n"), "{}", f.log_text("logs"));
    assert!(std::fs::read_to_string(&rotated).unwrap().ends_with(" stdout F one\n"));
}

#[test]
fn stats_and_update_resources() {
    let f = Fixture::new("stats");
    let spec = f.spec("st", &["sleep", "60"]);
    f.runtime.start("st", &spec, &f.options("st")).unwrap();
    let stats = f.runtime.stats("st").unwrap();
    assert!(stats.pids >= 1 && stats.memory_usage_bytes > 0, "{stats:?}");
    assert!(stats.memory_working_set_bytes <= stats.memory_usage_bytes);
    let mut mem = LinuxMemory::default();
    mem.set_limit(Some(64 << 20));
    let mut res = LinuxResources::default();
    res.set_memory(Some(mem));
    f.runtime.update_resources("st", &res).unwrap();
    let limit =
        std::fs::read_to_string(format!("/sys/fs/cgroup/memory{}/st/memory.limit_in_bytes", f.cgroup_parent)).unwrap();
    assert_eq!(limit.trim(), (64u64 << 20).to_string());
}

#[test]
fn usage_reads_the_cgroup_and_the_processes() {
    let f = Fixture::new("usage");
    // Burns some CPU under a 50% quota, then sleeps with its stdout (the log pipe) open.
    let mut spec = f.spec("us", &["sh", "-c", "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; exec sleep 60"]);
    let mut cpu = LinuxCpu::default();
    cpu.set_quota(Some(50_000));
    cpu.set_period(Some(100_000));
    cpu.set_shares(Some(512));
    let mut mem = LinuxMemory::default();
    mem.set_limit(Some(64 << 20));
    mem.set_reservation(Some(32 << 20));
    let mut pids = LinuxPids::default();
    pids.set_limit(50);
    let mut res = LinuxResources::default();
    res.set_cpu(Some(cpu));
    res.set_memory(Some(mem));
    res.set_pids(Some(pids));
    spec.linux_mut().as_mut().unwrap().set_resources(Some(res));
    f.runtime.start("us", &spec, &f.options("us")).unwrap();
    let mut usage = f.runtime.usage("us").unwrap();
    assert!(
        f.eventually(Duration::from_secs(10), || {
            usage = f.runtime.usage("us").unwrap();
            usage.cfs_periods > 0 && usage.memory_max_usage > 0
        }),
        "{usage:?}"
    );
    assert_eq!(usage.cgroup, format!("{}/us", f.cgroup_parent));
    assert!(usage.cpu_total_ns > 0 && usage.cpu_user_ns + usage.cpu_system_ns > 0, "{usage:?}");
    assert!(usage.cfs_throttled_periods <= usage.cfs_periods);
    assert!(usage.memory_usage > 0 && usage.memory_working_set <= usage.memory_usage, "{usage:?}");
    assert!(usage.pgfault_hierarchy > 0, "{usage:?}");
    assert_eq!((usage.cpu_period_us, usage.cpu_quota_us, usage.cpu_shares), (100_000, Some(50_000), 512));
    assert_eq!(usage.memory_limit, Some(64 << 20));
    assert_eq!(usage.memory_reservation, Some(32 << 20));
    assert_eq!(usage.tasks_max, Some(50));
    assert_eq!(usage.tasks, 1);
    assert_eq!(usage.oom_kills, 0);
    let p = &usage.processes;
    assert_eq!((p.processes, p.threads), (1, 1), "{p:?}");
    assert!(p.file_descriptors >= 3 && p.max_open_files.is_some(), "{p:?}");
    f.runtime.signal("us", Signal::SIGKILL).unwrap();
    f.wait_exit("us", EXIT_TIMEOUT);
    f.runtime.delete("us").unwrap();
    assert!(f.runtime.usage("us").is_err(), "no usage of a removed container");
}

#[test]
fn runtime_default_seccomp_is_loaded() {
    let f = Fixture::new("seccomp");
    let mut spec = f.spec("sc", &["sh", "-c", "grep Seccomp: /proc/self/status; unshare -n true; echo unshare=$?"]);
    spec.linux_mut().as_mut().unwrap().set_seccomp(Some(corral_runtime::spec::runtime_default_seccomp()));
    f.runtime.start("sc", &spec, &f.options("sc")).unwrap();
    assert_eq!(f.wait_exit("sc", EXIT_TIMEOUT).exit_code, 0, "{}", f.diagnostics("sc"));
    let log = f.log_text("sc");
    assert!(log.lines().any(|l| l.starts_with("Seccomp:") && l.ends_with('2')), "filter mode: {log}");
    assert!(log.contains("unshare=1"), "{log}");
}

#[test]
fn terminal_gives_the_container_a_tty() {
    let f = Fixture::new("tty");
    let spec = f.spec("tty", &["sh", "-c", "test -t 0 && test -t 1 && echo is-a-tty"]);
    let mut opts = f.options("tty");
    opts.tty = true;
    f.runtime.start("tty", &spec, &opts).unwrap();
    assert_eq!(f.wait_exit("tty", EXIT_TIMEOUT).exit_code, 0, "{}", f.diagnostics("tty"));
    // A terminal turns "\n" into "\r\n"; the log keeps the "\r" like containerd does.
    assert!(f.log_text("tty").starts_with("is-a-tty"), "{}", f.log_text("tty"));
}

#[test]
fn missing_cap_sys_resource_degrades_instead_of_failing() {
    // This host lacks CAP_SYS_RESOURCE: a lower oom_score_adj and a higher hard NOFILE are
    // clamped with a warning; the container still starts.
    let f = Fixture::new("sysres");
    let mut spec = f.spec("res", &["sh", "-c", "cat /proc/self/oom_score_adj; ulimit -Hn"]);
    let process = spec.process_mut().as_mut().unwrap();
    process.set_oom_score_adj(Some(-999));
    let nofile = oci_spec::runtime::PosixRlimitBuilder::default()
        .typ(oci_spec::runtime::PosixRlimitType::RlimitNofile)
        .hard(1u64 << 40)
        .soft(1u64 << 40)
        .build()
        .unwrap();
    process.set_rlimits(Some(vec![nofile]));
    f.runtime.start("res", &spec, &f.options("res")).unwrap();
    assert_eq!(f.wait_exit("res", EXIT_TIMEOUT).exit_code, 0, "{}", f.diagnostics("res"));
    let log = f.log_text("res");
    let mut lines = log.lines();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let cap_eff =
        u64::from_str_radix(status.lines().find_map(|l| l.strip_prefix("CapEff:")).unwrap().trim(), 16).unwrap();
    let has_sys_resource = cap_eff & (1 << 24) != 0;
    let own: i32 = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap().trim().parse().unwrap();
    let adj: i32 = lines.next().unwrap().trim().parse().unwrap();
    assert_eq!(adj, if has_sys_resource { -999 } else { own }, "{log}");
    let hard: u64 = lines.next().unwrap().trim().parse().unwrap();
    if !has_sys_resource {
        let mut own_hard = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: valid resource and a writable struct.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut own_hard) }, 0);
        assert_eq!(hard, own_hard.rlim_max, "clamped to the inherited hard limit: {log}");
    }
}
