# One entry point for people and CI. `make test` is the README's test command and what
# .ci/run calls; it builds .venv on first use, so a fresh clone needs only python3 and make.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: test lint typecheck pytest docs docs-check bench demo clean

$(BIN)/mcpsec: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,dev,server]'
	touch $@

test: lint typecheck pytest

lint: $(BIN)/mcpsec
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(BIN)/mcpsec
	$(BIN)/mypy

pytest: $(BIN)/mcpsec
	$(BIN)/pytest

docs: $(BIN)/mcpsec
	$(BIN)/python scripts/generate_docs.py

docs-check: $(BIN)/mcpsec
	$(BIN)/python scripts/generate_docs.py --check

bench: $(BIN)/mcpsec
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/api_keys.py
	$(BIN)/python bench/tokens.py
	$(BIN)/python bench/ratelimit.py
	$(BIN)/python bench/audit.py

# The main job on the embedded SQLite store: config (once), health check, a PKCE pair, then
# an API key's life and an access token's: create or mint it, verify it, revoke it, and see
# the next verify fail.
demo: $(BIN)/mcpsec
	test -f "$$($(BIN)/mcpsec config path)" || $(BIN)/mcpsec config init
	$(BIN)/mcpsec doctor
	$(BIN)/mcpsec pkce generate
	key=$$($(BIN)/mcpsec keys create --name demo-bot --role user --ttl 1h --quiet) && \
	echo "$$key" | $(BIN)/mcpsec keys verify --permission files:read - && \
	$(BIN)/mcpsec keys revoke "$$(echo "$$key" | cut -d_ -f2)" --reason "demo" && \
	! echo "$$key" | $(BIN)/mcpsec keys verify -
	token=$$($(BIN)/mcpsec token mint --subject alice --role user --ttl 15m --no-refresh --quiet) && \
	echo "$$token" | $(BIN)/mcpsec token verify --permission files:read - && \
	echo "$$token" | $(BIN)/mcpsec token revoke - && \
	! echo "$$token" | $(BIN)/mcpsec token verify -
	$(BIN)/mcpsec audit tail -n 8
	$(BIN)/mcpsec audit verify

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info
