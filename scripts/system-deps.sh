#!/usr/bin/env bash
# Installs the Debian packages Wedge's lab, tests and benchmarks use, if any is missing.
# Run as root (apt-get). Called by `npm run demo`, `npm test` and .ci/run.
set -euo pipefail

packages=(apache2 haproxy nginx-light libnginx-mod-stream wrk nftables tcpdump iproute2 curl wget procps python3 util-linux systemd docker.io docker-compose debootstrap)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "wedge: missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "wedge: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
