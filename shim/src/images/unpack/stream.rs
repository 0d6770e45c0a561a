//! The byte stream under the tar parser: decompression chosen by magic bytes, a running sha256
//! of the uncompressed tar (the layer's diff id), and a budget that bounds how much the tar
//! parser may read for one entry's headers.

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use sha2::{Digest as _, Sha256};

/// Compression of a layer blob, detected from its first bytes rather than trusting the media
/// type (registries and tools get it wrong; the magic numbers never lie).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];

/// Wraps `raw` in the decompressor its first bytes call for.
pub fn decompress<R: Read + 'static>(raw: R) -> io::Result<(Compression, Box<dyn Read>)> {
    let mut buffered = BufReader::with_capacity(256 * 1024, raw);
    let head = buffered.fill_buf()?;
    if head.starts_with(GZIP_MAGIC) {
        Ok((Compression::Gzip, Box::new(flate2::bufread::MultiGzDecoder::new(buffered))))
    } else if head.starts_with(ZSTD_MAGIC) {
        Ok((Compression::Zstd, Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?)))
    } else {
        Ok((Compression::None, Box::new(buffered)))
    }
}

/// Hashes everything read through it.
pub struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Hashing<R> {
    pub fn new(inner: R) -> Self {
        Hashing { inner, hasher: Sha256::new() }
    }

    /// Reads the rest of the stream (tar end padding) and returns the digest of all of it.
    pub fn finish(mut self) -> io::Result<Sha256> {
        io::copy(&mut self, &mut io::sink())?;
        Ok(self.hasher)
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Bounds reads while a budget is set. The tar parser reads GNU long names and PAX records of
/// any announced size into memory; with a budget set around each "next entry" call, a header
/// claiming gigabytes fails with a clear error instead of exhausting memory.
pub struct Budgeted<R> {
    inner: R,
    remaining: Rc<Cell<Option<u64>>>,
}

/// The handle that sets and lifts the budget of a [`Budgeted`] reader.
#[derive(Clone)]
pub struct Budget(Rc<Cell<Option<u64>>>);

impl Budget {
    /// Allows at most `bytes` more until [`Budget::lift`].
    pub fn limit(&self, bytes: u64) {
        self.0.set(Some(bytes));
    }

    /// Unlimited reads (entry data).
    pub fn lift(&self) {
        self.0.set(None);
    }
}

impl<R: Read> Budgeted<R> {
    pub fn new(inner: R) -> (Self, Budget) {
        let cell = Rc::new(Cell::new(None));
        (Budgeted { inner, remaining: cell.clone() }, Budget(cell))
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// The message of the error a spent budget produces, so callers can recognize it.
pub const OVERSIZE_HEADER: &str = "tar entry headers (long names, PAX records) exceed the size limit";

impl<R: Read> Read for Budgeted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(left) = self.remaining.get() else { return self.inner.read(buf) };
        if left == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, OVERSIZE_HEADER));
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.remaining.set(Some(left - n as u64));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn detects_compression_by_magic() {
        let data = b"plain tar bytes".to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(&data[..], 3).unwrap();
        for (blob, kind) in [(gz, Compression::Gzip), (zst, Compression::Zstd), (data.clone(), Compression::None)] {
            let (found, mut reader) = decompress(io::Cursor::new(blob)).unwrap();
            assert_eq!(found, kind);
            let mut out = Vec::new();
            reader.read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
        }
    }

    #[test]
    fn budget_stops_reads() {
        let (mut r, budget) = Budgeted::new(io::Cursor::new(vec![0u8; 100]));
        budget.limit(10);
        let mut buf = [0u8; 64];
        assert_eq!(r.read(&mut buf).unwrap(), 10);
        assert_eq!(r.read(&mut buf).unwrap_err().to_string(), OVERSIZE_HEADER);
        budget.lift();
        assert_eq!(r.read(&mut buf).unwrap(), 64);
    }
}
