#!/usr/bin/env bash
# Checks that gst-inspect-1.0 loads the release build of the plugin with no warnings
# and lists every element and tracer that plugin_init registers.
set -euo pipefail

plugin_dir=${1:-target/release}
lib="$plugin_dir/libgstedgeguard.so"
[ -f "$lib" ] || { echo "check-inspect: $lib not found (run make build)" >&2; exit 1; }

# A private registry so a stale cache elsewhere cannot hide a load failure.
registry=$(mktemp --suffix=.bin)
trap 'rm -f "$registry"' EXIT
export GST_REGISTRY="$registry" GST_PLUGIN_PATH="$plugin_dir" G_DEBUG=fatal_warnings

errfile=$(mktemp)
trap 'rm -f "$registry" "$errfile"' EXIT
out=$(gst-inspect-1.0 edgeguard 2>"$errfile") || { cat "$errfile" >&2; echo "check-inspect: gst-inspect-1.0 failed" >&2; exit 1; }
if [ -s "$errfile" ]; then
    cat "$errfile" >&2
    echo "check-inspect: gst-inspect-1.0 printed warnings" >&2
    exit 1
fi
for field in "Name" "Description" "Version" "License" "Source module" "Origin URL"; do
    grep -q "^  $field" <<<"$out" || { echo "$out" >&2; echo "check-inspect: no '$field' line" >&2; exit 1; }
done
grep -qE '^  License +MPL$' <<<"$out" || { echo "check-inspect: license is not MPL" >&2; exit 1; }

# Every feature registered in src/lib.rs must be listed by gst-inspect.
# Convention: each element module is named after the feature it registers; a
# module that registers only a tracer (metrics) names it edgeguard-<module>.
expected=$( (grep -oE '^ +[a-z_]+::register\(plugin\)' src/lib.rs || true) | sed -E 's/ *([a-z_]+)::.*/\1/' | tr -d '_' | sort)
listed=$(sed -nE 's/^  ([a-z0-9-]+)(: | \(GstTracerFactory\)).*/\1/p' <<<"$out" | sort)
count=0
for name in $expected; do
    grep -qxE "(edgeguard-)?$name" <<<"$listed" || { echo "$out" >&2; echo "check-inspect: '$name' is registered but not listed" >&2; exit 1; }
    count=$((count + 1))
done
echo "check-inspect: plugin loads cleanly from $plugin_dir; $count feature(s) listed: $(echo $expected)"
