# grenier: the two set-up commands are `make run` and `make test`; each builds its own virtual environment.
#
#   make run    start grenier on its embedded default (http://127.0.0.1:8080); ARGS="--port 9000" passes options
#   make test   lint, type-check and run the whole test suite (needs redis-server and rabbitmq-server; installed
#               here when root)
#   make lint   ruff check, ruff format --check and mypy only
#   make bench  hits/s, miss latency and memory beside baselines (docs/performance.md); BENCH_ARGS passes flags
#   make clean  remove the virtual environment and caches

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
# Touched after a successful install: pip runs again only when pyproject.toml is newer than it.
STAMP  := $(VENV)/.installed
ARGS   ?=
BENCH_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help run test lint bench clean ensure-redis ensure-rabbitmq

help:
	@sed -n '3,8s/^# *//p' Makefile

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --disable-pip-version-check -e '.[dev]'
	touch $@

run: $(STAMP)
	exec $(BIN)/grenier serve $(ARGS)

# The integration tests start their own throwaway redis-server on a free port; it only has to be on PATH.
ensure-redis:
	@if ! command -v redis-server >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "redis-server is missing: installing Debian's redis-server package"; \
			apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server; \
		else \
			echo "make test needs redis-server on PATH: install it first (e.g. sudo apt-get install redis-server)" >&2; \
			exit 1; \
		fi; \
	fi

# The RabbitMQ broker's tests start their own rabbitmq-server (Debian's package) on free ports, once per session.
ensure-rabbitmq:
	@if ! command -v rabbitmq-server >/dev/null 2>&1 && [ ! -x /usr/sbin/rabbitmq-server ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "rabbitmq-server is missing: installing Debian's rabbitmq-server package"; \
			apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rabbitmq-server; \
			service rabbitmq-server stop >/dev/null 2>&1 || true; \
		else \
			echo "make test needs rabbitmq-server: install it first (e.g. sudo apt-get install rabbitmq-server)" >&2; \
			exit 1; \
		fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(STAMP) ensure-redis ensure-rabbitmq lint
	$(BIN)/python -m pytest -q

bench: $(STAMP) ensure-redis
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
