# dt — build, test, benchmark. Tests that need root and kernel features run as root (CI is root).
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)
BIN := bin/dt

.PHONY: build test lint bench clean deps run docker docker-build docker-test

build:
	$(GO) build -o $(BIN) ./cmd/dt

# deps installs the Debian packages listed in .ci/apt-packages, Go if missing, and the
# Go modules (needs root).
deps:
	scripts/deps.sh

test: build
	DT_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -p 1 -timeout 75m ./...

# lint runs gofmt (lists the files it would change), go vet and staticcheck, all three even
# when one fails. staticcheck is a tool dependency in go.mod (`go tool staticcheck`): make deps
# downloads it with the other modules, so lint needs no network.
GOFMT ?= $(shell $(GO) env GOROOT)/bin/gofmt

lint:
	@status=0; \
	files=$$(find . -path ./bin -prune -o -name '*.go' -print | xargs $(GOFMT) -l) || status=1; \
	if [ -n "$$files" ]; then echo "gofmt: not formatted (gofmt -w FILE):"; echo "$$files"; status=1; fi; \
	echo "$(GO) vet ./..."; $(GO) vet ./... || status=1; \
	echo "$(GO) tool staticcheck ./..."; $(GO) tool staticcheck ./... || status=1; \
	exit $$status

bench: build
	DT_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./...

run: build
	./$(BIN) run etcd simple uniform leader

clean:
	rm -rf bin

# docker builds an image with dt and the Debian packages in .ci/apt-packages and runs
# DOCKER_CMD in it, privileged (docs/DOCKER.md), with ./results mounted so run directories
# land on the host. No registry is reachable, so the Debian base image is made locally
# with debootstrap the first time (needs root and debootstrap). The dt binary is built
# here, static, and copied in: the image needs no Go toolchain. DOCKER_CMD=dt-smoke is a
# quick self-check (dt up simple, TCP via etcd, partition, heal, down).
DOCKER ?= docker
DOCKER_BASE ?= dt-base:bookworm
DOCKER_IMAGE ?= dt:dev
DOCKER_CMD ?= dt run etcd simple uniform leader
DOCKER_RUN_ARGS ?= -v $(CURDIR)/results:/root/results
DOCKER_BUILD_FLAGS ?= --network host
DOCKER_APT_EXCLUDE ?=
DOCKER_CTX := bin/docker-context

# docker-build: the base image if missing, then DOCKER_IMAGE; runs nothing.
docker-build:
	DOCKER=$(DOCKER) docker/base-image.sh $(DOCKER_BASE)
	rm -rf $(DOCKER_CTX) && mkdir -p $(DOCKER_CTX)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(DOCKER_CTX)/dt ./cmd/dt
	grep -v '^[[:space:]]*#' .ci/apt-packages | grep -vxF -e '' $(foreach p,$(DOCKER_APT_EXCLUDE),-e $(p)) >$(DOCKER_CTX)/apt-packages
	cp docker/smoke.sh $(DOCKER_CTX)/smoke.sh
	$(DOCKER) build $(DOCKER_BUILD_FLAGS) --build-arg BASE=$(DOCKER_BASE) -t $(DOCKER_IMAGE) -f Dockerfile $(DOCKER_CTX)

docker: docker-build
	DOCKER=$(DOCKER) DOCKER_RUN_ARGS='$(DOCKER_RUN_ARGS)' docker/run.sh $(DOCKER_IMAGE) $(DOCKER_CMD)

# docker-test builds DOCKER_TEST_IMAGE (without the packages only Go tests use, nor
# zookeeper and its JRE, so it stays small and leaves a full DOCKER_IMAGE alone), runs a short `dt run etcd simple uniform
# leader` in it with a fresh DOCKER_TEST_RESULTS mounted, and checks the run's summary.json
# on the host (docker/test.sh; needs jq).
DOCKER_TEST_IMAGE ?= dt:test
DOCKER_TEST_APT_EXCLUDE ?= chromium fonts-dejavu-core zookeeper
DOCKER_TEST_RESULTS ?= bin/docker-test-results
DOCKER_TEST_DURATION ?= 10

docker-test:
	$(MAKE) --no-print-directory docker-build DOCKER_IMAGE=$(DOCKER_TEST_IMAGE) DOCKER_APT_EXCLUDE='$(DOCKER_TEST_APT_EXCLUDE)'
	DOCKER=$(DOCKER) docker/test.sh $(DOCKER_TEST_IMAGE) $(CURDIR)/$(DOCKER_TEST_RESULTS) $(DOCKER_TEST_DURATION)
