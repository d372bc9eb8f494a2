# Two commands do everything on a fresh machine (python3.11, node/npm, make):
#   make test   set up .venv + node_modules, lint, run the whole suite against a real Azurite
#   make demo   set up, start Azurite + the Azure OpenAI emulator + the development host, run the main job
# Also: make dev (the stack stays up), make bench, make lint, make clean.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
SHARED_TIKTOKEN := $(abspath ../shared/tiktoken)
ifneq ($(wildcard $(SHARED_TIKTOKEN)/.),)
export TIKTOKEN_CACHE_DIR ?= $(SHARED_TIKTOKEN)
endif
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup test lint typecheck demo dev bench clean browser

setup: $(VENV)/.installed node_modules/.installed

# The dashboard's browser tests drive Debian's chromium (Playwright's own browser download is not used).
# As root (CI), install it when missing; otherwise say the one command to run.
CHROMIUM := /usr/bin/chromium
browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium) >/dev/null; \
	  else \
	    echo "the browser tests need Debian's chromium: sudo apt-get install -y chromium" >&2; exit 1; \
	  fi; }

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

# Several workers (pytest-xdist), each with its own Azurite and emulator: most of a test's time is spent
# waiting on real processes over real HTTP, so 4 workers fit on 2 cores. A module whose tests share a
# module-scoped fixture stays on one worker (tests/conftest.py). `make test TEST_WORKERS=0` runs serially.
TEST_WORKERS ?= 4
test: setup lint browser
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup

demo: setup
	$(PY) -m demo

dev: setup
	$(PY) -m devstack

bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache .hypothesis demo-output bench-output .stack test-output
