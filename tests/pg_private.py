"""A PostgreSQL server of the test's own, to stop and start again: "the database server went
away" for real, without touching the shared server other test runs use.

``initdb`` into a temporary folder, ``pg_ctl start`` on a free port (TCP on 127.0.0.1 only, no
Unix socket), trust authentication, no fsync. The binaries are found through
``PIMSYNC_TEST_PG_BINDIR``, ``pg_config --bindir`` or ``/usr/lib/postgresql/*/bin``; without
them the tests that need a private server skip with the reason (fail under
``PIMSYNC_REQUIRE_SERVICES=1``, as in CI, which has them). As root the
server runs as the ``postgres`` system user (PostgreSQL refuses to run as root).

Use the ``private_pg`` fixture (import it into the test module) or ``PrivatePostgres`` itself.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e_support import free_port
from tests.prereq import found


def find_bindir() -> Path | None:
    candidates: list[Path] = []
    if os.environ.get("PIMSYNC_TEST_PG_BINDIR"):
        candidates.append(Path(os.environ["PIMSYNC_TEST_PG_BINDIR"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
            candidates.append(Path(out.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for path in candidates:
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    return None


class PrivatePostgres:
    """One PostgreSQL cluster in a temporary folder; ``stop()`` and ``start()`` at will."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="pimsync-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._user: str | None = None
        if os.geteuid() == 0:  # initdb and postgres refuse root
            self._user = "postgres"
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    @property
    def admin_url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 120) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._user is not None:
            command = ["runuser", "-u", self._user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({done.returncode}): {done.stderr[-2000:]}\n{log}"
            )

    def init(self) -> PrivatePostgres:
        self._run(
            *("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust"),
            *("-E", "UTF8", "--no-sync", "--no-instructions"),
        )
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=60"
        )
        self._run(
            *("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options),
            *("-w", "-t", "60", "start"),
        )

    def stop(self, mode: str = "fast") -> None:
        """``fast``: sessions are terminated, the server shuts down cleanly; ``immediate``: a
        crash (recovery on the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def create_database(self, name: str = "pimsync") -> str:
        """A migrated database on this server; returns its URL."""
        from sqlalchemy import create_engine, text

        from app.migrations import upgrade

        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        url = self.url(name)
        upgrade(url)
        return url

    def cleanup(self) -> None:
        if self.running():
            with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def private_pg() -> Iterator[PrivatePostgres]:
    """A running private PostgreSQL server, removed after the test."""
    # missing: a skip, or a failure under PIMSYNC_REQUIRE_ALL=1 (CI)
    bindir = found(
        "PostgreSQL server binaries (initdb, pg_ctl)",
        find_bindir(),
        "not found: set PIMSYNC_TEST_PG_BINDIR or install the postgresql server package to "
        "run the server-stopped tests",
    )
    server = PrivatePostgres(bindir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.cleanup()


def wait_for_port_closed(server: PrivatePostgres, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", server.port)) != 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"private PostgreSQL still listening on {server.port}")
