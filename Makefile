# One command per developer task; CI (.ci/run) calls `make test`, exactly as a developer does.
#   make dev    run Kith locally (embedded PostgreSQL and Valkey, demo data) at http://127.0.0.1:8000
#               (another port: make dev PORT=8123)
#   make test   run the whole test suite (installs what it needs first)
#   make lint   ruff
#   make bench  tenant provisioning / migration benchmark
#   make bench-audit  audit log benchmark (append cost, update overhead, verify of 1M entries)
#   make bench-crm    CRM benchmark: 1M contacts by COPY, then list/search/360/board over HTTP
#   make bench-import import benchmark: 1M-row GBK CSV imported, all contacts exported, backup + restore
#   make bench-campaign campaign benchmark: 100,000 emails to a local SMTP sink, a worker SIGKILLed mid-way
#   make bench-export export benchmark: 1,000,000 contacts to CSV, row by row and by COPY, same bytes
#   make clean  remove caches and build output (keeps .venv and the dev data in .kith)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Reinstall only when pyproject.toml changes, so the second `make dev` starts at once.
INSTALLED := $(VENV)/.installed-stamp
PORT ?= 8000

.PHONY: dev test lint bench bench-audit bench-crm bench-import bench-campaign bench-export clean install system-deps

dev: $(INSTALLED)
	$(BIN)/kith dev --port $(PORT)

test: $(INSTALLED) system-deps
	$(BIN)/python -m pytest

lint: $(INSTALLED)
	$(BIN)/ruff check .

bench: $(INSTALLED)
	$(BIN)/kith bench

bench-audit: $(INSTALLED)
	$(BIN)/kith audit bench

bench-crm: $(INSTALLED)
	$(BIN)/kith crm-bench run

bench-import: $(INSTALLED)
	$(BIN)/kith import-bench

bench-campaign: $(INSTALLED)
	$(BIN)/kith campaign-bench

bench-export: $(INSTALLED)
	$(BIN)/python -m kith.tenants.bench.export_speed --rows 1000000 --columns own

install: $(INSTALLED)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e ".[test,dev]"
	touch $@

# Debian's chromium (for the browser tests), a CJK font (so screenshots of Chinese text are
# readable) and pgbouncer (for the pooling tests), installed only when missing and only as
# root; a developer without root installs them once by hand.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	{ command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; } || missing="$$missing pgbouncer"; \
	dpkg -s fonts-wqy-zenhei >/dev/null 2>&1 || missing="$$missing fonts-wqy-zenhei"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
		echo "Installing$$missing with apt-get"; \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	else \
		echo "warning: missing$$missing; run: sudo apt-get install -y$$missing" >&2; \
	fi

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .mypy_cache test-artifacts $(INSTALLED)
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
