//! SPDY/3 header blocks: the name/value list carried by SYN_STREAM, SYN_REPLY and HEADERS,
//! and its zlib compression.
//!
//! A block is `u32 count`, then per pair `u32 len, name, u32 len, value`; a value holding
//! several values separates them with NUL. Names are lowercase on the wire (Go's framer
//! flags upper-case names as an error). Each direction of a connection has ONE zlib stream,
//! primed with [`HEADER_DICTIONARY`] and sync-flushed after every block, so blocks must be
//! compressed and decompressed in exactly the order the frames travel: the encoder and decoder
//! own their context and are used only by the connection's single writer / reader task.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::HEADER_DICTIONARY;
use super::frame::FrameError;

/// Most header pairs a block may carry (Go's framer uses the same limit).
const MAX_HEADER_COUNT: usize = 1000;
/// Largest decompressed header block accepted: far above what Kubernetes clients send
/// (three short headers), low enough that a zlib bomb cannot exhaust memory.
const MAX_BLOCK_BYTES: usize = 256 * 1024;

/// The headers of one stream, in wire order, names lowercase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// An empty header list (what a SYN_REPLY to a Kubernetes client carries).
    pub fn new() -> Self {
        Headers(Vec::new())
    }

    /// Adds a header; the name is lowercased as the wire format requires.
    #[cfg(test)]
    pub fn push(&mut self, name: &str, value: &str) {
        self.0.push((name.to_ascii_lowercase(), value.to_string()));
    }

    /// The first value of `name` (case-insensitive), if present. Multi-valued headers
    /// (NUL-separated) yield their first value, like Go's `http.Header.Get`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.split('\0').next().unwrap_or(""))
    }

    /// All pairs in wire order.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Serializes the uncompressed block.
    fn encode_raw(&self) -> Result<Vec<u8>, FrameError> {
        let mut out = Vec::with_capacity(4 + self.0.iter().map(|(n, v)| 8 + n.len() + v.len()).sum::<usize>());
        out.extend_from_slice(&len_u32(self.0.len())?.to_be_bytes());
        for (name, value) in &self.0 {
            out.extend_from_slice(&len_u32(name.len())?.to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&len_u32(value.len())?.to_be_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        Ok(out)
    }

    /// Parses an uncompressed block; every length is checked against what is left.
    fn decode_raw(mut raw: &[u8]) -> Result<Headers, FrameError> {
        let count = take_u32(&mut raw)? as usize;
        if count > MAX_HEADER_COUNT {
            return Err(FrameError::Header(format!(
                "{count} headers in one block, at most {MAX_HEADER_COUNT} allowed"
            )));
        }
        let mut pairs = Vec::with_capacity(count);
        for _ in 0..count {
            let name = take_string(&mut raw)?;
            if name.is_empty() {
                return Err(FrameError::Header("empty header name".into()));
            }
            let value = take_string(&mut raw)?;
            pairs.push((name.to_ascii_lowercase(), value));
        }
        if !raw.is_empty() {
            return Err(FrameError::Header(format!("{} stray bytes after the header block", raw.len())));
        }
        Ok(Headers(pairs))
    }
}

fn len_u32(len: usize) -> Result<u32, FrameError> {
    u32::try_from(len).map_err(|_| FrameError::Header(format!("header field of {len} bytes is too long")))
}

fn take_u32(raw: &mut &[u8]) -> Result<u32, FrameError> {
    let Some((head, rest)) = raw.split_first_chunk::<4>() else {
        return Err(FrameError::Header("header block truncated".into()));
    };
    *raw = rest;
    Ok(u32::from_be_bytes(*head))
}

fn take_string(raw: &mut &[u8]) -> Result<String, FrameError> {
    let len = take_u32(raw)? as usize;
    if len > raw.len() {
        return Err(FrameError::Header(format!("header field of {len} bytes, only {} left in the block", raw.len())));
    }
    let (field, rest) = raw.split_at(len);
    *raw = rest;
    Ok(String::from_utf8_lossy(field).into_owned())
}

/// The sending side's zlib context.
pub struct HeaderDeflater {
    zlib: Compress,
}

impl HeaderDeflater {
    pub fn new() -> Result<Self, FrameError> {
        // Go's framer uses BestCompression; any level decodes the same.
        let mut zlib = Compress::new(Compression::best(), true);
        zlib.set_dictionary(HEADER_DICTIONARY)
            .map_err(|e| FrameError::Header(format!("priming zlib with the SPDY dictionary: {e}")))?;
        Ok(HeaderDeflater { zlib })
    }

    /// Compresses one block and sync-flushes, so the peer can decode it on its own.
    pub fn compress(&mut self, headers: &Headers) -> Result<Vec<u8>, FrameError> {
        let raw = headers.encode_raw()?;
        let mut out = Vec::with_capacity(raw.len() / 2 + 64);
        let mut consumed = 0usize;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before = self.zlib.total_in();
            self.zlib
                .compress_vec(&raw[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| FrameError::Header(format!("compressing headers: {e}")))?;
            consumed += (self.zlib.total_in() - before) as usize;
            // The flush is complete once all input is taken and zlib left room unused.
            if consumed == raw.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The receiving side's zlib context.
pub struct HeaderInflater {
    zlib: Decompress,
}

impl HeaderInflater {
    pub fn new() -> Self {
        HeaderInflater { zlib: Decompress::new(true) }
    }

    /// Decompresses one block (which the peer sync-flushed) and parses it.
    pub fn decompress(&mut self, compressed: &[u8]) -> Result<Headers, FrameError> {
        let mut out: Vec<u8> = Vec::with_capacity(compressed.len() * 4 + 64);
        let mut consumed = 0usize;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let (in_before, out_before) = (self.zlib.total_in(), self.zlib.total_out());
            let result = self.zlib.decompress_vec(&compressed[consumed..], &mut out, FlushDecompress::Sync);
            consumed += (self.zlib.total_in() - in_before) as usize;
            let progressed = self.zlib.total_in() != in_before || self.zlib.total_out() != out_before;
            match result {
                Ok(Status::StreamEnd) => {
                    return Err(FrameError::Header("peer ended its header compression stream".into()));
                }
                Ok(_) => {}
                // The first block names the dictionary by its id; anything but ours is an error.
                Err(e) if e.needs_dictionary().is_some() => {
                    self.zlib.set_dictionary(HEADER_DICTIONARY).map_err(|e| {
                        FrameError::Header(format!("header block uses an unknown zlib dictionary: {e}"))
                    })?;
                    continue;
                }
                Err(e) => return Err(FrameError::Header(format!("corrupt compressed header block: {e}"))),
            }
            if out.len() > MAX_BLOCK_BYTES {
                return Err(FrameError::Header(format!("header block inflates past {MAX_BLOCK_BYTES} bytes")));
            }
            if consumed == compressed.len() && out.len() < out.capacity() {
                break;
            }
            if !progressed {
                return Err(FrameError::Header("truncated compressed header block".into()));
            }
        }
        Headers::decode_raw(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Headers {
        let mut h = Headers::new();
        h.push("streamType", "stdout");
        h.push("port", "8080");
        h.push("requestid", "0");
        h
    }

    #[test]
    fn round_trip_through_one_context_in_order() {
        let mut deflater = HeaderDeflater::new().unwrap();
        let mut inflater = HeaderInflater::new();
        for i in 0..50 {
            let mut h = sample();
            h.push("n", &i.to_string());
            let block = deflater.compress(&h).unwrap();
            assert_eq!(inflater.decompress(&block).unwrap(), h);
        }
    }

    #[test]
    fn names_are_lowercased_and_lookup_ignores_case() {
        let h = sample();
        assert_eq!(h.iter().next().unwrap().0, "streamtype");
        assert_eq!(h.get("StreamType"), Some("stdout"));
        assert_eq!(h.get("missing"), None);
    }

    #[test]
    fn multi_values_yield_the_first() {
        let mut h = Headers::new();
        h.push("x", "a\0b");
        assert_eq!(h.get("x"), Some("a"));
    }

    #[test]
    fn the_dictionary_makes_repeated_names_cheap() {
        let mut deflater = HeaderDeflater::new().unwrap();
        let mut h = Headers::new();
        h.push("content-type", "text/plain");
        h.push("user-agent", "kubectl");
        let raw = h.encode_raw().unwrap();
        let first = deflater.compress(&h).unwrap();
        assert!(first.len() < raw.len(), "{} >= {}", first.len(), raw.len());
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let mut deflater = HeaderDeflater::new().unwrap();
        let block = deflater.compress(&sample()).unwrap();
        for cut in 0..block.len() {
            let _ = HeaderInflater::new().decompress(&block[..cut]);
        }
        for seed in 0u32..200 {
            let junk: Vec<u8> = (0..(seed % 40)).map(|i| (seed.wrapping_mul(31).wrapping_add(i * 7)) as u8).collect();
            let _ = HeaderInflater::new().decompress(&junk);
        }
        // A wrong dictionary id is rejected.
        let mut other = Compress::new(Compression::default(), true);
        other.set_dictionary(b"not the spdy dictionary").unwrap();
        let mut out = Vec::with_capacity(256);
        other.compress_vec(&[0, 0, 0, 0], &mut out, FlushCompress::Sync).unwrap();
        assert!(HeaderInflater::new().decompress(&out).is_err());
    }

    #[test]
    fn raw_block_lengths_are_bounds_checked() {
        // count says 1, name length says 1000 but the block ends.
        let raw = [0, 0, 0, 1, 0, 0, 3, 232, b'a'];
        assert!(Headers::decode_raw(&raw).is_err());
        let too_many = (MAX_HEADER_COUNT as u32 + 1).to_be_bytes();
        assert!(Headers::decode_raw(&too_many).is_err());
    }

    #[test]
    fn decompression_bombs_are_refused() {
        let mut deflater = HeaderDeflater::new().unwrap();
        let mut h = Headers::new();
        h.push("big", &"a".repeat(MAX_BLOCK_BYTES + 10));
        let block = deflater.compress(&h).unwrap();
        assert!(block.len() < 4096, "compresses well: {}", block.len());
        let err = HeaderInflater::new().decompress(&block).unwrap_err();
        assert!(err.to_string().contains("inflates past"), "{err}");
    }
}
