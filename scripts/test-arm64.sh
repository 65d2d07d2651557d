#!/usr/bin/env bash
# Proves the arm64 package loads and runs: Debian's arm64 GStreamer (tools,
# plugins base, good, bad, ugly and everything they depend on) is unpacked into
# target/aarch64-sysroot (never installed on the host), the arm64 .deb into a
# temporary directory, and the arm64 gst-inspect-1.0 and gst-launch-1.0 run under
# `qemu-aarch64-static -L <sysroot>` (called directly, no binfmt needed):
#   - gst-inspect-1.0 loads libgstedgeguard.so from the package and lists the
#     three elements;
#   - gst-launch-1.0 runs a delaybuffer pipeline behind a tee, and vpuguardenc
#     in software mode (x264enc), to EOS.
# Only arm64 plugins are seen: the plugin path names the sysroot and the
# package, and the registry is a temporary file. As on a board, the arm64
# gst-plugin-scanner loads each plugin for the registry in a child process:
# GST_PLUGIN_SCANNER is a host script that runs it under qemu (an emulated
# process cannot exec an arm64 binary itself without binfmt).
# GLib warnings are fatal, and the package's Depends are checked against the
# arm64 package versions in the sysroot.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
sysroot=$(realpath -m "${SYSROOT:-target/aarch64-sysroot}")
multiarch=aarch64-linux-gnu
package=gstreamer1.0-edgeguard
version=$(awk -F'"' '/^\[/ { p = ($0 == "[package]") } p && /^version *=/ { print $2; exit }' Cargo.toml)
deb=target/debian/${package}_${version}_arm64.deb
[ -f "$deb" ] || { echo "test-arm64: $deb is missing (run make deb-arm64)" >&2; exit 1; }

"$here"/host-packages.sh qemu-user-static
SYSROOT=$sysroot "$here"/arm64-sysroot.sh gstreamer1.0-tools gstreamer1.0-plugins-base \
    gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work/pkg"
cat >"$work/gst-plugin-scanner" <<EOF
#!/bin/sh
exec qemu-aarch64-static -L "$sysroot" "$sysroot/usr/lib/$multiarch/gstreamer1.0/gstreamer-1.0/gst-plugin-scanner" "\$@"
EOF
chmod +x "$work/gst-plugin-scanner"
pkgplugins=$work/pkg/usr/lib/$multiarch/gstreamer-1.0
lib=$pkgplugins/libgstedgeguard.so
allplugins=$sysroot/usr/lib/$multiarch/gstreamer-1.0:$pkgplugins

# run PLUGIN_DIRS TOOL ARGS...: an arm64 GStreamer tool under qemu that sees
# only the arm64 plugins in PLUGIN_DIRS, with GLib warnings fatal.
run() {
    local dirs=$1 tool=$2
    shift 2
    env -u GST_PLUGIN_PATH -u GST_PLUGIN_PATH_1_0 -u GST_PLUGIN_SCANNER -u GST_REGISTRY_FORK \
        -u GST_REGISTRY -u GST_PLUGIN_SYSTEM_PATH -u LD_LIBRARY_PATH -u LD_PRELOAD \
        GST_PLUGIN_SYSTEM_PATH_1_0="$dirs" GST_REGISTRY_1_0="$(mktemp -p "$work" --suffix=.bin)" \
        GST_PLUGIN_SCANNER_1_0="$work/gst-plugin-scanner" G_DEBUG=fatal_warnings \
        timeout 300 qemu-aarch64-static -L "$sysroot" "$sysroot/usr/bin/$tool" "$@"
}
fail() {
    echo "test-arm64: $1" >&2
    [ -z "${2:-}" ] || echo "$2" >&2
    exit 1
}

# The package's computed Depends, against the arm64 packages in the sysroot.
for dep in $(dpkg-deb -f "$deb" Depends | tr -d ' ' | tr ',' ' '); do
    name=${dep%%(*} want=${dep#*(>=} want=${want%)}
    have=$(dpkg-query --admindir="$sysroot/var/lib/dpkg" -W -f='${Version}' "$name:arm64" 2>/dev/null || true)
    [ -n "$have" ] || fail "$deb Depends on $name, which is not in the arm64 sysroot"
    [ "$want" = "$dep" ] || dpkg --compare-versions "$have" ge "$want" ||
        fail "$deb Depends on $dep; the arm64 sysroot has $have"
done

# The plugin alone first, so that a warning while it loads is its own.
start=$SECONDS
out=$(run "$pkgplugins" gst-inspect-1.0 edgeguard 2>&1) || fail "arm64 gst-inspect-1.0 edgeguard failed:" "$out"
grep -q "Filename *$lib\$" <<<"$out" || fail "arm64 gst-inspect-1.0 did not load $lib:" "$out"
for element in vpuguardenc vpuguarddec delaybuffer leakcheck; do
    grep -q "^  $element: " <<<"$out" || fail "arm64 gst-inspect-1.0 edgeguard does not list $element:" "$out"
done
echo "test-arm64: arm64 gst-inspect-1.0 loads $deb's libgstedgeguard.so: vpuguardenc, vpuguarddec, delaybuffer, leakcheck ($((SECONDS - start)) s)"
start=$SECONDS
out=$(run "$allplugins" gst-inspect-1.0 vpuguardenc 2>&1) || fail "arm64 gst-inspect-1.0 vpuguardenc failed next to Debian's plugins:" "$out"
grep -q "Filename *$lib\$" <<<"$out" || fail "arm64 gst-inspect-1.0 vpuguardenc did not come from $lib:" "$out"
debian_plugins=("$sysroot/usr/lib/$multiarch/gstreamer-1.0"/*.so)
echo "test-arm64: arm64 gst-inspect-1.0 vpuguardenc next to Debian's ${#debian_plugins[@]} arm64 plugins ($((SECONDS - start)) s)"

# The command from the package, on the arm64 C library.
start=$SECONDS
out=$(timeout 300 qemu-aarch64-static -L "$sysroot" "$work/pkg/usr/bin/edgeguard-vpu" --json --lock-dir "$work/lock" 2>&1) ||
    fail "arm64 edgeguard-vpu --json failed:" "$out"
grep -q '"sources"' <<<"$out" || fail "arm64 edgeguard-vpu --json printed no sources:" "$out"
echo "test-arm64: arm64 edgeguard-vpu --json runs from the package ($((SECONDS - start)) s)"

pipelines=(
    "videotestsrc num-buffers=60 ! tee name=t t. ! queue ! fakesink t. ! delaybuffer delay=500000000 ! fakesink"
    "videotestsrc num-buffers=30 ! video/x-raw,width=320,height=240 ! vpuguardenc mode=software sw-properties=props,speed-preset=ultrafast ! fakesink"
)
for pipeline in "${pipelines[@]}"; do
    start=$SECONDS
    # shellcheck disable=SC2086 # gst-launch-1.0 takes the pipeline as words
    out=$(run "$allplugins" gst-launch-1.0 -m $pipeline 2>&1) || fail "arm64 gst-launch-1.0 $pipeline failed:" "$out"
    grep -q "Got EOS from element" <<<"$out" || fail "arm64 gst-launch-1.0 $pipeline did not reach EOS:" "$out"
    case $pipeline in
    *vpuguardenc*)
        grep -q 'vpuguardenc-decision.*x264enc' <<<"$out" ||
            fail "arm64 vpuguardenc posted no decision for x264enc:" "$out"
        ;;
    esac
    echo "test-arm64: arm64 gst-launch-1.0 $pipeline: EOS ($((SECONDS - start)) s)"
done
