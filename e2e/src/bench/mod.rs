//! The benchmark: drives any CRI endpoint through corral's own gRPC client and measures
//! what operators care about (see `e2e/bench.sh`, which runs it against corral and
//! containerd and writes `e2e/results/`).
//!
//! - [`client`]: the CRI connection; [`workload`]: the pods and containers every runtime gets;
//!   [`pods`]: untimed setup and teardown.
//! - [`scenarios`]: single-pod latencies and the full cycle; [`concurrent`]: many pods at
//!   once; [`pull`]: cold image pulls; [`population`]: memory and latency with many pods.
//! - [`memory`]: which processes a runtime added for pods, and what they cost.
//! - [`runner`]: one run against one endpoint; [`results`]: what it writes;
//!   [`report`] and [`chart`]: two runs side by side.
//! - [`stats`]: samples and percentiles.

pub mod chart;
pub mod client;
pub mod concurrent;
pub mod error;
pub mod memory;
pub mod pods;
pub mod population;
pub mod pull;
pub mod report;
pub mod results;
pub mod runner;
pub mod scenarios;
pub mod stats;
pub mod workload;

pub use error::{BenchError, Result};
