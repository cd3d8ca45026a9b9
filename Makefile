# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint install clean pg-bins

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

EXAMPLE_PLUGIN := examples/journeys-plugin-example

# Re-install only when the project's dependencies change. The example plugin is installed
# too (as docs/write-a-custom-activity.md does it), so `make test` runs its tests.
$(STAMP): pyproject.toml $(EXAMPLE_PLUGIN)/pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet -e $(EXAMPLE_PLUGIN)
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/journeys up $(ARGS)

test: $(STAMP) pg-bins
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The storage tests start a throwaway PostgreSQL cluster: its server binaries must exist
# (they are on the machine image; Debian's package otherwise).
pg-bins:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  { echo "installing PostgreSQL server binaries (Debian package postgresql)"; \
	    apt-get install -y -q postgresql >/dev/null 2>&1 || { apt-get update -q && apt-get install -y -q postgresql; }; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .


clean:
	rm -rf $(VENV) .journeys .pytest_cache
