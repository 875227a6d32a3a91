# pimsync tasks. `make test` is the test command (CI runs it too).
PYTHON ?= python
PYTEST ?= pytest

.PHONY: test test-fast test-twice lint format bench demo mutation lock

test:
	$(PYTEST) -q

# Two runs at once (this checkout and a fresh one of HEAD) on the same services: both pass.
test-twice:
	bash .ci/test-twice

test-fast:
	$(PYTEST) -q -m "not slow"

lint:
	ruff check app tasks tests bench scripts celeryconfig.py
	ruff format --check app tasks tests bench scripts celeryconfig.py
	mypy app tasks
	lint-imports

format:
	ruff check --fix app tasks tests bench scripts celeryconfig.py
	ruff format app tasks tests bench scripts celeryconfig.py

# mutation testing of the modules in pyproject's [tool.mutmut] (slow: not in test or CI);
# MODULES="app/web/security.py" runs a subset. Scores and equivalent mutants: docs/mutation.md
mutation:
	$(PYTHON) scripts/mutation.py $(MODULES)

bench:
	$(PYTHON) -m bench.full_sync

demo:
	pimsync demo

# The hashed lock files CI and the image install from, made from pyproject.toml (pip-tools).
LOCK = $(PYTHON) -m piptools compile -q --allow-unsafe --generate-hashes --strip-extras \
	--no-emit-index-url --no-emit-find-links
lock:
	$(LOCK) --extra dev -o requirements/dev.lock pyproject.toml
	$(LOCK) -o requirements/prod.lock pyproject.toml
