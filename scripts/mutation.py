"""Mutation testing, module by module: ``make mutation [MODULES="app/web/security.py ..."]``
(``--survivors`` among them: run again only the last run's survivors; ``--report``: run
nothing, print the last verdicts; ``--direct``: each module against its own tests only, as
listed in ``[tool.pimsync.mutation.direct]``).

Runs mutmut (configured in pyproject.toml, ``[tool.mutmut]``) over each module in turn and
prints its score: mutants killed / mutants made, and the survivors by name (see one with
``mutmut show NAME``). Without arguments, every module of ``only_mutate``. Slow: not part of
``make test``. docs/mutation.md has the last scores and the survivors judged equivalent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.conftest import create_pg_database, drop_pg_database

KILLED = {"killed", "timeout"}  # a mutant that hangs the tests is caught too


PYPROJECT = Path("pyproject.toml")


def configured_modules() -> list[str]:
    config = tomllib.loads(PYPROJECT.read_text())["tool"]["mutmut"]
    return list(config["only_mutate"])


def direct_tests(path: str) -> list[str]:
    """The tests of ``path`` alone (``[tool.pimsync.mutation.direct]``); SystemExit if none."""
    table = tomllib.loads(PYPROJECT.read_text())["tool"]["pimsync"]["mutation"]["direct"]
    if path not in table:
        raise SystemExit(
            f"--direct: {path} has no entry in [tool.pimsync.mutation.direct] of pyproject.toml"
            f" (modules with one: {', '.join(table)})"
        )
    return list(table[path])


def _toml_list(name: str, items: list[str], text: str) -> str:
    """``text`` with the top-level array ``name = [...]`` replaced by ``items``."""
    pattern = re.compile(rf"^{name} = \[.*?\]$", re.M | re.S)
    if not pattern.search(text):
        raise SystemExit(f"pyproject.toml: no `{name} = [...]` under [tool.mutmut]")
    return pattern.sub(lambda _: f"{name} = {json.dumps(items)}", text, count=1)


def start_afresh_if_reconfigured() -> None:
    """mutmut keeps verdicts in mutants/ (with a copy of pyproject.toml); verdicts reached
    with another module list or test selection say nothing about this run: drop them."""
    kept = Path("mutants") / "pyproject.toml"
    if not kept.exists():
        return
    keys = ("only_mutate", "pytest_add_cli_args_test_selection")
    then = tomllib.loads(kept.read_text())["tool"].get("mutmut", {})
    now = tomllib.loads(PYPROJECT.read_text())["tool"]["mutmut"]
    if any(then.get(k) != now.get(k) for k in keys):
        print("mutants/ was made with other modules or tests: starting afresh")
        shutil.rmtree("mutants")


def narrowed(text: str, path: str, tests: list[str]) -> str:
    """pyproject.toml's text with mutmut mutating ``path`` only, against ``tests`` only.
    (mutmut notices the changed selection and runs its stats and every mutant again.)"""
    text = _toml_list("only_mutate", [path], text)
    return _toml_list("pytest_add_cli_args_test_selection", tests, text)


def statuses(path: str) -> dict[str, str]:
    """The last verdict on each mutant of a module (mutmut keeps them in mutants/)."""
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.stats import status_by_exit_code

    data = SourceFileMutationData(path=Path(path))
    data.load()
    return {key: status_by_exit_code[code] for key, code in data.exit_code_by_key.items()}


def run_module(path: str, mode: str) -> tuple[int, int, list[str]]:
    """mutmut over one module (or only its last survivors); (killed, total, survivors)."""
    names = [path.removesuffix(".py").replace("/", ".") + ".*"]
    if mode == "--survivors":
        names = [key for key, status in statuses(path).items() if status not in KILLED]
    elif mode == "--report":
        names = []
    if names:
        start_afresh_if_reconfigured()
        mutmut = Path(sys.executable).with_name("mutmut")
        subprocess.run([str(mutmut), "run", "--max-children", "1", *names], check=True)
    verdicts = statuses(path)
    killed = sum(status in KILLED for status in verdicts.values())
    others = sorted(f"{status}: {key}" for key, status in verdicts.items() if status not in KILLED)
    return killed, len(verdicts), others


def main(argv: list[str]) -> int:
    direct = "--direct" in argv
    argv = [a for a in argv if a != "--direct"]
    modes = [a for a in argv if a in ("--survivors", "--report")]
    mode = modes[0] if modes else ""
    modules = [a for a in argv if a not in modes] or configured_modules()
    selections = {path: direct_tests(path) for path in modules} if direct else {}
    report = []
    # one database for every mutant's tests (each test empties it first): creating and
    # dropping one per mutant costs ~10 s, more than most mutants' tests
    url = "" if mode == "--report" else create_pg_database("pimsync_mutation")
    os.environ["PIMSYNC_TEST_PG_DB_URL"] = url
    try:
        for path in modules:
            started = time.monotonic()
            if direct and mode != "--report":
                original = PYPROJECT.read_text()
                PYPROJECT.write_text(narrowed(original, path, selections[path]))
                try:
                    killed, total, survivors = run_module(path, mode)
                finally:
                    PYPROJECT.write_text(original)
            else:
                killed, total, survivors = run_module(path, mode)
            report.append((path, killed, total, survivors, time.monotonic() - started))
    finally:
        if url:
            drop_pg_database(url)
    print("\nmutation score (killed / mutants)")
    for path, killed, total, survivors, seconds in report:
        share = 100 * killed / total if total else 100.0
        print(f"{path}: {killed}/{total} ({share:.1f}%) in {seconds:.0f} s")
        for survivor in survivors:
            print(f"    {survivor}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
