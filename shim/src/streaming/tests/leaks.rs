//! 200 back-to-back exec sessions (and some cut short) must leave the server process with
//! the fds and tasks it had before; also reports the exec round-trip latency.
//!
//! The measurement runs in a child process (this test binary re-executed for one ignored
//! test), so sockets of tests running in parallel do not blur the fd count.

use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;
use tokio::runtime::Handle;

use super::go_client::{self, TRANSPORTS};
use super::{exec_req, process_with_cmdline, start};

const CHILD_ENV: &str = "CORRAL_STREAMING_LEAK_CHECK";

#[test]
fn no_fd_or_task_growth_over_200_execs() {
    go_client::binary(); // build once, outside the measurement
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "streaming::tests::leaks::leak_check_in_own_process", "--ignored", "--nocapture"])
        .env(CHILD_ENV, "1")
        .status()
        .unwrap();
    assert!(status.success(), "leak check failed (output above)");
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn tasks() -> usize {
    Handle::current().metrics().num_alive_tasks()
}

/// Waits until fds and tasks are back to the baseline (sessions linger briefly after the
/// client is gone), or the deadline passes; returns the last reading.
async fn settle(baseline: (usize, usize)) -> (usize, usize) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = (fd_count(), tasks());
        if (now.0 <= baseline.0 && now.1 <= baseline.1) || Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[test]
#[ignore = "run by no_fd_or_task_growth_over_200_execs in its own process"]
fn leak_check_in_own_process() {
    if std::env::var(CHILD_ENV).is_err() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let server = start().await;
        // Warm up: runtime threads, the SIGCHLD driver, lazily opened fds.
        for transport in TRANSPORTS {
            let url = server.exec_url(&exec_req(&["true"])).unwrap();
            assert_eq!(go_client::exec(transport, &url, &[], None).await.code, 0);
        }
        let baseline = settle((0, 0)).await;
        let baseline = (fd_count().max(baseline.0), tasks().max(baseline.1));

        let mut micros: [Vec<u64>; 2] = [Vec::new(), Vec::new()];
        for i in 0..200 {
            let t = i % 2;
            let url = server.exec_url(&exec_req(&["true"])).unwrap();
            let o = go_client::exec(TRANSPORTS[t], &url, &["-timing"], None).await;
            assert_eq!(o.code, 0, "{o:?}");
            let us = o.stderr.lines().find_map(|l| l.strip_prefix("elapsed-us: ")).unwrap().parse().unwrap();
            micros[t].push(us);
        }
        // Sessions cut short: the client dies while the command runs.
        for i in 0..20 {
            let script = "echo started; exec sleep 765.4";
            let url = server.exec_url(&exec_req(&["sh", "-c", script])).unwrap();
            let mut child = go_client::spawn(&["exec", "-transport", TRANSPORTS[i % 2], "-url", &url]);
            let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
            assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("started"));
            child.kill().await.unwrap();
        }
        let after = settle(baseline).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while process_with_cmdline("sleep 765.4") {
            assert!(Instant::now() < deadline, "exec'd processes outlived their clients");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for (t, name) in TRANSPORTS.iter().enumerate() {
            let v = &mut micros[t];
            v.sort_unstable();
            eprintln!(
                "exec round trip ({name}, client-go connect -> exit status, `true`): p50 {:.2} ms, p90 {:.2} ms, max {:.2} ms over {} runs",
                percentile(v, 0.5) as f64 / 1000.0,
                percentile(v, 0.9) as f64 / 1000.0,
                v[v.len() - 1] as f64 / 1000.0,
                v.len()
            );
        }
        eprintln!("fds {} -> {}, tasks {} -> {} (220 sessions)", baseline.0, after.0, baseline.1, after.1);
        assert!(after.0 <= baseline.0, "fd count grew: {} -> {}", baseline.0, after.0);
        assert!(after.1 <= baseline.1, "task count grew: {} -> {}", baseline.1, after.1);
    });
}
