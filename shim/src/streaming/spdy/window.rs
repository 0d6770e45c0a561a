//! A SPDY/3.1 send window: how many DATA bytes we may still send before the peer grants more.
//!
//! SPDY/3.1 has one window per stream and one for the whole connection, both starting at
//! 64 KiB; DATA shrinks them, WINDOW_UPDATE grows them, and SETTINGS INITIAL_WINDOW_SIZE
//! shifts every stream window by the difference (which may drive one negative).
//!
//! Kubernetes' Go peer (moby/spdystream) never sends WINDOW_UPDATE and ignores ours: it relies
//! on TCP backpressure alone. Enforcing our send window against it would stall every stream
//! after 64 KiB. So windows are always *accounted*, but only *enforced* once the peer has shown
//! that it does flow control (sent SETTINGS or WINDOW_UPDATE); see `Shared::peer_flow_control`.

use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

/// The largest window SPDY allows (2^31 - 1).
pub const MAX_WINDOW: i64 = 0x7fff_ffff;

/// The window grew past 2^31 - 1: a FLOW_CONTROL_ERROR.
#[derive(Debug, PartialEq, Eq)]
pub struct WindowOverflow;

/// One send window, shared between the writer (takes) and the connection's reader (grows).
pub struct Window {
    state: Mutex<WindowState>,
}

struct WindowState {
    available: i64,
    waiters: Vec<Waker>,
    closed: bool,
}

impl Window {
    pub fn new(initial: i64) -> Self {
        Window { state: Mutex::new(WindowState { available: initial, waiters: Vec::new(), closed: false }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WindowState> {
        // A poisoned window only means another task panicked mid-update; the numbers are
        // still the best we have.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes up to `want` bytes of window. With `enforce` false the take always succeeds in
    /// full (the window may go negative). `Ready(None)` once the window is closed.
    pub fn poll_take(&self, cx: &mut Context<'_>, want: usize, enforce: bool) -> Poll<Option<usize>> {
        let mut s = self.lock();
        if s.closed {
            return Poll::Ready(None);
        }
        let want = want.min(MAX_WINDOW as usize);
        let grant = if enforce { want.min(s.available.max(0) as usize) } else { want };
        if grant == 0 && want > 0 {
            if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                s.waiters.push(cx.waker().clone());
            }
            return Poll::Pending;
        }
        s.available -= grant as i64;
        Poll::Ready(Some(grant))
    }

    /// Returns bytes taken but not sent.
    pub fn give_back(&self, n: usize) {
        if n > 0 {
            self.grow(n as i64).ok();
        }
    }

    /// Adds `delta` (negative for a SETTINGS decrease) and wakes writers.
    pub fn grow(&self, delta: i64) -> Result<(), WindowOverflow> {
        let mut s = self.lock();
        let next = s.available + delta;
        if next > MAX_WINDOW {
            return Err(WindowOverflow);
        }
        s.available = next;
        for w in s.waiters.drain(..) {
            w.wake();
        }
        Ok(())
    }

    /// Wakes every waiter for good: the stream or connection is gone.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        for w in s.waiters.drain(..) {
            w.wake();
        }
    }

    #[cfg(test)]
    pub fn available(&self) -> i64 {
        self.lock().available
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn ctx() -> (Arc<CountingWaker>, Waker) {
        let w = Arc::new(CountingWaker(AtomicUsize::new(0)));
        (w.clone(), Waker::from(w))
    }

    #[test]
    fn enforced_window_grants_what_is_left_then_waits_for_an_update() {
        let (count, waker) = ctx();
        let mut cx = Context::from_waker(&waker);
        let w = Window::new(65536);
        assert_eq!(w.poll_take(&mut cx, 40000, true), Poll::Ready(Some(40000)));
        assert_eq!(w.poll_take(&mut cx, 40000, true), Poll::Ready(Some(25536)));
        assert_eq!(w.poll_take(&mut cx, 1, true), Poll::Pending);
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        w.grow(100).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "WINDOW_UPDATE wakes the writer");
        assert_eq!(w.poll_take(&mut cx, 1000, true), Poll::Ready(Some(100)));
    }

    #[test]
    fn unenforced_window_is_only_accounted() {
        let (_, waker) = ctx();
        let mut cx = Context::from_waker(&waker);
        let w = Window::new(10);
        assert_eq!(w.poll_take(&mut cx, 100, false), Poll::Ready(Some(100)));
        assert_eq!(w.available(), -90);
    }

    #[test]
    fn settings_can_drive_a_window_negative_and_updates_must_refill_it() {
        let (_, waker) = ctx();
        let mut cx = Context::from_waker(&waker);
        let w = Window::new(65536);
        assert_eq!(w.poll_take(&mut cx, 60000, true), Poll::Ready(Some(60000)));
        w.grow(1024 - 65536).unwrap(); // SETTINGS lowered the initial window to 1 KiB
        assert_eq!(w.available(), -58976);
        assert_eq!(w.poll_take(&mut cx, 1, true), Poll::Pending);
        w.grow(58977).unwrap();
        assert_eq!(w.poll_take(&mut cx, 10, true), Poll::Ready(Some(1)));
    }

    #[test]
    fn overflow_is_a_flow_control_error() {
        let w = Window::new(MAX_WINDOW - 1);
        assert_eq!(w.grow(2), Err(WindowOverflow));
        assert_eq!(w.grow(1), Ok(()));
    }

    #[test]
    fn give_back_returns_unsent_credit() {
        let (_, waker) = ctx();
        let mut cx = Context::from_waker(&waker);
        let w = Window::new(100);
        assert_eq!(w.poll_take(&mut cx, 100, true), Poll::Ready(Some(100)));
        w.give_back(30);
        assert_eq!(w.available(), 30);
    }

    #[test]
    fn close_releases_waiters() {
        let (count, waker) = ctx();
        let mut cx = Context::from_waker(&waker);
        let w = Window::new(0);
        assert_eq!(w.poll_take(&mut cx, 1, true), Poll::Pending);
        w.close();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert_eq!(w.poll_take(&mut cx, 1, true), Poll::Ready(None));
    }
}
