"""The hashed lock files (make lock) agree with pyproject.toml: every dependency pinned, at a
version its range admits, with hashes; CI installs requirements/dev.lock, the image
requirements/prod.lock."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def pins(lock: str) -> dict[str, tuple[str, int]]:
    """{name: (version, hashes)} of a pip-compile lock file."""
    text = (ROOT / "requirements" / lock).read_text()
    found: dict[str, tuple[str, int]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        head = re.match(r"([A-Za-z0-9_.\-]+)==([^\s\\]+)", block)
        if head:
            found[canonicalize_name(head[1])] = (head[2], block.count("--hash=sha256:"))
    return found


@pytest.mark.parametrize(
    ("lock", "groups"), [("prod.lock", ["main"]), ("dev.lock", ["main", "dev"])]
)
def test_every_dependency_is_pinned_within_its_range_with_hashes(
    lock: str, groups: list[str]
) -> None:
    locked = pins(lock)
    wanted = list(PYPROJECT["dependencies"])
    if "dev" in groups:
        wanted += PYPROJECT["optional-dependencies"]["dev"]
    for spec in wanted:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is not in requirements/{lock}: run `make lock`"
        version, hashes = locked[name]
        assert req.specifier.contains(version, prereleases=True), (
            f"{req.name}=={version} in requirements/{lock} is outside {req.specifier}: "
            "run `make lock`"
        )
        assert hashes >= 1, f"{req.name} has no hash in requirements/{lock}"
    assert all(h >= 1 for _v, h in locked.values())


def test_the_image_lock_holds_no_dev_tool() -> None:
    locked = pins("prod.lock")
    for tool in ("pytest", "mutmut", "schemathesis", "ruff", "mypy"):
        assert tool not in locked
