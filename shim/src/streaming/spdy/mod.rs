//! SPDY/3.1, server side, as much of it as Kubernetes streaming uses.
//!
//! No maintained Rust crate serves SPDY/3.1 (the few on crates.io are clients for
//! port-forward, or unmaintained), so the framing lives here: [`frame`] is the wire codec,
//! [`headers`] the zlib-compressed header blocks, [`window`] flow-control accounting,
//! [`connection`] the two tasks that drive one connection, and [`stream`] the per-stream
//! `AsyncRead`/`AsyncWrite` handles. Server push, priorities and SETTINGS persistence are not
//! implemented: Kubernetes clients use none of them.

mod connection;
mod dictionary;
pub mod frame;
mod headers;
mod stream;
mod window;

pub use connection::{Connection, SpdyConfig};
pub use stream::{IncomingStream, SendHalf, SpdyStream};
