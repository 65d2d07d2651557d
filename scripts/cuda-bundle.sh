#!/usr/bin/env bash
# Bundles tests/cuda.rs with the GStreamer libraries and plugins it needs into
# .gpu/, for a GPU machine that has the NVIDIA driver but no GStreamer:
#   scripts/cuda-bundle.sh && copy .gpu there, then
#   cd .gpu && LD_LIBRARY_PATH=$PWD/lib GST_PLUGIN_SYSTEM_PATH=$PWD/plugins \
#     GST_REGISTRY=/tmp/gst-reg.bin GST_REGISTRY_FORK=no ./cuda-test --ignored --nocapture
# On a machine with GStreamer and the driver, `cargo test --test cuda -- --ignored` is enough.
set -euo pipefail
cd "$(dirname "$0")/.."

binary=$(cargo test --locked --no-run --test cuda --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -n 1)
plugins=$(pkg-config --variable=pluginsdir gstreamer-1.0)
rm -rf .gpu
mkdir -p .gpu/lib .gpu/plugins
cp "$binary" .gpu/cuda-test
cp "$plugins"/libgstcoreelements.so "$plugins"/libgstvideotestsrc.so "$plugins"/libgstnvcodec.so .gpu/plugins/
# Every library they load except glibc's own, which the target machine has.
for f in .gpu/cuda-test .gpu/plugins/*.so; do ldd "$f" | awk '/=> \//{print $3}'; done | sort -u |
    grep -vE '/(libc|libm|libpthread|libdl|librt|ld-linux-x86-64)\.so' |
    xargs -I{} cp -L {} .gpu/lib/
strip .gpu/cuda-test .gpu/lib/* .gpu/plugins/* 2>/dev/null || true
du -sh .gpu
