"""The README's "Operating it" block, run as written: it must end with a product page.

The commands are read from README.md at test time (never copied here), so the README and what
works cannot drift apart. The rules, the same ones the README states under the block:

1. The block is the first ```sh block after the ``## Operating it`` heading.
2. ``#`` starts a comment; a line that is only a comment (an alternative) is not run.
3. ``export NAME=VALUE ...`` sets settings for the lines after it, except the three this test
   points at its own PostgreSQL database and Redis database: PIMSYNC_DATABASE_URL,
   PIMSYNC_BROKER_URL and PIMSYNC_REDIS_URL.
4. The ports 8000 and 8081 are moved to free ports (other runs on the machine may hold them).
5. A line ending in ``&`` starts in the background and runs until the end; the next line runs
   once it is ready: its ``--port`` accepts connections, or, for ``pimsync worker``, its log
   says ``ready.``.
6. Every other line runs through ``sh -c`` in order and must exit 0.
7. The last line reads a product page (``/channels/{c}/products/{sku}``); it is retried for up
   to 30 s (pages are projected just after the sync's rows commit) and must answer that SKU.

A second test checks that every ``pimsync`` command of the day-to-day block exists.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from tests.conftest import PG_ADMIN_URL, _pg_admin_engine, drop_pg_database

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PINNED = ("PIMSYNC_DATABASE_URL", "PIMSYNC_BROKER_URL", "PIMSYNC_REDIS_URL")
PAGE = re.compile(r"/channels/([^/\s]+)/products/([^/\s?]+)")


def sh_blocks_after(heading: str) -> list[list[str]]:
    """The ```sh blocks of the README section under ``heading`` (to the next ## heading)."""
    text = README.read_text()
    start = text.index(f"\n{heading}\n")
    end = text.find("\n## ", start + 1)
    section = text[start : end if end != -1 else len(text)]
    return [
        block.strip("\n").splitlines() for block in re.findall(r"```sh\n(.*?)```", section, re.S)
    ]


def steps(block: list[str]) -> list[str]:
    """The lines to run: comments stripped (rule 2), blank lines dropped."""
    out = []
    for line in block:
        code = line.split("#", 1)[0].strip() if not line.lstrip().startswith("#") else ""
        if code:
            out.append(code)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_answers(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def empty_pg_database(pg_url: str) -> Iterator[str]:
    """The URL of a PostgreSQL database the server does not have yet, as on a fresh machine:
    the README's `pimsync migrate` creates it and its schema; dropped at the end. (pg_url:
    the PostgreSQL prerequisite, found or reported.)"""
    from sqlalchemy import text

    name = f"pimsync_readme_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = _pg_admin_engine()
    try:
        with engine.connect() as conn:
            query = text("SELECT count(*) FROM pg_database WHERE datname = :n")
            assert conn.execute(query, {"n": name}).scalar() == 0
    finally:
        engine.dispose()
    try:
        yield url
    finally:
        drop_pg_database(url)


class Background:
    """The `&` lines' processes, each in its own process group, stopped at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.procs: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(self, line: str, env: dict[str, str], timeout: float = 90) -> None:
        log = self.folder / f"bg{len(self.procs)}.log"
        proc = subprocess.Popen(
            ["sh", "-c", f"exec {line}"],
            cwd=self.folder,
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append((line, proc, log))
        port = re.search(r"--port[ =](\d+)", line)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"`{line}` exited {proc.returncode}:\n{self.tail(log)}")
            if port and port_answers(int(port.group(1))):
                return
            if "pimsync worker" in line and "ready." in log.read_text(errors="replace"):
                return
            if not port and "pimsync worker" not in line:
                return
            time.sleep(0.3)
        raise AssertionError(f"`{line}` not ready after {timeout} s:\n{self.tail(log)}")

    @staticmethod
    def tail(log: Path) -> str:
        return log.read_text(errors="replace")[-3000:]

    def logs(self) -> str:
        return "\n".join(f"--- {line}\n{self.tail(log)}" for line, _, log in self.procs)

    def stop(self) -> None:
        for _, proc, _ in reversed(self.procs):
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc, _ in reversed(self.procs):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def apply_export(line: str, env: dict[str, str]) -> None:
    """Rule 3: an `export` line's assignments, except the pinned isolation settings."""
    for word in shlex.split(line)[1:]:
        name, _, value = word.partition("=")
        if name not in PINNED:
            env[name] = value


def test_the_operating_block_runs_as_written_and_ends_with_a_page(
    empty_pg_database: str, redis_url: str, tmp_path: Path
) -> None:
    block = sh_blocks_after("## Operating it")[0]
    lines = steps(block)
    assert len(lines) >= 8 and PAGE.search(lines[-1]), lines  # the walk ends with a page read
    web, pim = free_port(), free_port()
    lines = [line.replace("8000", str(web)).replace("8081", str(pim)) for line in lines]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIMSYNC_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONUNBUFFERED"] = "1"
    pinned = {
        "PIMSYNC_DATABASE_URL": empty_pg_database,
        "PIMSYNC_BROKER_URL": redis_url,
        "PIMSYNC_REDIS_URL": redis_url,
    }
    env.update(pinned)
    background = Background(tmp_path)
    ran: list[str] = []
    try:
        for line in lines[:-1]:
            if line.startswith("export "):
                apply_export(line, env)
            elif line.endswith("&"):
                background.start(line[:-1].strip(), env)
            else:
                done = subprocess.run(
                    ["sh", "-c", line],
                    cwd=tmp_path,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=900,
                )
                assert done.returncode == 0, (
                    f"`{line}` exited {done.returncode}\n{done.stdout[-3000:]}\n"
                    f"{done.stderr[-3000:]}\n{background.logs()}"
                )
            ran.append(line)
        channel, sku = PAGE.search(lines[-1]).groups()  # type: ignore[union-attr]
        deadline = time.monotonic() + 30
        while True:
            read = subprocess.run(
                ["sh", "-c", lines[-1]], cwd=tmp_path, env=env, capture_output=True, text=True
            )
            if read.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert read.returncode == 0, f"{lines[-1]}: {read.stderr}\n{background.logs()}"
        page = json.loads(read.stdout)
        assert page["sku"] == sku and page["channel"] == channel, page
        assert page["catalog"], page  # the product's catalog document is on its page
    finally:
        background.stop()
    # quiet logs: one line per run phase at INFO, not one per PIM request or page
    worker_log = next(log for line, _, log in background.procs if "pimsync worker" in line)
    logged = worker_log.read_text(errors="replace")
    assert "full_ingest_complete" in logged and "full_sync_complete" in logged
    assert "HTTP Request:" not in logged and "ingest_page" not in logged
    # what the README's settings asked for is what ran: the reference PIM, and every step
    assert "pimsync worker" in " ".join(ran) and "pimsync sync full --wait" in ran
    assert env["PIMSYNC_PIM_SOURCE"] == f"http://127.0.0.1:{pim}"
    from sqlalchemy import create_engine, text

    engine = create_engine(empty_pg_database)
    try:
        with engine.connect() as conn:
            kind, source = conn.execute(
                text(
                    "SELECT source_kind, source FROM sync_run WHERE kind = 'full' "
                    "AND channel IS NULL AND status = 'completed'"
                )
            ).one()
    finally:
        engine.dispose()
    assert (kind, source) == ("akeneo", f"http://127.0.0.1:{pim}")


def test_every_day_to_day_command_exists() -> None:
    """The second block's commands (with placeholders: not run) each name a real command."""
    from typer.testing import CliRunner

    from app.cli import app

    blocks = sh_blocks_after("## Operating it")
    assert len(blocks) >= 2
    commands = [line for line in steps(blocks[1]) if line.startswith("pimsync ")]
    assert len(commands) >= 10
    runner = CliRunner()
    for line in commands:
        words = [w for w in line.split()[1:] if re.fullmatch(r"[a-z][a-z-]*", w)]
        path = words[:2] if words[:1] in (["runs"], ["dead-letters"]) and len(words) > 1 else []
        path = path or words[:1]
        if not path:  # `pimsync --version`
            result = runner.invoke(app, ["--version"])
            assert result.exit_code == 0 and result.stdout.startswith("pimsync "), result.output
            continue
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (line, result.output)
        for option in re.findall(r"(--[a-z][a-z-]*)", line):
            assert option in result.stdout, (line, option)
