//! Benchmarks (not assertions): start latency, exit-recording latency and the monitor's
//! memory. Run: `cargo test -p corral-runtime --release --test bench -- --ignored --nocapture`.

mod common;

use std::time::{Duration, Instant};

use common::Fixture;

fn smaps_rollup(pid: i32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap();
    text.lines().find_map(|l| l.strip_prefix(key)?.trim().strip_suffix(" kB")?.trim().parse().ok()).unwrap()
}

#[test]
#[ignore]
fn bench_start_exit_and_monitor_memory() {
    let f = Fixture::new("bench");
    const N: usize = 10;
    let mut start_ms = Vec::new();
    let mut exit_ms = Vec::new();
    for i in 0..N {
        let id = format!("true{i}");
        let spec = f.spec(&id, &["true"]);
        let t0 = Instant::now();
        f.runtime.start(&id, &spec, &f.options(&id)).unwrap();
        start_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        let exit = f.wait_exit(&id, Duration::from_secs(30));
        exit_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(exit.exit_code, 0);
        f.runtime.delete(&id).unwrap();
    }
    let mut monitors = Vec::new();
    for i in 0..N {
        let id = format!("sleep{i}");
        let started = f.runtime.start(&id, &f.spec(&id, &["sleep", "600"]), &f.options(&id)).unwrap();
        monitors.push(started.monitor_pid);
    }
    std::thread::sleep(Duration::from_millis(500));
    let pss: Vec<u64> = monitors.iter().map(|p| smaps_rollup(*p, "Pss:")).collect();
    let rss: Vec<u64> = monitors.iter().map(|p| smaps_rollup(*p, "Rss:")).collect();
    let median = |v: &mut Vec<f64>| {
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v[v.len() / 2]
    };
    println!(
        "start() call -> container exec'd: median {:.1} ms (min {:.1}, max {:.1})",
        median(&mut start_ms.clone()),
        start_ms.iter().cloned().fold(f64::MAX, f64::min),
        start_ms.iter().cloned().fold(0.0, f64::max)
    );
    println!("start() call -> exit recorded (`true`): median {:.1} ms", median(&mut exit_ms));
    println!("monitor PSS with {N} running: {:?} kB (mean {} kB)", pss, pss.iter().sum::<u64>() / N as u64);
    println!("monitor RSS: {:?} kB", rss);
}
