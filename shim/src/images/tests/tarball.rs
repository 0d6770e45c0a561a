//! Writes tar streams byte by byte, so tests can build exactly the (also malicious) layers
//! they need: the `tar` crate's builder refuses `..` and absolute paths.

use std::io::Write;

/// A tar stream being built.
#[derive(Default)]
pub struct Tarball {
    buf: Vec<u8>,
}

/// A GNU header with `path` and `link` written raw (each at most 100 bytes).
fn header(path: &[u8], kind: tar::EntryType, mode: u32, size: u64, link: &[u8]) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..path.len()].copy_from_slice(path);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_600_000_000);
    h
}

impl Tarball {
    pub fn new() -> Tarball {
        Tarball::default()
    }

    /// Appends a header (checksummed here) and its data, padded to 512 bytes.
    pub fn raw(mut self, mut h: tar::Header, data: &[u8]) -> Tarball {
        h.set_cksum();
        self.buf.extend_from_slice(h.as_bytes());
        self.buf.extend_from_slice(data);
        self.buf.resize(self.buf.len().div_ceil(512) * 512, 0);
        self
    }

    pub fn dir(self, path: &str, mode: u32) -> Tarball {
        self.raw(header(path.as_bytes(), tar::EntryType::Directory, mode, 0, b""), b"")
    }

    pub fn file(self, path: &str, mode: u32, data: &[u8]) -> Tarball {
        self.raw(header(path.as_bytes(), tar::EntryType::Regular, mode, data.len() as u64, b""), data)
    }

    /// A file with owner, mtime and xattrs (the xattrs as a PAX header, like Docker writes them).
    pub fn file_with(
        self,
        path: &str,
        mode: u32,
        uid: u64,
        mtime: u64,
        xattrs: &[(&str, &[u8])],
        data: &[u8],
    ) -> Tarball {
        let mut t = self;
        if !xattrs.is_empty() {
            let mut records = Vec::new();
            for (name, value) in xattrs {
                let body_len = format!(" SCHILY.xattr.{name}=").len() + value.len() + 1;
                // The length field counts itself.
                let mut len = body_len + 1;
                while len.to_string().len() + body_len != len {
                    len = len.to_string().len() + body_len;
                }
                records.extend_from_slice(format!("{len} SCHILY.xattr.{name}=").as_bytes());
                records.extend_from_slice(value);
                records.push(b'\n');
            }
            t = t.raw(header(b"PaxHeaders/x", tar::EntryType::XHeader, 0o644, records.len() as u64, b""), &records);
        }
        let mut h = header(path.as_bytes(), tar::EntryType::Regular, mode, data.len() as u64, b"");
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_mtime(mtime);
        t.raw(h, data)
    }

    pub fn symlink(self, path: &str, target: &str) -> Tarball {
        self.raw(header(path.as_bytes(), tar::EntryType::Symlink, 0o777, 0, target.as_bytes()), b"")
    }

    pub fn hardlink(self, path: &str, target: &str) -> Tarball {
        self.raw(header(path.as_bytes(), tar::EntryType::Link, 0o644, 0, target.as_bytes()), b"")
    }

    pub fn node(self, path: &str, kind: tar::EntryType, major: u32, minor: u32) -> Tarball {
        let mut h = header(path.as_bytes(), kind, 0o600, 0, b"");
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.raw(h, b"")
    }

    /// A GNU long-name header claiming `claimed` bytes of name (and carrying that many).
    pub fn long_name(self, claimed: usize) -> Tarball {
        let h = header(b"././@LongLink", tar::EntryType::GNULongName, 0o644, claimed as u64, b"");
        self.raw(h, &vec![b'a'; claimed])
    }

    /// The finished, uncompressed tar (with the two zero end blocks).
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&[0u8; 1024]);
        self.buf
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}
