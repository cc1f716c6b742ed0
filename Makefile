# dt — build, test, benchmark. Tests that need root and kernel features run as root (CI is root).
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)
BIN := bin/dt

.PHONY: build test bench clean deps run docker

build:
	$(GO) build -o $(BIN) ./cmd/dt

# deps installs the Debian packages listed in .ci/apt-packages, Go if missing, and the
# Go modules (needs root).
deps:
	scripts/deps.sh

test: build
	DT_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -p 1 -timeout 75m ./...

bench: build
	DT_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./...

run: build
	./$(BIN) run etcd simple uniform leader

clean:
	rm -rf bin
