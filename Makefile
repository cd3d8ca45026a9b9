# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint install clean

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

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .


clean:
	rm -rf $(VENV) .journeys .pytest_cache
