#!/usr/bin/env bash
# Unpacks Debian's arm64 packages, with everything they depend on, into a
# private sysroot (default target/aarch64-sysroot), without installing anything
# arm64 on the host: `apt-get download` + `dpkg-deb -x`. The .debs are cached
# (default target/aarch64-debs), so a second run downloads and unpacks nothing.
#
# The sysroot also gets a small dpkg database of its own under var/lib/dpkg
# (status, file lists naming the sysroot paths, shlibs and symbols files), so
# that `dpkg-shlibdeps --admindir=$SYSROOT/var/lib/dpkg` computes an arm64
# package's Depends as it would on an arm64 machine.
#
# Usage: arm64-sysroot.sh PACKAGE...   (names without :arm64)
set -euo pipefail

sysroot=$(realpath -m "${SYSROOT:-target/aarch64-sysroot}")
cache=$(realpath -m "${ARM64_DEB_CACHE:-target/aarch64-debs}")
admindir=$sysroot/var/lib/dpkg

# One package: unpack it and record it in the sysroot's dpkg database.
# Called through xargs below, so two unpack at a time.
if [ "${1:-}" = --unpack-one ]; then
    deb=$2 name=$(basename "$2")
    ctl=$(mktemp -d)
    trap 'rm -rf "$ctl"' EXIT
    pkg=$(dpkg-deb -f "$deb" Package)
    multiarch=$(dpkg-deb -f "$deb" Multi-Arch)
    # dpkg's database names a Multi-Arch: same package's files pkg:arch.*.
    info=$admindir/info/$pkg
    [ "$multiarch" != same ] || info=$info:arm64
    dpkg-deb -X "$deb" "$sysroot" | sed -e "s|^\./|$sysroot/|" -e "s|/$||" >"$info.list.new"
    dpkg-deb -e "$deb" "$ctl"
    for f in shlibs symbols; do
        [ ! -f "$ctl/$f" ] || cp "$ctl/$f" "$info.$f"
    done
    mv "$info.list.new" "$info.list"
    dpkg-deb -f "$deb" | sed '1a Status: install ok installed' >"$admindir/stanzas/$pkg"
    touch "$admindir/unpacked/$name"
    exit 0
fi

[ $# -gt 0 ] || { echo "usage: $0 PACKAGE..." >&2; exit 2; }

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
# The arm64 package lists (only the lists: nothing arm64 gets installed).
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    "${sudo[@]}" dpkg --add-architecture arm64
    "${sudo[@]}" apt-get update -q
elif ! apt-cache show "$1:arm64" >/dev/null 2>&1; then
    "${sudo[@]}" apt-get update -q
fi

# The Depends/Pre-Depends closure, arm64 packages only: Architecture: all ones
# (data, fonts, schemas) are not needed to load libraries and plugins, and
# virtual names (<...>) are provided by a real package that is listed too.
mapfile -t pkgs < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
        --no-breaks --no-replaces --no-enhances "${@/%/:arm64}" |
    sed -n 's/^\([a-z0-9][a-z0-9.+-]*\):arm64$/\1/p' | sort -u)
[ ${#pkgs[@]} -gt 0 ] || { echo "arm64-sysroot: apt-cache resolved no arm64 packages for $*" >&2; exit 1; }

# Download what the cache lacks. The file names are apt's, so a new Debian
# point release (a new version) is fetched again.
mkdir -p "$cache"
debs=() fetch=()
while read -r _uri file _rest; do
    debs+=("$file")
    [ -s "$cache/$file" ] || fetch+=("$file")
done < <(apt-get download --print-uris "${pkgs[@]/%/:arm64}")
if [ ${#fetch[@]} -gt 0 ]; then
    echo "arm64-sysroot: downloading ${#fetch[@]} of ${#debs[@]} arm64 packages into $cache"
    # pkg_version_arch.deb -> pkg:arm64=version (the version %-encoded ':' is the epoch)
    specs=()
    for file in "${fetch[@]}"; do
        ver=${file#*_} ver=${ver%_arm64.deb}
        specs+=("${file%%_*}:arm64=${ver//%3a/:}")
    done
    # As root, apt warns that _apt cannot write to the cache: not worth showing.
    if ! (cd "$cache" && apt-get download -q "${specs[@]}" 2>"$cache/download.err"); then
        cat "$cache/download.err" >&2
        exit 1
    fi
    grep -v '^W: Download is performed unsandboxed' "$cache/download.err" >&2 || true
    for file in "${fetch[@]}"; do
        [ -s "$cache/$file" ] || { echo "arm64-sysroot: $file was not downloaded" >&2; exit 1; }
    done
fi

# Unpack what the sysroot lacks.
mkdir -p "$admindir/info" "$admindir/stanzas" "$admindir/unpacked" "$admindir/updates"
echo 1 >"$admindir/info/format"
printf 'arm64\n' >"$admindir/arch"
todo=()
for file in "${debs[@]}"; do
    [ -e "$admindir/unpacked/$file" ] || todo+=("$cache/$file")
done
if [ ${#todo[@]} -gt 0 ]; then
    echo "arm64-sysroot: unpacking ${#todo[@]} packages into $sysroot"
    printf '%s\0' "${todo[@]}" |
        SYSROOT=$sysroot xargs -0 -P 2 -n 1 "$0" --unpack-one
fi
for stanza in "$admindir"/stanzas/*; do
    cat "$stanza"
    echo
done >"$admindir/status"
echo "arm64-sysroot: ${#debs[@]} arm64 packages in $sysroot"
