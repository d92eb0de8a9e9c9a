#!/usr/bin/env bash
# Runs every Parley test: installs what the tests need when it is missing
# (as root, from Debian), then vet, unit/integration/browser tests, and a
# short run of every fuzz target. `make test` calls this; so does CI.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg) # RTMP ingest and AAC->Opus tests
command -v npm >/dev/null 2>&1 || need+=(npm)       # TypeScript for the JSDoc type check
command -v iptables >/dev/null 2>&1 || need+=(iptables) # internal/netlab: NAT labs in namespaces
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "warning: missing ${need[*]}; run as root or install them (in CI, browser tests fail without chromium and RTMP/transcode tests without ffmpeg)" >&2
  fi
fi

# The browser app's JSDoc types: tsc --noEmit over jsconfig.json (pages and
# library) and jsconfig.lib.json (the library, stricter). TypeScript is a
# dev-only tool at a pinned version, kept in the user's cache, never shipped.
TS_VERSION=5.9.3
tools="${XDG_CACHE_HOME:-$HOME/.cache}/parley-tools"
tsc="$tools/node_modules/.bin/tsc"
if ! "$tsc" --version 2>/dev/null | grep -qx "Version $TS_VERSION"; then
  echo "== installing typescript@$TS_VERSION into $tools"
  if ! npm install --no-save --no-audit --no-fund --prefix "$tools" "typescript@$TS_VERSION" >/dev/null; then
    if [ -n "${CI:-}" ]; then
      echo "error: cannot install typescript@$TS_VERSION from npm" >&2
      exit 1
    fi
    echo "warning: cannot install typescript@$TS_VERSION from npm; skipping the type check" >&2
    tsc=""
  fi
fi
if [ -n "$tsc" ]; then
  echo "== tsc --noEmit (jsconfig.json, jsconfig.lib.json)"
  "$tsc" --noEmit -p jsconfig.json
  "$tsc" --noEmit -p jsconfig.lib.json
fi

echo "== go vet"
go vet ./...

echo "== go test"
# Browser tests (internal/e2e) run on their own afterwards so at most a few
# Chromium instances share the two cores with nothing else heavy.
pkgs=$(go list ./... | grep -v '/internal/e2e$')
go test -count=1 -timeout 20m $pkgs
# A failing browser test fails the run: there is no rerun. A test that
# passes only when run again is a flaky test to fix, not a pass.
go test -count=1 -timeout 30m ./internal/e2e/...

# An execution count, not a duration: with a -fuzztime duration, Go 1.26's
# fuzz coordinator can report its own shutdown as "context deadline
# exceeded" at the deadline on a busy machine (golang/go#75804, fixed in
# Go 1.27), which is no finding. A count has no deadline to race.
echo "== fuzz (${FUZZTIME:=30000x} each)"
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for fuzz in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "-- $fuzz ($pkg)"
    out=$(go test -run '^$' -fuzz "^${fuzz}\$" -fuzztime "$FUZZTIME" "$pkg" 2>&1) || { echo "$out"; exit 1; }
  done
done
echo "all tests passed"
