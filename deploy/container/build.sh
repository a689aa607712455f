#!/usr/bin/env bash
# Build the release binary of tokengate and put a stripped copy in an output directory.
#
# Usage: deploy/container/build.sh [OUTPUT_DIR]    (default: <repo>/target/dist)
#
# This script is the single source of the build commands: the container image
# (deploy/container/Dockerfile) runs it in its builder stage, and CI can run it
# directly, without Docker, to build exactly the same way.
#
# Environment:
#   CARGO_TARGET_DIR   honoured like cargo does (default: <repo>/target)
#   TOKENGATE_STRIP    debug (default): drop DWARF line tables, keep the symbol
#                      table so panics/backtraces still name functions;
#                      all: strip everything; none: copy as built.
set -euo pipefail

out=${1:-}
strip_mode=${TOKENGATE_STRIP:-debug}
case "$strip_mode" in
    debug | all | none) ;;
    *)
        echo "build.sh: TOKENGATE_STRIP must be debug, all or none (got '$strip_mode')" >&2
        exit 2
        ;;
esac

# Resolve the output directory against the caller's working directory, then
# work from the repository root (two levels above this script).
repo=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
out=${out:-$repo/target/dist}
mkdir -p -- "$out"
out=$(cd -- "$out" && pwd)
cd -- "$repo"

target_dir=${CARGO_TARGET_DIR:-$repo/target}

# --locked: fail instead of silently updating Cargo.lock.
cargo build --release --locked --bin tokengate

install -m 0755 -- "$target_dir/release/tokengate" "$out/tokengate"

case "$strip_mode" in
    debug) strip --strip-debug -- "$out/tokengate" ;;
    all) strip --strip-all -- "$out/tokengate" ;;
    none) ;;
esac

ls -l -- "$out/tokengate"
