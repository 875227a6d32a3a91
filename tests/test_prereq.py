"""The switch works: without it a missing prerequisite skips, with PIMSYNC_REQUIRE_ALL=1 it
and every other kind of skip fail the run; either way the run lists what it asked for."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.prereq import OLD_SWITCHES, SWITCH

ROOT = Path(__file__).resolve().parent.parent

INNER_TESTS = """
import pytest

from tests.prereq import found


def test_needs_a_tool_that_is_not_here():
    found("probe tool", None, "not on this machine")


def test_needs_one_that_is():
    assert found("present thing", "/bin/sh", "") == "/bin/sh"


def test_skips_by_itself():
    pytest.skip("a bare skip")


@pytest.mark.skipif(True, reason="a skipif mark")
def test_skipped_by_a_mark():
    pass


@pytest.mark.xfail(reason="a known bug", strict=True)
def test_expected_to_fail():
    assert False
"""
INNER_CONFTEST = (
    "from tests.conftest import (  # noqa: F401\n"
    "    pytest_make_collect_report, pytest_runtest_makereport, pytest_terminal_summary\n"
    ")\n"
)


def _inner_run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, switch: str | None):
    for name in (SWITCH, *OLD_SWITCHES):
        monkeypatch.delenv(name, raising=False)
    if switch:
        monkeypatch.setenv(switch, "1")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(
        test_inner=INNER_TESTS,
        test_module_skip='import pytest\n\npytest.importorskip("pimsync_no_such_module")\n',
    )
    # (a collection error would stop the run before any test: CI fails on it either way)
    return pytester.runpytest_subprocess(
        "-ra", "-p", "no:cacheprovider", "--continue-on-collection-errors"
    )


def test_without_the_switch_a_missing_prerequisite_skips(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = _inner_run(pytester, monkeypatch, None)
    result.assert_outcomes(passed=1, skipped=4, xfailed=1)
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*prerequisites*",
            "found   present thing: /bin/sh",
            "MISSING probe tool: not on this machine",
            f"{SWITCH} unset*",
            # -ra names every skip, at the test's own line
            "SKIPPED [[]1[]] test_inner.py:7: probe tool missing: not on this machine",
        ]
    )


@pytest.mark.parametrize("switch", [SWITCH, *OLD_SWITCHES])
def test_the_switch_turns_every_skip_into_a_failure(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, switch: str
) -> None:
    result = _inner_run(pytester, monkeypatch, switch)
    # the missing tool and the bare skip fail; the mark's skip (at setup) and the module's
    # importorskip (at collection) error; xfail stays
    result.assert_outcomes(passed=1, failed=2, errors=2, xfailed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting test_module_skip.py*",
            f"skipped, but {SWITCH}=1 lets nothing skip: could not import 'pimsync_no_such*",
            "*ERROR at setup of test_skipped_by_a_mark*",
            f"skipped, but {SWITCH}=1 lets nothing skip: a skipif mark (*test_inner.py:18)",
            f"probe tool missing: not on this machine ({SWITCH}=1 requires it)",
            f"skipped, but {SWITCH}=1 lets nothing skip: a bare skip (*test_inner.py:15)",
            "MISSING probe tool: not on this machine",
            f"{SWITCH}=1: a missing prerequisite or any skip fails the run",
        ]
    )
