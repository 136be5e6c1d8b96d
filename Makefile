# Two commands set everything up on a fresh machine:
#   make run    the whole system on embedded defaults (SQLite database and broker), with demo data
#   make test   install and run the test suite (set DATABASE_URL / CELERY_BROKER_URL for PostgreSQL / Redis)
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
SANDBOX_PORT ?= 8900
# honcho sets its own PORT per process; the web process reads WEB_PORT.
export WEB_PORT := $(PORT)
export SANDBOX_PORT
# The service talks to the sandbox; the sandbox delivers JPM callbacks to the service.
export SANDBOX_URL := http://127.0.0.1:$(SANDBOX_PORT)
export SANDBOX_JPM_WEBHOOK_URL := http://127.0.0.1:$(PORT)/webhooks/jpm

.PHONY: run test bench screenshots install lint schema check clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

install: $(VENV)/.installed

run: install
	@mkdir -p var
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py setup_schedules
	@$(PY) -m sandbox --init-keys
	@echo ""
	@echo "Payments Service (local, embedded SQLite database and broker)"
	@echo "  API:        http://127.0.0.1:$(PORT)/api/v1/"
	@echo "  API docs:   http://127.0.0.1:$(PORT)/api/docs/"
	@echo "  Admin:      http://127.0.0.1:$(PORT)/admin/"
	@echo "  Health:     http://127.0.0.1:$(PORT)/healthz  http://127.0.0.1:$(PORT)/readyz"
	@echo "  Sandbox:    http://127.0.0.1:$(SANDBOX_PORT)/_control/requests  (fake JPM, Usio, Slack, Transaction Service)"
	@$(PY) manage.py seed_demo
	@echo "  Try:        curl -H 'X-API-Key: <the key above>' http://127.0.0.1:$(PORT)/api/v1/auth/whoami"
	@echo "Starting web, worker, beat and the processor sandbox; Ctrl-C stops everything."
	@echo ""
	$(VENV)/bin/honcho start

test: install
	@scripts/ensure-services.sh redis
	@scripts/ensure-chromium.sh
	@mkdir -p var
	@scripts/run-tests.sh $(PYTEST_ARGS)

# Benchmarks (not tests): each prints its figure and a ratio against a baseline measured in the same run, on
# PostgreSQL + Redis; BENCH_ARGS=--quick runs them at small sizes. docs/performance.md has the last figures.
bench: install
	@scripts/ensure-services.sh postgres redis
	@mkdir -p var/bench
	$(PY) -m bench.run_all $(BENCH_ARGS)

screenshots: install
	@scripts/ensure-chromium.sh
	@mkdir -p var
	UPDATE_SCREENSHOTS=1 $(VENV)/bin/pytest tests/browser -q

lint: install
	$(VENV)/bin/ruff check .

schema: install
	$(PY) manage.py spectacular --validate --fail-on-warn --file var/openapi.yaml

clean:
	rm -rf var $(VENV)
