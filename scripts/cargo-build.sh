#!/usr/bin/env bash
# Called by meson: builds the plugin with cargo and copies the library to meson's output.
# Usage: cargo-build.sh CARGO SOURCE_DIR TARGET_DIR OUTPUT
set -euo pipefail
cargo=$1 src=$2 target=$3 output=$4
"$cargo" build --release --locked --manifest-path "$src/Cargo.toml" --target-dir "$target"
cp "$target/release/libgstedgeguard.so" "$output"
