"""``pimsync status`` (alias ``pimsync doctor``): one screen that says whether pimsync is healthy.

Each check answers ok, warn or fail with its reason; the command exits 1 when a check fails
(``--json`` for scripts). The checks ask each part directly with short timeouts: the
database, the broker and the shared-limits Redis, the PIM (one login), the workers (a Celery
broadcast), the queues (Redis list lengths and the oldest message's age), then the state the
database holds: runs in progress, the last finished run of each kind, dead letters, the delta
cursor's lag and the product pages' projection lag.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.table import Table
from sqlalchemy import func, select, text

from app.cli.terminal import console, friendly
from app.config import Settings, get_settings
from app.db import get_engine, session_scope, utcnow
from app.pages import repository as pages_repo
from app.pim.akeneo import AkeneoRestSource
from app.pim.ratelimit import LocalSemaphore
from app.pim.sources import describe_source
from app.sync import repository as repo
from app.sync.models import DL_OPEN, DeadLetter
from app.sync.runs import INGEST_CURSOR

OK, WARN, FAIL = "ok", "warn", "fail"
# How long one probe may take: status is read by a person waiting, and a part that does not
# answer within this is as good as down for the question "is it healthy".
PROBE_TIMEOUT_SECONDS = 3.0
# Oldest waiting message past this: the consumers do not keep up (or are stuck).
BACKLOG_AGE_WARN_SECONDS = 300.0
# Catalog changes not on their product pages after this long: catalog events are lost or
# their consumers stopped (the sweeper and `pimsync reconcile` repair it).
PROJECTION_LAG_WARN_SECONDS = 120.0
# The delta cursor older than this many delta intervals: deltas do not run (is beat up?).
CURSOR_LAG_INTERVALS = 3


@dataclass
class Check:
    name: str
    state: str
    reason: str
    data: dict[str, Any] = field(default_factory=dict)


def _safe_url(url: str) -> str:
    """A URL without its credentials (never print a password)."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}"


def _timed(probe: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = probe()
    return value, (time.perf_counter() - started) * 1000


def _first_line(exc: BaseException) -> str:
    text_ = str(getattr(exc, "orig", None) or exc).strip()
    return (text_.splitlines() or [type(exc).__name__])[0][:300]


def check_database(settings: Settings) -> Check:
    from app.migrations import current_revision, head_revision

    where = _safe_url(settings.database_url)
    try:

        def probe() -> None:
            with get_engine().connect() as conn:
                conn.execute(text("SELECT 1"))

        _, ms = _timed(probe)
        current, head = current_revision(settings.database_url), head_revision()
    except Exception as exc:  # any driver error: the database cannot answer
        return Check("database", FAIL, f"{where} (PIMSYNC_DATABASE_URL): {_first_line(exc)}")
    if current != head:
        return Check(
            "database",
            FAIL,
            f"{where}: schema at {current or 'nothing'}, this release needs {head}: "
            "run `pimsync migrate`",
        )
    return Check("database", OK, f"{where}, {ms:.0f} ms", {"latency_ms": round(ms, 1)})


def _redis_check(name: str, setting: str, url: str) -> Check:
    import redis

    where = _safe_url(url)
    client = redis.Redis.from_url(
        url, socket_timeout=PROBE_TIMEOUT_SECONDS, socket_connect_timeout=PROBE_TIMEOUT_SECONDS
    )
    try:
        _, ms = _timed(client.ping)
    except Exception as exc:  # redis' errors, a bad URL's ValueError
        return Check(name, FAIL, f"{where} ({setting}): {_first_line(exc)}")
    finally:
        client.close()
    return Check(name, OK, f"{where}, {ms:.0f} ms", {"latency_ms": round(ms, 1)})


def check_broker(settings: Settings) -> Check:
    if not settings.broker_url.startswith(("redis://", "rediss://", "unix://")):
        return Check("broker", WARN, f"{_safe_url(settings.broker_url)}: not Redis, not probed")
    return _redis_check("broker", "PIMSYNC_BROKER_URL", settings.broker_url)


def check_limits(settings: Settings) -> Check:
    if settings.redis_url.lower() in ("none", "local"):
        return Check("shared limits", OK, "off: the PIM's call cap is per process")
    return _redis_check("shared limits", "PIMSYNC_REDIS_URL", settings.redis_url)


def check_pim(settings: Settings) -> Check:
    kind, where = describe_source(settings.pim_source)
    data: dict[str, Any] = {"kind": kind, "source": where}
    if kind in ("sample", "generated"):
        return Check("PIM", OK, f"{kind} catalog ({where}), built in", data)
    if kind == "files":
        if Path(where).expanduser().exists():
            return Check("PIM", OK, f"export files at {where}", data)
        return Check("PIM", FAIL, f"{where} not found (PIMSYNC_PIM_SOURCE)", data)
    source = AkeneoRestSource.from_settings(
        settings.pim_source,
        timeout=PROBE_TIMEOUT_SECONDS,
        max_retries=0,
        limiter=LocalSemaphore(1, name="status"),
    )
    try:
        _, ms = _timed(source.ping)
    except Exception as exc:  # SourceError says why; anything else is as much a failure
        return Check("PIM", FAIL, f"{where}: {_first_line(exc)}", data)
    finally:
        source.close()
    data["latency_ms"] = round(ms, 1)
    return Check("PIM", OK, f"Akeneo at {where}, login in {ms:.0f} ms", data)


def check_workers_and_queues(settings: Settings) -> list[Check]:
    from tasks.workers import backlog, consumers_by_queue, worker_queues

    try:
        workers = worker_queues()
    except Exception as exc:  # the broker's errors: reported by the broker check too
        return [Check("workers", FAIL, f"cannot ask them: {_first_line(exc)}")]
    out = []
    if workers:
        listed = "; ".join(f"{w}: {', '.join(q)}" for w, q in workers.items())
        out.append(Check("workers", OK, f"{len(workers)} answered: {listed}", {"workers": workers}))
    else:
        out.append(
            Check(
                "workers",
                FAIL,
                "none answered within "
                f"{PROBE_TIMEOUT_SECONDS / 2:g} s: start `pimsync worker` (every queue by default)",
            )
        )
    consumers = consumers_by_queue(workers)
    try:
        states = backlog(settings.broker_url)
    except Exception as exc:  # redis' errors
        out.append(Check("queues", FAIL, f"cannot read them: {_first_line(exc)}"))
        return out
    for queue, state in states.items():
        state.consumers = consumers.get(queue, [])
        data = {
            "waiting": state.waiting,
            "oldest_age_seconds": None if state.oldest_age is None else round(state.oldest_age),
            "consumers": state.consumers,
        }
        waiting = "?" if state.waiting is None else f"{state.waiting:,}"
        age = "" if state.oldest_age is None else f", oldest {_ago(state.oldest_age)}"
        who = f"{len(state.consumers)} consumer(s)" if state.consumers else "no consumer"
        reason = f"{waiting} waiting{age}, {who}"
        if state.without_consumer:
            check = Check(f"queue {queue}", FAIL, reason + ": nothing will take them", data)
        elif not state.consumers:
            check = Check(f"queue {queue}", WARN, reason, data)
        elif state.oldest_age is not None and state.oldest_age > BACKLOG_AGE_WARN_SECONDS:
            check = Check(f"queue {queue}", WARN, reason + ": consumers fall behind", data)
        else:
            check = Check(f"queue {queue}", OK, reason, data)
        out.append(check)
    return out


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def check_state(settings: Settings, now: datetime) -> list[Check]:
    """What the database says: runs, dead letters, cursor and projection lag."""
    out = []
    with session_scope() as session:
        running = repo.running_runs(session)
        stuck_after = settings.lock_ttl_seconds
        for run in sorted(running, key=lambda r: (r.started_at, r.channel or "")):
            label = f"run {str(run.id)[:8]}"
            started = _ago(_age(now, run.started_at))
            what = f"{run.kind} {run.channel or 'PIM read'}, started {started} ago"
            data: dict[str, Any]
            if run.channel is None:
                progress = f"{run.read:,} products read"
                data = {"read": run.read}
            else:
                progress = f"{run.processed:,}/{run.planned_units:,} units"
                data = {"done": run.processed, "total": run.planned_units}
            data.update(kind=run.kind, channel=run.channel, id=str(run.id))
            quiet = _age(now, run.heartbeat_at or run.started_at)
            if quiet > stuck_after:
                out.append(
                    Check(label, WARN, f"{what}: {progress}, no progress for {_ago(quiet)}", data)
                )
            else:
                out.append(Check(label, OK, f"{what}: {progress}", data))
        if not running:
            out.append(Check("runs", OK, "none in progress"))
        for kind, run in sorted(repo.last_finished_runs(session).items()):
            finished = run.finished_at or run.started_at
            reason = f"{run.status} {_ago(_age(now, finished))} ago ({str(run.id)[:8]})"
            last: dict[str, Any] = {
                "id": str(run.id),
                "status": run.status,
                "finished_at": finished.isoformat(),
            }
            if run.status in ("failed", "aborted", "abandoned"):
                out.append(Check(f"last {kind}", WARN, f"{reason}: {run.error}", last))
            else:
                out.append(Check(f"last {kind}", OK, reason, last))
        letters = dict(
            session.execute(
                select(DeadLetter.channel, func.count())
                .where(DeadLetter.status == DL_OPEN)
                .group_by(DeadLetter.channel)
            ).all()
        )
        if letters:
            listed = ", ".join(f"{c}: {n}" for c, n in sorted(letters.items()))
            out.append(
                Check(
                    "dead letters",
                    WARN,
                    f"open: {listed} (`pimsync dead-letters list`)",
                    {"open": letters},
                )
            )
        else:
            out.append(Check("dead letters", OK, "none open", {"open": {}}))
        cursor = repo.get_cursor(session, INGEST_CURSOR)
        limit = CURSOR_LAG_INTERVALS * settings.delta_interval_seconds
        if cursor is None:
            out.append(
                Check("cursor lag", WARN, "no delta cursor yet: no full or delta sync completed")
            )
        else:
            lag = _age(now, datetime.fromisoformat(cursor))
            state = WARN if lag > limit else OK
            hint = " (deltas do not run: is `pimsync beat` up?)" if state == WARN else ""
            out.append(
                Check("cursor lag", state, f"{_ago(lag)} behind now{hint}", {"seconds": round(lag)})
            )
        behind = pages_repo.projection_lag(session, now)
        if not behind:
            out.append(Check("page projection", OK, "every catalog row is on its page"))
        else:
            worst = max(age for _, age in behind.values())
            listed = ", ".join(f"{c}: {n:,}" for c, (n, _) in sorted(behind.items()))
            state = WARN if worst > PROJECTION_LAG_WARN_SECONDS else OK
            out.append(
                Check(
                    "page projection",
                    state,
                    f"rows not on their page yet: {listed}; oldest {_ago(worst)}",
                    {c: {"rows": n, "oldest_seconds": round(a)} for c, (n, a) in behind.items()},
                )
            )
    return out


def _age(now: datetime, then: datetime) -> float:
    return max(0.0, (now - then).total_seconds())


def gather(settings: Settings) -> list[Check]:
    now = utcnow()
    checks = [check_database(settings), check_broker(settings), check_limits(settings)]
    checks.append(check_pim(settings))
    if checks[1].state != FAIL:
        checks.extend(check_workers_and_queues(settings))
    if checks[0].state != FAIL:
        try:
            checks.extend(check_state(settings, now))
        except Exception as exc:  # the database went away meanwhile: say so, keep the rest
            checks.append(Check("state", FAIL, _first_line(exc)))
    return checks


STYLE = {OK: "green", WARN: "yellow", FAIL: "red"}


@friendly
def status(
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON (for scripts)."),
) -> None:
    """Is pimsync healthy? Database, Redis, the PIM, workers and queues, runs, dead letters,
    lags: each check ok, warn or fail with its reason. Exits 1 when a check fails."""
    settings = get_settings()
    checks = gather(settings)
    failed = any(c.state == FAIL for c in checks)
    if as_json:
        body = {"ok": not failed, "checks": [asdict(c) for c in checks]}
        typer.echo(json.dumps(body, default=str, indent=2))
    else:
        t = Table(box=box.SIMPLE_HEAD, pad_edge=False, title="pimsync status")
        t.add_column("check", no_wrap=True)
        t.add_column("state", no_wrap=True)
        t.add_column("why", overflow="fold")
        for c in checks:
            t.add_row(c.name, f"[{STYLE[c.state]}]{c.state}[/]", c.reason)
        console.print(t)
        verdict = "something is wrong (fail above)" if failed else "healthy"
        console.print(f"[{'red' if failed else 'green'}]{verdict}[/]")
    if failed:
        raise typer.Exit(1)
