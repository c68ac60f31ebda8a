#!/bin/sh
# One replica of the compose cluster: the built-in origin on 127.0.0.1:8080 serving /srv, and the
# wedge in front of it on this replica's service address. The service address, the multicast route
# and nonlocal bind are what `wedge lab up` sets up for a lab server; here the replica does it.
set -eu
: "${WEDGE_NAME:?}" "${WEDGE_ADDRESS:?}" "${WEDGE_SERVICE_ADDRESS:?}"
iface=${WEDGE_IFACE:-eth0}

ip addr add "$WEDGE_SERVICE_ADDRESS/32" dev "$iface"
ip route replace 224.0.0.0/4 dev "$iface"

wedge origin --root /srv --listen 127.0.0.1:8080 --quiet &
tries=0
until curl -s -o /dev/null http://127.0.0.1:8080/; do
  tries=$((tries + 1))
  [ "$tries" -lt 100 ] || { echo "replica.sh: the origin did not answer on 127.0.0.1:8080" >&2; exit 1; }
  sleep 0.1
done

exec wedge serve --name "$WEDGE_NAME" --address "$WEDGE_ADDRESS" --iface "$iface" \
  --service "$WEDGE_SERVICE_ADDRESS:80" --origin http://127.0.0.1:8080 \
  --state-key-file /run/secrets/cluster_key
