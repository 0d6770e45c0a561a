//! The resize stream: a sequence of JSON `{"Width":..,"Height":..}` objects, in any chunking.
//!
//! Decoding runs in its own task and never blocks on the backend: if the backend is slow to
//! take sizes, newer ones replace the pending one (only the latest size matters). Blocking
//! would stop us reading the resize stream, and a full stream queue stalls the whole SPDY
//! connection.

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

use super::backend::TermSize;

/// A resize message is ~30 bytes; anything this long without a complete object is garbage.
const MAX_PENDING_BYTES: usize = 4096;

/// Starts decoding `stream`; sizes arrive on the returned channel, which closes at EOF or
/// on malformed input (as kubelet stops handling resizes then).
pub fn decode_sizes<R>(mut stream: R) -> mpsc::Receiver<TermSize>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = [0u8; 512];
        let mut pending: Option<TermSize> = None;
        let mut input_done = false;
        loop {
            if input_done && pending.is_none() {
                return;
            }
            tokio::select! {
                permit = tx.reserve(), if pending.is_some() => match permit {
                    Ok(permit) => permit.send(pending.take().unwrap_or(TermSize { width: 0, height: 0 })),
                    // The backend dropped its receiver: it does not care about sizes.
                    Err(_) => return,
                },
                read = stream.read(&mut chunk), if !input_done => match read {
                    Ok(0) | Err(_) => input_done = true,
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        match parse_sizes(&mut buf) {
                            Ok(Some(size)) => pending = Some(size),
                            Ok(None) => {}
                            Err(e) => {
                                tracing::debug!(error = %e, "malformed resize stream, ignoring further resizes");
                                input_done = true;
                            }
                        }
                    }
                },
            }
        }
    });
    rx
}

/// Takes every complete object off the front of `buf`; returns the last one.
fn parse_sizes(buf: &mut Vec<u8>) -> Result<Option<TermSize>, String> {
    let mut objects = serde_json::Deserializer::from_slice(buf).into_iter::<TermSize>();
    let mut last = None;
    let mut consumed = 0;
    loop {
        match objects.next() {
            Some(Ok(size)) => {
                last = Some(size);
                consumed = objects.byte_offset();
            }
            Some(Err(e)) if e.is_eof() => break,
            Some(Err(e)) => return Err(e.to_string()),
            None => {
                consumed = objects.byte_offset();
                break;
            }
        }
    }
    buf.drain(..consumed);
    if buf.len() > MAX_PENDING_BYTES {
        return Err(format!("{} bytes without a complete size", buf.len()));
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn objects_split_anywhere_are_reassembled() {
        let mut buf = br#"{"Width":80,"Height":24}{"Wid"#.to_vec();
        assert_eq!(parse_sizes(&mut buf).unwrap(), Some(TermSize { width: 80, height: 24 }));
        buf.extend_from_slice(br#"th":100,"Height":40}"#);
        buf.push(b'\n');
        assert_eq!(parse_sizes(&mut buf).unwrap(), Some(TermSize { width: 100, height: 40 }));
        assert!(parse_sizes(&mut buf).unwrap().is_none());
        assert!(parse_sizes(&mut br#"{"Width":-1,"Height":2}"#.to_vec()).is_err());
        assert!(parse_sizes(&mut b"garbage".to_vec()).is_err());
    }

    #[tokio::test]
    async fn decoder_delivers_sizes_and_coalesces_when_backend_is_slow() {
        let (mut client, server) = tokio::io::duplex(1024);
        let mut sizes = decode_sizes(server);
        client.write_all(b"{\"Width\":10,\"Height\":5}\n").await.unwrap();
        assert_eq!(sizes.recv().await, Some(TermSize { width: 10, height: 5 }));
        // Many sizes while nobody reads: the last one must win, the reader must not block.
        for w in 0..100u16 {
            client.write_all(format!("{{\"Width\":{w},\"Height\":1}}").as_bytes()).await.unwrap();
        }
        drop(client);
        let mut last = None;
        while let Some(s) = sizes.recv().await {
            last = Some(s);
        }
        assert_eq!(last, Some(TermSize { width: 99, height: 1 }));
    }
}
