#!/usr/bin/env bash
# Makes a local base image for deploy/docker/Dockerfile without any image registry: a Debian
# bookworm root file system from debootstrap (the host's configured Debian mirror) with ip, nft
# and curl, plus this host's Node 20 binary. Usage: base-image.sh [IMAGE] (default wedge-base:bookworm).
# Does nothing if the image exists already.
set -euo pipefail
image=${1:-wedge-base:bookworm}
docker image inspect "$image" >/dev/null 2>&1 && exit 0

mirror=$(sed -n 's/^URIs: *\(http[^ ]*debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
mirror=${mirror:-$(sed -n 's/^deb \(http[^ ]*\) bookworm main.*/\1/p' /etc/apt/sources.list 2>/dev/null | head -1)}
mirror=${mirror:-http://deb.debian.org/debian}

root=$(mktemp -d /var/tmp/wedge-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=iproute2,nftables,curl,ca-certificates,procps bookworm "$root" "$mirror" >&2
install -m 0755 "$(readlink -f "$(command -v node)")" "$root/usr/local/bin/node"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import - "$image" >/dev/null
echo "made $image" >&2
