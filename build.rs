//! Compiles the CRI API (proto/api.proto) into Rust with tonic/prost.
//!
//! Needs `protoc` (Debian: protobuf-compiler); the setup scripts in e2e/ install it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/api.proto");
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["proto/api.proto"], &["proto"])?;
    Ok(())
}
