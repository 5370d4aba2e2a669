# paycenter: `make run` serves the product, `make test` runs every test.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PAYCENTER_DATABASE_URL ?= sqlite:///./paycenter.db

.PHONY: run test test-fast lint bench migrate clean lock

# Dependencies come from the lock (exact versions and hashes); `make lock` refreshes it after a
# change to pyproject.toml (tests/project/test_lock.py fails until then).
$(STAMP): pyproject.toml requirements-test.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements-test.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

# requirements-test.lock: what `make test` installs; requirements.lock: the runtime subset, the
# same versions, for the Docker image. Resolved by uv (installed into the venv for this only).
UV_COMPILE = $(BIN)/uv pip compile pyproject.toml --generate-hashes --python-version 3.11 --quiet
lock: $(STAMP)
	$(BIN)/pip install --quiet 'uv>=0.4,<1'
	$(UV_COMPILE) --extra test -o requirements-test.lock
	$(UV_COMPILE) -c requirements-test.lock -o requirements.lock

# Local development: let webhooks reach endpoints on this machine (the SSRF guard blocks
# loopback otherwise). `paycenter run` prints this setting when it starts.
run: export PAYCENTER_WEBHOOK_ALLOWED_NETWORKS ?= 127.0.0.0/8,::1/128
run: $(STAMP)
	$(BIN)/paycenter run

migrate: $(STAMP)
	$(BIN)/paycenter migrate

# Two workers (this machine has two cores), a test file's tests on one worker (loadfile): its
# module-scoped servers start once, and tests that follow one another in a file stay in order.
XDIST ?= -n 2 --dist loadfile
DOMAINS := payments webhooks providers

# Everything, on every backend configured (.ci/run sets PostgreSQL and MariaDB), with branch
# coverage of src/paycenter (the `paycenter` processes tests start included: pyproject's
# [tool.coverage.run]); per file, then per domain.
# COVERAGE_FLOOR: a domain under it fails the target (.ci/run sets 90 for the whole run; a partial
# run's figures mean nothing, hence 0 by default).
COVERAGE_FLOOR ?= 0
test: $(STAMP)
	$(BIN)/python -m pytest $(XDIST) --cov --cov-report=term $(PYTEST_ARGS)
	@for d in $(DOMAINS); do \
		total=$$($(BIN)/coverage report --include='*/paycenter/'$$d'/*' --format=total); \
		printf 'branch coverage of %-10s %s%%\n' "$$d/" "$$total"; \
		awk -v t="$$total" -v f="$(COVERAGE_FLOOR)" 'BEGIN { exit !(t + 0 >= f + 0) }' \
			|| { echo "$$d/ is under the $(COVERAGE_FLOOR)% floor"; exit 1; }; \
	done

# The lane for every change: SQLite only, without the slow and browser tests.
test-fast: $(STAMP)
	env -u PAYCENTER_TEST_POSTGRES_URL -u PAYCENTER_TEST_MARIADB_URL -u PAYCENTER_TEST_REQUIRE \
		$(BIN)/python -m pytest $(XDIST) -m "not slow and not browser" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/lint-imports
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) *.egg-info build dist .pytest_cache .coverage .coverage.*
