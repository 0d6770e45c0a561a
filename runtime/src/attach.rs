//! Attach: a live connection to a running container's stdio, served by its monitor on
//! `<state dir>/attach.sock` (see [`crate::Runtime::attach`]).
//!
//! Both directions carry frames: 1 byte kind, 4 bytes big-endian payload length, payload.
//!
//! | kind | direction | payload |
//! |---|---|---|
//! | 0 stdin | client → monitor | bytes for the container's stdin (ignored without `stdin`) |
//! | 1 stdout | monitor → client | container output (all output with a terminal) |
//! | 2 stderr | monitor → client | container stderr |
//! | 3 resize | client → monitor | u16 BE rows, u16 BE columns (terminal only) |
//! | 4 close stdin | client → monitor | empty: close the container's stdin |
//!
//! Output is copied to every connected client as well as to the log. A client that does not
//! read for a second is disconnected rather than stall the container. With `stdin_once`,
//! the container's stdin is closed when the first client disconnects, as in the CRI.

use crate::error::{Error, Result};

/// Largest accepted frame payload.
pub const MAX_FRAME: usize = 1 << 20;

/// One attach frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Input for the container.
    Stdin(Vec<u8>),
    /// Output of the container's stdout (or terminal).
    Stdout(Vec<u8>),
    /// Output of the container's stderr.
    Stderr(Vec<u8>),
    /// New terminal size.
    Resize {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// Close the container's stdin.
    CloseStdin,
}

impl Frame {
    /// The wire form.
    pub fn encode(&self) -> Vec<u8> {
        let (kind, payload): (u8, std::borrow::Cow<'_, [u8]>) = match self {
            Frame::Stdin(d) => (0, d.into()),
            Frame::Stdout(d) => (1, d.into()),
            Frame::Stderr(d) => (2, d.into()),
            Frame::Resize { rows, cols } => {
                let mut p = rows.to_be_bytes().to_vec();
                p.extend_from_slice(&cols.to_be_bytes());
                (3, p.into())
            }
            Frame::CloseStdin => (4, Vec::new().into()),
        };
        let mut out = Vec::with_capacity(5 + payload.len());
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(&payload);
        out
    }
}

/// Reassembles frames from a byte stream.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
}

impl Decoder {
    /// Adds received bytes and returns the complete frames; an error means the peer broke
    /// the protocol and the connection should be dropped.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Frame>> {
        self.buf.extend_from_slice(data);
        let mut frames = Vec::new();
        loop {
            if self.buf.len() < 5 {
                break;
            }
            let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]) as usize;
            if len > MAX_FRAME {
                return Err(Error::InvalidState(format!("attach frame of {len} bytes")));
            }
            if self.buf.len() < 5 + len {
                break;
            }
            let payload: Vec<u8> = self.buf[5..5 + len].to_vec();
            let frame = match self.buf[0] {
                0 => Frame::Stdin(payload),
                1 => Frame::Stdout(payload),
                2 => Frame::Stderr(payload),
                3 if len == 4 => Frame::Resize {
                    rows: u16::from_be_bytes([payload[0], payload[1]]),
                    cols: u16::from_be_bytes([payload[2], payload[3]]),
                },
                4 => Frame::CloseStdin,
                kind => return Err(Error::InvalidState(format!("attach frame kind {kind} (length {len})"))),
            };
            self.buf.drain(..5 + len);
            frames.push(frame);
        }
        Ok(frames)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_pieces() {
        let frames = vec![
            Frame::Stdin(b"hello\n".to_vec()),
            Frame::Resize { rows: 24, cols: 80 },
            Frame::Stderr(vec![]),
            Frame::CloseStdin,
            Frame::Stdout(vec![7; 1000]),
        ];
        let wire: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut d = Decoder::default();
        let mut got = Vec::new();
        for chunk in wire.chunks(3) {
            got.extend(d.push(chunk).unwrap());
        }
        assert_eq!(got, frames);
    }

    #[test]
    fn bad_frames_are_errors() {
        assert!(Decoder::default().push(&[9, 0, 0, 0, 0]).is_err());
        assert!(Decoder::default().push(&[0, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
