# workcell: `make run` to try it, `make test` to check it.
GO      ?= go
TAGS    := seccomp
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/workcell/workcell/daemon.Version=$(VERSION)
STATIC  := -tags "netgo osusergo $(TAGS)" -ldflags "$(LDFLAGS) -s -w -extldflags -static"
export CGO_ENABLED := 1

.PHONY: all build run test test-unit test-vm bench bench-vm arm64 clean deps

all: build

build:
	$(GO) build -tags "$(TAGS)" -ldflags "$(LDFLAGS)" -o bin/workcelld ./cmd/workcelld
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/workcell ./cmd/workcell
	$(GO) build -o bin/mkbundle ./hack/mkbundle

deps:
	hack/install-deps
	hack/vm-deps
	hack/aosp-deps

run: build
	hack/run.sh

# Unit tests, integration tests as root with real containers, and the
# real-kernel suite under qemu (binder driver, cgroup v2).
test: deps build
	$(GO) vet -tags "$(TAGS)" ./...
	GOOS=darwin $(GO) vet ./api/... ./cmd/workcell/...
	integration/vm/gki/build.sh >/dev/null  # the GKI-shaped guest kernel, once (cached): not inside go test's timeout
	$(GO) test -tags "$(TAGS)" -count=1 -timeout 20m -p 1 ./...

# Boots Debian's kernel under qemu (TCG): binder driver and cgroup v2 tests, as root.
test-vm:
	hack/vm-deps
	hack/aosp-deps
	integration/vm/gki/build.sh >/dev/null
	$(GO) test -count=1 -timeout 15m -v ./integration/vm/

test-unit:
	$(GO) test -tags "$(TAGS)" -count=1 -short ./...

# One table, every row beside its peer measured in the same run (the
# binder rows boot the qemu guest: hack/vm-deps).
bench: build
	hack/vm-deps
	$(GO) build -tags "$(TAGS)" -o bin/workcell-bench ./integration/bench
	bin/workcell-bench

# Only the binder rows, measured in the VM.
bench-vm: build
	hack/vm-deps
	$(GO) build -tags "$(TAGS)" -o bin/workcell-bench ./integration/bench
	bin/workcell-bench -rows binder

# Static linux/arm64 binaries (with seccomp), cross-compiled here.
arm64:
	hack/arm64-deps
	CC=aarch64-linux-gnu-gcc GOARCH=arm64 PKG_CONFIG_PATH=/usr/lib/aarch64-linux-gnu/pkgconfig \
		$(GO) build $(STATIC) -o bin/arm64/workcelld ./cmd/workcelld
	GOARCH=arm64 CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS) -s -w" -o bin/arm64/workcell ./cmd/workcell
	file bin/arm64/workcelld bin/arm64/workcell 2>/dev/null || ls -l bin/arm64

clean:
	rm -rf bin
