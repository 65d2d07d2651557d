#!/usr/bin/env bash
# Called by `meson test`: runs the crate's tests with GLib warnings made fatal.
# Usage: cargo-test.sh CARGO SOURCE_DIR TARGET_DIR
set -euo pipefail
cargo=$1 src=$2 target=$3
export G_DEBUG=fatal_warnings
# Tests that load the plugin through GST_PLUGIN_PATH need the debug cdylib.
"$cargo" build --locked --lib --manifest-path "$src/Cargo.toml" --target-dir "$target"
exec "$cargo" test --locked --manifest-path "$src/Cargo.toml" --target-dir "$target"
