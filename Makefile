# hookline — build, generate, test. Every tool the targets need is built from the Go module
# proxy into bin/ (git-ignored) on first use and reused afterwards.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
export GOFLAGS ?= -buildvcs=false

BIN            := $(CURDIR)/bin
CONTROLLER_GEN_VERSION := v0.23.0
GOLANGCI_VERSION       := v2.15.0
HELM_VERSION           := v3.22.0
CONTROLLER_GEN := $(BIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
GOLANGCI_LINT  := $(BIN)/golangci-lint-$(GOLANGCI_VERSION)
HELM           := $(BIN)/helm-$(HELM_VERSION)
HOOKLINE       := $(BIN)/hookline
# Where hack/build-control-plane.sh puts etcd, kube-apiserver and kube-controller-manager.
CONTROL_PLANE  := $(BIN)/k8s/current
GO_TEST_FLAGS  ?=

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ { printf "  %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

##@ Development

.PHONY: dev
dev: build control-plane ## Run the whole pipeline locally (embedded control plane when no cluster is configured).
	$(HOOKLINE) dev

.PHONY: build
build: ## Build bin/hookline.
	go build -o $(HOOKLINE) ./cmd/hookline

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

.PHONY: verify
verify: ## Fail when generated files or formatting are stale, or go vet complains.
	hack/verify.sh

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint.
	$(GOLANGCI_LINT) run ./...

##@ Testing

.PHONY: control-plane
control-plane: ## Build etcd, kube-apiserver and kube-controller-manager into bin/k8s (once).
	hack/build-control-plane.sh >/dev/null

.PHONY: test
test: verify control-plane helm ## Run every test: unit, integration on a real API server, end to end, the Helm chart.
	KUBEBUILDER_ASSETS=$(CONTROL_PLANE) go test $(GO_TEST_FLAGS) ./...

.PHONY: bench
bench: build control-plane ## Run the delivery benchmark (a few minutes) and print figures against a same-run baseline; BENCH_FLAGS="-h" lists its options.
	go run ./test/bench $(BENCH_FLAGS)

##@ Tools

$(CONTROLLER_GEN):
	GOBIN=$(BIN)/.tmp go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(BIN)/.tmp/controller-gen $@ && ln -sf $(notdir $@) $(BIN)/controller-gen

$(GOLANGCI_LINT):
	GOBIN=$(BIN)/.tmp go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION)
	mv $(BIN)/.tmp/golangci-lint $@ && ln -sf $(notdir $@) $(BIN)/golangci-lint

.PHONY: helm
helm: $(HELM) ## Build bin/helm (the chart's tests run it).

$(HELM):
	GOBIN=$(BIN)/.tmp go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(BIN)/.tmp/helm $@ && ln -sf $(notdir $@) $(BIN)/helm
