//! Attach through the monitor's `attach.sock`: stdin in, output out, terminal resize.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::Fixture;
use corral_runtime::attach::{Decoder, Frame};

fn send(stream: &mut UnixStream, frame: Frame) {
    stream.write_all(&frame.encode()).unwrap();
}

/// Reads output frames until the collected stdout contains `want`.
fn read_until(stream: &mut UnixStream, want: &str) -> String {
    stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut decoder, mut out, mut buf) = (Decoder::default(), String::new(), [0u8; 4096]);
    while !out.contains(want) {
        assert!(Instant::now() < deadline, "no {want:?} in {out:?}");
        let n = match stream.read(&mut buf) {
            Ok(0) => panic!("attach closed; got {out:?}"),
            Ok(n) => n,
            Err(_) => continue, // timeout
        };
        for frame in decoder.push(&buf[..n]).unwrap() {
            if let Frame::Stdout(d) | Frame::Stderr(d) = frame {
                out.push_str(&String::from_utf8_lossy(&d));
            }
        }
    }
    out
}

#[test]
fn attach_relays_stdin_and_output_and_stdin_once_closes() {
    let f = Fixture::new("attach");
    let spec = f.spec("cat", &["cat"]);
    let mut opts = f.options("cat");
    opts.stdin = true;
    opts.stdin_once = true;
    f.runtime.start("cat", &spec, &opts).unwrap();
    let mut stream = f.runtime.attach("cat").unwrap();
    send(&mut stream, Frame::Stdin(b"hello over attach\n".to_vec()));
    read_until(&mut stream, "hello over attach\n");
    // A second client sees later output too.
    let mut second = f.runtime.attach("cat").unwrap();
    std::thread::sleep(Duration::from_millis(100));
    send(&mut stream, Frame::Stdin(b"again\n".to_vec()));
    read_until(&mut second, "again\n");
    drop(second);
    drop(stream); // stdin_once: the first client leaving closes stdin, so cat ends
    let exit = f.wait_exit("cat", Duration::from_secs(30));
    assert_eq!(exit.exit_code, 0, "{}", f.diagnostics("cat"));
    assert_eq!(f.log_text("cat"), "hello over attach\nagain\n");
    assert!(!f.runtime.container_dir("cat").unwrap().join("attach.sock").exists());
}

#[test]
fn attach_resizes_the_terminal() {
    let f = Fixture::new("attach-tty");
    let spec = f.spec("tty", &["sh", "-c", "read line; stty size; echo got=$line"]);
    let mut opts = f.options("tty");
    opts.stdin = true;
    opts.tty = true;
    f.runtime.start("tty", &spec, &opts).unwrap();
    let mut stream = f.runtime.attach("tty").unwrap();
    send(&mut stream, Frame::Resize { rows: 33, cols: 77 });
    send(&mut stream, Frame::Stdin(b"abc\n".to_vec()));
    let out = read_until(&mut stream, "got=abc");
    assert!(out.contains("33 77"), "{out:?}");
    assert_eq!(f.wait_exit("tty", Duration::from_secs(30)).exit_code, 0);
}
