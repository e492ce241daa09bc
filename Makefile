# ModuleController — run `make` or `make help` for the targets.

SHELL         := bash
.SHELLFLAGS   := -eu -o pipefail -c
.DEFAULT_GOAL := help

MODULE        := github.com/moduleops/module-controller
GO            ?= go
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
COMMIT        ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS       := -s -w -X $(MODULE)/pkg/version.Version=$(VERSION) -X $(MODULE)/pkg/version.Commit=$(COMMIT)

BIN_DIR       := bin
CACHE_DIR     := .cache
CONTROLPLANE_BIN_DIR ?= $(CURDIR)/$(CACHE_DIR)/controlplane/bin
export CONTROLPLANE_BIN_DIR
KUBECTL       := $(CONTROLPLANE_BIN_DIR)/kubectl
CLUSTER_DIR   := $(CURDIR)/$(CACHE_DIR)/cluster
CLUSTER_START_TIMEOUT ?= 180
TOOLS_BIN_DIR ?= $(CURDIR)/$(CACHE_DIR)/tools/bin
GOLANGCI_LINT := $(TOOLS_BIN_DIR)/golangci-lint

GO_VERSION    := $(shell awk '$$1 == "go" {print $$2; exit}' go.mod)
IMAGE         ?= module-controller:$(VERSION)
IMAGE_BUILDER ?=

E2E_TIMEOUT   ?= 40m
E2E_FLAGS     ?=
FUZZTIME      ?= 20s
FUZZ_FLAGS    ?=
CHAOS_TIMEOUT ?= 90m
CHAOS_FLAGS   ?=
GO_FILES       = $(shell find . -name '*.go' -not -path './.cache/*' -not -path './bin/*' -not -path './_output/*')

##@ General

## help: show this help
.PHONY: help
help:
	@echo "Usage: make <target>   (default: help)"
	@awk '/^##@ / {sub(/^##@ /, ""); printf "\n%s\n", $$0} /^## [a-z0-9-]+: / {sub(/^## /, ""); i = index($$0, ": "); printf "  %-14s %s\n", substr($$0, 1, i - 1), substr($$0, i + 2)}' $(MAKEFILE_LIST)

##@ Build

## build: build bin/module-controller and bin/base-sim (static, version stamped)
.PHONY: build
build:
	CGO_ENABLED=0 $(GO) build -buildvcs=false -trimpath -ldflags "$(LDFLAGS)" -o $(BIN_DIR)/module-controller ./cmd/module-controller
	CGO_ENABLED=0 $(GO) build -buildvcs=false -trimpath -ldflags "$(LDFLAGS)" -o $(BIN_DIR)/base-sim ./cmd/base-sim

## controlplane: build etcd, kube-apiserver, kube-scheduler, kube-controller-manager, kubectl into .cache (once; ~10 min cold)
.PHONY: controlplane
controlplane:
	hack/build-controlplane.sh "$(CONTROLPLANE_BIN_DIR)"

## image: build the container image module-controller:<version> with docker, podman or buildah (IMAGE_BUILDER=... to choose)
.PHONY: image
image:
	@builder="$(IMAGE_BUILDER)"; \
	if [[ -z "$$builder" ]]; then for b in docker podman buildah; do if command -v "$$b" >/dev/null; then builder="$$b"; break; fi; done; fi; \
	if [[ -z "$$builder" ]]; then \
		echo "make image: no container builder here (looked for docker, podman, buildah)." >&2; \
		echo "Build on a machine that has one, from this directory:" >&2; \
		echo "  docker build --build-arg GO_VERSION=$(GO_VERSION) --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) ." >&2; \
		exit 1; \
	fi; \
	if [[ "$$builder" == buildah ]]; then set -- buildah bud; else set -- "$$builder" build; fi; \
	set -x; "$$@" --build-arg GO_VERSION=$(GO_VERSION) --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .

##@ Run

## quickstart: local cluster + controller + 3 simulated bases + a sample module, until Ctrl-C (first run builds ~10 min)
.PHONY: quickstart
quickstart: controlplane build
	@$(GO) build -buildvcs=false -o $(CACHE_DIR)/quickstart/quickstart ./e2e/cmd/quickstart
	@$(CACHE_DIR)/quickstart/quickstart $(QUICKSTART_FLAGS)

##@ Test

## test: unit tests, then e2e tests (needs `apt-get install -y mosquitto`)
.PHONY: test
test:
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory e2e

## unit: unit tests with the race detector (offline, seconds)
.PHONY: unit
unit:
	$(GO) test -race ./...

## fuzz: run every Go fuzz target for FUZZTIME each (default 20s); a failing input lands in its package's testdata/fuzz to commit
.PHONY: fuzz
fuzz:
	@GO=$(GO) FUZZ_FLAGS="$(FUZZ_FLAGS)" hack/fuzz.sh $(FUZZTIME)

## e2e: e2e tests against a real control plane and brokers (builds what is missing)
.PHONY: e2e
e2e: controlplane build
	$(GO) test -tags e2e -count=1 -timeout $(E2E_TIMEOUT) -v $(E2E_FLAGS) ./e2e/...

## bench: N simulated bases on the local control plane vs an ideal provider; writes bench/results/latest.{md,json} (BENCH_FLAGS="-n 300 -broker mosquitto")
.PHONY: bench
bench: controlplane build
	@$(GO) build -buildvcs=false -o $(CACHE_DIR)/bench/bench ./e2e/cmd/bench
	@$(CACHE_DIR)/bench/bench $(BENCH_FLAGS)

## chaos: the fault-injection suite (e2e/chaos) on both brokers; writes e2e/chaos/results/latest.md (CHAOS_FLAGS="-chaos.broker-outage=40s -chaos.brokers=embedded")
.PHONY: chaos
chaos: controlplane build
	$(GO) test -tags e2e -count=1 -timeout $(CHAOS_TIMEOUT) -v -run '^TestChaos$$' ./e2e/chaos -args -chaos.full $(CHAOS_FLAGS)

## microbench: the Go micro-benchmarks (go test -bench)
.PHONY: microbench
microbench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

##@ Checks

## lint: gofmt, go vet and golangci-lint (.golangci.yml, version pinned in hack/tools), tests and e2e included
.PHONY: lint
lint: tools
	@out="$$(gofmt -l $(GO_FILES))"; if [[ -n "$$out" ]]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/...
	$(GOLANGCI_LINT) run ./...
	cd hack/dockerlint && $(GOLANGCI_LINT) run --config ../../.golangci.yml ./...

## tools: build the pinned golangci-lint into .cache/tools/bin (once; ~2 min cold)
.PHONY: tools
tools:
	hack/build-tools.sh "$(TOOLS_BIN_DIR)"

## verify: lint plus the import-direction rules (docs/architecture.md) and the Dockerfile lint
.PHONY: verify
verify: lint dockerlint
	hack/verify-imports.sh

## dockerlint: BuildKit's Dockerfile checks and the image rules, offline (hack/dockerlint)
.PHONY: dockerlint
dockerlint:
	cd hack/dockerlint && $(GO) test -count=1 . && $(GO) run . ../../Dockerfile ../../go.mod

## docs: regenerate the settings tables in docs/configuration.md from the flags
.PHONY: docs
docs:
	$(GO) test -count=1 -run '^TestConfigurationDoc$$' ./pkg/config ./cmd/base-sim -args -update

##@ Local cluster

## cluster-up: start a local control plane in the background; prints its kubeconfig
.PHONY: cluster-up
cluster-up: controlplane
	@mkdir -p "$(CLUSTER_DIR)"
	@if [[ -f "$(CLUSTER_DIR)/pid" ]] && kill -0 "$$(cat "$(CLUSTER_DIR)/pid")" 2>/dev/null; then \
		echo "cluster already running (pid $$(cat "$(CLUSTER_DIR)/pid"))"; \
	else \
		rm -f "$(CLUSTER_DIR)/kubeconfig" "$(CLUSTER_DIR)/pid"; \
		$(GO) build -buildvcs=false -o "$(CLUSTER_DIR)/localcluster" ./e2e/cmd/localcluster; \
		nohup "$(CLUSTER_DIR)/localcluster" --dir "$(CLUSTER_DIR)/data" --kubeconfig-out "$(CLUSTER_DIR)/kubeconfig" \
			>"$(CLUSTER_DIR)/localcluster.log" 2>&1 </dev/null & \
		echo $$! >"$(CLUSTER_DIR)/pid"; \
		echo "starting control plane (pid $$(cat "$(CLUSTER_DIR)/pid"), log $(CLUSTER_DIR)/localcluster.log)"; \
		for _ in $$(seq $(CLUSTER_START_TIMEOUT)); do \
			[[ -f "$(CLUSTER_DIR)/kubeconfig" ]] && break; \
			if ! kill -0 "$$(cat "$(CLUSTER_DIR)/pid")" 2>/dev/null; then \
				cat "$(CLUSTER_DIR)/localcluster.log"; rm -f "$(CLUSTER_DIR)/pid"; echo "control plane failed to start"; exit 1; \
			fi; \
			sleep 1; \
		done; \
		if [[ ! -f "$(CLUSTER_DIR)/kubeconfig" ]]; then \
			$(MAKE) --no-print-directory cluster-down; echo "control plane not ready in $(CLUSTER_START_TIMEOUT)s"; exit 1; \
		fi; \
		grep -E "ready in|pid" "$(CLUSTER_DIR)/localcluster.log"; \
	fi
	@echo
	@echo "kubeconfig: $(CLUSTER_DIR)/kubeconfig"
	@echo "try:        $(KUBECTL) --kubeconfig $(CLUSTER_DIR)/kubeconfig get ns"
	@echo "stop with:  make cluster-down"

## cluster-down: stop the local control plane and every process it started
.PHONY: cluster-down
cluster-down:
	@if [[ -f "$(CLUSTER_DIR)/pid" ]]; then \
		pid="$$(cat "$(CLUSTER_DIR)/pid")"; \
		children="$$(grep -oE 'pid [0-9]+' "$(CLUSTER_DIR)/localcluster.log" 2>/dev/null | cut -d' ' -f2 || true)"; \
		if kill -TERM "$$pid" 2>/dev/null; then \
			for _ in $$(seq 60); do kill -0 "$$pid" 2>/dev/null || break; sleep 0.5; done; \
			if kill -0 "$$pid" 2>/dev/null; then echo "localcluster did not stop; killing it"; kill -KILL "$$pid"; fi; \
		fi; \
		for c in $$children; do \
			for _ in $$(seq 20); do kill -0 "$$c" 2>/dev/null || break; sleep 0.5; done; \
			if kill -0 "$$c" 2>/dev/null; then echo "killing leftover process group $$c"; kill -KILL -- "-$$c" 2>/dev/null || true; fi; \
		done; \
		rm -f "$(CLUSTER_DIR)/pid" "$(CLUSTER_DIR)/kubeconfig"; \
		echo "control plane stopped"; \
	else \
		echo "no local cluster running"; \
	fi

##@ Housekeeping

## clean: remove build outputs and the local cluster's files (keeps the control-plane cache)
.PHONY: clean
clean: cluster-down
	rm -rf $(BIN_DIR) _output "$(CLUSTER_DIR)" "$(CACHE_DIR)/quickstart"
	@echo "keeping $(CONTROLPLANE_BIN_DIR) (a cold rebuild takes ~10 min); remove it by hand if you must"
