#!/usr/bin/env bash
# Checks the amd64 package as a user gets it: `dpkg -i` into a throwaway root
# (dpkg --root, nothing on this host changes), gst-inspect-1.0 finds the three
# elements in the installed library and only there, then `dpkg -r` removes it
# and leaves no file behind.
#
# The throwaway root's dpkg database holds the host's status entries for the
# packages the Depends names (and nothing else), so dpkg checks the computed
# Depends against what is really installed here instead of being forced.
set -euo pipefail

cd "$(dirname "$0")/.."
package=gstreamer1.0-edgeguard
version=$(awk -F'"' '/^\[/ { p = ($0 == "[package]") } p && /^version *=/ { print $2; exit }' Cargo.toml)
arch=$(dpkg --print-architecture)
deb=target/debian/${package}_${version}_$arch.deb
[ -f "$deb" ] || { echo "check-deb: $deb is missing (run make deb)" >&2; exit 1; }
pluginsdir=/usr/lib/$(dpkg-architecture -qDEB_HOST_MULTIARCH)/gstreamer-1.0

root=$(mktemp -d)
registry=$(mktemp --suffix=.bin)
trap 'rm -rf "$root" "$registry"' EXIT
admin=$root/var/lib/dpkg
mkdir -p "$admin/info" "$admin/updates" "$admin/triggers"
echo 1 >"$admin/info/format"
: >"$admin/status"
# Depends: "a (>= 1), b | c, ..." -> the first name of each alternative.
for dep in $(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/[[:space:]]//g'); do
    qualified=$(dpkg-query -W -f='${binary:Package}' "$dep:$arch" 2>/dev/null ||
        dpkg-query -W -f='${binary:Package}' "$dep")
    dpkg-query -s "$qualified" >>"$admin/status"
    echo >>"$admin/status"
    : >"$admin/info/$qualified.list"
done

dpkg --root="$root" --log=/dev/null -i "$deb"
lib=$root$pluginsdir/libgstedgeguard.so
dpkg --root="$root" -L "$package" | grep -qx "$pluginsdir/libgstedgeguard.so" ||
    { echo "check-deb: dpkg -L does not list $pluginsdir/libgstedgeguard.so" >&2; exit 1; }
[ -f "$lib" ] || { echo "check-deb: $lib not installed" >&2; exit 1; }

# Only the installed directory: a copy in the host's plugin dir must not answer.
out=$(env -u GST_PLUGIN_PATH -u GST_PLUGIN_PATH_1_0 GST_PLUGIN_SYSTEM_PATH_1_0="$root$pluginsdir" \
    GST_REGISTRY_1_0="$registry" G_DEBUG=fatal_warnings gst-inspect-1.0 edgeguard)
grep -q "Filename *$lib\$" <<<"$out" ||
    { echo "check-deb: gst-inspect-1.0 edgeguard did not load $lib:" >&2; echo "$out" >&2; exit 1; }
for element in vpuguardenc vpuguarddec delaybuffer leakcheck; do
    grep -q "^  $element: " <<<"$out" ||
        { echo "check-deb: gst-inspect-1.0 edgeguard does not list $element:" >&2; echo "$out" >&2; exit 1; }
done

# The command, on the PATH a package gives it, runs from the installed file.
dpkg --root="$root" -L "$package" | grep -qx /usr/bin/edgeguard-vpu ||
    { echo "check-deb: dpkg -L does not list /usr/bin/edgeguard-vpu" >&2; exit 1; }
"$root/usr/bin/edgeguard-vpu" --json --lock-dir "$root/tmp-lock" | grep -q '"sources"' ||
    { echo "check-deb: $root/usr/bin/edgeguard-vpu --json printed no sources" >&2; exit 1; }
rm -rf "$root/tmp-lock"

# The default lock-dir's tmpfiles.d entry: root's, sticky, world-writable.
tmpfiles=/usr/lib/tmpfiles.d/$package.conf
dpkg --root="$root" -L "$package" | grep -qx "$tmpfiles" ||
    { echo "check-deb: dpkg -L does not list $tmpfiles" >&2; exit 1; }
[ "$(cat "$root$tmpfiles")" = "d /run/lock/edgeguard 1777 root root -" ] ||
    { echo "check-deb: $tmpfiles says: $(cat "$root$tmpfiles")" >&2; exit 1; }

dpkg --root="$root" --log=/dev/null -r "$package"
status=$(dpkg-query --root="$root" -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
[ -z "$status" ] || [ "$status" = not-installed ] ||
    { echo "check-deb: after dpkg -r, $package is $status" >&2; exit 1; }
left=$(cd "$root" && find . -mindepth 1 -path ./var -prune -o -print)
[ -z "$left" ] || { echo "check-deb: dpkg -r left behind:" >&2; echo "$left" >&2; exit 1; }
echo "check-deb: dpkg -i $deb into a throwaway root, gst-inspect-1.0 lists vpuguardenc, vpuguarddec, delaybuffer, leakcheck from $pluginsdir, edgeguard-vpu runs from /usr/bin, $tmpfiles makes the lock-dir, dpkg -r leaves nothing"
