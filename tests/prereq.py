"""What the tests need from the machine: services, tools and data sets that may be missing.

Every test that needs one of them asks here, and nowhere else:

- ``found(what, value, hint)`` returns ``value`` when it is there (a path, a URL, ...);
- ``missing(what, reason)`` says it is not.

A missing prerequisite skips the test with its reason (a user's clone without Chromium or
the icecat catalog still runs everything else). With ``PIMSYNC_REQUIRE_ALL=1`` (CI sets it)
it fails the test instead, so nothing CI is meant to check can quietly not run; conftest.py
also turns any other skip into a failure under that switch. Either way the run ends with a
list of every prerequisite asked for and what was found (``pytest_terminal_summary``).

``PIMSYNC_REQUIRE_SERVICES=1`` and ``PIMSYNC_REQUIRE_ICECAT=1``, the switches this one
replaces, mean the same as ``PIMSYNC_REQUIRE_ALL=1``.
"""

from __future__ import annotations

import os
from typing import NoReturn, TypeVar

import pytest

SWITCH = "PIMSYNC_REQUIRE_ALL"
OLD_SWITCHES = ("PIMSYNC_REQUIRE_SERVICES", "PIMSYNC_REQUIRE_ICECAT")
REQUIRE_ALL = any(os.environ.get(name) == "1" for name in (SWITCH, *OLD_SWITCHES))

T = TypeVar("T")

# what -> (found, detail): the value found, or why it is missing; and how many tests asked
CHECKED: dict[str, tuple[bool, str]] = {}
ASKED: dict[str, int] = {}


def _record(what: str, ok: bool, detail: str) -> None:
    ASKED[what] = ASKED.get(what, 0) + 1
    # a prerequisite missing once stays reported as missing
    if what not in CHECKED or CHECKED[what][0]:
        CHECKED[what] = (ok, detail)


def missing(what: str, reason: str) -> NoReturn:
    """``what`` is not there: skip the test, or fail it under ``PIMSYNC_REQUIRE_ALL=1``."""
    __tracebackhide__ = True  # the skip is reported at the test's line, not here
    _record(what, False, reason)
    if REQUIRE_ALL:
        pytest.fail(f"{what} missing: {reason} ({SWITCH}=1 requires it)", pytrace=False)
    pytest.skip(f"{what} missing: {reason}")


def found(what: str, value: T | None, hint: str) -> T:
    """``value`` if it is there (not None, not empty), else ``missing(what, hint)``."""
    __tracebackhide__ = True
    if value is None or value == "" or value is False:
        missing(what, hint)
    _record(what, True, " ".join(value) if isinstance(value, list) else str(value))
    return value
