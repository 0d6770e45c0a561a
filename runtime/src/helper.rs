//! Dispatch of the hidden helper modes of the corral binary (see docs/design.md).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::types::HELPER_LOG_ENV;

/// If `argv[1]` is `monitor`, `exec` or `pause`, runs that mode and returns its exit code;
/// otherwise `None`, and `main()` goes on as usual.
///
/// Must be the first thing `main()` calls, before any thread or async runtime exists: the
/// modes fork without exec, which is only sound in a single-threaded process.
pub fn run_helper_mode() -> Option<ExitCode> {
    let mut args = std::env::args_os().skip(1);
    let mode = args.next()?;
    let mode = mode.to_str()?;
    if !matches!(mode, "monitor" | "exec" | "pause") {
        return None;
    }
    mark_inherited_fds_cloexec();
    init_logging();
    let dir = args.next().map(PathBuf::from);
    Some(match (mode, dir) {
        ("monitor", Some(dir)) => crate::monitor::main(&dir),
        ("exec", Some(dir)) => crate::exec::main(&dir),
        ("pause", _) => crate::pause::main(),
        (mode, None) => {
            eprintln!("corral {mode}: missing state directory argument");
            ExitCode::from(2)
        }
        _ => ExitCode::from(2),
    })
}

/// Whatever the parent leaked to us beyond stdio (a jobserver pipe, a daemon socket without
/// O_CLOEXEC) must never reach a container: mark every fd >= 3 close-on-exec.
fn mark_inherited_fds_cloexec() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on our own fds.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if rc != 0 {
        // Older kernels: walk the open fds instead.
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            let fds: Vec<i32> = dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
            for fd in fds.into_iter().filter(|fd| *fd >= 3) {
                // SAFETY: F_SETFD on an fd number; a stale one just fails with EBADF.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
    }
}

/// Helper modes log to stderr (the monitor's stderr is `monitor.log` in its state dir).
fn init_logging() {
    let filter = std::env::var(HELPER_LOG_ENV).unwrap_or_else(|_| "info".into());
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).try_init();
}
