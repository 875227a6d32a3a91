"""What every command shares: the consoles, the one-line error and its exit status."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from sqlalchemy.exc import OperationalError, ProgrammingError

from app.channels.config import ChannelConfigError
from app.config import get_settings
from app.mapping.errors import ContractError
from app.ownership import OwnershipConfigError
from app.pim.source import SourceError
from app.sync.context import DispatchError

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
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(exc.code) from None
        except KNOWN_ERRORS as exc:
            err.print(f"[red]error:[/red] {describe(exc)}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def describe(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", exc))
    if "no such table" in text or "UndefinedTable" in type(getattr(exc, "orig", exc)).__name__:
        return "the database has no pimsync schema yet; run `pimsync migrate` first"
    if isinstance(exc, OperationalError):
        url = get_settings().database_url
        safe = url.split("@")[-1] if "@" in url else url
        return f"cannot use the database at {safe}: {str(exc.orig).strip().splitlines()[0]}"
    if isinstance(exc, ProgrammingError):
        return (
            f"the database schema is not ready ({str(exc.orig).strip().splitlines()[0]}); "
            "run `pimsync migrate`"
        )
    return str(exc)


def parse_run_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise CliError(f"{value!r} is not a run id", 2) from None
