# navembed — the two commands a new user runs are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= var/demo
# Where `make setup` puts MusiCNN's free weights (the default models folder of the default data dir, var).
MODELS_DIR ?= var/models
# What `make test-fast` leaves out (markers set in tests/conftest.py and on slow tests).
FAST_LANE := not slow and not webserver and not ui and not bench
# pytest-xdist processes for the fast lane: one per core (each collects the suite and starts its own Milvus
# Lite; a third cost ~35 s more CPU for no gain here); idle ones take queued tests from the others (worksteal).
FAST_WORKERS ?= 2
FAST_DIST ?= worksteal
# pip prints a warning per package for this machine's local index mirrors; hide only those lines.
PIP_QUIET := grep -v "^WARNING: Location 'file:" || true

.PHONY: setup chromaprint musicnn-weights system-deps demo up test test-fast fuzz bench clean help
help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

setup: chromaprint $(STAMP) musicnn-weights  ## create .venv, install pinned dependencies (CPU torch; see README for GPU), fetch MusiCNN's weights

chromaprint:  ## install Debian's libchromaprint1 + libchromaprint-tools (duplicate detection) if missing
	@if ldconfig -p | grep -q 'libchromaprint\.so\.1' && command -v fpcalc >/dev/null; then :; else \
	  echo "==> installing libchromaprint1 libchromaprint-tools with apt-get"; \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$sudo apt-get update -qq; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
	    libchromaprint1 libchromaprint-tools; \
	fi

$(STAMP): requirements.txt pyproject.toml
	@echo "==> creating $(VENV) and installing pinned dependencies (a few minutes the first time)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt 2>&1 | { $(PIP_QUIET); }
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e . 2>&1 | { $(PIP_QUIET); }
	touch $(STAMP)

musicnn-weights: $(STAMP)  ## fetch MusiCNN's free (ISC) weights into $(MODELS_DIR) from PyPI; offline, setup goes on without them
	@if [ -f $(MODELS_DIR)/musicnn-0.1.0/MSD_musicnn.json ] && [ -f $(MODELS_DIR)/musicnn-0.1.0/MTT_musicnn.json ]; then \
	  echo "==> MusiCNN weights are in $(MODELS_DIR)/musicnn-0.1.0"; else \
	  echo "==> fetching MusiCNN's weights (musicnn 0.1.0 wheel from PyPI, ISC licence) into $(MODELS_DIR)"; \
	  $(BIN)/navembed models download musicnn --yes --models-dir $(MODELS_DIR) 2>&1 | { $(PIP_QUIET); } \
	    || echo "==> could not fetch MusiCNN's weights (see above; no network?); setup goes on without the musicnn model. Later: make musicnn-weights"; \
	fi

system-deps:  ## install the system packages the tests need (Debian's chromium for the UI check, postgresql)
	@missing=""; [ -x /usr/bin/chromium ] || missing="chromium"; \
	  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	  if [ -z "$$missing" ]; then echo "==> chromium and postgresql are installed"; else \
	  echo "==> installing $$missing with apt-get"; \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$sudo apt-get update -qq; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

demo: setup  ## the whole product on a generated library: stack up, main job via the API, playlists
	$(BIN)/navembed demo --dir $(DEMO_DIR)

up: setup  ## run the stack (Milvus Lite, Dagster UI + daemon, API) on the demo library; Ctrl-C stops it
	NAVEMBED_DATA_DIR=$(DEMO_DIR)/data NAVEMBED_NAVIDROME_DB=$(DEMO_DIR)/library/navidrome.db \
	  NAVEMBED_MUSIC_ROOT=$(DEMO_DIR)/library $(BIN)/navembed up

test: setup system-deps  ## run the whole test suite (installs chromium for the UI check if missing)
	$(BIN)/python -m pytest

test-fast: setup  ## the inner loop: unit + in-process Dagster tests (no servers as processes, UI or benchmarks)
	$(BIN)/python -m pytest -q -n $(FAST_WORKERS) --dist $(FAST_DIST) -m "$(FAST_LANE)" --durations=10

fuzz: setup  ## fuzz the running API (navembed up) against its OpenAPI spec: no 5xx allowed
	$(BIN)/schemathesis run http://127.0.0.1:9002/openapi.json -H "Authorization: Bearer $$NAVEMBED_ADMIN_TOKEN" \
	  --checks not_a_server_error --exclude-path /embed_text

bench: setup  ## run the benchmarks (prints ratios measured side by side)
	$(BIN)/python -m benchmarks

clean:  ## remove the venv and generated data
	rm -rf $(VENV) var
