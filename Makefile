# hookline — build, generate, test. Every tool the targets need is built from the Go module
# proxy into bin/ (git-ignored) on first use and reused afterwards.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
export GOFLAGS ?= -buildvcs=false

BIN            := $(CURDIR)/bin
CONTROLLER_GEN_VERSION := v0.23.0
GOLANGCI_VERSION       := v2.15.0
ACTIONLINT_VERSION     := v1.7.12
HELM_VERSION           := v3.22.0
CONTROLLER_GEN := $(BIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
GOLANGCI_LINT  := $(BIN)/golangci-lint-$(GOLANGCI_VERSION)
HELM           := $(BIN)/helm-$(HELM_VERSION)
ACTIONLINT     := $(BIN)/actionlint-$(ACTIONLINT_VERSION)
# The nats-server of go.mod, as processes for test/cluster's three-node cluster.
NATS_SERVER_VERSION := $(shell go list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2 2>/dev/null)
NATS_SERVER    := $(BIN)/nats-server-$(NATS_SERVER_VERSION)
HOOKLINE       := $(BIN)/hookline
# Headless Chromium for the dashboard's browser tests (internal/ui), from Debian's packages;
# CHROMIUM=/path/to/chrome uses another build of Chromium or Chrome.
CHROMIUM       ?= /usr/bin/chromium
export HOOKLINE_CHROMIUM := $(CHROMIUM)
# The release the chart and config/default install by default; the image's tag.
APP_VERSION    := $(shell sed -n 's/^appVersion: "\(.*\)"/\1/p' charts/hookline/Chart.yaml)
# Stamped into the binary (`hookline version`) and the image's labels.
VERSION        ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT         ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS        := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# The image `make image` tags, `make deploy` and `make build-installer` install. Pin a digest
# with IMG=ghcr.io/hookline/hookline@sha256:<digest>.
DEFAULT_IMG    := ghcr.io/hookline/hookline:$(APP_VERSION)
IMG            ?= $(DEFAULT_IMG)
IMAGE_ARCHIVE  ?= $(BIN)/hookline-image.tar
INSTALLER      ?= dist/install.yaml
KUBECTL        ?= $(shell command -v kubectl 2>/dev/null || echo $(CONTROL_PLANE)/kubectl)
# Where hack/build-control-plane.sh puts etcd, kube-apiserver and kube-controller-manager.
CONTROL_PLANE  := $(BIN)/k8s/current
GO_TEST_FLAGS  ?=
# Packages whose tests run concurrent code (the queue, the engine, the HTTP surface,
# status, the registry, signing, delivery): `make test` runs them with -race.
RACE_PACKAGES  := ./internal/queue ./internal/engine ./internal/server ./internal/status \
	./internal/registry ./internal/signing ./internal/delivery

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ { printf "  %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

##@ Development

.PHONY: dev
dev: control-plane ## Run the whole pipeline locally (embedded control plane when no cluster is configured).
	@# Only development builds link the local control plane (build tag dev).
	go build -tags dev -ldflags "$(LDFLAGS)" -o $(BIN)/hookline-dev ./cmd/hookline
	$(BIN)/hookline-dev dev

.PHONY: build
build: ## Build bin/hookline, as the image ships it (static, stamped).
	CGO_ENABLED=0 go build -trimpath -ldflags "$(LDFLAGS)" -o $(HOOKLINE) ./cmd/hookline

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deep-copy code.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC from the markers (and their copies in the Helm chart).
	$(CONTROLLER_GEN) crd rbac:roleName=hookline-operator paths=./api/... paths=./controllers/... \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	@# The Helm chart installs the same CRDs and operator rules: copies, checked by verify.
	rm -f charts/hookline/crds/*.yaml
	cp config/crd/bases/*.yaml charts/hookline/crds/
	cp config/rbac/role.yaml charts/hookline/files/role.yaml
	@# And the observability bundle's rules and dashboard (checked by test/monitoring).
	cp config/monitoring/prometheusrule.yaml charts/hookline/files/monitoring/prometheusrule.yaml
	cp config/monitoring/dashboards/hookline.json charts/hookline/files/monitoring/hookline.json

.PHONY: verify
verify: ## Fail when generated files or formatting are stale, or go vet complains.
	hack/verify.sh

.PHONY: lint
lint: $(GOLANGCI_LINT) $(ACTIONLINT) ## Run golangci-lint, and actionlint on the GitHub workflows.
	$(GOLANGCI_LINT) run ./...
	$(ACTIONLINT) -shellcheck= .github/workflows/*.yaml

##@ Release

.PHONY: image
image: ## Build the image with no container engine into bin/hookline-image.tar (docker/podman load, ctr images import), tagged IMG.
	go run ./hack/image -out $(IMAGE_ARCHIVE) -tag $(IMG) -version $(VERSION) -commit $(COMMIT)
	@ls -l $(IMAGE_ARCHIVE)

.PHONY: build-installer
build-installer: ## Write dist/install.yaml (CRDs, RBAC, operator) installing IMG (pin a digest with IMG=repo@sha256:...).
	mkdir -p $(dir $(INSTALLER))
	$(KUBECTL) kustomize config/default | sed 's|$(DEFAULT_IMG)|$(IMG)|g' > $(INSTALLER)
	@echo "$(INSTALLER) installs $(IMG)"

.PHONY: deploy
deploy: ## Install into the cluster of your kubeconfig, with IMG (kubectl apply --server-side -k config/default).
	$(KUBECTL) kustomize config/default | sed 's|$(DEFAULT_IMG)|$(IMG)|g' | $(KUBECTL) apply --server-side -f -

##@ Testing

.PHONY: control-plane
control-plane: ## Build etcd, kube-apiserver and kube-controller-manager into bin/k8s (once).
	hack/build-control-plane.sh >/dev/null

.PHONY: node
node: ## Build kubelet, kube-proxy, kube-scheduler and containerd into bin/node, install runc, CNI plugins, iptables (once).
	hack/build-node.sh >/dev/null

.PHONY: flux
flux: ## Build source-, kustomize- and helm-controller into bin/flux-<versions> for test/gitops (once; ~10 min on 2 idle cores, 62 min measured with an empty Go build cache on 2 loaded cores).
	hack/build-flux.sh >/dev/null

.PHONY: test
test: verify control-plane node helm nats-server flux chromium ## Run every test: unit, integration on a real API server, end to end, the Helm chart, the install on a real node, hookline under Flux, the dashboard in headless Chromium, three dispatchers on a three-node NATS cluster.
	@# The packages that run goroutines against each other run under the race detector;
	@# the rest run plain, so nothing runs twice.
	KUBEBUILDER_ASSETS=$(CONTROL_PLANE) go test -race -timeout 30m $(GO_TEST_FLAGS) $(RACE_PACKAGES)
	KUBEBUILDER_ASSETS=$(CONTROL_PLANE) go test -timeout 30m $(GO_TEST_FLAGS) $$(go list ./... | grep -v -x -F $(addprefix -e ,$(RACE_PACKAGES:./%=github.com/hookline/hookline/%)))
	$(MAKE) test-allocs
	$(MAKE) test-gitops
	$(MAKE) test-cluster-processes

.PHONY: test-ui
test-ui: control-plane chromium ## Run the dashboard's tests (hookline ui) in headless Chromium against a real API server and dispatcher.
	KUBEBUILDER_ASSETS=$(CONTROL_PLANE) go test -count=1 -timeout 10m $(GO_TEST_FLAGS) ./internal/ui ./cmd/hookline

.PHONY: test-allocs
test-allocs: ## Allocation and memory bounds of the hot path; they need a build without the race detector.
	go test -count=1 $(GO_TEST_FLAGS) -run '^TestHotPathAllocations$$' ./internal/server ./internal/queue ./internal/delivery
	go test -count=1 -timeout 15m $(GO_TEST_FLAGS) -run '^(TestDeadEndpointBacklogStaysOnDisk|TestMaxPendingWaitsForFastEndpoints|TestMaxPendingWaitsForFairShare|TestMaxPendingWaitsThroughLatencyNoise|TestMaxPendingHoldsForMuchSlowerEndpoint)$$' ./internal/engine

.PHONY: test-gitops
test-gitops: control-plane helm flux ## Run test/gitops: hookline under the real source-, kustomize- and helm-controller (about 2 minutes once bin/flux-current is built).
	KUBEBUILDER_ASSETS=$(CONTROL_PLANE) go test -tags gitops -timeout 30m $(GO_TEST_FLAGS) ./test/gitops

.PHONY: test-cluster-processes
test-cluster-processes: control-plane nats-server ## Run test/cluster's process scenarios (part of make test; 2 to 7 minutes on 2 cores): three nats-servers, the operator and three external-mode dispatchers on loopback, through NATS node and dispatcher kills, a rolling restart and a paused node. HOOKLINE_CLUSTER_LOGS=<dir> keeps their logs and stores.
	@# -count=1: it runs processes built from the tree, which the test cache does not see.
	KUBEBUILDER_ASSETS=$(CONTROL_PLANE) go test -count=1 -tags clusterprocs -run 'TestCluster$$' -timeout 30m $(GO_TEST_FLAGS) ./test/cluster

.PHONY: bench
bench: build control-plane ## Run the delivery benchmark (about 7 minutes) and print figures against a same-run baseline; BENCH_FLAGS="-h" lists its options.
	go run ./test/bench $(BENCH_FLAGS)
	@# Features on the hot path, each against itself off in the same run: tracing on/off,
	@# ordering per key against unordered (ratios of delivered/s and CPU per event).
	go test -run '^$$' -bench '^(BenchmarkTracing|BenchmarkOrderingPerKey)$$' -benchtime 2000x ./internal/engine/

##@ Tools

$(CONTROLLER_GEN):
	GOBIN=$(BIN)/.tmp go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(BIN)/.tmp/controller-gen $@ && ln -sf $(notdir $@) $(BIN)/controller-gen

$(ACTIONLINT):
	GOBIN=$(BIN)/.tmp go install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)
	mv $(BIN)/.tmp/actionlint $@ && ln -sf $(notdir $@) $(BIN)/actionlint

$(GOLANGCI_LINT):
	GOBIN=$(BIN)/.tmp go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)
	mv $(BIN)/.tmp/golangci-lint $@ && ln -sf $(notdir $@) $(BIN)/golangci-lint

.PHONY: chromium
chromium: $(CHROMIUM) ## Install Chromium from Debian's packages when missing (the dashboard's browser tests drive it headless).

$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "$(CHROMIUM) is missing and there is no apt-get: install Chromium so that $(CHROMIUM) exists"; exit 1; }
	apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium

.PHONY: nats-server
nats-server: $(NATS_SERVER) ## Build bin/nats-server-<version of go.mod> (test/cluster runs three).

$(NATS_SERVER):
	go build -o $@ github.com/nats-io/nats-server/v2

.PHONY: helm
helm: $(HELM) ## Build bin/helm (the chart's tests run it).

$(HELM):
	GOBIN=$(BIN)/.tmp go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(BIN)/.tmp/helm $@ && ln -sf $(notdir $@) $(BIN)/helm
