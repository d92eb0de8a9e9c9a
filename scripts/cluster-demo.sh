#!/usr/bin/env bash
# A Parley cluster on one machine, to try it: a real nats-server (built
# from the Go module Parley already depends on) and three Parley nodes on
# loopback ports. It prints the nodes' URLs and a link per node into one
# room, and stops everything on Ctrl-C (or when any process ends).
#
#   scripts/cluster-demo.sh            # ports 8080-8082 (HTTP), 4222 (NATS)
#                                      # and BASE+100.. (ops), +200 (TURN), +300 (media UDP), +400 (media TCP)
#   BASE=9000 NATS_PORT=5222 scripts/cluster-demo.sh
#
# Needs Go. Everything lives in a temporary directory removed at the end.
# docs/cluster.md says what a cluster does and the production deployment
# (deploy/).
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${BASE:-8080}
NATS_PORT=${NATS_PORT:-4222}
ROOM=${ROOM:-demo}
tmp=$(mktemp -d)
pids=()

stop() {
	trap - EXIT INT TERM
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$tmp"
	echo "stopped; logs were in $tmp (removed)"
}
trap stop EXIT INT TERM

echo "building nats-server and parley into $tmp ..."
go build -o "$tmp/nats-server" github.com/nats-io/nats-server/v2
go build -o "$tmp/parley" ./cmd/parley

"$tmp/nats-server" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$tmp/nats" -n demo-nats >"$tmp/nats.log" 2>&1 &
pids+=($!)

PARLEY_AUTH_SECRET=$("$tmp/parley" token secret)
PARLEY_TURN_SECRET=$("$tmp/parley" token secret)
export PARLEY_AUTH_SECRET PARLEY_TURN_SECRET

for i in 0 1 2; do
	name=n$((i + 1))
	"$tmp/parley" serve --cluster "nats://127.0.0.1:$NATS_PORT" --cluster-node "$name" \
		--data-dir "$tmp/$name" --http "127.0.0.1:$((BASE + i))" --ops "127.0.0.1:$((BASE + 100 + i))" \
		--turn "127.0.0.1:$((BASE + 200 + i))" --turn-tls off --media-udp "127.0.0.1:$((BASE + 300 + i))" \
		--media-tcp "127.0.0.1:$((BASE + 400 + i))" \
		--public-ip 127.0.0.1 --rtmp off --rtsp off --srt off >"$tmp/$name.log" 2>&1 &
	pids+=($!)
done

# Wait (30 s at most) until every node lists all three.
admin=$("$tmp/parley" token --room '*' --grants admin --identity demo-admin)
for i in 0 1 2; do
	for try in $(seq 300); do
		n=$(curl -fsS -H "Authorization: Bearer $admin" "http://127.0.0.1:$((BASE + 100 + i))/api/status" 2>/dev/null |
			grep -o '"id":"n[123]"' | sort -u | wc -l) || n=0
		[ "$n" = 3 ] && break
		if [ "$try" = 300 ]; then
			echo "node n$((i + 1)) did not see the cluster; the logs:" >&2
			tail -n 20 "$tmp"/*.log >&2
			exit 1
		fi
		sleep 0.1
	done
done

echo
echo "NATS:  nats://127.0.0.1:$NATS_PORT (log $tmp/nats.log)"
for i in 0 1 2; do
	name=n$((i + 1))
	tok=$("$tmp/parley" token --room "$ROOM" --identity "guest-$name")
	echo "node $name: http://127.0.0.1:$((BASE + i))/   status: http://127.0.0.1:$((BASE + 100 + i))/status (admin token below)"
	echo "  join room $ROOM here: http://127.0.0.1:$((BASE + i))/r/$ROOM?token=$tok"
done
echo "admin token (for /status): $admin"
echo
echo "Each link is a member of room $ROOM on another node: open two in two browser windows."
echo "Ctrl-C stops everything."
# Until Ctrl-C, or until one of the processes ends.
wait -n "${pids[@]}"
echo "a process ended; stopping" >&2
