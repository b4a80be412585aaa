# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
ROOT_PATH ?=
DEMO_DIR ?= demo
PYTEST_ARGS ?=

.PHONY: install system-deps demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "vitrine needs Python 3.11 or newer"'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e ".[test]"
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

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

bench: install system-deps
	$(PY) benchmarks/indexing_throughput.py
	$(PY) benchmarks/search_latency.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
