"""What every command shares: the consoles, the one-line error and its exit status."""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError, ProgrammingError
from sqlalchemy.orm import Session
from typer.core import TyperArgument, TyperOption

from app.channels.config import ChannelConfigError
from app.config import get_settings
from app.mapping.errors import ContractError
from app.ownership import OwnershipConfigError
from app.pim.source import SourceError
from app.sync import repository as sync_repo
from app.sync.context import DispatchError
from app.sync.runtime import configured_channels

console = Console()
err = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])

# Failures a command reports as one line (exit 1) instead of a traceback.
KNOWN_ERRORS: tuple[type[BaseException], ...] = (
    ChannelConfigError,
    ContractError,
    OwnershipConfigError,
    SourceError,
    DispatchError,
    ValueError,
    LookupError,
    OperationalError,
    ProgrammingError,
    ArgumentError,
    NoSuchModuleError,
    OSError,
)


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def friendly(fn: F) -> F:
    """Turn known failures into one line on stderr and an exit status."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CliError as exc:
            err.print(f"[red]error:[/red] {exc}", soft_wrap=True, highlight=False)
            raise typer.Exit(exc.code) from None
        except KNOWN_ERRORS as exc:
            err.print(f"[red]error:[/red] {describe(exc)}", soft_wrap=True, highlight=False)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def describe(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc))
    if "no such table" in text or "UndefinedTable" in type(getattr(exc, "orig", exc)).__name__:
        return "the database has no pimsync schema yet; run `pimsync migrate` first"
    if isinstance(exc, OperationalError):
        url = get_settings().database_url
        safe = url.split("@")[-1] if "@" in url else url
        return (
            f"cannot use the database at {safe} (PIMSYNC_DATABASE_URL): "
            f"{str(exc.orig).strip().splitlines()[0]}"
        )
    if isinstance(exc, (ArgumentError, NoSuchModuleError)):
        return f"PIMSYNC_DATABASE_URL is not a usable database URL: {text.splitlines()[0]}"
    if isinstance(exc, DispatchError):
        return f"{text} (PIMSYNC_BROKER_URL)"
    if isinstance(exc, ProgrammingError):
        return (
            f"the database schema is not ready ({str(exc.orig).strip().splitlines()[0]}); "
            "run `pimsync migrate`"
        )
    return str(exc)


# The shortest run id prefix accepted (``pimsync runs`` shows 8 digits).
MIN_RUN_PREFIX = 4
_RUN_PREFIX = re.compile(r"[0-9a-fA-F][0-9a-fA-F-]*")


def resolve_run_id(session: Session, value: str) -> uuid.UUID:
    """A run id, or a unique prefix of one (like git's short hashes): the 8 digits
    ``pimsync runs`` shows work everywhere a run id is asked for. An ambiguous prefix is an
    error listing the runs it matches."""
    text = value.strip()
    digits = text.replace("-", "")
    if not _RUN_PREFIX.fullmatch(text) or not MIN_RUN_PREFIX <= len(digits) <= 32:
        raise CliError(
            f"{value!r} is not a run id (the hex digits `pimsync runs` shows, "
            f"{MIN_RUN_PREFIX} at least)",
            2,
        )
    matches = sync_repo.runs_by_prefix(session, digits)
    if not matches:
        raise CliError(f"no run {value} (`pimsync runs` lists them)")
    if len(matches) > 1:
        listed = "; ".join(
            f"{r.id} {r.kind} {r.channel or 'PIM read'} {r.started_at:%Y-%m-%d %H:%M}"
            for r in matches
        )
        raise CliError(f"run id {value} is ambiguous, it starts {listed}: type more of it", 2)
    return matches[0].id


def check_channels(channels: list[str] | str | None) -> list[str]:
    """The channels asked for, each a configured one; an unknown channel is an error (exit 2)
    that lists the configured ones."""
    if not channels:
        return []
    wanted = [channels] if isinstance(channels, str) else list(channels)
    try:
        return configured_channels(get_settings(), wanted)
    except ValueError as exc:
        raise CliError(str(exc), 2) from None


def readable_help() -> None:
    """Help that reads as words: no raw type tags (``<str>``, ``<bool>``, ``<list[str]>``).

    A flag shows no type at all, an option's value is named after the option (``--channel
    CHANNEL``; repeatable ones ``CHANNEL...``), an argument's name says it already. Typer
    renders the annotation instead; this swaps in the names for every command at once."""

    def option_type(self: TyperOption, ctx: Any) -> str | None:
        if self.is_flag or self.count:
            return None
        word = self.metavar or (self.name or "value").upper().replace("_", "-")
        return f"{word}..." if self.multiple or self.nargs != 1 else word

    def argument_type(self: TyperArgument, ctx: Any) -> str | None:
        return None

    TyperOption.display_type_rich = option_type  # type: ignore[method-assign,assignment]
    TyperArgument.display_type_rich = argument_type  # type: ignore[method-assign,assignment]


def check_broker_url() -> None:
    """A broker URL kombu has no transport for is one line naming the setting, before any
    run is created (a run whose work cannot be sent would only fail)."""
    from kombu.transport import resolve_transport

    url = get_settings().broker_url
    scheme = url.split("://", 1)[0] if "://" in url else ""
    try:
        if not scheme:
            raise KeyError(scheme)
        resolve_transport(scheme)
    except (KeyError, ImportError, ValueError):
        safe = url.rsplit("@", 1)[-1]
        raise CliError(
            f"PIMSYNC_BROKER_URL {safe!r} names no broker pimsync can use "
            "(redis://host:port/db, or amqp://...)"
        ) from None


@dataclass(frozen=True)
class Column:
    """A table column: ``drop`` > 0 may be dropped on a narrow terminal (the highest first),
    ``wrap`` may wrap (long text, counted at WRAP_MIN wide); the others never wrap."""

    head: str
    drop: int = 0
    wrap: bool = False
    right: bool = False


# A wrapping column narrower than this is unreadable: drop columns before squeezing it more.
WRAP_MIN = 24


def fit_table(
    columns: list[Column], rows: list[list[str]], title: str | None = None
) -> tuple[Table, set[str]]:
    """A table that fits the terminal: optional columns dropped (highest ``drop`` first)
    until what is left fits, never a garbled cell. Returns it and the heads kept."""
    width = console.width

    def need(kept: list[int]) -> int:
        total = 0
        for i in kept:
            natural = max([len(columns[i].head)] + [len(r[i]) for r in rows])
            total += min(natural, WRAP_MIN) if columns[i].wrap else natural
        return total + 2 * max(0, len(kept) - 1) + 2

    kept = list(range(len(columns)))
    for i in sorted((i for i, c in enumerate(columns) if c.drop), key=lambda i: -columns[i].drop):
        if need(kept) <= width:
            break
        kept.remove(i)
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for i in kept:
        c = columns[i]
        table.add_column(
            c.head,
            justify="right" if c.right else "left",
            no_wrap=not c.wrap,
            overflow="fold" if c.wrap else "ellipsis",
            min_width=min(WRAP_MIN, len(c.head)) if c.wrap else None,
        )
    for r in rows:
        table.add_row(*(r[i] for i in kept))
    return table, {columns[i].head for i in kept}
