# navembed — the two commands a new user runs are `make demo` and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DIR ?= var/demo
# pip prints a warning per package for this machine's local index mirrors; hide only those lines.
PIP_QUIET := grep -v "^WARNING: Location 'file:" || true

.PHONY: setup system-deps demo up test fuzz bench clean help
help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

setup: $(STAMP)  ## create .venv and install pinned dependencies (CPU torch; see README for GPU)

$(STAMP): requirements.txt pyproject.toml
	@echo "==> creating $(VENV) and installing pinned dependencies (a few minutes the first time)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt 2>&1 | { $(PIP_QUIET); }
	$(BIN)/pip install --disable-pip-version-check -q --no-deps -e . 2>&1 | { $(PIP_QUIET); }
	touch $(STAMP)

system-deps:  ## install the system packages the tests need (Debian's chromium, for the Dagster UI check)
	@if [ -x /usr/bin/chromium ]; then echo "==> chromium is installed"; else \
	  echo "==> installing chromium with apt-get"; \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$sudo apt-get update -qq; \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; \
	fi

demo: setup  ## the whole product on a generated library: stack up, main job via the API, playlists
	$(BIN)/navembed demo --dir $(DEMO_DIR)

up: setup  ## run the stack (Milvus Lite, Dagster UI + daemon, API) on the demo library; Ctrl-C stops it
	NAVEMBED_DATA_DIR=$(DEMO_DIR)/data NAVEMBED_NAVIDROME_DB=$(DEMO_DIR)/library/navidrome.db \
	  NAVEMBED_MUSIC_ROOT=$(DEMO_DIR)/library $(BIN)/navembed up

test: setup system-deps  ## run the whole test suite (installs chromium for the UI check if missing)
	$(BIN)/python -m pytest

fuzz: setup  ## fuzz the running API (navembed up) against its OpenAPI spec: no 5xx allowed
	$(BIN)/schemathesis run http://127.0.0.1:9002/openapi.json -H "Authorization: Bearer $$NAVEMBED_ADMIN_TOKEN" \
	  --checks not_a_server_error --exclude-path /embed_text

bench: setup  ## run the benchmarks (prints ratios measured side by side)
	$(BIN)/python -m benchmarks

clean:  ## remove the venv and generated data
	rm -rf $(VENV) var
