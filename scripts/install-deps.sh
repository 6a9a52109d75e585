#!/bin/sh
# Install the Debian -dev packages migr builds against. Quiet and idempotent:
# prints nothing and does nothing when everything is already present.
#   --bench   also python3-matplotlib, for the plots of bench/plot.py
#   --qemu    also qemu-system-x86, the peer VMM of bench/peers/qemu and tests/it_pvh_qemu.sh
#   --net     also redis-server, whose captured memory bench/netns puts in the guest
set -eu
PKGS="zlib1g-dev liblz4-dev libzstd-dev liburing-dev libssl-dev pkg-config"
for arg in "$@"; do
    case "$arg" in
    --bench) PKGS="$PKGS python3-matplotlib" ;;
    --qemu) PKGS="$PKGS qemu-system-x86" ;;
    --net) PKGS="$PKGS redis-server" ;;
    *) echo "usage: $0 [--bench] [--qemu] [--net]" >&2; exit 2 ;;
    esac
done
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y -qq $missing >/dev/null 2>&1; then
    $SUDO apt-get update -qq >/dev/null
    $SUDO apt-get install -y -qq $missing >/dev/null
fi
