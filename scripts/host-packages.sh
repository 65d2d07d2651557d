#!/usr/bin/env bash
# Installs the named host (native-architecture) Debian packages that are missing,
# with apt-get, as deps.sh does: nothing runs when all are installed, sudo when
# not root. Usage: host-packages.sh PACKAGE...
set -euo pipefail

arch=$(dpkg --print-architecture)
installed() {
    local status
    status=$(dpkg-query -W -f='${db:Status-Status}' "$1:$arch" 2>/dev/null ||
        dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)
    [ "$status" = installed ]
}

missing=()
for pkg in "$@"; do
    installed "$pkg" || missing+=("$pkg")
done
[ ${#missing[@]} -gt 0 ] || exit 0

sudo=()
[ "$(id -u)" -eq 0 ] || sudo=(sudo)
echo "host-packages: installing ${missing[*]}"
"${sudo[@]}" apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
