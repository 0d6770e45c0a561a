//! Helpers shared by corral's end-to-end tools, and the benchmark ([`bench`], run by
//! `e2e/bench.sh` through the `bench` binary).
//!
//! The end-to-end tests themselves are shell scripts driving the real `crictl`
//! against a throw-away daemon: see `e2e/run.sh` and `e2e/tests/`.

pub mod bench;

pub use corral_cri::v1;
