# postbote: `make run` starts a development server, `make test` runs every test.
# Both set up what they need on a fresh Debian machine first.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= var

.PHONY: run test test-deps venv bench clean

$(BIN)/python:
	./scripts/bootstrap.sh $(PYTHON) $(VENV)

# The package and its locked runtime dependencies.
$(VENV)/.installed: $(BIN)/python pyproject.toml requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e .
	touch $@

# The test dependencies: Python packages from the lock, Debian packages and data.
$(VENV)/.installed-test: $(VENV)/.installed scripts/install-test-deps.sh
	$(BIN)/pip install --quiet --disable-pip-version-check -c requirements.lock -e '.[test]'
	./scripts/install-test-deps.sh
	touch $@

venv: $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/postbote serve --data-dir $(DATA)

test: $(VENV)/.installed-test
	$(BIN)/pytest -q $(PYTEST_ARGS)

test-deps: $(VENV)/.installed-test

bench: $(VENV)/.installed-test
	$(BIN)/python bench/store.py

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
