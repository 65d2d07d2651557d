#!/usr/bin/env bash
# Checks that `make install` puts a loadable plugin where GStreamer looks for it:
# installs into a staging DESTDIR and inspects vpuguardenc from there.
set -euo pipefail
stage=$(mktemp -d)
registry=$(mktemp --suffix=.bin)
trap 'rm -rf "$stage" "$registry"' EXIT
make --no-print-directory install DESTDIR="$stage" >/dev/null
pluginsdir=$(pkg-config --variable=pluginsdir gstreamer-1.0)
lib="$stage$pluginsdir/libgstedgeguard.so"
[ -f "$lib" ] || { echo "check-install: $lib not installed" >&2; exit 1; }
GST_REGISTRY="$registry" GST_PLUGIN_PATH="$stage$pluginsdir" G_DEBUG=fatal_warnings \
    gst-inspect-1.0 vpuguardenc >/dev/null
command=$(find "$stage" -name edgeguard-vpu -type f -perm -u+x)
[ -n "$command" ] || { echo "check-install: edgeguard-vpu not installed" >&2; exit 1; }
"$command" --json --lock-dir "$stage/lock" | grep -q '"sources"' ||
    { echo "check-install: $command --json printed no sources" >&2; exit 1; }
echo "check-install: make install puts libgstedgeguard.so in $pluginsdir, and gst-inspect-1.0 vpuguardenc loads it; edgeguard-vpu in ${command#"$stage"} runs"
