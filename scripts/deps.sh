#!/usr/bin/env bash
# Installs the Debian packages edgeguard needs to build, test, demo and benchmark.
# Runs apt-get only when a package is missing, so a second run installs nothing.
set -euo pipefail

packages=(
    pkg-config
    libgstreamer1.0-dev
    libgstreamer-plugins-base1.0-dev
    gstreamer1.0-plugins-base
    gstreamer1.0-plugins-good
    gstreamer1.0-plugins-bad
    gstreamer1.0-plugins-ugly
    gstreamer1.0-libav
    gstreamer1.0-tools
    gstreamer1.0-x
    ffmpeg
    meson
    ninja-build
    python3-gi
    python3-gst-1.0
    gir1.2-gst-rtsp-server-1.0
    valgrind
    prometheus
)

# The native architecture's package; an Architecture: all one has no qualifier.
arch=$(dpkg --print-architecture)
installed() {
    local status
    status=$(dpkg-query -W -f='${db:Status-Status}' "$1:$arch" 2>/dev/null ||
        dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)
    [ "$status" = "installed" ]
}

missing=()
for pkg in "${packages[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
    echo "deps: all ${#packages[@]} packages already installed"
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# prometheus is wanted for its binaries only (the metrics tests run their own
# on loopback): a policy-rc.d that denies every start keeps its package from
# starting a server on :9090 for the rest of the run, as Debian's own images
# do for every service.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 0755 "$policy"
    trap '"${sudo[@]}" rm -f "$policy"' EXIT
fi
"${sudo[@]}" apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
# On a systemd machine the unit is still enabled for the next boot.
if [ -d /run/systemd/system ] && systemctl is-enabled --quiet prometheus 2>/dev/null; then
    "${sudo[@]}" systemctl disable --quiet prometheus || true
fi
