//! Generates the gRPC and bus code from proto/ with a vendored protoc, so a
//! fresh machine needs no system protoc.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let protos = [
        root.join("switchyard/gateway/v1/chat.proto"),
        root.join("switchyard/gateway/v1/gateway.proto"),
        root.join("switchyard/gateway/v1/media.proto"),
        root.join("switchyard/bus/v1/bus.proto"),
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let include = protoc_bin_vendored::include_path()?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("switchyard_descriptor.bin"))
        .build_client(true)
        .build_server(true)
        .compile_with_config(config, &protos, &[root, include])?;
    Ok(())
}
