# Build and test targets. The binaries need cgo and libzmq (see
# scripts/install-deps).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
PREFIX  ?= /usr/local
DESTDIR ?=
GO      ?= go
LDFLAGS := -X main.version=$(VERSION)

.PHONY: build test race lint smoke clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/aggregator ./cmd/aggregator
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/downcase ./cmd/downcase

test:
	./scripts/test

race:
	$(GO) test -race ./...

smoke:
	$(GO) test -short ./...

lint:
	gofmt -l . | (! grep .)
	$(GO) vet ./...

clean:
	rm -rf bin
