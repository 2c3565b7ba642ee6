#!/usr/bin/env bash
# Regenerates src/engine/remote/inference.rs (the Open Inference Protocol's gRPC client) from
# proto/open-inference-protocol/open_inference_grpc.proto with tonic-prost-build. The generated
# code is committed so that building the plugin needs no protoc; run this after updating the
# vendored .proto. Needs protoc (Debian: protobuf-compiler) and cargo.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src"
cat > "$work/Cargo.toml" <<'TOML'
[package]
name = "gen-proto"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
tonic-prost-build = "0.14"
TOML
cat > "$work/src/main.rs" <<'RS'
fn main() {
    let a: Vec<String> = std::env::args().collect();
    tonic_prost_build::configure()
        .build_server(false)
        .out_dir(&a[3])
        .compile_protos(&[a[1].as_str()], &[a[2].as_str()])
        .expect("protoc");
}
RS
proto=$root/proto/open-inference-protocol
cargo run -q --manifest-path "$work/Cargo.toml" -- \
  "$proto/open_inference_grpc.proto" "$proto" "$root/src/engine/remote"
echo "wrote src/engine/remote/inference.rs"
