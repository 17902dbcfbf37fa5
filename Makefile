# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
PORT   ?= 8080
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEVSTAMP := $(VENV)/.installed-dev
BENCHSTAMP := $(VENV)/.installed-bench

.PHONY: run test lint typecheck check bench bench-quick clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(DEVSTAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP) $@

$(BENCHSTAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[bench]'
	touch $(STAMP) $@

run: $(STAMP)
	$(BIN)/hubbub serve --host 127.0.0.1 --port $(PORT) --store sqlite:///hubbub.db

lint: $(DEVSTAMP)
	$(BIN)/ruff check src tests bench

typecheck: $(DEVSTAMP)
	$(BIN)/mypy --strict src

test: $(DEVSTAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy --strict src
	$(BIN)/pytest -q

# Benchmarks (never part of `make test`): the shared kit vs the Bun reference, persisted chats,
# typing fan-out; ~10 minutes; writes bench/results/<stamp>/ and bench/RESULTS.md.
bench: $(BENCHSTAMP)
	$(BIN)/python bench/run_all.py

# A ~2-minute smoke run of the same; its RESULTS.md stays in bench/results/<stamp>/.
bench-quick: $(BENCHSTAMP)
	$(BIN)/python bench/run_all.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
