"""The pimsync command's manners: help that reads, tables that fit 80 columns, short run ids,
unknown channels listed, one line for a bad setting, --version, --wait that says when no
worker listens."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from app.cli import app
from app.config import reset_settings_cache

ROOT = Path(__file__).resolve().parent.parent
CHANNELS = ("at_storefront", "b2b_portal", "de_storefront", "uk_marketplace")
TYPE_TAG = re.compile(r"<(str|int|float|bool|list\[[a-z]+\]|[a-z]+ range|path)>")


def commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, group
    for name, sub in getattr(group, "commands", {}).items():
        yield from commands(sub, (*path, name))


def test_every_option_says_what_it_is_for_and_no_help_shows_a_type_tag() -> None:
    root = typer.main.get_command(app)
    walked = list(commands(root))
    assert len(walked) > 20  # every command and group, nested ones included
    runner = CliRunner()
    for path, command in walked:
        for param in command.params:
            assert (getattr(param, "help", None) or "").strip(), (path, param.name)
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert not TYPE_TAG.search(result.stdout), (path, TYPE_TAG.search(result.stdout))
        # the help panel may wrap a line inside its box: read the text without the frame
        flat = re.sub(r"[\s│]+", " ", result.stdout)
        assert "Show this message and exit." in flat, (path, result.stdout)


def test_version() -> None:
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"pimsync {version('pimsync')}"


def pimsync(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real command in its own process (the terminal width is read at start-up)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("PIMSYNC_")}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=ROOT,
        env={**base, "COLUMNS": "80", "PIMSYNC_LOG_LEVEL": "WARNING", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def make_runs(ids: list[str], error: str | None = None) -> None:
    from app.db import session_scope, utcnow
    from app.sync import repository as repo

    now = utcnow()
    with session_scope() as s:
        for i, run_id in enumerate(ids):
            parent = repo.create_run(s, "full", None, now - timedelta(minutes=i), trigger="test")
            parent.id = uuid.UUID(run_id)
            s.flush()
            for channel in CHANNELS:
                child = repo.create_run(s, "full", channel, now, parent_id=parent.id)
                child.synced, child.failed, child.planned_units = 123_456, 7, 123_463
                repo.finish_run(s, child, "failed" if error else "completed", now, error=error)
            repo.finish_run(s, parent, "completed", now)
        repo.upsert_dead_letters(
            s,
            [
                {
                    "channel": "de_storefront",
                    "sku": "SKU-WITH-A-RATHER-LONG-CODE-0001",
                    "run_id": None,
                    "kind": "publish",
                    "error_type": "MappingError",
                    "error": "color 'ultraviolet' has no entry in lookup colors " * 3,
                    "permanent": True,
                    "attempts": 3,
                    "status": "open",
                    "first_failed_at": now,
                    "last_failed_at": now,
                }
            ],
        )


def test_runs_fit_80_columns_and_their_short_ids_work_everywhere(pg_db: str) -> None:
    long_error = "Akeneo at https://pim.example.com: GET /api/rest/v1/products-uuid " * 4
    make_runs(
        ["abcd1234-0000-4000-8000-000000000001", "abcd5678-0000-4000-8000-000000000002"],
        error=long_error,
    )
    listed = pimsync("runs", PIMSYNC_DATABASE_URL=pg_db)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    header = next(line for line in lines if "status" in line)
    for word in ("run", "kind", "channel", "status", "published", "failed"):
        assert re.search(rf"\b{word}\b", header), (word, header)
    for channel in CHANNELS:  # whole, on its row (not folded over two lines)
        assert any(re.search(rf"\b{channel}\b.*\bfailed\b", line) for line in lines), channel
    assert "abcd1234" in listed.stdout and "123456" in listed.stdout
    assert "/api/rest/v1/products-uuid" in listed.stdout  # the error, below the table

    letters = pimsync("dead-letters", "list", PIMSYNC_DATABASE_URL=pg_db)
    assert letters.returncode == 0, letters.stderr
    assert all(len(line) <= 80 for line in letters.stdout.splitlines()), letters.stdout
    assert re.search(r"\bde_storefront\b.*\bSKU-WITH-A-RATHER-LONG-CODE-0001\b", letters.stdout)
    assert "no entry in lookup colors" in letters.stdout

    shown = pimsync("runs", "show", "abcd1234", PIMSYNC_DATABASE_URL=pg_db)
    assert shown.returncode == 0, shown.stderr
    assert "abcd1234-0000-4000-8000-000000000001" in shown.stdout
    assert all(len(line) <= 80 for line in shown.stdout.splitlines()), shown.stdout
    ambiguous = pimsync("runs", "show", "abcd", PIMSYNC_DATABASE_URL=pg_db)
    assert ambiguous.returncode == 2
    assert "ambiguous" in ambiguous.stderr
    assert "abcd1234-0000-4000-8000-000000000001" in ambiguous.stderr
    assert "abcd5678-0000-4000-8000-000000000002" in ambiguous.stderr
    assert len(ambiguous.stderr.strip().splitlines()) == 1
    missing = pimsync("runs", "show", "ffff", PIMSYNC_DATABASE_URL=pg_db)
    assert missing.returncode == 1 and "no run ffff" in missing.stderr
    bad = pimsync("runs", "cancel", "xyz!", PIMSYNC_DATABASE_URL=pg_db)
    assert bad.returncode == 2 and "is not a run id" in bad.stderr


def test_an_unknown_channel_is_refused_listing_the_known_ones(pg_db: str) -> None:
    runner = CliRunner()
    for args in (
        ["runs", "--channel", "nope"],
        ["sync", "full", "--channel", "nope"],
        ["republish", "--channel", "nope"],
        ["dead-letters", "list", "--channel", "nope"],
        ["dead-letters", "replay", "--channel", "nope"],
        ["reset-version", "SKU-1", "--domain", "pricing", "--channel", "nope"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "unknown channel(s) nope" in result.stderr, (args, result.stderr)
        assert "configured: " + ", ".join(CHANNELS) in result.stderr


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("PIMSYNC_") and key != "PIMSYNC_ICECAT_DIR":
            monkeypatch.delenv(key)
    reset_settings_cache()
    yield
    reset_settings_cache()


@pytest.mark.parametrize(
    ("env", "args", "setting"),
    [
        ({"PIMSYNC_DATABASE_URL": "nonsense"}, ["runs"], "PIMSYNC_DATABASE_URL"),
        (
            {"PIMSYNC_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/x"},
            ["runs"],
            "PIMSYNC_DATABASE_URL",
        ),
        ({"PIMSYNC_BROKER_URL": "nonsense"}, ["sync", "delta"], "PIMSYNC_BROKER_URL"),
        ({"PIMSYNC_BROKER_URL": "foo://x"}, ["sync", "full"], "PIMSYNC_BROKER_URL"),
        (
            {"PIMSYNC_BROKER_URL": "redis://127.0.0.1:1/0", "PIMSYNC_LOG_LEVEL": "CRITICAL"},
            ["sync", "delta"],
            "PIMSYNC_BROKER_URL",
        ),
    ],
)
def test_a_bad_database_or_broker_url_is_one_line_naming_the_setting(
    env: dict[str, str], args: list[str], setting: str, tmp_path: Path
) -> None:
    db = tmp_path / "pimsync.db"
    given = {"PIMSYNC_DATABASE_URL": f"sqlite:///{db}", **env}
    if "PIMSYNC_BROKER_URL" in env:
        assert pimsync("migrate", **given).returncode == 0
    result = pimsync(*args, **given)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and setting in errors[0], result.stderr
    assert not [line for line in result.stderr.splitlines() if line.startswith("  ")]


def test_wait_says_at_once_when_no_worker_consumes_the_queues(pg_db: str, redis_url: str) -> None:
    from tests.e2e_support import apply_env, restore_env, stack_env

    old = apply_env(stack_env(pg_db, redis_url, "sample"))
    try:
        result = CliRunner().invoke(app, ["sync", "full", "--wait", "--timeout", "4"])
    finally:
        restore_env(old)
    # the warning came before the 4 s timeout gave up, and the run goes on (said too)
    assert "no worker consumes the queue(s) sync, publish, events.catalog" in result.stderr
    assert "still running after 4 s" in result.stderr
    assert result.exit_code == 2  # still running at the timeout (issue 16: 0 done, 1 failed)


def test_a_worker_refuses_a_queue_pimsync_does_not_use() -> None:
    """(With no --queues it consumes every one: the README walk runs it so.)"""
    result = CliRunner().invoke(app, ["worker", "--queues", "sync,evnets.catalog"])
    assert result.exit_code == 2
    assert "unknown queue(s) evnets.catalog" in result.stderr
    assert "events.catalog" in result.stderr.split("pimsync's queues:")[1]


@pytest.mark.parametrize("value", ["", "x" * 1001, "/data/\x00export"])
def test_a_source_that_cannot_be_one_is_bad_input(value: str) -> None:
    result = CliRunner().invoke(app, ["sync", "full", "--source", value])
    assert result.exit_code == 2, result.output
    assert "--source takes a URL" in result.stderr


@pytest.mark.parametrize("value", ["abc\x00d", "a" * 33, "g123", "abc"])
def test_a_run_id_that_cannot_be_one_is_bad_input(value: str, pg_db: str) -> None:
    result = CliRunner().invoke(app, ["runs", "show", value])
    assert result.exit_code == 2, result.output
    assert "is not a run id" in result.stderr
