#!/usr/bin/env bash
# Generates the Python protobuf + gRPC stubs of proto/nexus/v1 into DIR (default /tmp/nexus-py) with protoc and
# Debian's grpc_python_plugin (Debian's python3-grpc-tools is too old for proto3 `optional`).
# Needs: apt-get install protobuf-compiler protobuf-compiler-grpc python3-grpcio python3-protobuf
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="${1:-/tmp/nexus-py}"
mkdir -p "$out"
protoc -I "$root/proto" --python_out="$out" --grpc_out="$out" \
  --plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin "$root"/proto/nexus/v1/*.proto
echo "$out"
