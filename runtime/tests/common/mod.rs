//! Shared fixture of the real-kernel tests: a busybox rootfs, a runtime with its state in a
//! tempdir, and a private cgroup subtree `/corral-rt-test-<name>-<pid>`, all removed on drop.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use corral_runtime::spec::default_spec;
use corral_runtime::{ContainerState, ExitInfo, Rootfs, Runtime, RuntimeOptions, StartOptions};
use oci_spec::runtime::Spec;

/// The cgroup root these tests may use (the other helpers' tests use other names).
/// Prefix of every test's own top-level cgroup. Not a shared parent: a test removing an empty
/// shared parent raced with another test creating its subtree under it (ENOENT in mkdir).
pub const CGROUP_PREFIX: &str = "/corral-rt-test";

/// The helper binary that dispatches `run_helper_mode()`.
pub fn helper_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_corral-runtime-helper"))
}

/// Builds a busybox rootfs at `root`: Debian's static busybox with a hard link per applet
/// (symlinks would break masked paths, see shared/cri-notes.md).
pub fn busybox_rootfs(root: &Path) {
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let busybox = root.join("bin/busybox");
    std::fs::copy("/bin/busybox", &busybox).unwrap();
    let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            std::fs::hard_link(&busybox, root.join("bin").join(applet)).unwrap();
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n")
        .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n").unwrap();
}

/// One test's world. Everything it made is removed on drop, also when the test fails.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub rootfs: PathBuf,
    pub runtime: Runtime,
    /// `/corral-rt-test-<name>-<pid>`: parent of this test's container cgroups.
    pub cgroup_parent: String,
}

impl Fixture {
    pub fn new(name: &str) -> Fixture {
        let dir = tempfile::Builder::new().prefix("corral-rt-").tempdir().unwrap();
        // Traversable by a user-namespaced container's unprivileged host uid.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let rootfs = dir.path().join("rootfs");
        busybox_rootfs(&rootfs);
        let runtime =
            Runtime::new(RuntimeOptions { state_dir: dir.path().join("containers"), exe: helper_exe() }).unwrap();
        Fixture { dir, rootfs, runtime, cgroup_parent: format!("{CGROUP_PREFIX}-{name}-{}", std::process::id()) }
    }

    /// The default spec running `args`, in this test's cgroup subtree.
    pub fn spec(&self, id: &str, args: &[&str]) -> Spec {
        let mut spec = default_spec();
        spec.process_mut().as_mut().unwrap().set_args(Some(args.iter().map(|a| a.to_string()).collect()));
        spec.linux_mut().as_mut().unwrap().set_cgroups_path(Some(format!("{}/{id}", self.cgroup_parent).into()));
        spec
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.dir.path().join("logs").join(format!("{id}.log"))
    }

    pub fn options(&self, id: &str) -> StartOptions {
        StartOptions {
            log_path: Some(self.log_path(id)),
            stdin: false,
            stdin_once: false,
            tty: false,
            rootfs: Rootfs::Dir(self.rootfs.clone()),
        }
    }

    /// Waits until the monitor of `id` exited and returns the recorded exit.
    pub fn wait_exit(&self, id: &str, timeout: Duration) -> ExitInfo {
        let fd = self.runtime.watch(id).unwrap();
        let mut fds = [nix::poll::PollFd::new(std::os::fd::AsFd::as_fd(&fd), nix::poll::PollFlags::POLLIN)];
        let ms = nix::poll::PollTimeout::try_from(timeout.as_millis() as i32).unwrap();
        if nix::poll::poll(&mut fds, ms).unwrap() != 1 {
            panic!("{id} did not exit within {timeout:?}; {}", self.diagnostics(id));
        }
        match self.runtime.state(id).unwrap() {
            ContainerState::Exited(info) => info,
            other => panic!("{id}: monitor exited but state is {other:?}"),
        }
    }

    /// The monitor's log and the container's raw log, for failure messages.
    pub fn diagnostics(&self, id: &str) -> String {
        let monitor =
            std::fs::read_to_string(self.runtime.container_dir(id).unwrap().join("monitor.log")).unwrap_or_default();
        let log = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
        format!("monitor.log:\n{monitor}\ncontainer log:\n{log}")
    }

    /// The text of the container's CRI log lines (without timestamp/stream/tag).
    pub fn log_text(&self, id: &str) -> String {
        let raw = std::fs::read_to_string(self.log_path(id)).unwrap_or_default();
        raw.lines().map(|l| l.splitn(4, ' ').nth(3).unwrap_or("").to_owned() + "\n").collect()
    }

    /// Polls `cond` until true or `timeout`.
    pub fn eventually(&self, timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        cond()
    }
}

/// The host directories of cgroup `path` in every mounted hierarchy.
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let p = entry.path();
        if p.join("cgroup.procs").exists() {
            dirs.push(p.join(path.trim_start_matches('/')));
        }
    }
    dirs
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for id in self.runtime.list().unwrap_or_default() {
            if let Err(e) = self.runtime.delete(&id) {
                eprintln!("cleanup: delete {id}: {e}");
            }
        }
        // Pod namespaces a failed test pinned under pods/<pod> and did not get to unpin: the
        // bind mounts would outlive the tempdir.
        for pod in std::fs::read_dir(self.dir.path().join("pods")).into_iter().flatten().flatten() {
            if let Err(e) = corral_runtime::namespaces::unpin(&pod.path()) {
                eprintln!("cleanup: unpin {:?}: {e}", pod.path());
            }
        }
        // The parent the runtime created for our containers (children are gone).
        for dir in cgroup_dirs(&self.cgroup_parent) {
            let _ = std::fs::remove_dir(&dir);
        }
    }
}
