//! The cgroup v2 code paths against a fake cgroupfs tree in a tempdir (this host runs v1, and
//! v2 controllers cannot be enabled here). The files a kernel would create are pre-seeded;
//! the assertions read what the runtime wrote, through the same cgroups-rs code that writes
//! a real /sys/fs/cgroup.

use std::fs;
use std::path::Path;

use corral_runtime::cgroups::Cgroup;
use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimitBuilder, LinuxMemory, LinuxPids, LinuxResources};

/// Seeds `dir` with the interface files of a fresh v2 cgroup and their kernel defaults.
fn seed_kernel_files(dir: &Path) {
    let defaults = [
        ("cgroup.procs", ""),
        ("cgroup.type", "domain\n"),
        ("cgroup.kill", ""),
        ("cgroup.freeze", "0\n"),
        ("cpu.max", "max 100000\n"),
        ("cpu.weight", "100\n"),
        ("cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"),
        ("cpuset.cpus", "\n"),
        ("cpuset.mems", "\n"),
        ("memory.max", "max\n"),
        ("memory.high", "max\n"),
        ("memory.low", "0\n"),
        ("memory.min", "0\n"),
        ("memory.swap.max", "max\n"),
        ("memory.current", "1000000\n"),
        ("memory.stat", "anon 300000\nfile 700000\ninactive_file 200000\nactive_file 500000\n"),
        ("memory.events", "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n"),
        ("pids.max", "max\n"),
        ("pids.current", "3\n"),
        ("hugetlb.2MB.max", "max\n"),
    ];
    for (name, content) in defaults {
        fs::write(dir.join(name), content).unwrap();
    }
}

fn fake_root() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    fs::write(root.path().join("cgroup.controllers"), "cpuset cpu io memory hugetlb pids rdma misc\n").unwrap();
    fs::write(root.path().join("cgroup.subtree_control"), "").unwrap();
    root
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file)).unwrap().trim().to_owned()
}

#[test]
fn v2_create_apply_stats_kill_write_the_v2_files() {
    let root = fake_root();
    let cg = Cgroup::open_v2_at(root.path(), "/corral/pod1/ctr1").unwrap();
    assert!(cg.is_v2());
    cg.create().unwrap();
    let dir = root.path().join("corral/pod1/ctr1");
    assert!(dir.is_dir());
    // Controllers are delegated down the path (cgroup.subtree_control of each parent).
    assert!(read(&root.path().join("corral/pod1"), "cgroup.subtree_control").starts_with('+'));
    assert_eq!(cg.dirs().len(), 6, "{:?}", cg.dirs()); // cpuset cpu memory hugetlb pids + freezer
    seed_kernel_files(&dir);

    let mut mem = LinuxMemory::default();
    mem.set_limit(Some(256 << 20));
    mem.set_swap(Some(384 << 20)); // OCI: memory + swap
    mem.set_reservation(Some(64 << 20));
    let mut cpu = LinuxCpu::default();
    cpu.set_shares(Some(512));
    cpu.set_quota(Some(50_000));
    cpu.set_period(Some(100_000));
    cpu.set_cpus(Some("0-1".into()));
    cpu.set_mems(Some("0".into()));
    let mut pids = LinuxPids::default();
    pids.set_limit(100);
    let huge = LinuxHugepageLimitBuilder::default().page_size("2MB").limit(4i64 << 20).build().unwrap();
    let mut res = LinuxResources::default();
    res.set_memory(Some(mem));
    res.set_cpu(Some(cpu));
    res.set_pids(Some(pids));
    res.set_hugepage_limits(Some(vec![huge]));
    cg.apply(&res).unwrap();

    assert_eq!(read(&dir, "memory.max"), (256u64 << 20).to_string());
    assert_eq!(read(&dir, "memory.swap.max"), (128u64 << 20).to_string(), "v2 swap.max is swap alone");
    assert_eq!(read(&dir, "memory.low"), (64u64 << 20).to_string());
    assert_eq!(read(&dir, "cpu.weight"), corral_runtime::cgroups::shares_to_weight(512).to_string());
    assert_eq!(read(&dir, "cpu.max"), "50000 100000");
    assert_eq!(read(&dir, "cpuset.cpus"), "0-1");
    assert_eq!(read(&dir, "cpuset.mems"), "0");
    assert_eq!(read(&dir, "pids.max"), "100");
    assert_eq!(read(&dir, "hugetlb.2MB.max"), (4u64 << 20).to_string());

    // Unlimited values become "max".
    let mut mem = LinuxMemory::default();
    mem.set_limit(Some(-1));
    mem.set_swap(Some(-1));
    let mut pids = LinuxPids::default();
    pids.set_limit(0);
    let mut res = LinuxResources::default();
    res.set_memory(Some(mem));
    res.set_pids(Some(pids));
    cg.apply(&res).unwrap();
    assert_eq!(read(&dir, "memory.max"), "max");
    assert_eq!(read(&dir, "memory.swap.max"), "max");
    assert_eq!(read(&dir, "pids.max"), "max");

    let stats = cg.stats().unwrap();
    assert_eq!(stats.cpu_usage_ns, 1_500_000);
    assert_eq!(stats.memory_usage_bytes, 1_000_000);
    assert_eq!(stats.memory_working_set_bytes, 800_000);
    assert_eq!(stats.memory_rss_bytes, 300_000);
    assert_eq!(stats.pids, 3);
    assert_eq!(cg.oom_kill_count(), 2);

    // v2 kills through cgroup.kill (kernel >= 5.14).
    cg.kill_all(std::time::Duration::from_secs(1)).unwrap();
    assert_eq!(read(&dir, "cgroup.kill"), "1");
    // Moving a process writes cgroup.procs.
    cg.add_process(4242).unwrap();
    assert_eq!(read(&dir, "cgroup.procs"), "4242");
}

#[test]
fn v2_usage_reads_the_v2_files() {
    let root = fake_root();
    let cg = Cgroup::open_v2_at(root.path(), "/corral/pod3/ctr3").unwrap();
    cg.create().unwrap();
    let dir = root.path().join("corral/pod3/ctr3");
    seed_kernel_files(&dir);
    let kernel_files = [
        ("cpu.max", "20000 100000\n"),
        ("cpu.weight", "39\n"),
        (
            "cpu.stat",
            "usage_usec 3000\nuser_usec 2000\nsystem_usec 1000\nnr_periods 7\nnr_throttled 2\nthrottled_usec 150\n",
        ),
        ("memory.peak", "2000000\n"),
        (
            "memory.stat",
            "anon 300000\nfile 700000\nkernel 50000\nfile_mapped 4096\ninactive_file 200000\npgfault 11\npgmajfault 1\n",
        ),
        ("memory.swap.current", "8192\n"),
        ("memory.max", "67108864\n"),
        ("memory.low", "33554432\n"),
        ("pids.max", "50\n"),
        ("io.stat", "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"),
    ];
    for (name, content) in kernel_files {
        fs::write(dir.join(name), content).unwrap();
    }
    let u = cg.usage().unwrap();
    assert_eq!(u.cgroup, "/corral/pod3/ctr3");
    assert_eq!((u.cpu_total_ns, u.cpu_user_ns, u.cpu_system_ns), (3_000_000, 2_000_000, 1_000_000));
    assert_eq!((u.cfs_periods, u.cfs_throttled_periods, u.cfs_throttled_ns), (7, 2, 150_000));
    assert_eq!((u.cpu_quota_us, u.cpu_period_us), (Some(20_000), 100_000));
    assert_eq!(u.cpu_shares, corral_runtime::cgroups::weight_to_shares(39));
    assert_eq!((u.memory_usage, u.memory_max_usage, u.memory_working_set), (1_000_000, 2_000_000, 800_000));
    assert_eq!((u.memory_rss, u.memory_cache, u.memory_mapped_file), (300_000, 700_000, 4096));
    assert_eq!((u.memory_kernel, u.memory_swap), (50_000, 8192));
    assert_eq!((u.memory_failcnt, u.oom_kills), (4, 2));
    assert_eq!((u.pgfault, u.pgmajfault, u.pgfault_hierarchy), (11, 1, 11));
    assert_eq!((u.memory_limit, u.memory_swap_limit, u.memory_reservation), (Some(64 << 20), None, Some(32 << 20)));
    assert_eq!((u.tasks, u.tasks_max), (3, Some(50)));
    assert_eq!(u.io.len(), 1);
    assert_eq!((u.io[0].read_bytes, u.io[0].write_bytes, u.io[0].reads, u.io[0].writes), (4096, 8192, 1, 2));
    assert_eq!(u.processes.processes, 0, "no process in a fake cgroup");
}

#[test]
fn v2_unified_keys_are_written_and_checked() {
    let root = fake_root();
    let cg = Cgroup::open_v2_at(root.path(), "/corral/ctr2").unwrap();
    cg.create().unwrap();
    let dir = root.path().join("corral/ctr2");
    seed_kernel_files(&dir);
    let mut res = LinuxResources::default();
    res.set_unified(Some([("memory.high".to_string(), "1000000".to_string())].into()));
    cg.apply(&res).unwrap();
    assert_eq!(read(&dir, "memory.high"), "1000000");
    res.set_unified(Some([("../escape".to_string(), "1".to_string())].into()));
    assert!(cg.apply(&res).is_err());
}

#[test]
fn cgroup_paths_are_validated() {
    let root = fake_root();
    for bad in ["relative/path", "/a/../b", "/", "system.slice:corral:abc"] {
        assert!(Cgroup::open_v2_at(root.path(), bad).is_err(), "{bad}");
    }
}
