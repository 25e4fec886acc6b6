# The 3D scene server. `make run` runs the system, `make test` runs the tests; both set up what is
# missing first (a .venv at the root with every package installed editable, pinned versions).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# pip warns about every package for a local index folder this machine's pip.conf names; noise.
QUIET_PIP := 2>&1 | { grep -v 'is neither a file nor a directory' || true; }
.DEFAULT_GOAL := help

PYTHON_SYSTEM ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CONSTRAINTS := scripts/requirements/constraints.txt
# dev: what the tests, benches and scripts/ share (make run's supervisor, model builders, fakes);
# never installed into an image.
PACKAGES := protos pointcloud-lib depth-service segment-service imagegen-service orchestrator dev
PYPROJECTS := $(addsuffix /pyproject.toml,$(PACKAGES))
TINY_MODELS := .cache/tiny-models/.complete
PYTEST_ARGS ?=

.PHONY: help install protos protos-check tiny-models test lint bench run demo lock clean
.PHONY: containers

help:
	@echo "make run      start the four services (orchestrator on :8000); PROFILE=fast for CPU models"
	@echo "make test     install what is missing, build tiny models, run every test"
	@echo "make bench    run the benchmarks (prints ratios against in-run baselines)"
	@echo "make install  create .venv and install every package editable, pinned"
	@echo "make protos   regenerate gRPC code from protos/ (protos-check: verify it is current)"
	@echo "make demo     a bundled photo -> a stored 3D scene (starts the stack if none runs;"
	@echo "              DEMO_ARGS=--smoke for an offline run on tiny models)"
	@echo "make lint     ruff"
	@echo "make containers  build the four CPU images, smoke-test the compose stack offline"

$(VENV)/.installed: $(PYPROJECTS) $(CONSTRAINTS) scripts/requirements/dev.txt
	test -x $(PY) || $(PYTHON_SYSTEM) -m venv $(VENV)
	$(PIP) install -q --upgrade pip $(QUIET_PIP)
	# torch==2.13.0 resolves to the CPU wheel where one is on the machine (pip's find-links);
	# never install torchvision: a CUDA build beside CPU torch breaks transformers' import.
	$(PIP) install -q -c $(CONSTRAINTS) $(addprefix -e ,$(PACKAGES)) -r scripts/requirements/dev.txt \
	  $(QUIET_PIP)
	! $(PIP) show -q torchvision 2>/dev/null || { echo "torchvision must not be installed"; exit 1; }
	touch $@

install: $(VENV)/.installed

lock: install
	$(PIP) freeze --exclude-editable | sed 's/^torch==\(.*\)+cpu$$/torch==\1/' \
	  | { echo '# Exact versions for every machine (`make install` passes this to pip as constraints).'; \
	      echo '# Regenerate with `make lock` after changing a pyproject.toml.'; cat; } > $(CONSTRAINTS)

protos: install
	PYTHON=$(PY) scripts/gen_protos.sh

# Generated code is committed; this fails when it no longer matches protos/.
protos-check: install
	@tmp=$$(mktemp -d) && PYTHON=$(PY) scripts/gen_protos.sh $$tmp && \
	  diff -r -x __pycache__ $$tmp/scene protos/python/scene >/dev/null && rm -rf $$tmp && \
	  echo "generated protos are current" || \
	  { echo "protos/python is stale: run 'make protos' and commit"; rm -rf $$tmp; exit 1; }

$(TINY_MODELS): scripts/make_tiny_models.py $(wildcard dev/src/scene_dev/tiny_models/*.py) | install
	$(PY) scripts/make_tiny_models.py .cache/tiny-models

tiny-models: $(TINY_MODELS)

lint: install
	$(VENV)/bin/ruff check .

test: install protos-check $(TINY_MODELS)
	$(VENV)/bin/ruff check .
	# The browser test drives Debian's chromium; installed here (apt) when missing.
	scripts/ensure_browser.sh
	# docker-compose renders the compose files in the deployment tests (no engine needed).
	scripts/ensure_docker.sh compose
	# npm packages the tests run (glTF validator, three.js, a splat renderer): tests/js.
	scripts/ensure_js_test_deps.sh
	# The scale-out tests start their own PostgreSQL from Debian's package (apt when missing).
	scripts/ensure_postgres.sh
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install $(TINY_MODELS)
	scripts/bench.sh

# PROFILE=quality|balanced|fast picks every model service's models (README: "Profiles").
run: install
	$(PY) scripts/run.py $(if $(PROFILE),--profile $(PROFILE)) $(RUN_ARGS)

demo: install
	$(PY) scripts/demo.py $(DEMO_ARGS)

# Not part of `make test`: builds every image (long the first time) and needs a Docker engine,
# or root to start one. See deploy/docker/README.md.
containers: install $(TINY_MODELS)
	scripts/container_smoke.sh

clean:
	rm -rf $(VENV) .cache .pytest_cache .ruff_cache
