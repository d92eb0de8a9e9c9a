#!/bin/sh
# Server CPU with one browser publisher (/b/<stream> in headless Chromium,
# fake camera) and N pion WHEP viewers (parley bench fanout -external), all
# on loopback. Usage: scripts/bench-broadcast.sh [viewers] [res]
set -eu
VIEWERS=${1:-100}
RES=${2:-720}
PORT=${PORT:-18480}
DIR=$(mktemp -d)
CHROME= SERVER=
trap 'kill $CHROME $SERVER 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DIR"' EXIT INT TERM
go build -o "$DIR/parley" ./cmd/parley
"$DIR/parley" serve --http 127.0.0.1:$PORT --turn off --media-udp 127.0.0.1:0 --media-tcp off --public-ip 127.0.0.1 --log-level warn &
SERVER=$!
sleep 1
${CHROMIUM:-chromium} --headless=new --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --use-fake-ui-for-media-stream --use-fake-device-for-media-stream --allow-loopback-in-peer-connection \
  --autoplay-policy=no-user-gesture-required --remote-debugging-port=0 --user-data-dir="$DIR/profile" \
  "http://127.0.0.1:$PORT/b/bench?autostart=1&res=$RES&fps=30" >"$DIR/chrome.log" 2>&1 &
CHROME=$!
for i in $(seq 1 30); do
  if curl -fs "http://127.0.0.1:$PORT/api/streams/bench" | grep -q '"live":true'; then break; fi
  sleep 1
done
curl -fs "http://127.0.0.1:$PORT/api/streams/bench"; echo
sleep 5 # the browser's bandwidth estimate ramps up to all three layers
"$DIR/parley" bench fanout --url "http://127.0.0.1:$PORT" --pid $SERVER --viewers "$VIEWERS" --external --stream bench --warmup 5s --duration 20s
