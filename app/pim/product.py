"""Akeneo standard-format products (pure: no I/O).

A product is ``identifier``/``uuid``, ``family``, ``parent``, ``categories``, ``enabled``,
``updated`` and ``values`` as ``{attribute: [{"locale", "scope", "data"}]}``. ``data`` is text,
a number, a boolean, an option code, a list of option codes, a metric ``{amount, unit}``, a
price collection ``[{amount, currency}]`` or a media reference (a file path string).

``parse_product`` validates a payload from outside (a PIM page, a file, a webhook) and raises
``ProductParseError`` naming the product and the field; ``Product.trusted`` rebuilds one from the
mirror, which only ever holds products that passed ``parse_product``.
"""

from __future__ import annotations

import hashlib
import math
import uuid as uuid_module
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from app.errors import InputError
from app.textcheck import printable, text_problem

MAX_IDENTIFIER_LENGTH = 255
# A single product's payload; Akeneo products with 1,000 attributes stay well below this.
MAX_PRODUCT_BYTES = 2_000_000
MAX_ATTRIBUTES = 10_000

_MISSING: Any = object()
# Numbers are checked on their own: the mirror and content_hash serialise with orjson, which
# holds 64-bit integers only and would turn NaN/Infinity into null.
_SCALAR_TYPES = frozenset({str, bool})
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1


class ProductParseError(InputError):
    """A product payload that is not valid standard format. Names the product and the field."""

    def __init__(self, product_ref: str, field_name: str, message: str) -> None:
        self.product_ref = product_ref
        self.field = field_name
        self.message = message
        super().__init__(f"product {product_ref!r}: field {field_name!r}: {message}")


@dataclass(slots=True)
class Product:
    identifier: str
    uuid: str | None
    family: str | None
    parent: str | None
    categories: tuple[str, ...]
    enabled: bool
    updated: datetime | None
    values: dict[str, list[dict[str, Any]]]
    root_parent: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    # False: the PIM gave the product no identifier (allowed since products are keyed by
    # uuid); ``identifier`` is then its uuid, the key it is mirrored and published under
    has_identifier: bool = True
    # ``raw`` as JSON, when the ingest already encoded it (the mirror stores it as is)
    encoded: bytes | None = field(default=None, repr=False)
    # built by ``unlocalized()``/``localized()``; never passed in nor copied by
    # ``dataclasses.replace``
    _unlocalized: dict[str | None, dict[str, Any]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _localized: dict[tuple[str, str | None], dict[str, Any]] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    # results of pure transforms, shared by every channel that maps this product
    # (``app.mapping.mapper``: keys are the plans' memo ids)
    memo: dict[int, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def trusted(cls, raw: dict[str, Any], identifier: str) -> Product:
        """Rebuild a product that already passed ``parse_product`` (no validation)."""
        return cls(
            identifier=identifier,
            has_identifier=raw.get("identifier", identifier) is not None,
            uuid=raw.get("uuid"),
            family=raw.get("family"),
            parent=raw.get("parent"),
            categories=tuple(raw.get("categories") or ()),
            enabled=raw.get("enabled", True),
            updated=parse_datetime(raw["updated"]) if raw.get("updated") else None,
            values=raw.get("values") or {},
            root_parent=raw.get("root_parent"),
            raw=raw,
        )

    def value(self, attribute: str, locale: str | None = None, scope: str | None = None) -> Any:
        """The ``data`` stored for (attribute, locale, scope), or ``MISSING``.

        ``locale``/``scope`` are matched exactly, as Akeneo stores them: a non-localizable value
        has ``locale: null``, so callers pass ``None`` for it.
        """
        for entry in self.values.get(attribute, ()):
            if entry.get("locale") == locale and entry.get("scope") == scope:
                return entry.get("data")
        return _MISSING

    def attribute_codes(self) -> list[str]:
        return list(self.values)

    def unlocalized(self) -> dict[str | None, dict[str, Any]]:
        """The values without a locale, ``{scope: {attribute: data}}``, built once per product
        and shared by every channel that maps it (most attributes are read this way).

        Like ``value``, the first entry for a (scope, attribute) wins; an empty one (``is_empty``)
        is left out (the attribute has no value there, whatever entry follows it), so every
        value an index holds is non-empty. Assumes values that passed ``parse_product``.
        """
        index = self._unlocalized
        if index is None:
            index = self._index()
        return index

    def localized(self) -> dict[tuple[str, str | None], dict[str, Any]]:
        """The values with a locale, ``{(locale, scope): {attribute: data}}``, built with
        ``unlocalized`` in the same pass and on the same terms (first entry wins, empty is
        left out): a locale fallback chain is a dictionary lookup per locale, for every channel."""
        index = self._localized
        if index is None:
            self._index()
            index = self._localized
            assert index is not None
        return index

    def _index(self) -> dict[str | None, dict[str, Any]]:
        unlocalized: dict[str | None, dict[str, Any]] = {}
        localized: dict[tuple[str, str | None], dict[str, Any]] = {}
        empty = False
        for attribute, entries in self.values.items():
            for entry in entries:
                scope = entry.get("scope")
                locale = entry.get("locale")
                if locale is None:
                    by_attribute = unlocalized.get(scope)
                    if by_attribute is None:
                        by_attribute = unlocalized[scope] = {}
                else:
                    key = (locale, scope)
                    by_attribute = localized.get(key)
                    if by_attribute is None:
                        by_attribute = localized[key] = {}
                if attribute in by_attribute:
                    continue
                data: Any = entry.get("data")
                # is_empty, inlined for the common types (millions of values per sync)
                cls = data.__class__
                if cls is str:
                    if not data.strip():
                        data = None
                elif cls is list:
                    if not data:
                        data = None
                elif cls is dict:
                    amount = data.get("amount")
                    if amount is None or (isinstance(amount, str) and not amount.strip()):
                        data = None
                if data is None:
                    empty = True  # held until the end: it still shadows a later duplicate
                by_attribute[attribute] = data
        if empty:
            for index in (*unlocalized.values(), *localized.values()):
                for attribute in [a for a, data in index.items() if data is None]:
                    del index[attribute]
        self._unlocalized, self._localized = unlocalized, localized
        return unlocalized


MISSING = _MISSING


def is_missing(value: Any) -> bool:
    return value is _MISSING


def is_empty(data: Any) -> bool:
    """Akeneo's notion of an empty value (completeness, required mappings)."""
    if data is _MISSING or data is None:
        return True
    if isinstance(data, str):
        return data.strip() == ""
    if isinstance(data, list):
        return len(data) == 0
    if isinstance(data, dict):
        amount = data.get("amount")
        return amount is None or (isinstance(amount, str) and not amount.strip())
    return False


def parse_datetime(value: str) -> datetime:
    """ISO 8601 as Akeneo writes it (``2016-06-25T17:56:12+02:00``); naive means UTC."""
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt


def content_hash(raw: dict[str, Any]) -> str:
    """Hash of what a product *is*, ignoring when it was touched.

    Two payloads that differ only in ``updated``/``created`` or bookkeeping fields hash alike,
    so re-reading the delta overlap window or a redelivered webhook is a no-op downstream.
    """
    body = {
        "identifier": raw.get("identifier"),
        "family": raw.get("family"),
        "parent": raw.get("parent"),
        "categories": sorted(raw.get("categories") or ()),
        "enabled": raw.get("enabled", True),
        "values": raw.get("values") or {},
    }
    return hashlib.blake2b(
        orjson.dumps(body, option=orjson.OPT_SORT_KEYS), digest_size=16
    ).hexdigest()


def _ref(raw: dict[str, Any]) -> str:
    """How a refused product is named where it is recorded: its identifier, else its uuid (an
    identifier PostgreSQL cannot store is named by its uuid, or shown escaped)."""
    for key in ("identifier", "uuid", "code"):
        value = raw.get(key)
        if isinstance(value, str) and value and text_problem(value) is None:
            return value
    identifier = raw.get("identifier")
    return printable(identifier) if isinstance(identifier, str) and identifier else "<unknown>"


def is_uuid(value: Any) -> bool:
    """A uuid in its 36-character text form (Akeneo's product key)."""
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        uuid_module.UUID(value)
    except ValueError:
        return False
    return True


def _json_number(value: Any) -> bool:
    """A number JSON (and orjson) can hold: finite, integers within 64 bits."""
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return _INT_MIN <= value <= _INT_MAX
    if isinstance(value, float):
        return math.isfinite(value)
    return True


def _check_data(ref: str, attribute: str, i: int, data: Any) -> None:
    where = f"values.{attribute}[{i}].data"
    if data is None or isinstance(data, (str, bool)):
        return
    if isinstance(data, (int, float)):
        if not _json_number(data):
            raise ProductParseError(ref, where, f"number out of range: {data!r}")
        return
    if isinstance(data, dict):
        if "amount" not in data:
            raise ProductParseError(ref, where, "an object must be a metric {amount, unit}")
        amount = data["amount"]
        if amount is not None and (
            not isinstance(amount, (int, float, str)) or not _json_number(amount)
        ):
            raise ProductParseError(ref, where, f"metric amount must be a number, got {amount!r}")
        if amount is not None and not isinstance(data.get("unit"), str):
            raise ProductParseError(ref, where, "metric without a unit")
        return
    if isinstance(data, list):
        for j, item in enumerate(data):
            if isinstance(item, str):
                continue
            if isinstance(item, dict):
                if not isinstance(item.get("currency"), str):
                    raise ProductParseError(ref, f"{where}[{j}]", "a price needs a currency code")
                amount = item.get("amount")
                if amount is not None and (
                    not isinstance(amount, (int, float, str)) or not _json_number(amount)
                ):
                    raise ProductParseError(
                        ref, f"{where}[{j}]", f"price amount must be a number, got {amount!r}"
                    )
                continue
            raise ProductParseError(
                ref, f"{where}[{j}]", f"list items must be option codes or prices, got {item!r}"
            )
        return
    raise ProductParseError(ref, where, f"unsupported value {type(data).__name__}")


def parse_product(raw: Any, identifier_attribute: str = "sku") -> Product:
    """Validate a standard-format product; raise ``ProductParseError`` naming product and field."""
    if not isinstance(raw, dict):
        raise ProductParseError(
            "<unknown>", "<root>", f"expected an object, got {type(raw).__name__}"
        )
    ref = _ref(raw)

    values = raw.get("values", {})
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ProductParseError(ref, "values", "must be an object {attribute: [values]}")
    if len(values) > MAX_ATTRIBUTES:
        raise ProductParseError(ref, "values", f"more than {MAX_ATTRIBUTES} attributes")
    _SCALARS = _SCALAR_TYPES
    for attribute, entries in values.items():
        if attribute.__class__ is not str or not attribute or len(attribute) > 255:
            raise ProductParseError(
                ref, f"values.{attribute!r}", "attribute codes are 1-255 characters"
            )
        if entries.__class__ is not list:
            raise ProductParseError(ref, f"values.{attribute}", "must be a list of values")
        for i, entry in enumerate(entries):
            # Hot path (millions of values per sync): exact type checks, rare cases below.
            if entry.__class__ is not dict or "data" not in entry:
                raise ProductParseError(
                    ref, f"values.{attribute}[{i}]", "must be an object with locale, scope, data"
                )
            loc = entry.get("locale")
            if loc is not None and loc.__class__ is not str:
                raise ProductParseError(
                    ref, f"values.{attribute}[{i}].locale", f"must be a code or null, got {loc!r}"
                )
            sc = entry.get("scope")
            if sc is not None and sc.__class__ is not str:
                raise ProductParseError(
                    ref, f"values.{attribute}[{i}].scope", f"must be a code or null, got {sc!r}"
                )
            data = entry["data"]
            cls = data.__class__
            if data is None or cls in _SCALARS:
                continue
            if cls is int:
                if _INT_MIN <= data <= _INT_MAX:
                    continue
            elif cls is dict:  # a metric, as Akeneo sends it: {"amount": "2.5000", "unit": ...}
                if data.get("amount").__class__ is str and data.get("unit").__class__ is str:
                    continue
            elif cls is list:  # option codes
                for item in data:
                    if item.__class__ is not str:
                        break
                else:
                    continue
            _check_data(ref, attribute, i, data)  # the rest, and every error, said precisely

    identifier = raw.get("identifier")
    if identifier is None:
        for entry in values.get(identifier_attribute, ()):
            if isinstance(entry.get("data"), str):
                identifier = entry["data"]
                break
    has_identifier = True
    if identifier is None and is_uuid(raw.get("uuid")):
        # No identifier at all, and Akeneo's own key: mirrored under its uuid; each channel
        # publishes it under that uuid or skips it ("no identifier").
        identifier, has_identifier = str(raw["uuid"]).lower(), False
    if not isinstance(identifier, str) or not identifier.strip():
        raise ProductParseError(
            ref,
            "identifier",
            f"missing (no `identifier`, no `{identifier_attribute}` value, no uuid)",
        )
    if len(identifier) > MAX_IDENTIFIER_LENGTH:
        raise ProductParseError(
            ref, "identifier", f"longer than {MAX_IDENTIFIER_LENGTH} characters"
        )
    if problem := text_problem(identifier):
        raise ProductParseError(ref, "identifier", f"`{printable(identifier)}` {problem}")

    for key in ("uuid", "family", "parent", "root_parent"):
        v = raw.get(key)
        if v is not None and not isinstance(v, str):
            raise ProductParseError(identifier, key, f"must be a string or null, got {v!r}")
        if v is not None and (problem := text_problem(v)):
            raise ProductParseError(identifier, key, f"`{printable(v)}` {problem}")

    categories = raw.get("categories", [])
    if categories is None:
        categories = []
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise ProductParseError(identifier, "categories", "must be a list of category codes")

    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ProductParseError(identifier, "enabled", f"must be true or false, got {enabled!r}")

    updated_raw = raw.get("updated")
    updated: datetime | None = None
    if updated_raw is not None:
        if not isinstance(updated_raw, str):
            raise ProductParseError(identifier, "updated", "must be an ISO 8601 date-time string")
        try:
            updated = parse_datetime(updated_raw)
        except ValueError:
            raise ProductParseError(
                identifier, "updated", f"not an ISO 8601 date-time: {updated_raw!r}"
            ) from None

    clean = dict(raw)
    clean["identifier"] = identifier if has_identifier else None
    clean["values"] = values
    clean["categories"] = categories
    clean.pop("_links", None)
    return Product(
        identifier=identifier,
        has_identifier=has_identifier,
        uuid=raw.get("uuid"),
        family=raw.get("family"),
        parent=raw.get("parent"),
        categories=tuple(categories),
        enabled=enabled,
        updated=updated,
        values=values,
        root_parent=raw.get("root_parent"),
        raw=clean,
    )
