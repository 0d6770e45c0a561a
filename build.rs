//! Compiles the CRI API (proto/api.proto) into Rust with tonic/prost.
//!
//! Needs `protoc` (Debian: protobuf-compiler); the setup scripts in e2e/ install it.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/api.proto");
    tonic_prost_build::configure()
        // corral keeps the CRI configs it was given in its JSON state records.
        .type_attribute(".runtime.v1", "#[derive(serde::Serialize, serde::Deserialize)]")
        .message_attribute(".runtime.v1", "#[serde(default)]")
        .build_server(true)
        .build_client(true)
        .compile_protos(&["proto/api.proto"], &["proto"])?;
    Ok(())
}
