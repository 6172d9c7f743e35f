# Two commands on a fresh clone: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit interop bench clean setup-system

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/axsync demo

# System packages (dovecot-imapd, chromium, notmuch) for the interop tests.
setup-system:
	./.ci/setup-system

lint: $(STAMP)
	$(BIN)/ruff check axsync tests
	$(BIN)/mypy

test: $(STAMP) setup-system lint
	$(BIN)/pytest -n 2 --dist loadgroup

bench: $(STAMP)
	$(BIN)/axsync bench

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
