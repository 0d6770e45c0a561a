//! The connection driven by a raw frame-level client (our codec, client side) over an
//! in-memory pipe: stream lifecycle, flow control both ways, backpressure, errors.

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio_util::codec::{FramedRead, FramedWrite};

use super::super::frame::{Frame, FrameDecoder, FrameEncoder, SETTINGS_INITIAL_WINDOW_SIZE, Setting, goaway, rst};
use super::super::headers::Headers;
use super::{Connection, SpdyConfig};

struct Client {
    rd: FramedRead<ReadHalf<DuplexStream>, FrameDecoder>,
    wr: FramedWrite<WriteHalf<DuplexStream>, FrameEncoder>,
}

fn pair(config: SpdyConfig) -> (Connection, Client) {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let conn = Connection::server(theirs, config).unwrap();
    let (rd, wr) = tokio::io::split(ours);
    (
        conn,
        Client { rd: FramedRead::new(rd, FrameDecoder::new()), wr: FramedWrite::new(wr, FrameEncoder::new().unwrap()) },
    )
}

impl Client {
    async fn send(&mut self, frame: Frame) {
        self.wr.send(frame).await.unwrap();
    }

    async fn open(&mut self, stream_id: u32, stream_type: &str) {
        let mut headers = Headers::new();
        headers.push("streamType", stream_type);
        self.send(Frame::SynStream { stream_id, associated_to: 0, priority: 0, flags: 0, headers }).await;
    }

    /// The next frame, or None at EOF; panics if nothing comes within 5 s.
    async fn next(&mut self) -> Option<Frame> {
        tokio::time::timeout(Duration::from_secs(5), self.rd.next())
            .await
            .expect("no frame within 5s")
            .map(|f| f.unwrap())
    }

    /// The next frame within `wait`, if any.
    async fn next_within(&mut self, wait: Duration) -> Option<Frame> {
        tokio::time::timeout(wait, self.rd.next()).await.ok().flatten().map(|f| f.unwrap())
    }

    /// DATA bytes of `stream_id` received until nothing arrives for `quiet`; other frames are
    /// collected in `others`.
    async fn drain_data(&mut self, stream_id: u32, quiet: Duration, others: &mut Vec<Frame>) -> (usize, bool) {
        let (mut n, mut fin) = (0, false);
        while let Some(frame) = self.next_within(quiet).await {
            match frame {
                Frame::Data { stream_id: id, data, fin: f } if id == stream_id => {
                    n += data.len();
                    fin |= f;
                }
                other => others.push(other),
            }
        }
        (n, fin)
    }
}

#[tokio::test]
async fn stream_lifecycle_reply_data_and_half_close() {
    let (mut conn, mut client) = pair(SpdyConfig::default());
    client.open(1, "stdin").await;
    let incoming = conn.accept().await.unwrap();
    assert_eq!(incoming.headers().get("streamtype"), Some("stdin"));
    let mut stream = incoming.accept();
    assert!(matches!(client.next().await, Some(Frame::SynReply { stream_id: 1, fin: false, .. })));

    client.send(Frame::Data { stream_id: 1, fin: true, data: Bytes::from_static(b"hello") }).await;
    let mut got = Vec::new();
    stream.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"hello", "data, then EOF at the peer's FIN");

    stream.write_all(b"world").await.unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(client.next().await, Some(Frame::Data { stream_id: 1, fin: false, data: Bytes::from_static(b"world") }));
    assert_eq!(client.next().await, Some(Frame::Data { stream_id: 1, fin: true, data: Bytes::new() }));
    assert!(stream.write_all(b"late").await.is_err(), "no writes after our FIN");
}

#[tokio::test]
async fn peer_without_flow_control_gets_everything() {
    // moby/spdystream (kubectl, crictl, kubelet) never sends WINDOW_UPDATE.
    let (mut conn, mut client) = pair(SpdyConfig::default());
    client.open(1, "stdout").await;
    let mut stream = conn.accept().await.unwrap().accept();
    let writer = tokio::spawn(async move {
        stream.write_all(&vec![7u8; 300 * 1024]).await.unwrap();
        stream.shutdown().await.unwrap();
        stream
    });
    let mut others = Vec::new();
    let (n, fin) = client.drain_data(1, Duration::from_millis(500), &mut others).await;
    assert_eq!((n, fin), (300 * 1024, true));
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn flow_controlled_peer_is_held_to_its_windows() {
    let (mut conn, mut client) = pair(SpdyConfig::default());
    // SETTINGS shows the peer does flow control (same 64 KiB initial window).
    client
        .send(Frame::Settings { entries: vec![Setting { flags: 0, id: SETTINGS_INITIAL_WINDOW_SIZE, value: 65536 }] })
        .await;
    client.open(1, "stdout").await;
    let mut stream = conn.accept().await.unwrap().accept();
    let writer = tokio::spawn(async move {
        stream.write_all(&vec![1u8; 200 * 1024]).await.unwrap();
        stream.shutdown().await.unwrap();
        stream
    });
    let mut others = Vec::new();
    let (n, _) = client.drain_data(1, Duration::from_millis(300), &mut others).await;
    assert_eq!(n, 65536, "exactly one window, then nothing");

    // A stream update alone is not enough: the connection window is spent too.
    client.send(Frame::WindowUpdate { stream_id: 1, delta: 10_000 }).await;
    let (n, _) = client.drain_data(1, Duration::from_millis(300), &mut others).await;
    assert_eq!(n, 0);
    client.send(Frame::WindowUpdate { stream_id: 0, delta: 10_000 }).await;
    let (n, _) = client.drain_data(1, Duration::from_millis(300), &mut others).await;
    assert_eq!(n, 10_000, "exactly the granted bytes");

    client.send(Frame::WindowUpdate { stream_id: 1, delta: 1 << 20 }).await;
    client.send(Frame::WindowUpdate { stream_id: 0, delta: 1 << 20 }).await;
    let (n, fin) = client.drain_data(1, Duration::from_millis(300), &mut others).await;
    assert_eq!((n, fin), (200 * 1024 - 65536 - 10_000, true));
    drop(writer.await.unwrap());
}

#[tokio::test]
async fn reading_grants_window_back_to_the_peer() {
    let (mut conn, mut client) = pair(SpdyConfig::default());
    client.open(1, "stdin").await;
    let mut stream = conn.accept().await.unwrap().accept();
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        stream.read_to_end(&mut got).await.unwrap();
        got.len()
    });
    let total = 13 * 16384;
    let mut updates = (0u64, 0u64);
    for chunk in 0..(total / 16384) {
        client
            .send(Frame::Data { stream_id: 1, fin: chunk == total / 16384 - 1, data: Bytes::from(vec![0u8; 16384]) })
            .await;
    }
    assert_eq!(reader.await.unwrap(), total);
    while let Some(frame) = client.next_within(Duration::from_millis(200)).await {
        if let Frame::WindowUpdate { stream_id, delta } = frame {
            if stream_id == 0 { updates.0 += delta as u64 } else { updates.1 += delta as u64 }
        }
    }
    // Acknowledged in half-window steps: all but less than half a window comes back.
    assert!(updates.0 > (total - 32 * 1024) as u64, "connection updates: {}", updates.0);
    assert!(updates.1 > (total - 64 * 1024) as u64, "stream updates: {}", updates.1);
}

#[tokio::test]
async fn unread_data_pushes_back_instead_of_piling_up() {
    let (mut conn, mut client) = pair(SpdyConfig::default());
    client.open(1, "stdin").await;
    let mut stream = conn.accept().await.unwrap().accept();
    // 2 MiB while the application reads nothing: memory must stay bounded, so the sender blocks.
    let sender = tokio::spawn(async move {
        for _ in 0..64 {
            client.send(Frame::Data { stream_id: 1, fin: false, data: Bytes::from(vec![0u8; 32 * 1024]) }).await;
        }
        client
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!sender.is_finished(), "2 MiB were swallowed without anyone reading");
    let mut buf = vec![0u8; 2 * 1024 * 1024];
    stream.read_exact(&mut buf).await.unwrap();
    let _client = tokio::time::timeout(Duration::from_secs(5), sender).await.unwrap().unwrap();
}

#[tokio::test]
async fn pings_from_the_client_are_echoed() {
    let (_conn, mut client) = pair(SpdyConfig::default());
    client.send(Frame::Ping { id: 1 }).await;
    assert_eq!(client.next().await, Some(Frame::Ping { id: 1 }));
    client.send(Frame::Ping { id: 2 }).await; // an answer to a ping we never sent
    assert_eq!(client.next_within(Duration::from_millis(200)).await, None);
}

#[tokio::test]
async fn reset_by_peer_fails_reads_and_writes() {
    let (mut conn, mut client) = pair(SpdyConfig::default());
    client.open(1, "data").await;
    let mut stream = conn.accept().await.unwrap().accept();
    client.next().await; // SYN_REPLY
    client.send(Frame::RstStream { stream_id: 1, status: rst::CANCEL }).await;
    let mut buf = [0u8; 8];
    let err = stream.read(&mut buf).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(stream.write(b"x").await.unwrap_err().kind(), io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn bad_stream_ids_and_too_many_streams_are_refused() {
    let (mut conn, mut client) = pair(SpdyConfig { max_streams: 2, ..SpdyConfig::default() });
    client.open(2, "x").await; // even: server-initiated ids are not the client's to use
    assert_eq!(client.next().await, Some(Frame::RstStream { stream_id: 2, status: rst::PROTOCOL_ERROR }));
    client.open(5, "x").await;
    client.open(3, "x").await; // ids must grow
    assert_eq!(client.next().await, Some(Frame::RstStream { stream_id: 3, status: rst::PROTOCOL_ERROR }));
    client.open(7, "x").await;
    client.open(9, "x").await; // third open stream
    assert_eq!(client.next().await, Some(Frame::RstStream { stream_id: 9, status: rst::REFUSED_STREAM }));
    // Streams nobody answers are refused when dropped.
    drop(conn.accept().await.unwrap());
    assert_eq!(client.next().await, Some(Frame::RstStream { stream_id: 5, status: rst::REFUSED_STREAM }));
}

#[tokio::test]
async fn protocol_errors_end_the_connection_with_goaway() {
    let (mut conn, mut client) = pair(SpdyConfig::default());
    client.open(1, "x").await;
    let _incoming = conn.accept().await.unwrap();
    // A PING with a 3-byte payload.
    client.wr.get_mut().write_all(&[0x80, 3, 0, 6, 0, 0, 0, 3, 0, 0, 1]).await.unwrap();
    let mut frames = Vec::new();
    while let Some(frame) = client.next().await {
        frames.push(frame);
    }
    assert!(frames.contains(&Frame::GoAway { last_good_stream_id: 1, status: goaway::PROTOCOL_ERROR }), "{frames:?}");
    assert!(conn.closed().is_cancelled());
    assert!(conn.accept().await.is_none());
}

#[tokio::test]
async fn close_sends_goaway_after_queued_data() {
    let (mut conn, mut client) = pair(SpdyConfig::default());
    client.open(1, "stdout").await;
    let mut stream = conn.accept().await.unwrap().accept();
    stream.write_all(b"last words").await.unwrap();
    drop(stream);
    let closing = tokio::spawn(conn.close(Duration::from_secs(5)));
    let mut frames = Vec::new();
    while let Some(frame) = client.next().await {
        frames.push(frame);
    }
    assert_eq!(
        frames,
        vec![
            Frame::SynReply { stream_id: 1, fin: false, headers: Headers::new() },
            Frame::Data { stream_id: 1, fin: false, data: Bytes::from_static(b"last words") },
            Frame::Data { stream_id: 1, fin: true, data: Bytes::new() },
            Frame::GoAway { last_good_stream_id: 1, status: goaway::OK },
        ]
    );
    drop(client); // the peer closes: close() returns without waiting out the linger
    tokio::time::timeout(Duration::from_secs(2), closing).await.unwrap().unwrap();
}

#[tokio::test]
async fn huge_frames_on_many_streams_are_bounded_by_the_read_budget() {
    // One 1 MiB frame fits each per-stream queue (it was empty); the connection-wide budget
    // is what stops eight of them from all being buffered.
    let (mut conn, mut client) = pair(SpdyConfig { read_budget: 2 * 1024 * 1024, ..SpdyConfig::default() });
    let mut streams = Vec::new();
    for i in 0..8 {
        client.open(2 * i + 1, "data").await;
        streams.push(conn.accept().await.unwrap().accept());
    }
    let sender = tokio::spawn(async move {
        for i in 0..8 {
            client.send(Frame::Data { stream_id: 2 * i + 1, fin: true, data: Bytes::from(vec![1u8; 1 << 20]) }).await;
        }
        client
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!sender.is_finished(), "8 MiB buffered past a 2 MiB read budget");
    for mut s in streams {
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), 1 << 20);
    }
    tokio::time::timeout(Duration::from_secs(5), sender).await.unwrap().unwrap();
}
