# twilio-voice-operator: see README.md. `make help` lists the targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

ROOT := $(abspath .)
BIN ?= $(ROOT)/bin
export PATH := $(BIN):$(PATH)

# Pinned tools, built from the Go module proxy into bin/.
CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
HELM_VERSION ?= v3.22.0
# promtool of Prometheus 3.16.0 (the Go module github.com/prometheus/prometheus
# numbers it v0.316.0): `promtool test rules` for the chart's alerts.
PROMTOOL_VERSION ?= v0.316.0
KUBE_VERSION ?= 1.37.2
ETCD_VERSION ?= 3.6.8

CONTROLLER_GEN ?= $(BIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
GOLANGCI_LINT ?= $(BIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
HELM ?= $(BIN)/helm-$(HELM_VERSION)
PROMTOOL ?= $(BIN)/promtool-$(PROMTOOL_VERSION)
ENVTEST_ASSETS ?= $(BIN)/k8s/$(KUBE_VERSION)

GO_TEST_FLAGS ?= -race -count=1
TEST_TIMEOUT ?= 30m

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC from markers (and the chart's copies).
	$(CONTROLLER_GEN) crd rbac:roleName=manager-role paths="./api/..." paths="./controllers/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	$(MAKE) --no-print-directory chart-crds chart-rbac

CHART := charts/twilio-voice-operator

.PHONY: chart-crds
chart-crds: ## Copy the generated CRDs into the Helm chart (byte for byte).
	rm -f $(CHART)/crds/*.yaml
	cp config/crd/bases/*.yaml $(CHART)/crds/

.PHONY: chart-rbac
chart-rbac: ## Copy the generated manager ClusterRole into the Helm chart.
	cp config/rbac/role.yaml $(CHART)/files/manager-role.yaml

.PHONY: fmt
fmt: ## go fmt.
	go fmt ./...

.PHONY: vet
vet: ## go vet.
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint.
	$(GOLANGCI_LINT) run ./...

.PHONY: envtest
envtest: ## Build kube-apiserver, etcd and kubectl for tests and the demo into bin/k8s/ (a no-op when they are current).
	@KUBE_VERSION=$(KUBE_VERSION) ETCD_VERSION=$(ETCD_VERSION) hack/build-envtest.sh $(ENVTEST_ASSETS) >/dev/null

.PHONY: test
test: generate manifests envtest $(HELM) $(PROMTOOL) ## Run every test (unit, envtest suites, emulator, manifests) with the race detector, then the fuzz targets briefly.
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) KUBECTL=$(ENVTEST_ASSETS)/kubectl HELM=$(HELM) PROMTOOL=$(PROMTOOL) go test $(GO_TEST_FLAGS) -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) --no-print-directory fuzz

FUZZ_TIME ?= 10s
.PHONY: fuzz
fuzz: ## Run each webhook server fuzz target (form parser, signature check and its agreement with twilio-go, Media Streams messages) for FUZZ_TIME (no cluster needed).
	go test -run='^$$' -fuzz='^FuzzReadSignedForm$$' -fuzztime=$(FUZZ_TIME) ./webhookserver/
	go test -run='^$$' -fuzz='^FuzzSignatureCheck$$' -fuzztime=$(FUZZ_TIME) ./webhookserver/
	go test -run='^$$' -fuzz='^FuzzStreamMessages$$' -fuzztime=$(FUZZ_TIME) ./webhookserver/
	go test -run='^$$' -fuzz='^FuzzSignatureCheckerMatchesRequestValidator$$' -fuzztime=$(FUZZ_TIME) ./webhookserver/

.PHONY: bench
bench: envtest ## Run the benchmarks: operator convergence, webhook answers, media bridge (README, Performance).
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) go run ./hack/bench/converge
	$(MAKE) bench-webhook bench-bridge

.PHONY: bench-webhook
bench-webhook: envtest ## The voice webhook: the webhookserver binary against a bare handler, under wrk (README, Webhook answers).
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) go run ./hack/bench/webhook -connections 32 -duration 10s

.PHONY: bench-bridge
bench-bridge: envtest ## The media bridge: the webhookserver binary against a minimal relay (README, Media bridge).
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) go run ./hack/bench/bridge -calls 200 -duration 10s

DURABILITY_NUMBERS ?= 500
DURABILITY_SEEDS ?= 1,2,3,4
.PHONY: bench-durability
bench-durability: envtest ## The durability fault test at a larger size (DURABILITY_NUMBERS per seed, DURABILITY_SEEDS); make test runs 200 × 2.
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) DURABILITY_NUMBERS=$(DURABILITY_NUMBERS) DURABILITY_SEEDS=$(DURABILITY_SEEDS) \
		go test -count=1 -timeout 60m -run TestNoOriginalLostUnderFaults -v ./test/durability/ 2>&1 | grep -E '^(\s+durability_test.go|---|ok|FAIL|PASS)'

.PHONY: demo
demo: envtest ## Run the whole system locally (control plane, emulator, both binaries, a simulated call). DEMO_ARGS=--stay keeps it up.
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) KUBECTL=$(ENVTEST_ASSETS)/kubectl go run ./hack/demo --bin=$(BIN) $(DEMO_ARGS)

.PHONY: verify
verify: generate manifests fmt ## Regenerate everything and fail if the tree changed.
	@if [ -n "$$(git status --porcelain)" ]; then \
		echo "The tree is dirty after regeneration; run 'make generate manifests fmt' and commit:"; \
		git status --porcelain; git --no-pager diff --stat; exit 1; fi

##@ Build

.PHONY: build
build: generate ## Build the binaries into bin/.
	go build -o $(BIN)/ ./cmd/...

IMAGE_TAG ?= $(shell sed -n 's/^appVersion: "\(.*\)"/\1/p' charts/twilio-voice-operator/Chart.yaml)
IMAGE_REGISTRY ?= ghcr.io/loquent
PLATFORMS ?= linux/amd64,linux/arm64

.PHONY: images
images: ## Build both container images as OCI layouts in bin/images/ (no container engine needed).
	go run ./hack/image --out $(BIN)/images --tag $(IMAGE_TAG) --platforms $(PLATFORMS)

.PHONY: images-push
images-push: ## Build both images and push them to $(IMAGE_REGISTRY) (credentials from ~/.docker/config.json).
	go run ./hack/image --out $(BIN)/images --tag $(IMAGE_TAG) --platforms $(PLATFORMS) --push $(IMAGE_REGISTRY)

.PHONY: run
run: manifests generate ## Run the manager against the current kubeconfig (PUBLIC_URL must be set).
	go run ./cmd/manager --public-url=$(PUBLIC_URL)

##@ Tools

$(CONTROLLER_GEN):
	GOBIN=$(BIN)/tmp-cg go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(BIN)/tmp-cg/controller-gen $@ && rm -rf $(BIN)/tmp-cg

$(GOLANGCI_LINT):
	GOBIN=$(BIN)/tmp-gl go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(BIN)/tmp-gl/golangci-lint $@ && rm -rf $(BIN)/tmp-gl

.PHONY: helm
helm: $(HELM) ## Build helm into bin/ (a few minutes the first time, reused after).
# The -X flags are those of helm's own release build: without them `helm
# version` is empty and `helm template` assumes Kubernetes 1.20.
HELM_LDFLAGS := -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	$(foreach p,pkg/chartutil pkg/lint/rules,-X helm.sh/helm/v3/$(p).k8sVersionMajor=$(word 1,$(subst ., ,$(KUBE_VERSION))) \
		-X helm.sh/helm/v3/$(p).k8sVersionMinor=$(word 2,$(subst ., ,$(KUBE_VERSION))))
$(HELM):
	GOBIN=$(BIN)/tmp-helm go install -ldflags '$(HELM_LDFLAGS)' helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(BIN)/tmp-helm/helm $@ && rm -rf $(BIN)/tmp-helm

.PHONY: promtool
promtool: $(PROMTOOL) ## Build promtool into bin/ for the alert rule tests (about 10 minutes on 2 cores the first time, reused after).
$(PROMTOOL):
	GOBIN=$(BIN)/tmp-promtool go install -ldflags '-X github.com/prometheus/common/version.Version=$(PROMTOOL_VERSION)' \
		github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)
	mv $(BIN)/tmp-promtool/promtool $@ && rm -rf $(BIN)/tmp-promtool
