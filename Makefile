# paycenter: `make run` serves the product, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PAYCENTER_DATABASE_URL ?= sqlite:///./paycenter.db

.PHONY: run test lint bench migrate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Local development: let webhooks reach endpoints on this machine (the SSRF guard blocks
# loopback otherwise). `paycenter run` prints this setting when it starts.
run: export PAYCENTER_WEBHOOK_ALLOWED_NETWORKS ?= 127.0.0.0/8,::1/128
run: $(STAMP)
	$(BIN)/paycenter run

migrate: $(STAMP)
	$(BIN)/paycenter migrate

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) *.egg-info build dist .pytest_cache
