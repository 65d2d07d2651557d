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
"${sudo[@]}" apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
