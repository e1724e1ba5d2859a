# The two commands of the README: `make demo` and `make test`. Everything else supports them.
SHELL := /bin/bash
PYTHON ?= $(shell scripts/find-python)
VENV ?= .venv
BIN := $(VENV)/bin
# The oldest supported pair, Django 5.2 LTS on the oldest Python found (3.10 where it exists).
COMPAT_PYTHON ?= $(shell scripts/find-python 3.10 3.11)
COMPAT_VENV ?= .venv-django52
PYTEST_ARGS ?=
export PGHOST ?= 127.0.0.1
export PGPORT ?= 5432
export PGUSER ?= postgres
# Used only where TCP authentication asks for a password: scripts/ensure-postgres then gives
# the role this one.
export PGPASSWORD ?= postgres

.PHONY: help venv system-packages test test-sqlite test-postgres test-compat lint ci demo bench reliability reliability-short clean

help:
	@echo "make demo   set everything up and run real jobs end to end through the local QStash server"
	@echo "make test   set everything up and run the test suite on SQLite and PostgreSQL"
	@echo "make lint   ruff, mypy and the migrations check"
	@echo "make bench  benchmarks: ratios against baselines measured in the same run"
	@echo "make reliability  faults injected into real runs; every job counted"
	@echo "make ci     lint, test, test-compat (Django 5.2 on the oldest Python) and the short"
	@echo "            reliability run, as CI runs them"

# The virtualenv is rebuilt when the project's dependencies change.
$(BIN)/.installed: pyproject.toml
	scripts/make-venv $(PYTHON) $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,lint]"
	@touch $@

venv: $(BIN)/.installed

system-packages:
	scripts/ensure-system-packages

test: venv system-packages test-sqlite test-postgres

test-sqlite: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: venv
	scripts/ensure-postgres
	TEST_DB=postgres $(BIN)/python -m pytest $(PYTEST_ARGS)

$(COMPAT_VENV)/.installed: pyproject.toml
	scripts/make-venv $(COMPAT_PYTHON) $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(COMPAT_VENV)/bin/python -m pip install --quiet -e ".[test]" "Django>=5.2,<5.3" django-tasks
	@touch $@

# Django 5.2 on the oldest Python, SQLite only, with the django-tasks backport: what the
# newest-Django run cannot see.
test-compat: $(COMPAT_VENV)/.installed system-packages
	SQLITE_TEST_PATH=$(CURDIR)/test-compat.sqlite3 $(COMPAT_VENV)/bin/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m django makemigrations --check --dry-run --settings=tests.settings

ci: lint test test-compat reliability-short

# PDF reports need Pango: the system packages are looked at only when WeasyPrint cannot load.
demo: venv
	@$(BIN)/python -c "import weasyprint" 2>/dev/null || scripts/ensure-system-packages
	cd example_project && ../$(BIN)/python manage.py demo

# The benchmarks compare against django-qstash, installed in this environment only.
BENCH_VENV ?= .venv-bench
$(BENCH_VENV)/.installed: pyproject.toml
	scripts/make-venv $(PYTHON) $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet -e ".[test]" django-qstash
	@touch $@

bench: $(BENCH_VENV)/.installed
	scripts/ensure-postgres
	$(BENCH_VENV)/bin/python bench/all.py --db postgres

# Faults injected into real runs (gunicorn, PostgreSQL, the local QStash server): as root it
# crashes and restarts the local PostgreSQL cluster once; RELIABILITY_ARGS=--skip-postgres-restart
# avoids that.
reliability: venv
	scripts/ensure-postgres
	$(BIN)/python bench/reliability.py $(RELIABILITY_ARGS)

reliability-short: venv
	scripts/ensure-postgres
	$(BIN)/python bench/reliability.py --short $(RELIABILITY_ARGS)

clean:
	rm -rf $(VENV) $(COMPAT_VENV) $(BENCH_VENV) test-compat.sqlite3 .mypy_cache .ruff_cache .pytest_cache *.egg-info test-db.sqlite3 tests.sqlite3
