# kubetune developer entry points. `make test` and `make demo` do all set-up themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON     ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
UV         := $(VENV)/bin/uv
EXTRAS     ?= operator,cluster,trainer,serving,cli,dev
# Caches live outside the clone so fresh clones (CI) reuse them: built binaries here,
# Python wheels in uv's own cache (~/.cache/uv).
export KUBETUNE_CACHE ?= $(HOME)/.cache/kubetune
PYTEST_ARGS ?=

.PHONY: help
help: ## List targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@echo "==> creating $(VENV) and installing kubetune[$(EXTRAS)] (wheels cached in ~/.cache/uv)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check "uv>=0.4"
	@$(UV) pip install --quiet --python $(PY) -e ".[$(EXTRAS)]"
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create the virtual environment and install the project

.PHONY: binaries
binaries: ## Build (or reuse from cache) etcd, kube-apiserver, controller-manager, scheduler, kubectl, helm
	@hack/build-binaries.sh >/dev/null

.PHONY: crds
crds: venv ## Regenerate crds/ (from kubetune/api/crds.py) and the chart's copy of them
	@$(PY) -m kubetune.api.crdgen --out crds
	@$(PY) hack/chart-crds.py

.PHONY: lint
lint: venv ## ruff, format check, mypy, import layering, CRD and chart drift
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy -p kubetune.api -p kubetune.operator -p kubetune.cluster -p kubetune.cli
	@PYTHONPATH=operator:cluster:trainer:serving:cli $(VENV)/bin/lint-imports --no-cache
	@$(PY) -m kubetune.api.crdgen --out crds --check
	@$(PY) hack/chart-crds.py --check
	@$(PY) hack/chart-docs.py --check
	@$(PY) hack/docs-reference.py --check

.PHONY: fmt
fmt: venv ## Format and auto-fix
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

.PHONY: test
test: venv binaries lint ## Everything: lint, unit, integration (real control plane) and e2e tests
	@PATH="$(KUBETUNE_CACHE)/bin/current:$$PATH" $(PY) -m pytest $(PYTEST_ARGS)

.PHONY: demo
demo: venv binaries ## The main job: fine-tune a CPU-tiny model on the local cluster and serve the adapter
	@PATH="$(KUBETUNE_CACHE)/bin/current:$$PATH" $(PY) -m e2e.demo

.PHONY: docs
docs: venv ## Regenerate the reference pages and build the docs site into site/ (offline)
	@$(PY) hack/docs-reference.py
	@NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet
	@echo "==> site/index.html"

.PHONY: test-unit
test-unit: venv ## Unit tests only (no processes)
	@$(PY) -m pytest -m unit $(PYTEST_ARGS)

.PHONY: clean
clean: ## Stop the local cluster; remove the venv and test droppings (caches outside the clone stay)
	-@test -x $(PY) && $(PY) -m kubetune.cluster down >/dev/null 2>&1
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .kubetune site

# ------------------------------------------------------------------ chart and images
# Images are named <REGISTRY>/kubetune/<name>:<IMAGE_TAG>, as the chart's images.* values expect.
REGISTRY   ?=
IMAGE_TAG  ?= $(shell $(PY) -c 'from kubetune.api.version import __version__; print(__version__)' 2>/dev/null || echo dev)
HELM       := $(KUBETUNE_CACHE)/bin/current/helm

.PHONY: images
images: ## docker build the operator, trainer and serving images (needs Docker; REGISTRY=..., IMAGE_TAG=...)
	@for name in operator trainer serving; do \
	  ref="$(if $(REGISTRY),$(REGISTRY)/)kubetune/$$name:$(IMAGE_TAG)"; \
	  echo "==> $$ref"; \
	  docker build -f images/$$name/Dockerfile -t "$$ref" . || exit 1; \
	done

.PHONY: chart-docs
chart-docs: venv ## Regenerate the chart's CRD templates (from crds/) and README (from values.yaml)
	@$(PY) hack/chart-crds.py
	@$(PY) hack/chart-docs.py

.PHONY: chart-lint
chart-lint: venv binaries ## helm lint the chart and check its generated files for drift
	@$(PY) hack/chart-crds.py --check
	@$(PY) hack/chart-docs.py --check
	@$(HELM) lint --strict charts/kubetune

# ------------------------------------------------------------------ local cluster
# Test and demo infrastructure, not a Kubernetes distribution (docs/local-cluster.md): a real
# control plane, an S3 object store and a node agent that runs pods as local processes, owned
# by a background supervisor. State, kubeconfig, env file and logs live in .kubetune/.
.PHONY: cluster-up
cluster-up: venv binaries ## Start the local cluster in the background (idempotent); then `source .kubetune/env`
	@$(PY) -m kubetune.cluster up

.PHONY: cluster-down
cluster-down: ## Stop the local cluster, leave no process behind (idempotent; logs stay)
	@if [ -x $(PY) ]; then $(PY) -m kubetune.cluster down; else echo "no $(VENV): nothing to stop"; fi

.PHONY: cluster-status
cluster-status: ## Is the local cluster up? Endpoints, processes, log locations
	@$(PY) -m kubetune.cluster status
