# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
ROOT_PATH ?=
DEMO_DIR ?= demo
PYTEST_ARGS ?=
# The lock: exact versions of everything installed, the ones the suite passed with (a pip
# constraints file). pyproject.toml keeps the ranges that hold for `pip install vitrine`.
LOCK := requirements/lock.txt
PINS := requirements/pins.txt
LATEST_VENV ?= .venv-latest
TOOLS_VENV ?= .venv-tools
UV_VERSION := 0.13.9

.PHONY: install system-deps demo test test-latest lock lock-sync lint bench clean

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "vitrine needs Python 3.11 or newer"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c $(LOCK) -e ".[test]"
	touch $@

install: $(VENV)/.installed

system-deps:
	bash scripts/install-system-deps.sh

demo: install
	$(VENV)/bin/vitrine demo $(DEMO_DIR)
	$(VENV)/bin/vitrine serve $(DEMO_DIR) --host $(HOST) --port $(PORT) --root-path "$(ROOT_PATH)"

# The whole suite (storage and jobs tests run on SQLite and on a throwaway PostgreSQL the tests
# start), then the API tests again with PostgreSQL as the server database.
test: install system-deps
	VITRINE_REQUIRE_POSTGRES=1 $(PY) -m pytest $(PYTEST_ARGS)
	VITRINE_REQUIRE_POSTGRES=1 VITRINE_TEST_DATABASE=postgresql $(PY) -m pytest $(PYTEST_ARGS) \
		tests/server/test_api.py tests/server/test_classification_api.py tests/server/test_detection_api.py \
		tests/server/test_authorization.py

# The suite on the newest releases pyproject.toml's ranges allow, in a venv of its own: run it
# before `make lock`, and now and then, to see the next breaking release before users do.
test-latest: system-deps
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "vitrine needs Python 3.11 or newer"'
	rm -rf $(LATEST_VENV)
	$(PYTHON) -m venv $(LATEST_VENV)
	$(LATEST_VENV)/bin/python -m pip install --quiet --upgrade --upgrade-strategy eager -e ".[test]"
	$(LATEST_VENV)/bin/python scripts/lock_drift.py $(LOCK)
	VITRINE_REQUIRE_POSTGRES=1 $(LATEST_VENV)/bin/python -m pytest $(PYTEST_ARGS)

# Refresh the lock: the newest versions the ranges allow (held back by requirements/pins.txt),
# for every platform and Python >= 3.11. Then `make test`, and commit both files.
# `make lock-sync` after editing pyproject.toml: every pin that still fits is kept.
COMPILE = $(TOOLS_VENV)/bin/uv pip compile pyproject.toml --extra test --extra s3 --universal \
	--python-version 3.11 --constraint $(PINS) --annotation-style line --custom-compile-command "make lock" -o $(LOCK)

$(TOOLS_VENV)/bin/uv:
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet uv==$(UV_VERSION)

lock: $(TOOLS_VENV)/bin/uv
	$(COMPILE) --upgrade

lock-sync: $(TOOLS_VENV)/bin/uv
	$(COMPILE)

# ruff, then the import contracts of .importlinter: layers import downward only, no cycles
lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts
	$(VENV)/bin/ruff format --check src tests benchmarks scripts
	$(VENV)/bin/lint-imports

bench: install system-deps
	$(PY) benchmarks/indexing_throughput.py
	$(PY) benchmarks/search_latency.py

clean:
	rm -rf $(VENV) $(LATEST_VENV) $(TOOLS_VENV) $(DEMO_DIR) .pytest_cache
