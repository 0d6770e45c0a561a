//! Crash-at-any-point testing: named steps where the daemon can be told to kill itself.
//!
//! A crash between two steps of a multi-step operation (a pod half made, a container half
//! removed) is what leaks IPs, namespaces and mounts in long-lived runtimes. Each call of
//! [`point`] names such a step. With `CORRAL_FAULT=<name>` in its environment the daemon
//! SIGKILLs itself when it reaches that step: no destructor, no flush, no graceful shutdown,
//! exactly like a crash or an OOM kill. `e2e/tests/crash_points.sh` crashes the daemon at
//! every point, restarts it and checks that each object either exists and works or is gone,
//! and that nothing leaked.
//!
//! Without the variable a point costs one read of a value cached at the first call.

use std::sync::OnceLock;

/// The environment variable that names the point to crash at.
pub const ENV: &str = "CORRAL_FAULT";

/// Every fault point, in the order a pod's life reaches them.
pub const POINTS: &[&str] = &[
    // RunPodSandbox (see pod::setup): namespaces, pause, network, then the record.
    "after-netns-pinned",
    "after-pause-started",
    "after-network-added",
    "after-sandbox-record-written",
    // CreateContainer: the bundle (writable layer dirs, spec), then the record.
    "after-container-spec-written",
    "after-container-record-written",
    // StartContainer: the monitor runs the container, the record does not say so yet.
    "after-monitor-started",
    // RemoveContainer: the runtime state is gone, the record is not.
    "mid-container-removal",
    // StopPodSandbox: the network and namespaces are gone, the record still says READY.
    "mid-sandbox-stop",
    // RemovePodSandbox: the pod dir is gone, the record is not.
    "mid-sandbox-removal",
];

/// Crashes the daemon if `CORRAL_FAULT` names `name`; otherwise does nothing.
pub fn point(name: &str) {
    debug_assert!(POINTS.contains(&name), "unknown fault point {name:?}");
    if armed() == Some(name) {
        crash(name);
    }
}

/// Logs at start-up which point is armed, and complains about a name that is no point (a
/// typo would otherwise make a crash test silently pass through).
pub fn announce() {
    match armed() {
        None => {}
        Some(name) if POINTS.contains(&name) => {
            tracing::warn!("{ENV}={name}: this daemon kills itself when it reaches that step");
        }
        Some(name) => tracing::error!("{ENV}={name} names no fault point; known points: {}", POINTS.join(", ")),
    }
}

fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED.get_or_init(|| std::env::var(ENV).ok().filter(|v| !v.is_empty())).as_deref()
}

fn crash(name: &str) -> ! {
    tracing::error!("{ENV}={name}: crashing on purpose (SIGKILL)");
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
    // SIGKILL cannot be caught or blocked; this is never reached.
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_unique_and_an_unarmed_point_does_nothing() {
        let mut names = POINTS.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), POINTS.len());
        // The test process has no CORRAL_FAULT: every point returns.
        assert!(std::env::var(ENV).is_err(), "unset {ENV} to run the unit tests");
        for name in POINTS {
            point(name);
        }
    }
}
