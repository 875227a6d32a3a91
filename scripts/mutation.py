"""Mutation testing, module by module: ``make mutation [MODULES="app/web/security.py ..."]``
(``--survivors`` among them: run again only the last run's survivors; ``--report``: run
nothing, print the last verdicts).

Runs mutmut (configured in pyproject.toml, ``[tool.mutmut]``) over each module in turn and
prints its score: mutants killed / mutants made, and the survivors by name (see one with
``mutmut show NAME``). Without arguments, every module of ``only_mutate``. Slow: not part of
``make test``. docs/mutation.md has the last scores and the survivors judged equivalent.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.conftest import create_pg_database, drop_pg_database

KILLED = {"killed", "timeout"}  # a mutant that hangs the tests is caught too


def configured_modules() -> list[str]:
    config = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["mutmut"]
    return list(config["only_mutate"])


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
        mutmut = Path(sys.executable).with_name("mutmut")
        subprocess.run([str(mutmut), "run", "--max-children", "1", *names], check=True)
    verdicts = statuses(path)
    killed = sum(status in KILLED for status in verdicts.values())
    others = sorted(f"{status}: {key}" for key, status in verdicts.items() if status not in KILLED)
    return killed, len(verdicts), others


def main(argv: list[str]) -> int:
    modes = [a for a in argv if a in ("--survivors", "--report")]
    mode = modes[0] if modes else ""
    modules = [a for a in argv if a not in modes] or configured_modules()
    report = []
    # one database for every mutant's tests (each test empties it first): creating and
    # dropping one per mutant costs ~10 s, more than most mutants' tests
    url = "" if mode == "--report" else create_pg_database("pimsync_mutation")
    os.environ["PIMSYNC_TEST_PG_DB_URL"] = url
    try:
        for path in modules:
            started = time.monotonic()
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
