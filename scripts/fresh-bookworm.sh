#!/usr/bin/env bash
# Runs make targets in a clean clone inside a minimal Debian bookworm chroot
# (debootstrap --variant=minbase, plus git, make, gcc and ca-certificates: what
# CI starts from), to show they install everything they need themselves. The
# host's Rust toolchain is bind-mounted read-only; cargo's registry is the
# chroot's own. Needs root and network. The chroot stays in target/fresh-bookworm
# (delete it for a new run from scratch); the clone is made again each run.
#
# Usage: fresh-bookworm.sh [TARGET...]   (default: aarch64 deb-arm64 test-arm64)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
[ "$(id -u)" -eq 0 ] || { echo "fresh-bookworm: needs root (debootstrap, chroot, mount)" >&2; exit 1; }
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(aarch64 deb-arm64 test-arm64)
chroot=$PWD/target/fresh-bookworm
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
cargo_bin=${CARGO_HOME:-$HOME/.cargo}/bin

"$here"/host-packages.sh debootstrap
if [ ! -e "$chroot/.debootstrapped" ]; then
    rm -rf "$chroot"
    debootstrap --variant=minbase --include=git,make,gcc,libc6-dev,ca-certificates \
        bookworm "$chroot" http://deb.debian.org/debian
    touch "$chroot/.debootstrapped"
fi
cp /etc/resolv.conf "$chroot/etc/resolv.conf"
# The host's local certificate authorities (a TLS-intercepting proxy's, say), for cargo.
if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$chroot/usr/local/share/ca-certificates/"
    chroot "$chroot" update-ca-certificates >/dev/null
fi

mounts=()
cleanup() {
    local i
    for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount "${mounts[i]}" || umount -l "${mounts[i]}"; done
}
trap cleanup EXIT
bind() { # bind SOURCE TARGET [ro]
    mkdir -p "$2"
    mount --bind "$1" "$2"
    mounts+=("$2")
    [ "${3:-}" != ro ] || mount -o remount,bind,ro "$2"
}
mount -t proc proc "$chroot/proc"
mounts+=("$chroot/proc")
bind /dev "$chroot/dev"
bind /dev/pts "$chroot/dev/pts"
bind "$rustup_home" "$chroot/opt/rustup" ro
bind "$cargo_bin" "$chroot/opt/cargo-bin" ro

rm -rf "$chroot/root/edgeguard"
git clone -q "$PWD" "$chroot/root/edgeguard"
git -C "$chroot/root/edgeguard" checkout -q "$(git rev-parse HEAD)"
# shellcheck disable=SC2016 # the inner script expands its own variables
chroot "$chroot" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
    PATH=/opt/cargo-bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUSTUP_HOME=/opt/rustup CARGO_HOME=/root/.cargo RUSTUP_TOOLCHAIN="$(rustup show active-toolchain | cut -d' ' -f1)" \
    bash -c 'cd /root/edgeguard && for t in "$@"; do start=$SECONDS; make "$t" </dev/null || exit; echo "fresh-bookworm: make $t took $((SECONDS - start)) s"; done' \
    fresh-bookworm "${targets[@]}"
