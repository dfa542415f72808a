# waba-lookup — run `make help` for the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# SAM CLI and checkov pin their own dependency trees; they live in a venv of their own so they never
# constrain the project's.
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed
# Each layer's .in (ranges) is pinned, with every wheel's hash, into the .txt lock that its build installs, for
# CPython 3.12 on its architecture: template.yaml's layer is arm64 (sam build fetches manylinux2014_aarch64 wheels),
# s.yaml's functions x86_64 (build_fc.py). An existing pin is kept while it still satisfies the ranges, so a lock
# changes only when its .in does, or with UPGRADE=1. Wheels only, as both builds install.
UV := $(VENV)/bin/uv
LOCK := $(UV) pip compile --quiet --python-version 3.12 --generate-hashes --only-binary :all: \
	--custom-compile-command 'make lock'
LOCKS := requirements:aarch64-manylinux_2_17 requirements-fc:x86_64-manylinux_2_17
PY312 := $(shell command -v pyenv >/dev/null 2>&1 && pyenv root)/versions/$(shell pyenv versions --bare 2>/dev/null | grep '^3\.12' | tail -1)/bin

.DEFAULT_GOAL := help
.PHONY: help setup tools lock lock-check demo test lint lint-template build build-fc bench serve fuzz clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

# .venv is made again when its Python is too old (a first try with Python 3.10 leaves one behind) or when
# PYTHON= names another one on the command line; a failed install says how to start over.
NEW_ENOUGH := import sys; sys.exit(sys.version_info < (3, 11))
$(STAMP): pyproject.toml
	@if [ -x $(PY) ] && { ! $(PY) -c '$(NEW_ENOUGH)' || { [ "$(origin PYTHON)" = "command line" ] && \
		[ "$$($(PY) -c 'import sys; print(sys.version)')" != "$$($(PYTHON) -c 'import sys; print(sys.version)')" ]; }; }; \
		then echo "$(VENV) has $$($(PY) --version); making it again with $(PYTHON)"; rm -rf $(VENV); fi
	@$(PYTHON) -c '$(NEW_ENOUGH)' || test -x $(PY) || \
		{ echo "waba-lookup needs Python 3.11 or newer; $(PYTHON) is $$($(PYTHON) --version 2>&1): try make PYTHON=python3.12 $(MAKECMDGOALS)" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing the package and its dev tools into $(VENV) (about a minute the first time)"
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]' || { echo "the install failed: fix the cause above, then make clean and try again" >&2; exit 1; }
	touch $(STAMP)

setup: $(STAMP) ## create .venv (idempotent) and install the package editable with its dev tools

$(TOOLS_STAMP):
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS)/bin/python -m pip install --quiet 'aws-sam-cli>=1.120' 'checkov>=3.2'
	touch $(TOOLS_STAMP)

tools: $(TOOLS_STAMP) ## install SAM CLI and checkov into .venv-tools

lock: $(STAMP) ## pin layers/requirements*.in into the layers' locks, layers/requirements*.txt (UPGRADE=1: newest)
	for lock in $(LOCKS); do name=$${lock%%:*}; \
		$(LOCK) --python-platform $${lock#*:} $(if $(UPGRADE),--upgrade) layers/$$name.in -o layers/$$name.txt || exit 1; \
	done

# Regenerates each lock from its own pins into a temporary folder and compares them, header comments aside: a
# difference means an .in (or the locked set) changed without `make lock`.
lock-check: $(STAMP) ## fail when a lock no longer matches its .in (run make lock)
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && stale=0 && \
	for lock in $(LOCKS); do name=$${lock%%:*}; cp layers/$$name.txt "$$tmp/$$name.txt" && \
		$(LOCK) --python-platform $${lock#*:} layers/$$name.in -o "$$tmp/$$name.txt" || exit 1; \
		if diff -u --label layers/$$name.txt --label "make lock" <(grep -v '^#' layers/$$name.txt) \
			<(grep -v '^#' "$$tmp/$$name.txt"); then echo "lock-check: layers/$$name.txt is up to date"; \
		else echo "lock-check: layers/$$name.txt is stale: run make lock" >&2; stale=1; fi; \
	done && exit $$stale

demo: $(STAMP) ## the main job on both platforms (AWS, then Function Compute) against the built-in stand-ins
	$(PY) -m waba_local.dev.demo

test: $(STAMP) ## run the whole test suite (about 7 minutes on 2 cores)
	$(PY) -m pytest

lint: $(STAMP) ## ruff, mypy --strict on the library, cfn-lint on the template
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/cfn-lint template.yaml

lint-template: $(TOOLS_STAMP) ## sam validate --lint and checkov on template.yaml
	PATH="$(PY312):$$PATH" SAM_CLI_TELEMETRY=0 $(TOOLS)/bin/sam validate --lint --region ap-southeast-1
	$(TOOLS)/bin/checkov --quiet --compact --framework cloudformation -f template.yaml --config-file .checkov.yaml

build: $(TOOLS_STAMP) $(STAMP) ## sam build (python3.12), then check the built layer and handlers import
	PATH="$(PY312):$$PATH" SAM_CLI_TELEMETRY=0 $(TOOLS)/bin/sam build --region ap-southeast-1
	$(PY) -m waba_local.build.check_build .aws-sam/build

build-fc: $(STAMP) ## build .fc-build/ for Function Compute (layer.zip, the functions' code), then check the handlers import
	$(PY) -m waba_local.build.build_fc

bench: $(STAMP) ## measure CAMS throughput and flow-control rejections (figures to bench-results/)
	$(PY) -m waba_local.bench

PLATFORM ?= aws
serve: $(STAMP) ## serve the HTTP API on localhost:3000 like `sam local start-api` (PLATFORM=fc: like an FC HTTP trigger)
	$(PY) -m waba_local.dev.serve --platform $(PLATFORM)

fuzz: $(STAMP) ## Schemathesis (st run, all checks, fixed seed) against make serve on each platform, from openapi.yaml
	WABA_FUZZ=1 $(PY) -m pytest -p no:cacheprovider -s -q tests/integration/test_fuzz_api.py

clean: ## remove build output and virtualenvs
	rm -rf $(VENV) $(TOOLS) .aws-sam .fc-build .pytest_cache .mypy_cache .ruff_cache .hypothesis bench-results
