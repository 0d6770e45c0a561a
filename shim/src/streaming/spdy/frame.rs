//! SPDY/3.1 frames and their wire codec.
//!
//! ```text
//! control: |1| version (15) = 3 | type (16) |   data: |0| stream id (31)          |
//!          | flags (8) | length (24)        |         | flags (8) | length (24)    |
//!          | payload ...                    |         | payload ...                |
//! ```
//!
//! The decoder faces the network: every length is checked before it is used, malformed
//! frames become a [`FrameError`] (never a panic), and unknown control frame types are
//! skipped as the spec requires. Header blocks are (de)compressed here, in frame order,
//! with the connection's zlib contexts (see [`super::headers`]).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::headers::{HeaderDeflater, HeaderInflater, Headers};

/// The only protocol version spoken.
pub const VERSION: u16 = 3;
/// Frame header size, control and data alike.
const HEADER_LEN: usize = 8;
/// The 24-bit length field's maximum.
pub const MAX_PAYLOAD: usize = 0xFF_FFFF;
/// Control frames carry a few headers at most; a larger one is an attack or a bug.
const MAX_CONTROL_PAYLOAD: usize = 1024 * 1024;

/// FLAG_FIN on DATA, SYN_STREAM, SYN_REPLY and HEADERS: the sender's last frame on the stream.
pub const FLAG_FIN: u8 = 0x01;

/// SETTINGS id of the initial per-stream window.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

/// RST_STREAM status codes used by corral (SPDY/3.1 section 2.4.2).
pub mod rst {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const CANCEL: u32 = 5;
    pub const FLOW_CONTROL_ERROR: u32 = 7;
}

/// GOAWAY status codes.
pub mod goaway {
    pub const OK: u32 = 0;
    pub const PROTOCOL_ERROR: u32 = 1;
}

mod kind {
    pub const SYN_STREAM: u16 = 1;
    pub const SYN_REPLY: u16 = 2;
    pub const RST_STREAM: u16 = 3;
    pub const SETTINGS: u16 = 4;
    pub const PING: u16 = 6;
    pub const GOAWAY: u16 = 7;
    pub const HEADERS: u16 = 8;
    pub const WINDOW_UPDATE: u16 = 9;
}

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data { stream_id: u32, fin: bool, data: Bytes },
    SynStream { stream_id: u32, associated_to: u32, priority: u8, flags: u8, headers: Headers },
    SynReply { stream_id: u32, fin: bool, headers: Headers },
    RstStream { stream_id: u32, status: u32 },
    Settings { entries: Vec<Setting> },
    Ping { id: u32 },
    GoAway { last_good_stream_id: u32, status: u32 },
    Headers { stream_id: u32, fin: bool, headers: Headers },
    WindowUpdate { stream_id: u32, delta: u32 },
}

/// A frame that cannot be decoded or encoded. Any of these ends the connection
/// (GOAWAY with PROTOCOL_ERROR): after a bad frame the byte stream cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("unsupported SPDY version {0} (only 3 is spoken)")]
    UnsupportedVersion(u16),
    #[error("{frame} frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { frame: &'static str, len: usize, max: usize },
    #[error("{frame} frame has invalid length {len}")]
    BadLength { frame: &'static str, len: usize },
    #[error("{0} frame on stream 0")]
    ZeroStreamId(&'static str),
    #[error("WINDOW_UPDATE with delta 0 on stream {0}")]
    ZeroWindowDelta(u32),
    #[error("header block: {0}")]
    Header(String),
    #[error("flow control: {0}")]
    FlowControl(&'static str),
}

/// Reads frames off the wire; owns the inbound header decompression context.
pub struct FrameDecoder {
    inflater: HeaderInflater,
}

impl FrameDecoder {
    pub fn new() -> Self {
        FrameDecoder { inflater: HeaderInflater::new() }
    }
}

impl Decoder for FrameDecoder {
    type Item = Frame;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        loop {
            if src.len() < HEADER_LEN {
                src.reserve(HEADER_LEN);
                return Ok(None);
            }
            let word = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
            let flags = src[4];
            let len = u32::from_be_bytes([0, src[5], src[6], src[7]]) as usize;
            let is_control = word & 0x8000_0000 != 0;
            if is_control {
                let version = ((word >> 16) & 0x7fff) as u16;
                if version != VERSION {
                    return Err(FrameError::UnsupportedVersion(version));
                }
                if len > MAX_CONTROL_PAYLOAD {
                    return Err(FrameError::TooLarge { frame: "control", len, max: MAX_CONTROL_PAYLOAD });
                }
            }
            if src.len() < HEADER_LEN + len {
                src.reserve(HEADER_LEN + len - src.len());
                return Ok(None);
            }
            src.advance(HEADER_LEN);
            let payload = src.split_to(len).freeze();
            if !is_control {
                let stream_id = word & 0x7fff_ffff;
                if stream_id == 0 {
                    return Err(FrameError::ZeroStreamId("DATA"));
                }
                return Ok(Some(Frame::Data { stream_id, fin: flags & FLAG_FIN != 0, data: payload }));
            }
            let frame_type = (word & 0xffff) as u16;
            match self.decode_control(frame_type, flags, payload)? {
                Some(frame) => return Ok(Some(frame)),
                // Unknown control types (e.g. SPDY/3's CREDENTIAL) are skipped.
                None => continue,
            }
        }
    }
}

impl FrameDecoder {
    fn decode_control(&mut self, frame_type: u16, flags: u8, mut p: Bytes) -> Result<Option<Frame>, FrameError> {
        let len = p.len();
        let fin = flags & FLAG_FIN != 0;
        let frame = match frame_type {
            kind::SYN_STREAM => {
                if len < 10 {
                    return Err(FrameError::BadLength { frame: "SYN_STREAM", len });
                }
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let associated_to = p.get_u32() & 0x7fff_ffff;
                let priority = p.get_u8() >> 5;
                let _slot = p.get_u8();
                // Decompress even if the stream will be refused: the zlib context must see
                // every block in order.
                let headers = self.inflater.decompress(&p)?;
                if stream_id == 0 {
                    return Err(FrameError::ZeroStreamId("SYN_STREAM"));
                }
                Frame::SynStream { stream_id, associated_to, priority, flags, headers }
            }
            kind::SYN_REPLY | kind::HEADERS => {
                let name = if frame_type == kind::SYN_REPLY { "SYN_REPLY" } else { "HEADERS" };
                if len < 4 {
                    return Err(FrameError::BadLength { frame: name, len });
                }
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let headers = self.inflater.decompress(&p)?;
                if stream_id == 0 {
                    return Err(FrameError::ZeroStreamId(name));
                }
                if frame_type == kind::SYN_REPLY {
                    Frame::SynReply { stream_id, fin, headers }
                } else {
                    Frame::Headers { stream_id, fin, headers }
                }
            }
            kind::RST_STREAM => {
                if len != 8 {
                    return Err(FrameError::BadLength { frame: "RST_STREAM", len });
                }
                let stream_id = p.get_u32() & 0x7fff_ffff;
                if stream_id == 0 {
                    return Err(FrameError::ZeroStreamId("RST_STREAM"));
                }
                Frame::RstStream { stream_id, status: p.get_u32() }
            }
            kind::SETTINGS => {
                if len < 4 {
                    return Err(FrameError::BadLength { frame: "SETTINGS", len });
                }
                let count = p.get_u32() as usize;
                if count.checked_mul(8) != Some(len - 4) {
                    return Err(FrameError::BadLength { frame: "SETTINGS", len });
                }
                let entries = (0..count)
                    .map(|_| {
                        let word = p.get_u32();
                        Setting { flags: (word >> 24) as u8, id: word & 0xff_ffff, value: p.get_u32() }
                    })
                    .collect();
                Frame::Settings { entries }
            }
            kind::PING => {
                if len != 4 {
                    return Err(FrameError::BadLength { frame: "PING", len });
                }
                Frame::Ping { id: p.get_u32() }
            }
            kind::GOAWAY => {
                if len != 8 {
                    return Err(FrameError::BadLength { frame: "GOAWAY", len });
                }
                Frame::GoAway { last_good_stream_id: p.get_u32() & 0x7fff_ffff, status: p.get_u32() }
            }
            kind::WINDOW_UPDATE => {
                if len != 8 {
                    return Err(FrameError::BadLength { frame: "WINDOW_UPDATE", len });
                }
                let stream_id = p.get_u32() & 0x7fff_ffff;
                let delta = p.get_u32() & 0x7fff_ffff;
                if delta == 0 {
                    return Err(FrameError::ZeroWindowDelta(stream_id));
                }
                Frame::WindowUpdate { stream_id, delta }
            }
            _ => return Ok(None),
        };
        Ok(Some(frame))
    }
}

/// Writes frames to the wire; owns the outbound header compression context.
pub struct FrameEncoder {
    deflater: HeaderDeflater,
}

impl FrameEncoder {
    pub fn new() -> Result<Self, FrameError> {
        Ok(FrameEncoder { deflater: HeaderDeflater::new()? })
    }
}

impl FrameEncoder {
    /// SYN_REPLY and HEADERS share one layout: stream id, then the header block.
    fn encode_header_frame(
        &mut self,
        frame_type: u16,
        stream_id: u32,
        flags: u8,
        headers: &Headers,
        dst: &mut BytesMut,
    ) -> Result<(), FrameError> {
        let block = self.deflater.compress(headers)?;
        put_control_header(dst, frame_type, flags, 4 + block.len())?;
        dst.put_u32(stream_id & 0x7fff_ffff);
        dst.put_slice(&block);
        Ok(())
    }
}

fn put_control_header(dst: &mut BytesMut, frame_type: u16, flags: u8, len: usize) -> Result<(), FrameError> {
    if len > MAX_PAYLOAD {
        return Err(FrameError::TooLarge { frame: "control", len, max: MAX_PAYLOAD });
    }
    dst.put_u16(0x8000 | VERSION);
    dst.put_u16(frame_type);
    dst.put_u32(((flags as u32) << 24) | len as u32);
    Ok(())
}

impl Encoder<Frame> for FrameEncoder {
    type Error = FrameError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), FrameError> {
        let fin_flag = |fin: bool| if fin { FLAG_FIN } else { 0 };
        match frame {
            Frame::Data { stream_id, fin, data } => {
                if data.len() > MAX_PAYLOAD {
                    return Err(FrameError::TooLarge { frame: "DATA", len: data.len(), max: MAX_PAYLOAD });
                }
                dst.reserve(HEADER_LEN + data.len());
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_u32(((fin_flag(fin) as u32) << 24) | data.len() as u32);
                dst.put_slice(&data);
            }
            Frame::SynStream { stream_id, associated_to, priority, flags, headers } => {
                let block = self.deflater.compress(&headers)?;
                put_control_header(dst, kind::SYN_STREAM, flags, 10 + block.len())?;
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_u32(associated_to & 0x7fff_ffff);
                dst.put_u8((priority & 0x7) << 5);
                dst.put_u8(0);
                dst.put_slice(&block);
            }
            Frame::SynReply { stream_id, fin, headers } => {
                self.encode_header_frame(kind::SYN_REPLY, stream_id, fin_flag(fin), &headers, dst)?;
            }
            Frame::Headers { stream_id, fin, headers } => {
                self.encode_header_frame(kind::HEADERS, stream_id, fin_flag(fin), &headers, dst)?;
            }
            Frame::RstStream { stream_id, status } => {
                put_control_header(dst, kind::RST_STREAM, 0, 8)?;
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_u32(status);
            }
            Frame::Settings { entries } => {
                put_control_header(dst, kind::SETTINGS, 0, 4 + 8 * entries.len())?;
                dst.put_u32(entries.len() as u32);
                for e in entries {
                    dst.put_u32(((e.flags as u32) << 24) | (e.id & 0xff_ffff));
                    dst.put_u32(e.value);
                }
            }
            Frame::Ping { id } => {
                put_control_header(dst, kind::PING, 0, 4)?;
                dst.put_u32(id);
            }
            Frame::GoAway { last_good_stream_id, status } => {
                put_control_header(dst, kind::GOAWAY, 0, 8)?;
                dst.put_u32(last_good_stream_id & 0x7fff_ffff);
                dst.put_u32(status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                put_control_header(dst, kind::WINDOW_UPDATE, 0, 8)?;
                dst.put_u32(stream_id & 0x7fff_ffff);
                dst.put_u32(delta & 0x7fff_ffff);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in pairs {
            h.push(n, v);
        }
        h
    }

    fn all_kinds() -> Vec<Frame> {
        vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 3,
                flags: FLAG_FIN,
                headers: headers(&[("streamtype", "error"), ("port", "80")]),
            },
            Frame::SynReply { stream_id: 1, fin: false, headers: Headers::new() },
            Frame::Data { stream_id: 1, fin: false, data: Bytes::from_static(b"hello") },
            Frame::Data { stream_id: 3, fin: true, data: Bytes::new() },
            Frame::RstStream { stream_id: 5, status: rst::CANCEL },
            Frame::Settings { entries: vec![Setting { flags: 0, id: SETTINGS_INITIAL_WINDOW_SIZE, value: 1 << 20 }] },
            Frame::Ping { id: 7 },
            Frame::GoAway { last_good_stream_id: 9, status: goaway::OK },
            Frame::Headers { stream_id: 1, fin: true, headers: headers(&[("x", "y")]) },
            Frame::WindowUpdate { stream_id: 0, delta: 65536 },
        ]
    }

    #[test]
    fn every_frame_kind_round_trips() {
        let mut enc = FrameEncoder::new().unwrap();
        let mut dec = FrameDecoder::new();
        let mut buf = BytesMut::new();
        for f in all_kinds() {
            enc.encode(f, &mut buf).unwrap();
        }
        for want in all_kinds() {
            assert_eq!(dec.decode(&mut buf).unwrap(), Some(want));
        }
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
    }

    #[test]
    fn frames_split_at_any_byte_decode_the_same() {
        let mut enc = FrameEncoder::new().unwrap();
        let mut wire = BytesMut::new();
        for f in all_kinds() {
            enc.encode(f, &mut wire).unwrap();
        }
        let mut dec = FrameDecoder::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in wire.iter() {
            buf.put_u8(*byte);
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, all_kinds());
    }

    #[test]
    fn data_frame_layout_matches_the_spec() {
        let mut enc = FrameEncoder::new().unwrap();
        let mut buf = BytesMut::new();
        enc.encode(Frame::Data { stream_id: 3, fin: true, data: Bytes::from_static(b"ab") }, &mut buf).unwrap();
        assert_eq!(&buf[..], &[0, 0, 0, 3, 1, 0, 0, 2, b'a', b'b']);
        let mut buf = BytesMut::new();
        enc.encode(Frame::Ping { id: 1 }, &mut buf).unwrap();
        assert_eq!(&buf[..], &[0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]);
    }

    #[test]
    fn unknown_control_frames_are_skipped() {
        let mut buf = BytesMut::new();
        // type 10 (SPDY/3 CREDENTIAL), 2 bytes payload, then a PING.
        buf.put_slice(&[0x80, 3, 0, 10, 0, 0, 0, 2, 0xde, 0xad]);
        buf.put_slice(&[0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 9]);
        assert_eq!(FrameDecoder::new().decode(&mut buf).unwrap(), Some(Frame::Ping { id: 9 }));
    }

    fn decode_one(bytes: &[u8]) -> Result<Option<Frame>, FrameError> {
        FrameDecoder::new().decode(&mut BytesMut::from(bytes))
    }

    #[test]
    fn malformed_frames_are_rejected() {
        // Wrong version.
        assert!(matches!(decode_one(&[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]), Err(FrameError::UnsupportedVersion(2))));
        // PING with 3-byte payload.
        assert!(matches!(decode_one(&[0x80, 3, 0, 6, 0, 0, 0, 3, 0, 0, 1]), Err(FrameError::BadLength { .. })));
        // RST_STREAM on stream 0.
        assert!(matches!(
            decode_one(&[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(FrameError::ZeroStreamId(_))
        ));
        // DATA on stream 0.
        assert!(matches!(decode_one(&[0, 0, 0, 0, 0, 0, 0, 1, 7]), Err(FrameError::ZeroStreamId(_))));
        // SETTINGS whose count disagrees with its length.
        assert!(matches!(
            decode_one(&[0x80, 3, 0, 4, 0, 0, 0, 12, 0, 0, 0, 5, 0, 0, 0, 7, 0, 0, 0, 1]),
            Err(FrameError::BadLength { .. })
        ));
        // WINDOW_UPDATE with delta 0.
        assert!(matches!(
            decode_one(&[0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0]),
            Err(FrameError::ZeroWindowDelta(1))
        ));
        // SYN_STREAM whose header block is not zlib.
        assert!(matches!(
            decode_one(&[0x80, 3, 0, 1, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2]),
            Err(FrameError::Header(_))
        ));
        // Control frame announcing 16 MiB is refused before it is buffered.
        assert!(matches!(decode_one(&[0x80, 3, 0, 1, 0, 0xff, 0xff, 0xff]), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small deterministic xorshift fuzz: the decoder must return Ok or Err, never panic.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut enc = FrameEncoder::new().unwrap();
        let mut valid = BytesMut::new();
        for f in all_kinds() {
            enc.encode(f, &mut valid).unwrap();
        }
        for _ in 0..5000 {
            let mut bytes = valid.to_vec();
            // Flip a few bytes of a valid stream, or start from noise.
            if next() % 4 == 0 {
                bytes = (0..(next() % 64)).map(|_| next() as u8).collect();
            } else {
                for _ in 0..(1 + next() % 4) {
                    let i = (next() as usize) % bytes.len();
                    bytes[i] = next() as u8;
                }
            }
            let mut dec = FrameDecoder::new();
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(_)) = dec.decode(&mut buf) {}
        }
    }
}
