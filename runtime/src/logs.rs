//! The CRI container log format, written by the monitor.
//!
//! Each line is `<RFC3339Nano timestamp> <stdout|stderr> <F|P> <text>\n`. A line longer than
//! [`MAX_LINE`] bytes is split into `P` (partial) records followed by one `F` (full) record,
//! as containerd does; kubelet and `crictl logs` join them back. Output without a trailing
//! newline is held until the newline arrives, the buffer fills, or the stream ends.

use std::io::{self, Write};
use std::time::SystemTime;

/// containerd's maximum log line length before a line is split with `P`.
pub const MAX_LINE: usize = 16 * 1024;

/// Which output stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The container's stdout (or its terminal, which carries both).
    Stdout,
    /// The container's stderr.
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Turns raw stream output into CRI log records on `out`.
pub struct CriLogWriter<W: Write> {
    out: W,
    /// Bytes of an unfinished line, per stream (empty and unallocated most of the time).
    partial: [Vec<u8>; 2],
}

impl<W: Write> CriLogWriter<W> {
    /// A writer appending records to `out`.
    pub fn new(out: W) -> Self {
        CriLogWriter { out, partial: [Vec::new(), Vec::new()] }
    }

    /// The current output.
    pub fn output(&self) -> &W {
        &self.out
    }

    /// Replaces the output (log reopen after rotation); held partial lines are kept.
    pub fn set_output(&mut self, out: W) -> W {
        std::mem::replace(&mut self.out, out)
    }

    /// Records `data` read from `stream` at `now`.
    pub fn write(&mut self, stream: Stream, mut data: &[u8], now: SystemTime) -> io::Result<()> {
        while !data.is_empty() {
            let held = self.partial[stream.index()].len();
            let room = MAX_LINE - held;
            match data.iter().take(room).position(|&b| b == b'\n') {
                Some(nl) => {
                    self.emit(stream, b'F', &data[..nl], now)?;
                    data = &data[nl + 1..];
                }
                None if data.len() >= room => {
                    self.emit(stream, b'P', &data[..room], now)?;
                    data = &data[room..];
                }
                None => {
                    self.partial[stream.index()].extend_from_slice(data);
                    data = &[];
                }
            }
        }
        Ok(())
    }

    /// The stream ended: a held unfinished line becomes a full record.
    pub fn finish(&mut self, stream: Stream, now: SystemTime) -> io::Result<()> {
        if self.partial[stream.index()].is_empty() {
            return Ok(());
        }
        self.emit(stream, b'F', &[], now)
    }

    /// Writes one record: the held bytes of `stream` followed by `tail`.
    fn emit(&mut self, stream: Stream, tag: u8, tail: &[u8], now: SystemTime) -> io::Result<()> {
        let held = std::mem::take(&mut self.partial[stream.index()]);
        let ts = humantime::format_rfc3339_nanos(now).to_string();
        let mut line = Vec::with_capacity(ts.len() + 10 + held.len() + tail.len());
        line.extend_from_slice(ts.as_bytes());
        line.push(b' ');
        line.extend_from_slice(stream.name().as_bytes());
        line.push(b' ');
        line.push(tag);
        line.push(b' ');
        line.extend_from_slice(&held);
        line.extend_from_slice(tail);
        line.push(b'\n');
        // One write per record, so a reader never sees half a record from us.
        self.out.write_all(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::new(1_475_713_029, 669_794_202)
    }

    fn lines(out: &[u8]) -> Vec<String> {
        String::from_utf8(out.to_vec()).unwrap().lines().map(str::to_owned).collect()
    }

    #[test]
    fn full_lines_get_f_and_timestamp() {
        let mut w = CriLogWriter::new(Vec::new());
        w.write(Stream::Stdout, b"hello\nworld\n", at()).unwrap();
        w.write(Stream::Stderr, b"oops\n", at()).unwrap();
        assert_eq!(
            lines(&w.out),
            [
                "2016-10-06T00:17:09.669794202Z stdout F hello",
                "2016-10-06T00:17:09.669794202Z stdout F world",
                "2016-10-06T00:17:09.669794202Z stderr F oops",
            ]
        );
    }

    #[test]
    fn unfinished_line_is_held_across_reads_and_flushed_at_end() {
        let mut w = CriLogWriter::new(Vec::new());
        w.write(Stream::Stdout, b"hel", at()).unwrap();
        w.write(Stream::Stderr, b"e1", at()).unwrap();
        assert!(w.out.is_empty());
        w.write(Stream::Stdout, b"lo\nbye", at()).unwrap();
        w.finish(Stream::Stdout, at()).unwrap();
        w.finish(Stream::Stderr, at()).unwrap();
        let l = lines(&w.out);
        assert_eq!(l.len(), 3);
        assert!(l[0].ends_with(" stdout F hello"));
        assert!(l[1].ends_with(" stdout F bye"));
        assert!(l[2].ends_with(" stderr F e1"));
    }

    #[test]
    fn long_line_is_split_at_16k_with_p() {
        let mut w = CriLogWriter::new(Vec::new());
        let mut data = vec![b'a'; MAX_LINE * 2 + 10];
        data.push(b'\n');
        // Deliver in odd-sized chunks to exercise the held buffer.
        for chunk in data.chunks(1000) {
            w.write(Stream::Stdout, chunk, at()).unwrap();
        }
        let l = lines(&w.out);
        assert_eq!(l.len(), 3);
        let prefix = "2016-10-06T00:17:09.669794202Z stdout ";
        assert_eq!(l[0].len(), prefix.len() + 2 + MAX_LINE);
        assert!(l[0].starts_with(&format!("{prefix}P aaa")));
        assert!(l[1].starts_with(&format!("{prefix}P aaa")));
        assert_eq!(l[2], format!("{prefix}F {}", "a".repeat(10)));
    }

    #[test]
    fn line_of_exactly_16k_is_one_partial_then_empty_full() {
        // containerd emits a P record for a full buffer, then the newline closes an empty F.
        let mut w = CriLogWriter::new(Vec::new());
        let mut data = vec![b'x'; MAX_LINE];
        data.push(b'\n');
        w.write(Stream::Stdout, &data, at()).unwrap();
        let l = lines(&w.out);
        assert_eq!(l.len(), 2);
        assert!(l[0].contains(" stdout P xxx"));
        assert!(l[1].ends_with(" stdout F "));
    }
}
