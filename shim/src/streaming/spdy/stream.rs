//! One SPDY stream as tokio `AsyncRead` + `AsyncWrite`, so it can be handed to a backend
//! (a process's stdio, a TCP connection) like any socket.
//!
//! Inbound data is queued per stream by the connection's reader task; the queue is bounded
//! (about one receive window), and a full queue makes the reader task wait, which pushes back
//! on the peer through TCP, exactly what the Go peer relies on. Reading from the queue
//! re-opens our receive window with WINDOW_UPDATE. Outbound data goes through the
//! connection's single writer queue, bounded by a byte budget, and, once the peer proves it
//! does flow control, by the send windows (see [`super::window`]).
//!
//! Closing: `shutdown()` (or dropping the send half) sends an empty DATA frame with FIN, a
//! half-close like TCP's. The peer's FIN shows up as EOF on read. A RST_STREAM from the peer
//! makes reads and writes fail with `ConnectionReset`.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio_util::sync::PollSemaphore;

use super::connection::{Outbound, Shared};
use super::frame::{Frame, rst};
use super::headers::Headers;
use super::window::Window;

/// Largest DATA frame we send: below the 64 KiB default window, so one frame always fits.
const MAX_DATA_CHUNK: usize = 32 * 1024;

/// State shared by a stream's handles and the connection's reader task.
pub(super) struct StreamState {
    pub id: u32,
    recv: Mutex<RecvState>,
    /// Signalled when the reader side consumed data, so a waiting reader task can deliver more.
    space: Notify,
    pub send_window: Window,
    /// We sent FIN or RST: nothing more will be written.
    local_closed: AtomicBool,
    /// The peer sent FIN or RST: nothing more will arrive.
    remote_closed: AtomicBool,
    reset: AtomicBool,
}

#[derive(Default)]
struct RecvState {
    chunks: VecDeque<Bytes>,
    buffered: usize,
    fin: bool,
    reset: bool,
    reader_gone: bool,
    waker: Option<Waker>,
    /// Bytes consumed since the last stream WINDOW_UPDATE.
    unacked: usize,
    /// The connection read budget held by the queued bytes.
    budget: Option<OwnedSemaphorePermit>,
}

/// What became of data delivered to a stream.
pub(super) enum Delivery {
    Queued,
    /// Nobody will read it (handle dropped or stream reset): acknowledge it right away.
    Discarded,
}

impl StreamState {
    pub fn new(id: u32, send_window: i64, remote_fin: bool) -> Self {
        StreamState {
            id,
            recv: Mutex::new(RecvState { fin: remote_fin, ..Default::default() }),
            space: Notify::new(),
            send_window: Window::new(send_window),
            local_closed: AtomicBool::new(false),
            remote_closed: AtomicBool::new(remote_fin),
            reset: AtomicBool::new(false),
        }
    }

    fn recv(&self) -> MutexGuard<'_, RecvState> {
        self.recv.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues inbound data, waiting while the queue holds `capacity` bytes or more and
    /// while the connection's read budget is spent.
    pub async fn deliver(&self, data: Bytes, capacity: usize, shared: &Shared) -> Delivery {
        loop {
            // Register interest before checking, so a consumer's signal cannot be lost.
            let space = self.space.notified();
            {
                let r = self.recv();
                if r.reader_gone || r.reset || r.fin {
                    return Delivery::Discarded;
                }
                if r.buffered < capacity {
                    break;
                }
            }
            space.await;
        }
        let Some(permit) = shared.reserve_read(data.len()).await else {
            return Delivery::Discarded;
        };
        let mut r = self.recv();
        if r.reader_gone || r.reset || r.fin {
            return Delivery::Discarded;
        }
        r.buffered += data.len();
        r.chunks.push_back(data);
        match r.budget.as_mut() {
            Some(held) => held.merge(permit),
            None => r.budget = Some(permit),
        }
        if let Some(w) = r.waker.take() {
            w.wake();
        }
        Delivery::Queued
    }

    /// The peer sent FIN: readers see EOF after the queued data.
    pub fn remote_fin(&self) {
        let mut r = self.recv();
        r.fin = true;
        if let Some(w) = r.waker.take() {
            w.wake();
        }
        self.remote_closed.store(true, Ordering::SeqCst);
    }

    /// RST_STREAM either way, or the connection is gone: every operation fails from now on.
    pub fn reset(&self) {
        self.reset.store(true, Ordering::SeqCst);
        self.local_closed.store(true, Ordering::SeqCst);
        self.remote_closed.store(true, Ordering::SeqCst);
        let mut r = self.recv();
        r.reset = true;
        r.chunks.clear();
        r.buffered = 0;
        r.budget = None;
        if let Some(w) = r.waker.take() {
            w.wake();
        }
        drop(r);
        self.space.notify_one();
        self.send_window.close();
    }

    pub fn is_reset(&self) -> bool {
        self.reset.load(Ordering::SeqCst)
    }

    /// Both directions are finished: the connection may forget the stream.
    pub fn is_finished(&self) -> bool {
        self.local_closed.load(Ordering::SeqCst) && self.remote_closed.load(Ordering::SeqCst)
    }
}

/// A stream the peer opened, not yet answered.
pub struct IncomingStream {
    pub(super) state: Arc<StreamState>,
    pub(super) shared: Arc<Shared>,
    pub(super) headers: Headers,
    answered: bool,
}

impl IncomingStream {
    pub(super) fn new(state: Arc<StreamState>, shared: Arc<Shared>, headers: Headers) -> Self {
        IncomingStream { state, shared, headers, answered: false }
    }

    /// The headers of the peer's SYN_STREAM (`streamtype`, `port`, ...).
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    pub fn id(&self) -> u32 {
        self.state.id
    }

    /// Replies with SYN_REPLY and returns the usable stream.
    pub fn accept(mut self) -> SpdyStream {
        self.answered = true;
        self.shared.send(Frame::SynReply { stream_id: self.state.id, fin: false, headers: Headers::new() });
        SpdyStream::new(self.state.clone(), self.shared.clone())
    }
}

/// An unanswered stream is refused with RST_STREAM (the Go client's CreateStream then fails).
impl Drop for IncomingStream {
    fn drop(&mut self) {
        if !self.answered {
            self.shared.reset_stream(&self.state, rst::REFUSED_STREAM);
        }
    }
}

/// An accepted stream: read what the peer sends, write what it should receive.
pub struct SpdyStream {
    recv: RecvHalf,
    send: SendHalf,
}

impl SpdyStream {
    fn new(state: Arc<StreamState>, shared: Arc<Shared>) -> Self {
        SpdyStream {
            recv: RecvHalf { state: state.clone(), shared: shared.clone() },
            send: SendHalf {
                budget: PollSemaphore::new(shared.write_budget.clone()),
                state,
                shared,
                credit: 0,
                fin_sent: false,
            },
        }
    }

    /// Splits into independently owned read and write halves.
    pub fn into_split(self) -> (RecvHalf, SendHalf) {
        (self.recv, self.send)
    }

    /// Aborts the stream in both directions with RST_STREAM CANCEL.
    pub fn reset(self) {
        self.send.shared.reset_stream(&self.send.state, rst::CANCEL);
    }
}

/// The readable side of a stream.
pub struct RecvHalf {
    state: Arc<StreamState>,
    shared: Arc<Shared>,
}

impl AsyncRead for RecvHalf {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut r = this.state.recv();
        if let Some(front) = r.chunks.front_mut() {
            let n = front.len().min(buf.remaining());
            buf.put_slice(&front.split_to(n));
            if front.is_empty() {
                r.chunks.pop_front();
            }
            r.buffered -= n;
            r.unacked += n;
            if let Some(held) = r.budget.as_mut() {
                drop(held.split(n.min(held.num_permits())));
            }
            let stream_update =
                if !r.fin && r.unacked >= this.shared.ack_threshold() { std::mem::take(&mut r.unacked) } else { 0 };
            drop(r);
            this.state.space.notify_one();
            this.shared.consumed(this.state.id, n, stream_update);
            return Poll::Ready(Ok(()));
        }
        if r.reset {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, "SPDY stream reset")));
        }
        if r.fin {
            return Poll::Ready(Ok(()));
        }
        r.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for RecvHalf {
    fn drop(&mut self) {
        let mut r = self.state.recv();
        r.reader_gone = true;
        let dropped = std::mem::take(&mut r.buffered);
        r.chunks.clear();
        r.budget = None;
        drop(r);
        self.state.space.notify_one();
        // Data nobody will read still counts against the connection window.
        self.shared.consumed(self.state.id, dropped, 0);
    }
}

/// The writable side of a stream.
pub struct SendHalf {
    state: Arc<StreamState>,
    shared: Arc<Shared>,
    budget: PollSemaphore,
    /// Window taken but not yet sent (a write that then waited for budget).
    credit: usize,
    fin_sent: bool,
}

impl SendHalf {
    fn broken(&self) -> Option<io::Error> {
        if self.state.is_reset() {
            return Some(io::Error::new(io::ErrorKind::ConnectionReset, "SPDY stream reset"));
        }
        if self.shared.is_closed() {
            return Some(io::Error::new(io::ErrorKind::BrokenPipe, "SPDY connection closed"));
        }
        if self.fin_sent {
            return Some(io::Error::new(io::ErrorKind::BrokenPipe, "write after close on SPDY stream"));
        }
        None
    }

    /// Takes window from the stream, then the connection. `None` once either is closed.
    fn poll_window(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<Option<usize>> {
        let enforce = self.shared.peer_does_flow_control();
        let Some(from_stream) = ready!(self.state.send_window.poll_take(cx, want, enforce)) else {
            return Poll::Ready(None);
        };
        match self.shared.conn_send_window.poll_take(cx, from_stream, enforce) {
            Poll::Ready(Some(from_conn)) => {
                self.state.send_window.give_back(from_stream - from_conn);
                Poll::Ready(Some(from_conn))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                self.state.send_window.give_back(from_stream);
                Poll::Pending
            }
        }
    }

    fn send_fin(&mut self) {
        if !self.fin_sent {
            self.fin_sent = true;
            self.shared.send_fin(&self.state);
        }
    }
}

impl AsyncWrite for SendHalf {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(e) = this.broken() {
            return Poll::Ready(Err(e));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.credit == 0 {
            match ready!(this.poll_window(cx, buf.len().min(MAX_DATA_CHUNK))) {
                Some(n) => this.credit = n,
                None => return Poll::Ready(Err(this.broken().unwrap_or_else(|| io::ErrorKind::BrokenPipe.into()))),
            }
        }
        let n = this.credit.min(buf.len());
        let Some(permit) = ready!(this.budget.poll_acquire_many(cx, n as u32)) else {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "SPDY connection closed")));
        };
        this.credit -= n;
        let frame = Frame::Data { stream_id: this.state.id, fin: false, data: Bytes::copy_from_slice(&buf[..n]) };
        if !this.shared.enqueue(Outbound::Frame(frame, Some(permit))) {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::BrokenPipe, "SPDY connection closed")));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Frames are queued in order to the connection's writer, which flushes as soon as
        // its queue is empty; there is nothing to wait for here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.state.is_reset() {
            this.send_fin();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for SendHalf {
    fn drop(&mut self) {
        self.state.send_window.give_back(self.credit);
        if !self.state.is_reset() && !self.shared.is_closed() {
            // Dropping the writer ends the stream the way closing a pipe does.
            self.send_fin();
        }
    }
}

impl AsyncRead for SpdyStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().recv).poll_read(cx, buf)
    }
}

impl AsyncWrite for SpdyStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().send).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().send).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().send).poll_shutdown(cx)
    }
}

impl StreamState {
    /// Marks our side finished (FIN queued).
    pub(super) fn local_fin(&self) {
        self.local_closed.store(true, Ordering::SeqCst);
    }
}
