//! Helpers shared by corral's end-to-end tools (the benchmark lives here once it lands).
//!
//! The end-to-end tests themselves are shell scripts driving the real `crictl`
//! against a throw-away daemon: see `e2e/run.sh` and `e2e/tests/`.

pub use corral_cri::v1;
