//! A server-side SPDY/3.1 connection over any byte stream (an upgraded HTTP/1.1 connection,
//! or a WebSocket carrying `SPDY/3.1+portforward.k8s.io`).
//!
//! Two tasks per connection:
//! - the **reader** decodes frames in order and dispatches them: new streams to
//!   [`Connection::accept`], DATA to the stream's queue, RST/WINDOW_UPDATE/SETTINGS to the
//!   stream or connection state, and answers PINGs;
//! - the **writer** owns the socket's write half and the header compressor; everything we
//!   send goes through its single unbounded queue, so frames leave in the order they were
//!   queued (SYN_REPLY before a stream's DATA, DATA before its FIN). DATA frames hold a permit
//!   of a per-connection byte budget until written, which bounds the queue.
//!
//! The reader never waits on the writer, so a peer that stops reading cannot deadlock us.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::frame::{
    FLAG_FIN, Frame, FrameDecoder, FrameEncoder, FrameError, SETTINGS_INITIAL_WINDOW_SIZE, goaway, rst,
};
use super::stream::{Delivery, IncomingStream, StreamState};
use super::window::Window;

/// Tunables of one connection.
#[derive(Debug, Clone)]
pub struct SpdyConfig {
    /// Our receive window per stream and for the connection (the SPDY default is 64 KiB).
    pub initial_window: u32,
    /// Most streams open at once; more are refused with REFUSED_STREAM.
    pub max_streams: usize,
    /// Most DATA bytes queued for the writer at once, across all streams.
    pub write_budget: usize,
    /// Most received DATA bytes queued for readers at once, across all streams. Per-stream
    /// queues are bounded too, but a peer could send one huge frame to each of many streams.
    pub read_budget: usize,
}

impl Default for SpdyConfig {
    fn default() -> Self {
        SpdyConfig {
            initial_window: 64 * 1024,
            max_streams: 1024,
            write_budget: 1024 * 1024,
            read_budget: 16 * 1024 * 1024,
        }
    }
}

/// An item for the writer task.
pub(super) enum Outbound {
    /// A frame, with the budget permit it holds until written (DATA only).
    Frame(Frame, Option<OwnedSemaphorePermit>),
    /// Flush, half-close the socket and stop.
    Shutdown,
}

struct StreamTable {
    streams: HashMap<u32, Arc<StreamState>>,
    /// The peer's SETTINGS_INITIAL_WINDOW_SIZE (what new streams start with).
    initial_send_window: i64,
    /// Highest stream id the peer opened (ids must grow).
    last_peer_stream: u32,
    goaway_sent: bool,
}

/// Connection state shared by the tasks, the handle and the streams.
pub(super) struct Shared {
    out: mpsc::UnboundedSender<Outbound>,
    pub write_budget: Arc<Semaphore>,
    pub read_budget: Arc<Semaphore>,
    read_budget_total: usize,
    pub conn_send_window: Window,
    table: Mutex<StreamTable>,
    /// Set once the peer sent SETTINGS or WINDOW_UPDATE: from then on our send windows are
    /// enforced (see `window.rs` for why not before).
    flow_control: AtomicBool,
    /// Bytes read by the application (or discarded) since the last connection WINDOW_UPDATE.
    conn_unacked: AtomicUsize,
    recv_window: u32,
    /// Cancelled when the peer is gone (reader finished or writer failed).
    closed: CancellationToken,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, StreamTable> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame for the writer; false if the writer is gone.
    pub fn enqueue(&self, item: Outbound) -> bool {
        self.out.send(item).is_ok()
    }

    /// Queues a control frame.
    pub fn send(&self, frame: Frame) {
        self.enqueue(Outbound::Frame(frame, None));
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    pub fn peer_does_flow_control(&self) -> bool {
        self.flow_control.load(Ordering::SeqCst)
    }

    /// Half of our window: acknowledging in big steps keeps WINDOW_UPDATEs rare.
    pub fn ack_threshold(&self) -> usize {
        (self.recv_window / 2) as usize
    }

    /// Reserves read budget for `len` received bytes (a frame larger than the whole budget
    /// takes all of it); `None` once the connection is gone.
    pub async fn reserve_read(&self, len: usize) -> Option<OwnedSemaphorePermit> {
        let n = len.min(self.read_budget_total).min(u32::MAX as usize) as u32;
        self.read_budget.clone().acquire_many_owned(n).await.ok()
    }

    fn stream(&self, id: u32) -> Option<Arc<StreamState>> {
        self.table().streams.get(&id).cloned()
    }

    fn forget_if_finished(&self, state: &StreamState) {
        if state.is_finished() {
            self.table().streams.remove(&state.id);
        }
    }

    /// Our half-close: an empty DATA frame with FIN.
    pub fn send_fin(&self, state: &StreamState) {
        self.send(Frame::Data { stream_id: state.id, fin: true, data: bytes::Bytes::new() });
        state.local_fin();
        self.forget_if_finished(state);
    }

    /// Aborts a stream: RST_STREAM to the peer, errors for local handles.
    pub fn reset_stream(&self, state: &StreamState, status: u32) {
        if !state.is_reset() {
            self.send(Frame::RstStream { stream_id: state.id, status });
            state.reset();
        }
        self.table().streams.remove(&state.id);
    }

    /// `n` bytes of stream `id` were read or discarded: re-open the windows.
    /// `stream_update` is the stream's own accumulated acknowledgement (0 = not yet).
    pub fn consumed(&self, id: u32, n: usize, stream_update: usize) {
        if stream_update > 0 {
            self.send(Frame::WindowUpdate { stream_id: id, delta: stream_update as u32 });
        }
        if n == 0 {
            return;
        }
        let total = self.conn_unacked.fetch_add(n, Ordering::SeqCst) + n;
        if total >= self.ack_threshold() {
            let delta = self.conn_unacked.swap(0, Ordering::SeqCst);
            if delta > 0 {
                self.send(Frame::WindowUpdate { stream_id: 0, delta: delta.min(0x7fff_ffff) as u32 });
            }
        }
    }

    /// The peer is gone: wake and fail everything that waits on it.
    fn connection_gone(&self) {
        self.closed.cancel();
        self.conn_send_window.close();
        self.write_budget.close();
        self.read_budget.close();
        let streams: Vec<_> = self.table().streams.drain().map(|(_, s)| s).collect();
        for s in streams {
            s.remote_fin();
            s.send_window.close();
        }
        self.enqueue(Outbound::Shutdown);
    }
}

/// The server end of a SPDY connection. Dropping it tears the connection down.
pub struct Connection {
    shared: Arc<Shared>,
    incoming: mpsc::UnboundedReceiver<IncomingStream>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Connection {
    /// Starts serving SPDY on `io`; the peer is the client (odd stream ids).
    pub fn server<T>(io: T, config: SpdyConfig) -> Result<Connection, FrameError>
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (read_half, write_half) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            out: out_tx,
            write_budget: Arc::new(Semaphore::new(config.write_budget)),
            read_budget: Arc::new(Semaphore::new(config.read_budget)),
            read_budget_total: config.read_budget,
            conn_send_window: Window::new(64 * 1024),
            table: Mutex::new(StreamTable {
                streams: HashMap::new(),
                initial_send_window: 64 * 1024,
                last_peer_stream: 0,
                goaway_sent: false,
            }),
            flow_control: AtomicBool::new(false),
            conn_unacked: AtomicUsize::new(0),
            recv_window: config.initial_window,
            closed: CancellationToken::new(),
        });
        let frames_in = FramedRead::new(read_half, FrameDecoder::new());
        let frames_out = FramedWrite::new(write_half, FrameEncoder::new()?);
        let reader = tokio::spawn(read_loop(shared.clone(), frames_in, in_tx, config));
        let writer = tokio::spawn(write_loop(shared.clone(), out_rx, frames_out));
        Ok(Connection { shared, incoming: in_rx, reader, writer })
    }

    /// The next stream the peer opened; `None` once the connection is gone.
    pub async fn accept(&mut self) -> Option<IncomingStream> {
        self.incoming.recv().await
    }

    /// Cancelled when the peer has gone away (EOF, I/O or protocol error).
    pub fn closed(&self) -> CancellationToken {
        self.shared.closed.clone()
    }

    /// Ends the connection politely: GOAWAY after everything already queued, half-close,
    /// then wait up to `linger` for the peer to close its side, so no unread input turns
    /// our close into a TCP reset that could destroy the last frames in flight.
    pub async fn close(mut self, linger: Duration) {
        let last_good_stream_id = {
            let mut t = self.shared.table();
            t.goaway_sent = true;
            t.last_peer_stream
        };
        self.shared.send(Frame::GoAway { last_good_stream_id, status: goaway::OK });
        self.shared.enqueue(Outbound::Shutdown);
        let closed = self.shared.closed.clone();
        let writer = &mut self.writer;
        let _ = tokio::time::timeout(linger, async move {
            let _ = writer.await;
            closed.cancelled().await;
        })
        .await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
        self.shared.connection_gone();
    }
}

async fn read_loop<R>(
    shared: Arc<Shared>,
    mut frames: FramedRead<R, FrameDecoder>,
    incoming: mpsc::UnboundedSender<IncomingStream>,
    config: SpdyConfig,
) where
    R: AsyncRead + Unpin,
{
    let result = loop {
        let frame = match frames.next().await {
            None => break Ok(()),
            Some(Err(e)) => break Err(e),
            Some(Ok(frame)) => frame,
        };
        if let Err(e) = handle_frame(&shared, frame, &incoming, &config).await {
            break Err(e);
        }
    };
    match result {
        Ok(()) => tracing::debug!("SPDY peer closed the connection"),
        Err(FrameError::Io(e)) => tracing::debug!(error = %e, "SPDY connection read failed"),
        Err(e) => {
            tracing::warn!(error = %e, "SPDY protocol error, closing the connection");
            let last_good_stream_id = shared.table().last_peer_stream;
            shared.send(Frame::GoAway { last_good_stream_id, status: goaway::PROTOCOL_ERROR });
        }
    }
    shared.connection_gone();
}

/// Applies one inbound frame. Errors are connection-level and end the connection.
async fn handle_frame(
    shared: &Arc<Shared>,
    frame: Frame,
    incoming: &mpsc::UnboundedSender<IncomingStream>,
    config: &SpdyConfig,
) -> Result<(), FrameError> {
    match frame {
        Frame::SynStream { stream_id, flags, headers, .. } => {
            let mut table = shared.table();
            // Client streams are odd and increasing; anything else is a protocol error.
            if stream_id % 2 == 0 || stream_id <= table.last_peer_stream {
                drop(table);
                shared.send(Frame::RstStream { stream_id, status: rst::PROTOCOL_ERROR });
                return Ok(());
            }
            table.last_peer_stream = stream_id;
            if table.goaway_sent || table.streams.len() >= config.max_streams {
                drop(table);
                shared.send(Frame::RstStream { stream_id, status: rst::REFUSED_STREAM });
                return Ok(());
            }
            let state = Arc::new(StreamState::new(stream_id, table.initial_send_window, flags & FLAG_FIN != 0));
            table.streams.insert(stream_id, state.clone());
            drop(table);
            // If nobody accepts streams any more, dropping the IncomingStream refuses it.
            let _ = incoming.send(IncomingStream::new(state, shared.clone(), headers));
        }
        Frame::Data { stream_id, fin, data } => {
            let len = data.len();
            match shared.stream(stream_id) {
                // Late data for a stream we already forgot: acknowledge and drop it.
                None => shared.consumed(stream_id, len, 0),
                Some(state) => {
                    if len > 0
                        && let Delivery::Discarded = state.deliver(data, config.initial_window as usize, shared).await
                    {
                        shared.consumed(stream_id, len, 0);
                    }
                    if fin {
                        state.remote_fin();
                        shared.forget_if_finished(&state);
                    }
                }
            }
        }
        Frame::RstStream { stream_id, status } => {
            tracing::debug!(stream_id, status, "SPDY stream reset by peer");
            if let Some(state) = shared.table().streams.remove(&stream_id) {
                state.reset();
            }
        }
        Frame::Settings { entries } => {
            shared.flow_control.store(true, Ordering::SeqCst);
            for e in entries.iter().filter(|e| e.id == SETTINGS_INITIAL_WINDOW_SIZE) {
                let mut table = shared.table();
                let delta = e.value as i64 - table.initial_send_window;
                table.initial_send_window = e.value as i64;
                for s in table.streams.values() {
                    if s.send_window.grow(delta).is_err() {
                        return Err(FrameError::FlowControl("SETTINGS pushed a stream window past 2^31-1"));
                    }
                }
            }
        }
        Frame::Ping { id } => {
            // Odd ids are the client's: echo them. Even ones would answer our pings (we send none).
            if id % 2 == 1 {
                shared.send(Frame::Ping { id });
            }
        }
        Frame::GoAway { last_good_stream_id, status } => {
            tracing::debug!(last_good_stream_id, status, "SPDY peer sent GOAWAY");
        }
        Frame::Headers { stream_id, fin, .. } => {
            if fin && let Some(state) = shared.stream(stream_id) {
                state.remote_fin();
                shared.forget_if_finished(&state);
            }
        }
        Frame::WindowUpdate { stream_id, delta } => {
            shared.flow_control.store(true, Ordering::SeqCst);
            if stream_id == 0 {
                if shared.conn_send_window.grow(delta as i64).is_err() {
                    return Err(FrameError::FlowControl("connection window pushed past 2^31-1"));
                }
            } else if let Some(state) = shared.stream(stream_id)
                && state.send_window.grow(delta as i64).is_err()
            {
                shared.reset_stream(&state, rst::FLOW_CONTROL_ERROR);
            }
        }
        Frame::SynReply { stream_id, .. } => {
            // We never open streams, so there is nothing to reply to.
            shared.send(Frame::RstStream { stream_id, status: rst::INVALID_STREAM });
        }
    }
    Ok(())
}

async fn write_loop<W>(
    shared: Arc<Shared>,
    mut queue: mpsc::UnboundedReceiver<Outbound>,
    mut sink: FramedWrite<W, FrameEncoder>,
) where
    W: AsyncWrite + Unpin,
{
    let result: Result<(), FrameError> = async {
        while let Some(first) = queue.recv().await {
            let mut next = Some(first);
            // Write everything already queued, then flush once.
            while let Some(item) = next.take() {
                match item {
                    Outbound::Frame(frame, permit) => {
                        sink.feed(frame).await?;
                        drop(permit);
                    }
                    Outbound::Shutdown => {
                        sink.flush().await?;
                        sink.get_mut().shutdown().await?;
                        return Ok(());
                    }
                }
                next = queue.try_recv().ok();
            }
            sink.flush().await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "SPDY connection write failed");
        shared.closed.cancel();
    }
    shared.write_budget.close();
}

#[cfg(test)]
mod tests;
