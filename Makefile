# Parley: `make run` starts the server, `make test` runs every test,
# `make screenshots` retakes docs/screenshots (not part of `make test`).
.PHONY: run test build bench screenshots

run:
	go run ./cmd/parley

test:
	./scripts/test.sh

build:
	go build -o parley ./cmd/parley

bench:
	go test -run '^$$' -bench . -benchmem ./...

# The documentation's screenshots: the browser tests that take them, built
# with -tags screenshots (internal/e2e/shots_test.go), write docs/screenshots.
screenshots:
	go test -tags screenshots -count=1 -timeout 15m ./internal/e2e -run '^(TestScreenshots|TestShowScreenshots|TestBroadcast|TestGroupCall|TestScreenShare)$$'
