.PHONY: help setup check lint types contracts test test-fast demo bench

VENV := .venv/bin

help: ## List the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: ## Create .venv with the locked dependencies
	./scripts/setup

check: lint types contracts test ## Exactly what CI runs (after scripts/test starts PostgreSQL)

lint: ## ruff check and format check
	$(VENV)/ruff check .
	$(VENV)/ruff format --check .

types: ## mypy --strict on airspace/
	$(VENV)/mypy

contracts: ## import-linter: domain stays pure
	$(VENV)/lint-imports

test: ## The whole test suite (PostgreSQL tests need AIRSPACE_TEST_POSTGRES_URL)
	$(VENV)/pytest

test-fast: ## Unit tests only (seconds)
	$(VENV)/pytest tests/unit

demo: ## Run the demo
	./scripts/demo

bench: ## Ingest benchmark
	$(VENV)/python bench/ingest.py
