//! The container does not depend on the process that started it: kill -9 the "daemon"
//! (the monitor's original parent), and the container keeps running; a new `Runtime` (a
//! restarted daemon) finds it, stops it, and its exit is recorded.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::Fixture;
use corral_runtime::{ContainerState, Rootfs, Runtime, RuntimeOptions, Signal, StartOptions};
use serde::{Deserialize, Serialize};

const PARAMS_ENV: &str = "CORRAL_RT_FAKE_DAEMON";

#[derive(Serialize, Deserialize)]
struct Params {
    state_dir: std::path::PathBuf,
    rootfs: std::path::PathBuf,
    log: std::path::PathBuf,
    cgroup: String,
}

/// Not a test: the body of the fake daemon process that `container_outlives_its_daemon`
/// runs (this test binary re-executed with `--ignored --exact fake_daemon`).
#[test]
#[ignore]
fn fake_daemon() {
    let Ok(json) = std::env::var(PARAMS_ENV) else { return };
    let p: Params = serde_json::from_str(&json).unwrap();
    let rt = Runtime::new(RuntimeOptions { state_dir: p.state_dir, exe: common::helper_exe() }).unwrap();
    let mut spec = corral_runtime::spec::default_spec();
    spec.process_mut().as_mut().unwrap().set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        "trap 'echo bye; exit 7' TERM; echo hello; while true; do sleep 0.2; done".into(),
    ]));
    spec.linux_mut().as_mut().unwrap().set_cgroups_path(Some(p.cgroup.into()));
    let opts = StartOptions {
        log_path: Some(p.log),
        stdin: true,
        stdin_once: false,
        tty: false,
        rootfs: Rootfs::Dir(p.rootfs),
    };
    let started = rt.start("survivor", &spec, &opts).unwrap();
    println!("FAKE-DAEMON-STARTED {}", serde_json::to_string(&started).unwrap());
    std::thread::sleep(Duration::from_secs(600));
}

fn ppid(pid: i32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 2..].split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn container_outlives_its_daemon() {
    let f = Fixture::new("daemon");
    let params = Params {
        state_dir: f.dir.path().join("containers"),
        rootfs: f.rootfs.clone(),
        log: f.log_path("survivor"),
        cgroup: format!("{}/survivor", f.cgroup_parent),
    };
    let mut daemon = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "fake_daemon", "--ignored", "--nocapture", "--test-threads=1"])
        .env(PARAMS_ENV, serde_json::to_string(&params).unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let started: corral_runtime::Started = BufReader::new(daemon.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        // libtest prints "test fake_daemon ... " on the same line first.
        .find_map(|l| l.split_once("FAKE-DAEMON-STARTED ").map(|(_, j)| serde_json::from_str(j).unwrap()))
        .expect("the fake daemon did not start the container");
    // The monitor was never the daemon's child (double fork), and the container is its.
    assert_ne!(ppid(started.monitor_pid), daemon.id() as i32);
    assert_eq!(ppid(started.pid), started.monitor_pid);

    daemon.kill().unwrap(); // SIGKILL
    daemon.wait().unwrap();
    std::thread::sleep(Duration::from_millis(200));

    // The "restarted daemon": a fresh Runtime on the same state dir.
    match f.runtime.state("survivor").unwrap() {
        ContainerState::Running { pid, monitor_pid, .. } => {
            assert_eq!((pid, monitor_pid), (started.pid, started.monitor_pid));
        }
        other => panic!("container did not survive its daemon: {other:?}"),
    }
    assert!(f.eventually(Duration::from_secs(5), || f.log_text("survivor").contains("hello")));
    f.runtime.signal("survivor", Signal::SIGTERM).unwrap();
    let exit = f.wait_exit("survivor", Duration::from_secs(30));
    assert_eq!((exit.exit_code, exit.reason.as_str()), (7, "Error"), "{exit:?}");
    assert!(f.log_text("survivor").contains("bye"));
}
