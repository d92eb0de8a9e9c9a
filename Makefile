# Parley: `make run` starts the server, `make test` runs every test.
.PHONY: run test build bench

run:
	go run ./cmd/parley

test:
	./scripts/test.sh

build:
	go build -o parley ./cmd/parley

bench:
	go test -run '^$$' -bench . -benchmem ./...
