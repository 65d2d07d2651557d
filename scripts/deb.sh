#!/usr/bin/env bash
# Builds target/debian/gstreamer1.0-edgeguard_<version>_<arch>.deb from the
# library that `make build` (amd64) or `make aarch64` (arm64) left in target/,
# with dpkg-deb and the control template in scripts/debian/. Depends is
# computed from the library by dpkg-shlibdeps: against the host's dpkg database
# for amd64, against the arm64 sysroot's own (scripts/arm64-sysroot.sh) for
# arm64. Then lintian checks the package and fails the build on an error.
#
# Usage: deb.sh amd64|arm64
set -euo pipefail

arch=${1:?usage: deb.sh amd64|arm64}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

package=gstreamer1.0-edgeguard
maintainer=${DEB_MAINTAINER:-edgeguard developers <edgeguard@users.noreply.github.com>}
sysroot=$(realpath -m "${SYSROOT:-target/aarch64-sysroot}")

tools=(dpkg-dev lintian file binutils gzip)
case $arch in
amd64)
    triple=x86_64-unknown-linux-gnu multiarch=x86_64-linux-gnu strip=strip
    lib=target/release/libgstedgeguard.so
    command=target/release/edgeguard-vpu
    shlibdeps=()
    ;;
arm64)
    triple=aarch64-unknown-linux-gnu multiarch=aarch64-linux-gnu strip=aarch64-linux-gnu-strip
    lib=target/$triple/release/libgstedgeguard.so
    command=target/$triple/release/edgeguard-vpu
    tools+=(binutils-aarch64-linux-gnu)
    # The sysroot's dpkg database tells dpkg-shlibdeps which arm64 package
    # ships each library, and its shlibs and symbols files.
    shlibdeps=(--admindir="$sysroot/var/lib/dpkg"
        -l"$sysroot/usr/lib/$multiarch" -l"$sysroot/lib/$multiarch")
    [ -f "$sysroot/var/lib/dpkg/status" ] || { echo "deb: no arm64 sysroot in $sysroot (run make aarch64)" >&2; exit 1; }
    ;;
*)
    echo "deb: unknown architecture $arch (amd64 or arm64)" >&2
    exit 2
    ;;
esac
"$here"/host-packages.sh "${tools[@]}"
for built in "$lib" "$command"; do
    [ -f "$built" ] || { echo "deb: $built is missing (run make build, or make aarch64 for arm64)" >&2; exit 1; }
    file -L "$built" | grep -q "$( [ "$arch" = arm64 ] && echo 'ARM aarch64' || echo 'x86-64')" ||
        { echo "deb: $built is not built for $arch" >&2; exit 1; }
done

# Version, homepage from Cargo.toml's [package].
field() { awk -F'"' -v key="$1" '/^\[/ { p = ($0 == "[package]") } p && $0 ~ "^" key " *=" { print $2; exit }' Cargo.toml; }
version=$(field version) homepage=$(field repository)
[ -n "$version" ] || { echo "deb: no version in Cargo.toml" >&2; exit 1; }
# Reproducible timestamps: the last commit's.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)

umask 022
build=target/debian/$arch
pkgdir=$build/debian/$package
rm -rf "$build"
plugindir=$pkgdir/usr/lib/$multiarch/gstreamer-1.0
bindir=$pkgdir/usr/bin
doc=$pkgdir/usr/share/doc/$package
install -d "$plugindir" "$bindir" "$doc" "$pkgdir/DEBIAN"

# The plugin, stripped as dh_strip does.
install -m 0644 "$lib" "$plugindir/libgstedgeguard.so"
"$strip" --remove-section=.comment --remove-section=.note --strip-unneeded "$plugindir/libgstedgeguard.so"
# The command showing who holds the video hardware (docs/vpu-budget.md).
install -m 0755 "$command" "$bindir/edgeguard-vpu"
"$strip" --remove-section=.comment --remove-section=.note --strip-unneeded "$bindir/edgeguard-vpu"
install -d "$pkgdir/usr/share/man/man1"
gzip -9n <docs/edgeguard-vpu.1 >"$pkgdir/usr/share/man/man1/edgeguard-vpu.1.gz"
chmod 0644 "$pkgdir/usr/share/man/man1/edgeguard-vpu.1.gz"

# The default lock-dir, /run/lock/edgeguard, made at boot by systemd-tmpfiles as the ground's
# trust rules want it: root's, sticky and world-writable (docs/vpu-budget.md). No postinst: the
# guards make it themselves until the next boot, and a postinst would not run in check-deb's
# throwaway root.
install -d "$pkgdir/usr/lib/tmpfiles.d"
printf 'd /run/lock/edgeguard 1777 root root -\n' >"$pkgdir/usr/lib/tmpfiles.d/$package.conf"
chmod 0644 "$pkgdir/usr/lib/tmpfiles.d/$package.conf"

# Docs: the README and the element pages, compressed above 4 kB (Policy 12.3).
install -m 0644 README.md docs/*.md "$doc/"
find "$doc" -name '*.md' -size +4k -exec gzip -9n {} +
# A native package's changelog (the version has no Debian revision).
{
    echo "gst-plugin-edgeguard ($version) unstable; urgency=medium"
    echo
    echo "  * Built from gst-plugin-edgeguard $version, git commit $commit."
    echo
    echo " -- $maintainer  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n >"$doc/changelog.gz"
chmod 0644 "$doc/changelog.gz"

# copyright: the crates statically linked into the library, with their licenses.
crates=$(cargo tree --locked -e normal,no-proc-macro --prefix none \
        --format '{p}|{l}' --target "$triple" |
    sed -e 's/ (\*)$//' -e 's/ (.*)|/|/' | sort -u | grep -v '^gst-plugin-edgeguard ' |
    awk -F'|' '{ printf " %s (%s),\n", $1, $2 }' | sed '$ s/,$/./')
years=$(git log --reverse --format=%cd --date=format:%Y 2>/dev/null | sed -n '1p;$p' | uniq | paste -sd-)
sed -e "s|@MAINTAINER@|$maintainer|" -e "s|@HOMEPAGE@|$homepage|" -e "s|@YEARS@|${years:-$(date -u +%Y -d "@$SOURCE_DATE_EPOCH")}|" \
    scripts/debian/copyright.in |
    awk -v crates="$crates" '$0 == "@CRATES@" { print crates; next } { print }' >"$doc/copyright"

# Depends, from the library's and the command's NEEDED entries and the symbols/shlibs files of
# the packages that ship those libraries.
mkdir -p "$build/debian"
printf 'Source: gst-plugin-edgeguard\n\nPackage: %s\nArchitecture: any\n' "$package" >"$build/debian/control"
depends=$(cd "$build" && DEB_HOST_ARCH=$arch dpkg-shlibdeps -O "${shlibdeps[@]}" \
        "debian/$package/usr/lib/$multiarch/gstreamer-1.0/libgstedgeguard.so" \
        "debian/$package/usr/bin/edgeguard-vpu" |
    sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || { echo "deb: dpkg-shlibdeps computed no Depends" >&2; exit 1; }

find "$pkgdir" -exec touch --no-dereference -d "@$SOURCE_DATE_EPOCH" {} +
(cd "$pkgdir" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$pkgdir/DEBIAN/md5sums"
size=$(du -k -s --apparent-size --exclude=DEBIAN "$pkgdir" | cut -f1)
sed -e "s|@VERSION@|$version|" -e "s|@ARCH@|$arch|" -e "s|@MAINTAINER@|$maintainer|" \
    -e "s|@INSTALLED_SIZE@|$size|" -e "s|@DEPENDS@|$depends|" -e "s|@HOMEPAGE@|$homepage|" \
    scripts/debian/control.in >"$pkgdir/DEBIAN/control"
chmod 0644 "$pkgdir/DEBIAN/control" "$pkgdir/DEBIAN/md5sums"

deb=target/debian/${package}_${version}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$pkgdir" "$deb" >/dev/null
dpkg-deb -I "$deb"
dpkg-deb -c "$deb"

# lintian: an error fails the build, warnings are printed.
echo "deb: lintian $deb"
lintian --fail-on error --tag-display-limit 0 "$deb"
echo "deb: built $deb"
