"""Text PostgreSQL cannot store, decided once for every writer.

JSON allows a NUL character (``"\\u0000"``) and Python strings may hold lone surrogates, but
PostgreSQL's ``text`` and ``jsonb`` refuse both (the mirror's ``json`` column keeps the NUL
verbatim). pimsync never alters such a value silently: the thing carrying it is refused as an
input error with a reason a person can act on (the attribute, the locale, what is wrong), and
its neighbours go through:

- a product whose identifier or uuid is such text is refused at ingest (no key to store it by);
- a unit whose document would carry such a value is dead-lettered alone, in its channel;
- a webhook or domain event whose key is such text is refused with a 4xx naming the field.

Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from app.errors import InputError

NUL = "\x00"


class UnstorableText(InputError):
    """A value PostgreSQL cannot store (a NUL character, an invalid surrogate)."""


def text_problem(value: str) -> str | None:
    """Why PostgreSQL would refuse ``value`` (None: it would not)."""
    if NUL in value:
        return "contains a NUL character"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "contains an invalid surrogate (not UTF-8)"
    return None


def first_problem(value: Any) -> tuple[str, str] | None:
    """The first string in a JSON-like value (keys included) PostgreSQL would refuse, as
    (its path, why); None when there is none."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            reason = text_problem(item)
            if reason:
                return path or "<value>", reason
        elif isinstance(item, dict):
            for key, sub in item.items():
                if isinstance(key, str) and (reason := text_problem(key)):
                    return f"{path}.<key>" if path else "<key>", reason
                stack.append((f"{path}.{key}" if path else str(key), sub))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", sub) for i, sub in enumerate(item))
    return None


def value_problem(values: dict[str, Any]) -> str | None:
    """For a product's standard-format ``values``: which value PostgreSQL would refuse, said
    the way a catalog team finds it ("value of `description` in en_US (ecommerce) contains a NUL
    character"); None when every value can be stored."""
    for attribute, entries in values.items():
        if isinstance(attribute, str) and (reason := text_problem(attribute)):
            return f"attribute code {attribute!r} {reason}"
        if not isinstance(entries, list):
            continue
        for entry in entries:
            if not isinstance(entry, dict):
                continue
            found = first_problem(entry.get("data"))
            if found is None:
                continue
            where = []
            if entry.get("locale"):
                where.append(f"in {entry['locale']}")
            if entry.get("scope"):
                where.append(f"({entry['scope']})")
            inner = "" if found[0] == "<value>" else f" at {found[0]}"
            place = " ".join(where)
            return f"value of `{attribute}`{' ' + place if place else ''}{inner} {found[1]}"
    return None


def printable(value: str, limit: int = 120) -> str:
    """``value`` as a person can read it in a log or a dead letter (NUL and surrogates escaped),
    cut to ``limit`` characters."""
    shown = value.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
    shown = shown.replace(NUL, "\\x00")
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."
