//! The Kubernetes Container Runtime Interface (CRI) v1, as generated from `api.proto`.
//!
//! `v1` holds the messages, `v1::runtime_service_server` / `v1::image_service_server`
//! the server traits the daemon implements, and the matching `*_client` modules the
//! e2e harness and benchmark use.

/// Package `runtime.v1`: every message, enum and both services.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("runtime.v1");
}

/// The CRI API version corral speaks, as reported by `Version`.
pub const CRI_API_VERSION: &str = "v1";

#[cfg(test)]
mod wire_tests;
