//! Pod-level pieces: namespaces pinned without a process, joined by containers; the pause
//! process of a shared PID namespace.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use common::Fixture;
use corral_runtime::{ContainerState, PodNamespaces, namespaces, pause};
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType, Spec};

fn join(spec: &mut Spec, typ: LinuxNamespaceType, path: &Path) {
    let linux = spec.linux_mut().as_mut().unwrap();
    let mut list: Vec<LinuxNamespace> = linux.namespaces().clone().unwrap();
    list.retain(|ns| ns.typ() != typ);
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    ns.set_path(Some(path.to_path_buf()));
    list.push(ns);
    linux.set_namespaces(Some(list));
}

fn ns_inode(pid: i32, kind: &str) -> u64 {
    let link = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
    let s = link.to_str().unwrap();
    s[s.find('[').unwrap() + 1..s.len() - 1].parse().unwrap()
}

#[test]
fn containers_join_pinned_pod_namespaces() {
    let f = Fixture::new("pinned");
    let pod_dir = f.dir.path().join("pods/p1");
    let which = PodNamespaces { net: true, ipc: true, uts: true };
    let pinned = namespaces::pin(&pod_dir, which, Some("pod-host"), &[]).unwrap();
    let (net, ipc, uts) = (pinned.net.clone().unwrap(), pinned.ipc.clone().unwrap(), pinned.uts.clone().unwrap());
    // No process holds them: the pins are bind mounts.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(mounts.contains(net.to_str().unwrap()));

    let mut specs = Vec::new();
    for id in ["a", "b"] {
        let mut spec = f.spec(id, &["sh", "-c", "hostname; ip -o link | cut -d: -f2; sleep 60"]);
        join(&mut spec, LinuxNamespaceType::Network, &net);
        join(&mut spec, LinuxNamespaceType::Ipc, &ipc);
        join(&mut spec, LinuxNamespaceType::Uts, &uts);
        specs.push(spec);
    }
    let a = f.runtime.start("a", &specs[0], &f.options("a")).unwrap();
    let b = f.runtime.start("b", &specs[1], &f.options("b")).unwrap();
    for kind in ["net", "ipc", "uts"] {
        let pinned_ino = std::fs::metadata(pod_dir.join("ns").join(kind)).unwrap().ino();
        assert_eq!(ns_inode(a.pid, kind), pinned_ino, "{kind}");
        assert_eq!(ns_inode(b.pid, kind), pinned_ino, "{kind}");
    }
    assert!(f.eventually(Duration::from_secs(5), || f.log_text("a").lines().count() >= 2));
    let log = f.log_text("a");
    assert!(log.starts_with("pod-host\n"), "{log}");
    assert!(log.contains(" lo\n") && log.lines().count() == 2, "a fresh netns has only lo: {log}");

    f.runtime.delete("a").unwrap();
    f.runtime.delete("b").unwrap();
    namespaces::unpin(&pod_dir).unwrap();
    namespaces::unpin(&pod_dir).unwrap(); // idempotent
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(f.dir.path().to_str().unwrap()), "pins left mounted");
}

#[test]
fn shared_pid_namespace_with_pause() {
    let f = Fixture::new("pause");
    let pod_dir = f.dir.path().join("pods/p2");
    let p = pause::start(&common::helper_exe(), &pod_dir, None).unwrap();
    assert_eq!(pause::start(&common::helper_exe(), &pod_dir, None).unwrap(), p, "start is idempotent");
    let mut spec_a = f.spec("pa", &["sleep", "60"]);
    join(&mut spec_a, LinuxNamespaceType::Pid, &p.pid_namespace());
    let mut spec_b =
        f.spec("pb", &["sh", "-c", "echo me=$$; cat /proc/1/cmdline | tr '\\0' ' '; echo; ps -o comm; true"]);
    join(&mut spec_b, LinuxNamespaceType::Pid, &p.pid_namespace());
    f.runtime.start("pa", &spec_a, &f.options("pa")).unwrap();
    f.runtime.start("pb", &spec_b, &f.options("pb")).unwrap();
    let exit = f.wait_exit("pb", Duration::from_secs(30));
    assert_eq!(exit.exit_code, 0, "{}", f.diagnostics("pb"));
    let log = f.log_text("pb");
    assert!(!log.contains("me=1\n"), "{log}");
    assert!(log.contains("pause"), "PID 1 is pause: {log}");
    assert!(log.lines().any(|l| l.trim() == "sleep"), "sees the other container: {log}");
    assert!(matches!(f.runtime.state("pa").unwrap(), ContainerState::Running { .. }));

    f.runtime.delete("pa").unwrap();
    pause::stop(&pod_dir).unwrap();
    pause::stop(&pod_dir).unwrap(); // idempotent
    assert!(!p.process.is_alive());
    assert!(pause::running(&pod_dir).unwrap().is_none());
}

#[test]
fn pod_sysctls_land_in_the_pinned_namespaces_only() {
    let f = Fixture::new("sysctl");
    let pod_dir = f.dir.path().join("pods/p2");
    let which = PodNamespaces { net: true, ipc: true, uts: false };
    let host_range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let host_shmmni = std::fs::read_to_string("/proc/sys/kernel/shmmni").unwrap();
    let sysctls = vec![
        ("net.ipv4.ip_local_port_range".to_string(), "40000 40100".to_string()),
        ("kernel/shmmni".to_string(), "1234".to_string()),
    ];
    let pinned = namespaces::pin(&pod_dir, which, None, &sysctls).unwrap();
    let read_in = |ns: &Path, flag: &str, file: &str| {
        let out = std::process::Command::new("nsenter")
            .arg(format!("{flag}={}", ns.display()))
            .args(["cat", file])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let net = pinned.net.clone().unwrap();
    let ipc = pinned.ipc.clone().unwrap();
    assert_eq!(
        read_in(&net, "--net", "/proc/sys/net/ipv4/ip_local_port_range").split_whitespace().collect::<Vec<_>>(),
        ["40000", "40100"]
    );
    assert_eq!(read_in(&ipc, "--ipc", "/proc/sys/kernel/shmmni").trim(), "1234");
    // The host kept its values.
    assert_eq!(std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap(), host_range);
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/shmmni").unwrap(), host_shmmni);
    namespaces::unpin(&pod_dir).unwrap();

    // A host-wide sysctl, or one of a namespace the pod does not own, is refused up front.
    for key in ["vm.swappiness", "kernel.shmmni", "net.ipv4.ip_forward/../../vm/swappiness"] {
        let which = PodNamespaces { net: true, ipc: false, uts: false };
        let err = namespaces::pin(&pod_dir, which, None, &[(key.to_string(), "1".to_string())]).unwrap_err();
        assert!(err.to_string().contains("not a namespaced sysctl"), "{key}: {err}");
    }
    assert!(!pod_dir.join("ns/net").exists(), "a refused pin leaves nothing");
}
