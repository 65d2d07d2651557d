#!/usr/bin/env bash
# Cross-builds libgstedgeguard.so for aarch64 (RK3588, Jetson) from an x86-64
# Debian bookworm machine, without installing arm64 packages on the host:
# the arm64 GStreamer and GLib libraries are downloaded and unpacked into a
# private sysroot under target/, and linked against from there.
set -euo pipefail

target=aarch64-unknown-linux-gnu
sysroot=${SYSROOT:-$PWD/target/aarch64-sysroot}
libdir=$sysroot/usr/lib/aarch64-linux-gnu

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive

# Host tools: the cross linker and `file` to check the result.
missing=()
for pkg in gcc-aarch64-linux-gnu file; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)" = installed ] || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    "${sudo[@]}" apt-get update -q
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"

# The arm64 package lists (only the lists: nothing arm64 gets installed).
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    "${sudo[@]}" dpkg --add-architecture arm64
    "${sudo[@]}" apt-get update -q
elif ! apt-cache show libgstreamer1.0-0:arm64 >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update -q
fi

if [ ! -e "$libdir/libgstvideo-1.0.so" ]; then
    mkdir -p "$sysroot/debs"
    (cd "$sysroot/debs" && apt-get download \
        libgstreamer1.0-0:arm64 libgstreamer-plugins-base1.0-0:arm64 libglib2.0-0:arm64)
    for deb in "$sysroot"/debs/*.deb; do dpkg -x "$deb" "$sysroot"; done
    # The -dev packages would provide these linker names.
    for lib in gstreamer-1.0 gstbase-1.0 gstvideo-1.0 glib-2.0 gobject-2.0 gio-2.0 gmodule-2.0; do
        ln -sf "lib$lib.so.0" "$libdir/lib$lib.so"
    done
fi

# No arm64 pkg-config files: tell system-deps what to link, and from where.
for dep in GSTREAMER_1_0:gstreamer-1.0 GSTREAMER_BASE_1_0:gstbase-1.0 GSTREAMER_VIDEO_1_0:gstvideo-1.0 \
           GLIB_2_0:glib-2.0 GOBJECT_2_0:gobject-2.0 GIO_2_0:gio-2.0; do
    name=${dep%%:*} lib=${dep#*:}
    export "SYSTEM_DEPS_${name}_NO_PKG_CONFIG=1" "SYSTEM_DEPS_${name}_LIB=$lib" \
           "SYSTEM_DEPS_${name}_SEARCH_NATIVE=$libdir"
done
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-Wl,-rpath-link,$libdir"

cargo build --release --locked --lib --target "$target"
out=target/$target/release/libgstedgeguard.so
file "$out"
file "$out" | grep -q "ARM aarch64" || { echo "aarch64: $out is not an arm64 library" >&2; exit 1; }
echo "aarch64: built $out"
