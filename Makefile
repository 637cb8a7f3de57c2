# The two README commands are `make demo` and `make test`; both install first.
# Everything heavy is cached outside the clone (scripts/bootstrap.sh), so a second
# clone on the same machine installs in seconds.
SHELL := /bin/bash
VENV := .venv/bin

.PHONY: help bootstrap demo test test-unit lint up down status smoke docker-check bench

help:
	@echo "make demo        install, start the local stack, run the main job on generated data"
	@echo "make test        install, run the test suite (starts the stack it needs)"
	@echo "make test-unit   fast unit tests only"
	@echo "make up|down|status|smoke   the local stack (Kafka :9092, Flink UI :8081)"
	@echo "make docker-check           lint docker/ and check it against deps/ and requirements.lock"
	@echo "make bench       stack start time and idle memory (JSON)"

bootstrap:
	scripts/bootstrap.sh

# The demo market: `tiny` (20k events, 4 instruments) finishes in minutes on 2 cores.
# The 800k-event `default` market: `make demo DEMO_PRESET=default` (tens of minutes on
# 2 cores; the job's measured rates are in jobs/README.md).
DEMO_PRESET ?= tiny
demo: bootstrap
	$(VENV)/darkpool demo --preset $(DEMO_PRESET)

# Lint (ruff, pyproject.toml [tool.ruff]), the layers contract (pyproject.toml
# [tool.importlinter]) and the doctests of the packages and bench scripts (seeded
# examples with exact output; collecting the scripts also checks that their imports
# still resolve) run first: seconds.
DOCTEST_PACKAGES := core model udfs darkpool jobs bench
test: bootstrap
	$(VENV)/ruff check .
	$(VENV)/lint-imports
	$(VENV)/pytest --doctest-modules -q $(DOCTEST_PACKAGES)
	$(VENV)/pytest -m "not slow" --durations=30

test-unit: bootstrap
	$(VENV)/ruff check .
	$(VENV)/lint-imports
	$(VENV)/pytest --doctest-modules -q $(DOCTEST_PACKAGES)
	$(VENV)/pytest tests/unit

lint: bootstrap
	$(VENV)/ruff check .
	$(VENV)/lint-imports

up: bootstrap
	$(VENV)/darkpool stack up

down:
	$(VENV)/darkpool stack down

status:
	$(VENV)/darkpool stack status

smoke: bootstrap
	$(VENV)/darkpool stack smoke

docker-check: bootstrap
	docker/check.sh

bench: bootstrap
	$(VENV)/python bench/stack_bench.py
