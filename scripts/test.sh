#!/usr/bin/env bash
# Runs every Parley test: installs what the tests need when it is missing
# (as root, from Debian), then vet, unit/integration/browser tests, and a
# short run of every fuzz target. `make test` calls this; so does CI.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
command -v ffmpeg >/dev/null 2>&1 || need+=(ffmpeg) # RTMP ingest and AAC->Opus tests
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
