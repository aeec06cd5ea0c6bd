# gadgetpm — build, test and code generation.
#
#   make run        start the embedded default (local control plane + operator)
#   make test       everything CI runs
#   make generate   regenerate deepcopy code and CRD YAML
#   make help       list every target

SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

GO ?= go
# Built tools are cached outside the checkout (internal/toolcache), so a
# fresh clone on a machine that built them before rebuilds nothing.
XDG_CACHE_HOME ?= $(HOME)/.cache
GADGETPM_BIN ?= $(XDG_CACHE_HOME)/gadgetpm
BIN_DIR := $(GADGETPM_BIN)
# controller-gen is a go.mod tool: its version is the one go.mod pins.
CONTROLLER_GEN_VERSION := $(shell $(GO) list -m -f '{{.Version}}' sigs.k8s.io/controller-tools 2>/dev/null || echo unknown)
CONTROLLER_GEN := $(BIN_DIR)/controller-gen-$(CONTROLLER_GEN_VERSION)-race
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/gadgetpm/gadgetpm/internal/version.version=$(VERSION) \
           -X github.com/gadgetpm/gadgetpm/internal/version.commit=$(COMMIT)
# The race-enabled build every test-time tool shares (go test, controller-gen,
# the helm CLI, the gadgetpm binaries tests build): compiled without DWARF
# (a fifth less compile CPU) and linked without it or a symbol table
# (-ldflags=-s, which implies -w: a third faster links); stack traces and
# race reports use the runtime's line tables, not either.
RACE_FLAGS := -race -gcflags=all=-dwarf=false
GO_TEST_FLAGS ?= $(RACE_FLAGS) -vet=all -timeout 30m -ldflags=-s
# Packages whose tests run longest start first, so that they do not run
# alone at the end while the other core idles; go test keeps this order
# and lists every package once.
TEST_FIRST := ./pkg/trace/ ./pkg/coordinator/ ./cmd/gadgetpm/ ./pkg/nelm/ ./packages/chartrepo/ ./packages/fetch/ ./pkg/trace/output/

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: build
build: ## build bin/gadgetpm and bin/gadgetpm-node (the node role alone)
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/gadgetpm ./cmd/gadgetpm
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/gadgetpm-node ./cmd/gadgetpm-node

.PHONY: envtest
envtest: ## build or reuse the cached kube-apiserver and etcd for tests
	@hack/setup-envtest.sh >/dev/null

.PHONY: test
test: fmt-check ## run every check and test CI runs (the end-to-end tests too, as root)
	@hack/test-prepare.sh $(filter -race -gcflags=% -ldflags=%,$(GO_TEST_FLAGS))
	KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" hack/test-controlplane.sh $(filter -race -gcflags=% -ldflags=%,$(GO_TEST_FLAGS)) -- \
		$(GO) test $(GO_TEST_FLAGS) $(TEST_FIRST) ./...
	hack/vmtest.sh $(KERNELS)
	@$(MAKE) --no-print-directory e2e-if-root

# The end-to-end tests run a cluster on this machine, which needs root: CI
# (root) always runs them; a developer's make test without root says it
# skipped them.
.PHONY: e2e-if-root
e2e-if-root:
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory e2e; \
	elif [ -n "$${CI:-}" ]; then echo "make test: the end-to-end tests (make e2e) need root and CI is set: run CI as root"; exit 1; \
	else echo "make test: skipped the end-to-end tests (make e2e): they need root"; fi

.PHONY: fmt-check
fmt-check: ## fail when gofmt would change a file
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt would change (run 'gofmt -w' on them):"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## go vet
	$(GO) vet ./...

.PHONY: lint
lint: fmt-check vet ## gofmt and go vet

# Built like the tests (RACE_FLAGS) from this module's dependency graph: it
# then shares the compiled Kubernetes API packages with them (a link on a
# cold machine instead of two minutes of compiling).
$(CONTROLLER_GEN):
	@mkdir -p $(BIN_DIR)
	$(GO) build $(RACE_FLAGS) -o $@.tmp sigs.k8s.io/controller-tools/cmd/controller-gen
	mv -f $@.tmp $@

.PHONY: generate
generate: $(CONTROLLER_GEN) ## write deepcopy code and CRD YAML (charts/gadgetpm/crds/)
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./pkg/apis/...
	$(CONTROLLER_GEN) crd paths=./pkg/apis/... output:crd:artifacts:config=charts/gadgetpm/crds

.PHONY: generate-check
generate-check: generate ## fail when generated files are stale
	@if [ -n "$$(git status --porcelain -- pkg/apis charts/gadgetpm/crds)" ]; then \
		echo "generated files are stale: run 'make generate' and commit the result"; \
		git status --porcelain -- pkg/apis charts/gadgetpm/crds; git diff --stat -- pkg/apis charts/gadgetpm/crds; exit 1; fi

.PHONY: clean
clean: ## remove build output (keeps the tool cache, $(GADGETPM_BIN))
	rm -rf bin

.PHONY: run
run: build ## start the embedded default: local control plane, bundled repository, operator (gadgetpm dev; flags through ARGS="--package trace-exec")
	bin/gadgetpm dev $(ARGS)

.PHONY: bench-kubeevents
bench-kubeevents: envtest ## benchmark the events manager beside a bare informer (docs/benchmarks.md)
	KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" $(GO) test -run '^$$' -bench MonitorVsInformer -benchtime 3x ./kubeevents/

.PHONY: bench-nelm
bench-nelm: envtest ## benchmark pkg/nelm install+uninstall against bare Helm SDK calls
	KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" $(GO) test -run '^$$' -bench BenchmarkInstallUninstall -benchtime 20x -count 3 ./pkg/nelm/

.PHONY: bench-hooks
bench-hooks: envtest ## benchmark a hook run's overhead against exec by hand (docs/benchmarks.md)
	hack/bench-hooks.sh

.PHONY: bench-queues
bench-queues: ## queue throughput and latency against buffered channels (docs/benchmarks.md)
	$(GO) test -run '^$$' -bench . -benchtime 200000x -count 3 ./queue/

.PHONY: bench-trace-output
bench-trace-output: envtest ## Trace output sinks (Status, ConfigMap, File) beside a bytes.Buffer (docs/benchmarks.md)
	KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" $(GO) test -run '^$$' -bench 'StatusVsBuffer|FileVsBuffer' -benchtime 2000000x -count 3 ./pkg/trace/output/
	KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" $(GO) test -run '^$$' -bench ConfigMapVsBuffer -benchtime 200000x -count 3 ./pkg/trace/output/

.PHONY: bpf
bpf: ## rebuild the bundled gadgets' eBPF objects (needs clang, bpftool, libbpf-dev; installs them with apt-get when missing)
	hack/bpf-build.sh

.PHONY: syscalls
syscalls: ## regenerate the syscall name tables (pkg/gadget/datasource/zsyscalls_linux_*.go) from the pinned golang.org/x/sys
	cd pkg/gadget/datasource && $(GO) run syscalls_gen.go

.PHONY: packages-bpf
packages-bpf: ## rebuild the eBPF test objects of packages/ (packages/testdata/bpf)
	hack/packages-bpf.sh

.PHONY: bench-trace
bench-trace: envtest ## Traces end to end: annotation-to-Started, schedule jitter, events/s through Status and ExternalResource, each beside a reference (docs/benchmarks.md)
	KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" $(GO) test -run '^$$' -bench 'AnnotationToStarted|ScheduleJitter' -benchtime 20x ./pkg/trace/
	KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" $(GO) test -run '^$$' -bench EventsPerSecond -benchtime 200000x ./pkg/trace/

.PHONY: bench-operator
bench-operator: envtest ## 50 packages to Running through the operator beside a bare Helm SDK install loop, and the operator's memory (docs/benchmarks.md)
	KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" $(GO) test -run '^$$' -bench FiftyPackages -benchtime 1x -count 3 ./pkg/coordinator/

.PHONY: bench-node
bench-node: envtest ## the node role's memory (RSS idle and with 10 Traces) beside the full operator's, and both binaries' sizes (docs/benchmarks.md; root)
	hack/node-footprint.sh

.PHONY: test-charts
test-charts: envtest ## test the operator chart and the bundled packages (hook-demo's hooks) against a real control plane
	KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" $(GO) test $(GO_TEST_FLAGS) ./internal/chartcheck/ ./internal/bundled/

.PHONY: test-kernels
test-kernels: ## run the eBPF tests inside Debian kernels booted under qemu (hack/vmtest.sh; KERNELS="6.1 6.12" for some of hack/kernels.list)
	hack/vmtest.sh $(KERNELS)

.PHONY: image
image: ## build the gadgetpm and pause images as image tarballs without Docker or a registry (hack/image.sh; root)
	VERSION="$(VERSION)" COMMIT="$(COMMIT)" hack/image.sh

.PHONY: e2e
e2e: ## end-to-end tests: a real single-node cluster on this machine (hack/e2e-cluster.sh), the chart installed with helm from the local image (root)
	E2E_HELM="$$(hack/setup-helm.sh -race)" VERSION="$(VERSION)" COMMIT="$(COMMIT)" \
		hack/e2e-cluster.sh run $(GO) test $(GO_TEST_FLAGS) -tags e2e -count=1 -v ./test/e2e/
