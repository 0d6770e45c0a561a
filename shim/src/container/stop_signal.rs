//! The signal that asks a container to stop: the CRI `stop_signal` (cri-api v0.34+), else
//! the image's `STOPSIGNAL`, else `SIGTERM`.
//!
//! The result is kept as the CRI enum, which `ContainerStatus.stop_signal` reports back;
//! [`signal_number`] gives the number to send. Real-time signals are numbered as glibc and Go
//! do (`SIGRTMIN` = 34), which is what image authors mean by `SIGRTMIN+3`.

use corral_cri::v1::Signal;

use super::SpecError;

/// `SIGRTMIN` as user space sees it (glibc keeps 32 and 33 for itself).
const SIGRTMIN: i32 = 34;

/// The stop signal of a container.
pub fn stop_signal(cri: i32, image: &str) -> Result<Signal, SpecError> {
    let cri = Signal::try_from(cri).map_err(|_| SpecError::BadStopSignal(format!("unknown CRI signal value {cri}")))?;
    if cri != Signal::RuntimeDefault {
        return Ok(cri);
    }
    if image.trim().is_empty() {
        return Ok(Signal::Sigterm);
    }
    parse_signal(image)
        .ok_or_else(|| SpecError::BadStopSignal(format!("the image's STOPSIGNAL {image:?} is not a Linux signal")))
}

/// The number of a signal, as `kill(2)` wants it. `RuntimeDefault` is `SIGTERM`.
pub fn signal_number(signal: Signal) -> i32 {
    use Signal as S;
    match signal {
        S::RuntimeDefault | S::Sigterm => libc::SIGTERM,
        S::Sigabrt | S::Sigiot => libc::SIGABRT,
        S::Sigalrm => libc::SIGALRM,
        S::Sigbus => libc::SIGBUS,
        S::Sigchld | S::Sigcld => libc::SIGCHLD,
        S::Sigcont => libc::SIGCONT,
        S::Sigfpe => libc::SIGFPE,
        S::Sighup => libc::SIGHUP,
        S::Sigill => libc::SIGILL,
        S::Sigint => libc::SIGINT,
        S::Sigio | S::Sigpoll => libc::SIGIO,
        S::Sigkill => libc::SIGKILL,
        S::Sigpipe => libc::SIGPIPE,
        S::Sigprof => libc::SIGPROF,
        S::Sigpwr => libc::SIGPWR,
        S::Sigquit => libc::SIGQUIT,
        S::Sigsegv => libc::SIGSEGV,
        S::Sigstkflt => libc::SIGSTKFLT,
        S::Sigstop => libc::SIGSTOP,
        S::Sigsys => libc::SIGSYS,
        S::Sigtrap => libc::SIGTRAP,
        S::Sigtstp => libc::SIGTSTP,
        S::Sigttin => libc::SIGTTIN,
        S::Sigttou => libc::SIGTTOU,
        S::Sigurg => libc::SIGURG,
        S::Sigusr1 => libc::SIGUSR1,
        S::Sigusr2 => libc::SIGUSR2,
        S::Sigvtalrm => libc::SIGVTALRM,
        S::Sigwinch => libc::SIGWINCH,
        S::Sigxcpu => libc::SIGXCPU,
        S::Sigxfsz => libc::SIGXFSZ,
        // The CRI enum lists SIGRTMIN, SIGRTMIN+1..+15, SIGRTMAX-14..-1, SIGRTMAX in order,
        // i.e. enum value 35 + k is signal 34 + k.
        rt => rt as i32 - 1,
    }
}

/// Parses a Docker-style signal name: `SIGQUIT`, `QUIT`, `sigquit`, `3`, `SIGRTMIN+3`, `RTMAX-1`.
fn parse_signal(text: &str) -> Option<Signal> {
    let text = text.trim();
    if let Ok(number) = text.parse::<i32>() {
        return from_number(number);
    }
    let upper = text.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        return from_number(SIGRTMIN + rt_offset(rest, '+')?);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        return from_number(libc::SIGRTMAX() - rt_offset(rest, '-')?);
    }
    Signal::from_str_name(&format!("SIGNAL_SIG{name}")).filter(|s| *s != Signal::RuntimeDefault)
}

/// The `+n` / `-n` after `RTMIN` / `RTMAX` (empty = 0).
fn rt_offset(rest: &str, sign: char) -> Option<i32> {
    if rest.is_empty() {
        return Some(0);
    }
    rest.strip_prefix(sign)?.parse().ok()
}

fn from_number(number: i32) -> Option<Signal> {
    if number <= 0 {
        return None;
    }
    // Standard signals: the first enum value with that number (SIGABRT before SIGIOT).
    let standard = (1..=34).filter_map(|v| Signal::try_from(v).ok()).find(|s| signal_number(*s) == number);
    if standard.is_some() {
        return standard;
    }
    if (SIGRTMIN..=libc::SIGRTMAX()).contains(&number) { Signal::try_from(number + 1).ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence() {
        assert_eq!(stop_signal(0, "").unwrap(), Signal::Sigterm);
        assert_eq!(stop_signal(0, "SIGQUIT").unwrap(), Signal::Sigquit);
        assert_eq!(stop_signal(Signal::Sigusr1 as i32, "SIGQUIT").unwrap(), Signal::Sigusr1);
    }

    #[test]
    fn image_spellings() {
        let cases = [
            ("SIGQUIT", Signal::Sigquit),
            ("quit", Signal::Sigquit),
            ("3", Signal::Sigquit),
            ("SIGWINCH", Signal::Sigwinch),
            ("9", Signal::Sigkill),
            ("6", Signal::Sigabrt),
            ("SIGIOT", Signal::Sigiot),
            ("SIGRTMIN", Signal::Sigrtmin),
            ("SIGRTMIN+3", Signal::Sigrtminplus3),
            ("RTMAX-1", Signal::Sigrtmaxminus1),
            ("SIGRTMAX", Signal::Sigrtmax),
            ("37", Signal::Sigrtminplus3),
        ];
        for (text, want) in cases {
            assert_eq!(stop_signal(0, text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn numbers_match_the_kernel() {
        assert_eq!(signal_number(Signal::Sigterm), 15);
        assert_eq!(signal_number(Signal::Sigkill), 9);
        assert_eq!(signal_number(Signal::Sigrtmin), 34);
        assert_eq!(signal_number(Signal::Sigrtminplus15), 49);
        assert_eq!(signal_number(Signal::Sigrtmaxminus14), 50);
        assert_eq!(signal_number(Signal::Sigrtmax), libc::SIGRTMAX());
        // Every enum value maps to a distinct number except the kernel's own aliases.
        for v in 1..=65 {
            let s = Signal::try_from(v).unwrap();
            let n = signal_number(s);
            assert!((1..=64).contains(&n), "{s:?} -> {n}");
            assert_eq!(signal_number(from_number(n).unwrap()), n, "{s:?}");
        }
    }

    #[test]
    fn bad_signals() {
        for text in ["SIGNOPE", "0", "65", "-1", "SIGRTMIN+x", "RTMAX+1", "RUNTIME_DEFAULT"] {
            let err = stop_signal(0, text).unwrap_err();
            assert!(err.to_string().contains("is not a Linux signal"), "{text}: {err}");
        }
        assert!(stop_signal(99, "").unwrap_err().to_string().contains("unknown CRI signal value 99"));
    }
}
