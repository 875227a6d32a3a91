# pimsync tasks. `make test` is the test command (CI runs it too).
PYTHON ?= python
PYTEST ?= pytest

.PHONY: test test-fast test-twice lint format bench demo

test:
	$(PYTEST) -q

# Two runs at once (this checkout and a fresh one of HEAD) on the same services: both pass.
test-twice:
	bash .ci/test-twice

test-fast:
	$(PYTEST) -q -m "not slow"

lint:
	ruff check app tasks tests bench celeryconfig.py
	ruff format --check app tasks tests bench celeryconfig.py
	mypy app tasks
	lint-imports

format:
	ruff check --fix app tasks tests bench celeryconfig.py
	ruff format app tasks tests bench celeryconfig.py

bench:
	$(PYTHON) -m bench.full_sync

demo:
	pimsync demo
