#!/usr/bin/env bash
# Called by meson: builds the plugin and the edgeguard-vpu command with cargo
# and copies each OUTPUT (named as cargo names it) to meson's output.
# Usage: cargo-build.sh CARGO SOURCE_DIR TARGET_DIR OUTPUT...
set -euo pipefail
cargo=$1 src=$2 target=$3
shift 3
"$cargo" build --release --locked --manifest-path "$src/Cargo.toml" --target-dir "$target"
for output in "$@"; do
    cp "$target/release/$(basename "$output")" "$output"
done
