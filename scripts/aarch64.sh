#!/usr/bin/env bash
# Cross-builds libgstedgeguard.so for aarch64 (RK3588, Jetson) from an x86-64
# Debian bookworm machine, without installing arm64 packages on the host:
# the arm64 GStreamer and GLib libraries are downloaded and unpacked into a
# private sysroot under target/, and linked against from there.
set -euo pipefail

target=aarch64-unknown-linux-gnu
sysroot=$(realpath -m "${SYSROOT:-target/aarch64-sysroot}")
libdir=$sysroot/usr/lib/aarch64-linux-gnu

# Host tools: the cross linker, arm64 glibc's crt files and libc.so for it
# (libc6-dev-arm64-cross is only a Recommends of gcc-aarch64-linux-gnu, and
# without it the link stops at "cannot find crti.o"), `file` to check the result.
"$(dirname "$0")"/host-packages.sh gcc-aarch64-linux-gnu libc6-dev-arm64-cross file
rustup target list --installed | grep -qx "$target" || rustup target add "$target"

# Debian's arm64 GStreamer and GLib libraries, unpacked (not installed).
SYSROOT=$sysroot "$(dirname "$0")"/arm64-sysroot.sh \
    libgstreamer1.0-0 libgstreamer-plugins-base1.0-0 libglib2.0-0
# The -dev packages would provide these linker names.
for lib in gstreamer-1.0 gstbase-1.0 gstvideo-1.0 glib-2.0 gobject-2.0 gio-2.0 gmodule-2.0; do
    ln -sf "lib$lib.so.0" "$libdir/lib$lib.so"
done

# No arm64 pkg-config files: tell system-deps what to link, and from where.
for dep in GSTREAMER_1_0:gstreamer-1.0 GSTREAMER_BASE_1_0:gstbase-1.0 GSTREAMER_VIDEO_1_0:gstvideo-1.0 \
           GLIB_2_0:glib-2.0 GOBJECT_2_0:gobject-2.0 GIO_2_0:gio-2.0; do
    name=${dep%%:*} lib=${dep#*:}
    export "SYSTEM_DEPS_${name}_NO_PKG_CONFIG=1" "SYSTEM_DEPS_${name}_LIB=$lib" \
           "SYSTEM_DEPS_${name}_SEARCH_NATIVE=$libdir"
done
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-Wl,-rpath-link,$libdir:$sysroot/lib/aarch64-linux-gnu"

cargo build --release --locked --lib --bin edgeguard-vpu --target "$target"
out=target/$target/release/libgstedgeguard.so
file "$out"
file "$out" | grep -q "ARM aarch64" || { echo "aarch64: $out is not an arm64 library" >&2; exit 1; }
echo "aarch64: built $out"
