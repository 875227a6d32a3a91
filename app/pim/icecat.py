"""Akeneo's icecat demo catalog (the installer's CSV fixtures) as a PIM source.

The fixtures are what Akeneo imports, not what its API returns, so this module converts each
row to the standard format the REST API would serve: typed values keyed by attribute with
locale and scope, price collections, metrics with units, variants completed from their product
models. The data stays where it is (its licence forbids copying it into the repository); the
CSVs are parsed once per source instance.

A row that cannot be converted never stops the load: it comes out in ``Page.errors`` naming the
sku (or model code) and the column.
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson
import yaml

from app.pim.catalog import (
    IDENTIFIER_TYPE,
    METRIC_TYPE,
    PRICE_TYPE,
    AttributeDef,
    CatalogDefinitions,
    DefinitionError,
    build_definitions,
)
from app.pim.product import parse_datetime
from app.pim.source import Page, SourceError
from app.pim.variants import index_models, resolve_model, resolve_product

# The fixtures carry no dates; this one (the upstream commit they were taken from) keeps every
# load identical, so re-reading the catalog hashes equally and deltas find nothing new.
ICECAT_TIMESTAMP = "2024-04-08T00:00:00+00:00"
_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/akeneo/pim-community-dev")

PRODUCT_FIELDS = frozenset({"categories", "enabled", "family", "parent", "groups"})
MODEL_FIELDS = frozenset({"code", "family_variant", "parent", "categories"})
ASSOCIATION_TARGETS = ("groups", "products", "product_models")
MULTI_TYPES = frozenset(
    {
        "pim_catalog_multiselect",
        "pim_catalog_asset_collection",
        "pim_reference_data_multiselect",
    }
)
# Akeneo's standard format: decimal amounts are strings with a fixed precision.
NUMBER_PRECISION = 4
PRICE_PRECISION = 2


def product_uuid(identifier: str) -> str:
    """The uuid a product keeps across loads (Akeneo would assign a random one once)."""
    return str(uuid.uuid5(_UUID_NAMESPACE, identifier))


class CellError(ValueError):
    """One cell that cannot be converted."""

    def __init__(self, column: str, message: str) -> None:
        self.column = column
        self.message = message
        super().__init__(f"column {column!r}: {message}")


# --- CSV reading ----------------------------------------------------------------------------


@dataclass(slots=True)
class CsvRow:
    number: int  # record number, 1 = the first row after the header
    cells: dict[str, str]
    problem: str | None = None


def read_csv(path: Path) -> tuple[list[str], list[CsvRow]]:
    """Header and rows of an Akeneo fixture (``;``, ``"``, UTF-8, multi-line cells)."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle, delimiter=";", quotechar='"')
            header = next(reader, None)
            if header is None:
                raise SourceError(f"{path}: empty file (a header row is required)")
            rows = [_csv_row(i, header, cells) for i, cells in enumerate(reader, start=1)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SourceError(f"{path}: cannot read: {exc}") from None
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        raise SourceError(f"{path}: repeated header columns {', '.join(duplicates)}")
    return header, [row for row in rows if row is not None]


def _csv_row(number: int, header: list[str], cells: list[str]) -> CsvRow | None:
    if not any(cells):
        return None  # blank line
    problem = None
    if len(cells) > len(header):
        extra = [c for c in cells[len(header) :] if c]
        if extra:
            problem = f"{len(cells)} cells for {len(header)} columns (a stray ';' or quote?)"
    cells = cells + [""] * (len(header) - len(cells))
    return CsvRow(number, dict(zip(header, cells, strict=False)), problem)


def _split(cell: str) -> list[str]:
    return [part.strip() for part in cell.split(",") if part.strip()]


def _flag(cell: str) -> bool:
    return cell.strip().lower() in {"1", "true", "yes"}


def _labels(cells: dict[str, str]) -> dict[str, str]:
    return {k[len("label-") :]: v for k, v in cells.items() if k.startswith("label-") and v}


# --- definitions ----------------------------------------------------------------------------


@dataclass(slots=True)
class IcecatDefinitions:
    catalog: CatalogDefinitions
    # measurement family -> its unit codes (to reject a unit of another family)
    metric_units: dict[str, frozenset[str]]
    # family variant -> family
    variant_families: dict[str, str]
    association_types: list[str]


def _optional_rows(path: Path) -> list[CsvRow]:
    return read_csv(path)[1] if path.exists() else []


def _attribute_record(cells: dict[str, str]) -> dict[str, Any]:
    return {
        "code": cells.get("code", ""),
        "type": cells.get("type", ""),
        "localizable": _flag(cells.get("localizable", "")),
        "scopable": _flag(cells.get("scopable", "")),
        "available_locales": _split(cells.get("available_locales", "")),
        "decimals_allowed": _flag(cells.get("decimals_allowed", "")),
        "metric_family": cells.get("metric_family") or None,
        "default_metric_unit": cells.get("default_metric_unit") or None,
        "group": cells.get("group") or None,
        "labels": _labels(cells),
    }


def _family_record(cells: dict[str, str]) -> dict[str, Any]:
    prefix = "requirements-"
    return {
        "code": cells.get("code", ""),
        "attributes": _split(cells.get("attributes", "")),
        "attribute_as_label": cells.get("attribute_as_label") or None,
        "attribute_requirements": {
            k[len(prefix) :]: _split(v) for k, v in cells.items() if k.startswith(prefix)
        },
        "labels": _labels(cells),
    }


def _channel_record(cells: dict[str, str]) -> dict[str, Any]:
    return {
        "code": cells.get("code", ""),
        "locales": _split(cells.get("locales", "")),
        "currencies": _split(cells.get("currencies", "")),
        "category_tree": cells.get("tree") or None,
        "labels": _labels(cells),
    }


def _option_record(cells: dict[str, str]) -> dict[str, Any]:
    return {
        "attribute": cells.get("attribute", ""),
        "code": cells.get("code", ""),
        "labels": _labels(cells),
    }


def read_measures(path: Path) -> dict[str, dict[str, str]]:
    """Measurement family -> unit code -> symbol, from Akeneo's legacy ``measure.yml``."""
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SourceError(f"{path}: cannot read: {exc}") from None
    families = data.get("measures_config") if isinstance(data, dict) else None
    if not isinstance(families, dict):
        raise SourceError(f"{path}: expected a `measures_config` mapping")
    measures: dict[str, dict[str, str]] = {}
    for family, config in families.items():
        units = config.get("units") if isinstance(config, dict) else None
        measures[str(family)] = {
            str(code): str(unit.get("symbol") or code)
            for code, unit in (units or {}).items()
            if isinstance(unit, dict)
        }
    return measures


def load_definitions(path: Path) -> IcecatDefinitions:
    """The catalog's definitions in Akeneo's REST shapes, plus what the row converter needs."""
    attributes_file = path / "attributes.csv"
    if not attributes_file.exists():
        raise SourceError(f"{path}: attributes.csv not found (not an Akeneo fixture folder?)")
    measures = read_measures(path / "measure.yml")
    try:
        catalog = build_definitions(
            attributes=[_attribute_record(r.cells) for r in read_csv(attributes_file)[1]],
            families=[_family_record(r.cells) for r in _optional_rows(path / "families.csv")],
            channels=[_channel_record(r.cells) for r in _optional_rows(path / "channels.csv")],
            categories=[
                {"code": r.cells.get("code", ""), "parent": r.cells.get("parent") or None}
                for r in _optional_rows(path / "categories.csv")
            ],
            options=[
                _option_record(r.cells) for r in _optional_rows(path / "attribute_options.csv")
            ],
            unit_symbols={u: s for units in measures.values() for u, s in units.items()},
        )
    except DefinitionError as exc:
        raise SourceError(f"{path}: {exc}") from None
    return IcecatDefinitions(
        catalog=catalog,
        metric_units={family: frozenset(units) for family, units in measures.items()},
        variant_families={
            r.cells.get("code", ""): r.cells.get("family", "")
            for r in _optional_rows(path / "family_variants.csv")
        },
        association_types=[
            r.cells["code"]
            for r in _optional_rows(path / "association_types.csv")
            if r.cells.get("code")
        ],
    )


# --- cell conversion ------------------------------------------------------------------------


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a number") from None
    if not value.is_finite():
        raise ValueError(f"{text!r} is not a number")
    return value


def to_number(text: str, decimals_allowed: bool, precision: int = NUMBER_PRECISION) -> int | str:
    """Akeneo's standard format: an int, or a fixed-precision string when decimals are allowed."""
    value = _decimal(text)
    if decimals_allowed:
        return f"{value:.{precision}f}"
    if value != value.to_integral_value():
        raise ValueError(f"{text!r} has decimals but the attribute allows none")
    return int(value)


def to_boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"1", "true"}:
        return True
    if lowered in {"0", "false"}:
        return False
    raise ValueError(f"{text!r} is not a boolean (expected 1 or 0)")


def to_date(text: str) -> str:
    """Akeneo's date values are midnight UTC date-times in the standard format."""
    stripped = text.strip()
    try:
        if len(stripped) == 10:
            return f"{date.fromisoformat(stripped).isoformat()}T00:00:00+00:00"
        return parse_datetime(stripped).isoformat()
    except ValueError:
        raise ValueError(f"{text!r} is not a date (expected YYYY-MM-DD)") from None


def to_option(attribute: str, code: str, catalog: CatalogDefinitions) -> str:
    """The option's canonical code (Akeneo option codes are case-insensitive)."""
    options = catalog.options.get(attribute)
    if not options:
        return code  # no options defined for the attribute: nothing to check against
    if code in options:
        return code
    for known in options:
        if known.casefold() == code.casefold():
            return known
    raise ValueError(f"{code!r} is not an option of {attribute!r}")


def convert_data(attr: AttributeDef, text: str, catalog: CatalogDefinitions) -> Any:
    """A non-empty cell as standard-format ``data`` (prices and metrics are assembled apart)."""
    kind = attr.type
    if kind == "pim_catalog_boolean":
        return to_boolean(text)
    if kind == "pim_catalog_number":
        return to_number(text, attr.decimals_allowed)
    if kind == "pim_catalog_date":
        return to_date(text)
    if kind == "pim_catalog_simpleselect":
        return to_option(attr.code, text.strip(), catalog)
    if kind in MULTI_TYPES:
        codes = _split(text)
        if kind == "pim_catalog_multiselect":
            return [to_option(attr.code, code, catalog) for code in codes]
        return codes
    # identifier, text, textarea (HTML, line breaks), image/file paths: verbatim
    return text


# --- column planning ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ColumnPlan:
    """What one header column holds."""

    column: str
    kind: str  # field | value | price | metric | metric_unit | association | unknown
    attribute: AttributeDef | None = None
    locale: str | None = None
    scope: str | None = None
    currency: str | None = None
    association: tuple[str, str] | None = None  # (association type, target)
    problem: str | None = None

    @property
    def key(self) -> tuple[str, str | None, str | None]:
        assert self.attribute is not None
        return (self.attribute.code, self.locale, self.scope)


def plan_column(column: str, catalog: CatalogDefinitions, fields: frozenset[str]) -> ColumnPlan:
    """Split ``attribute[-locale][-scope][-currency|-unit]`` using the attribute's flags."""
    if column in fields:
        return ColumnPlan(column, "field")
    code, *rest = column.split("-")
    attr = catalog.attributes.get(code)
    if attr is None:
        if len(rest) == 1 and rest[0] in ASSOCIATION_TARGETS:
            return ColumnPlan(column, "association", association=(code, rest[0]))
        return ColumnPlan(column, "unknown", problem=f"no attribute {code!r} in attributes.csv")
    locale = scope = currency = None
    if attr.localizable:
        if not rest:
            return ColumnPlan(column, "unknown", problem=f"{code!r} is localizable: add -<locale>")
        locale = rest.pop(0)
    if attr.scopable:
        if not rest:
            return ColumnPlan(column, "unknown", problem=f"{code!r} is scopable: add -<channel>")
        scope = rest.pop(0)
    kind = "value"
    if attr.type == PRICE_TYPE:
        kind = "price"
        currency = rest.pop(0) if rest else None
    elif attr.type == METRIC_TYPE:
        kind = "metric"
        if rest == ["unit"]:
            kind, rest = "metric_unit", []
    if rest:
        return ColumnPlan(
            column, "unknown", problem=f"unexpected suffix {'-'.join(rest)!r} for {code!r}"
        )
    return ColumnPlan(column, kind, attr, locale, scope, currency)


# --- row conversion -------------------------------------------------------------------------


@dataclass(slots=True)
class _ValueBuilder:
    """Collects one row's values; prices and metrics span several columns."""

    slots: dict[tuple[str, str | None, str | None], Any] = field(default_factory=dict)
    amounts: dict[tuple[str, str | None, str | None], tuple[str, ColumnPlan]] = field(
        default_factory=dict
    )
    units: dict[tuple[str, str | None, str | None], str] = field(default_factory=dict)

    def values(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for (code, locale, scope), data in self.slots.items():
            if isinstance(data, list) and data and isinstance(data[0], dict):
                data = sorted(data, key=lambda p: p["currency"])  # prices: one stable order
            out.setdefault(code, []).append({"locale": locale, "scope": scope, "data": data})
        return out


class RowConverter:
    """Converts the rows of one CSV (products or product models) to standard-format values."""

    def __init__(self, header: list[str], defs: IcecatDefinitions, fields: frozenset[str]):
        self.defs = defs
        self.plans = [plan_column(column, defs.catalog, fields) for column in header]

    def convert(
        self, cells: dict[str, str]
    ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, dict[str, list[str]]], list[CellError]]:
        builder = _ValueBuilder()
        associations: dict[str, dict[str, list[str]]] = {}
        errors: list[CellError] = []
        for plan in self.plans:
            text = cells.get(plan.column, "")
            if plan.kind == "field" or text == "":
                continue
            try:
                self._cell(plan, text, builder, associations)
            except ValueError as exc:
                errors.append(CellError(plan.column, str(exc)))
        errors.extend(self._finish_metrics(builder))
        return builder.values(), associations, errors

    def _cell(
        self,
        plan: ColumnPlan,
        text: str,
        builder: _ValueBuilder,
        associations: dict[str, dict[str, list[str]]],
    ) -> None:
        if plan.kind == "unknown":
            raise ValueError(plan.problem or "unknown column")
        if plan.kind == "association":
            assert plan.association is not None
            kind, target = plan.association
            associations.setdefault(kind, {})[target] = _split(text)
            return
        assert plan.attribute is not None
        attr = plan.attribute
        if plan.kind == "price":
            prices = self._prices(attr, plan.currency, text)  # may raise: no empty slot left
            builder.slots.setdefault(plan.key, []).extend(prices)
        elif plan.kind == "metric":
            builder.slots.setdefault(plan.key, None)  # keeps the value in column order
            builder.amounts[plan.key] = (text, plan)
        elif plan.kind == "metric_unit":
            builder.units[plan.key] = text.strip()
        else:
            builder.slots[plan.key] = convert_data(attr, text, self.defs.catalog)

    def _prices(self, attr: AttributeDef, currency: str | None, text: str) -> list[dict[str, Any]]:
        if currency is not None:
            return [
                {
                    "amount": to_number(text, attr.decimals_allowed, PRICE_PRECISION),
                    "currency": currency,
                }
            ]
        # a single `price` column holds "12.50 EUR, 15 USD"
        prices = []
        for part in _split(text):
            amount, _, code = part.rpartition(" ")
            if not amount or not code:
                raise ValueError(f"{part!r} is not a price (expected '<amount> <CURRENCY>')")
            prices.append(
                {
                    "amount": to_number(amount, attr.decimals_allowed, PRICE_PRECISION),
                    "currency": code,
                }
            )
        return prices

    def _finish_metrics(self, builder: _ValueBuilder) -> list[CellError]:
        errors: list[CellError] = []
        for key, (text, plan) in builder.amounts.items():
            try:
                builder.slots[key] = self._metric(plan, text, builder.units.get(key))
            except ValueError as exc:
                del builder.slots[key]
                errors.append(CellError(plan.column, str(exc)))
        return errors

    def _metric(self, plan: ColumnPlan, text: str, unit: str | None) -> dict[str, Any]:
        attr = plan.attribute
        assert attr is not None
        amount = text.strip()
        if not unit and " " in amount:  # the one-column form "500 GRAM"
            amount, _, unit = amount.rpartition(" ")
        unit = unit or attr.default_metric_unit
        if not unit:
            raise ValueError(f"no unit (fill {plan.column}-unit)")
        known = self.defs.metric_units.get(attr.metric_family or "")
        if known and unit not in known:
            raise ValueError(f"unit {unit!r} is not a unit of {attr.metric_family}")
        return {"amount": to_number(amount, attr.decimals_allowed), "unit": unit}


# --- products and models --------------------------------------------------------------------


def _associations(
    types: list[str], found: dict[str, dict[str, list[str]]]
) -> dict[str, dict[str, list[str]]]:
    """Every association type with its three lists, as the API returns them."""
    out: dict[str, dict[str, list[str]]] = {}
    for kind in [*types, *(k for k in found if k not in types)]:
        out[kind] = {
            target: list(found.get(kind, {}).get(target, [])) for target in ASSOCIATION_TARGETS
        }
    return out


class RowErrors(ValueError):
    def __init__(self, messages: list[str]) -> None:
        self.messages = messages
        super().__init__("; ".join(messages))


def _fail(ref: str, errors: list[CellError]) -> RowErrors:
    return RowErrors([f"{ref}: {error}" for error in errors])


def product_from_row(
    row: CsvRow, converter: RowConverter, identifier_attribute: str
) -> dict[str, Any]:
    """One products.csv row in standard format (variants still unresolved)."""
    cells = row.cells
    sku = cells.get(identifier_attribute, "")
    ref = f"sku {sku!r}" if sku else f"row {row.number}"
    errors: list[CellError] = []
    if row.problem:
        errors.append(CellError("<row>", row.problem))
    if not sku.strip():
        errors.append(CellError(identifier_attribute, "empty identifier"))
    enabled = True
    if cells.get("enabled", "").strip():
        try:
            enabled = to_boolean(cells["enabled"])
        except ValueError as exc:
            errors.append(CellError("enabled", str(exc)))
    values, found_associations, value_errors = converter.convert(cells)
    errors.extend(value_errors)
    if errors:
        raise _fail(ref, errors)
    return {
        "identifier": sku,
        "uuid": product_uuid(sku),
        "family": cells.get("family") or None,
        "parent": cells.get("parent") or None,
        "root_parent": None,
        "groups": _split(cells.get("groups", "")),
        "categories": _split(cells.get("categories", "")),
        "enabled": enabled,
        "values": values,
        "associations": _associations(converter.defs.association_types, found_associations),
        "created": ICECAT_TIMESTAMP,
        "updated": ICECAT_TIMESTAMP,
    }


def model_from_row(row: CsvRow, converter: RowConverter) -> dict[str, Any]:
    """One product_models.csv row in standard format (its own values only)."""
    cells = row.cells
    code = cells.get("code", "")
    ref = f"product model {code!r}" if code else f"product_models.csv row {row.number}"
    errors: list[CellError] = []
    if row.problem:
        errors.append(CellError("<row>", row.problem))
    if not code.strip():
        errors.append(CellError("code", "empty model code"))
    family_variant = cells.get("family_variant", "")
    family = converter.defs.variant_families.get(family_variant)
    if converter.defs.variant_families and family is None:
        errors.append(CellError("family_variant", f"unknown family variant {family_variant!r}"))
    values, found_associations, value_errors = converter.convert(cells)
    errors.extend(value_errors)
    if errors:
        raise _fail(ref, errors)
    return {
        "code": code,
        "family": family or None,
        "family_variant": family_variant or None,
        "parent": cells.get("parent") or None,
        "categories": _split(cells.get("categories", "")),
        "values": values,
        "associations": _associations(converter.defs.association_types, found_associations),
        "created": ICECAT_TIMESTAMP,
        "updated": ICECAT_TIMESTAMP,
    }


# --- the source -----------------------------------------------------------------------------


@dataclass(slots=True)
class _Entry:
    """One products.csv row: a product, or the reasons it could not be converted."""

    product: dict[str, Any] | None
    errors: list[str]
    updated: datetime


@dataclass(slots=True)
class _Catalog:
    defs: IcecatDefinitions
    entries: list[_Entry]
    by_identifier: dict[str, int]
    by_folded: dict[str, int]  # casefolded identifier -> the first row holding it
    models: dict[str, dict[str, Any]]  # casefolded code -> resolved model
    model_errors: list[str]


def _fresh(obj: Any) -> Any:
    """A private copy, so a caller editing a product cannot corrupt the cached catalog."""
    return orjson.loads(orjson.dumps(obj))


def _identifier_attribute(catalog: CatalogDefinitions) -> str:
    for attr in catalog.attributes.values():
        if attr.type == IDENTIFIER_TYPE:
            return attr.code
    raise SourceError(
        "attributes.csv defines no identifier attribute (type pim_catalog_identifier)"
    )


def _as_utc(moment: datetime) -> datetime:
    return parse_datetime(moment.isoformat())


def parse_offset(resume: str | None) -> int:
    if resume is None:
        return 0
    try:
        offset = int(resume)
    except ValueError:
        offset = -1
    if offset < 0:
        raise SourceError(f"bad resume token {resume!r}: expected a row offset")
    return offset


class IcecatSource:
    """Akeneo's icecat demo catalog, read from its CSV fixtures, served as the API would."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.name = f"icecat:{self.path}"
        if not (self.path / "products.csv").exists():
            raise SourceError(
                f"{self.path}: products.csv not found (not an Akeneo fixture folder?)"
            )
        self._catalog: _Catalog | None = None

    # -- loading (once) --

    def _load(self) -> _Catalog:
        if self._catalog is None:
            defs = load_definitions(self.path)
            models, model_errors, broken = self._load_models(defs)
            self._catalog = self._load_products(defs, models, model_errors, broken)
        return self._catalog

    def _load_models(
        self, defs: IcecatDefinitions
    ) -> tuple[dict[str, dict[str, Any]], list[str], dict[str, str]]:
        """Resolved models, the errors met, and casefolded code -> why that model is unusable."""
        path = self.path / "product_models.csv"
        if not path.exists():
            return {}, [], {}
        header, rows = read_csv(path)
        converter = RowConverter(header, defs, MODEL_FIELDS)
        raw: list[dict[str, Any]] = []
        errors: list[str] = []
        broken: dict[str, str] = {}
        for row in rows:
            try:
                raw.append(model_from_row(row, converter))
            except RowErrors as exc:
                errors.extend(exc.messages)
                broken[row.cells.get("code", "").casefold()] = str(exc)
        try:
            index = index_models(raw)
        except ValueError as exc:
            raise SourceError(f"{path}: {exc}") from None
        resolved: dict[str, dict[str, Any]] = {}
        for key, model in index.items():
            try:
                resolved[key] = resolve_model(model, index)
            except ValueError as exc:
                errors.append(str(exc))
                broken[key] = str(exc)
        return resolved, errors, broken

    def _load_products(
        self,
        defs: IcecatDefinitions,
        models: dict[str, dict[str, Any]],
        model_errors: list[str],
        broken: dict[str, str],
    ) -> _Catalog:
        header, rows = read_csv(self.path / "products.csv")
        identifier_attribute = _identifier_attribute(defs.catalog)
        if identifier_attribute not in header:
            raise SourceError(f"{self.path / 'products.csv'}: no {identifier_attribute!r} column")
        converter = RowConverter(header, defs, PRODUCT_FIELDS)
        updated = parse_datetime(ICECAT_TIMESTAMP)
        entries: list[_Entry] = []
        by_identifier: dict[str, int] = {}
        for row in rows:
            product = self._convert_product(row, converter, identifier_attribute, models, broken)
            if isinstance(product, list):
                entries.append(_Entry(None, product, updated))
                continue
            sku = product["identifier"]
            if sku in by_identifier:
                message = f"sku {sku!r}: column {identifier_attribute!r}: repeated on row "
                entries.append(
                    _Entry(None, [f"{message}{row.number} (the first row is kept)"], updated)
                )
                continue
            by_identifier[sku] = len(entries)
            entries.append(_Entry(product, [], updated))
        by_folded: dict[str, int] = {}
        for sku, position in by_identifier.items():
            by_folded.setdefault(sku.casefold(), position)
        return _Catalog(defs, entries, by_identifier, by_folded, models, model_errors)

    @staticmethod
    def _convert_product(
        row: CsvRow,
        converter: RowConverter,
        identifier_attribute: str,
        models: dict[str, dict[str, Any]],
        broken: dict[str, str],
    ) -> dict[str, Any] | list[str]:
        """The resolved product, or the messages saying why the row is unusable."""
        try:
            product = product_from_row(row, converter, identifier_attribute)
        except RowErrors as exc:
            return exc.messages
        parent = product["parent"]
        if not parent:
            return product
        ref = f"sku {product['identifier']!r}: column 'parent'"
        if parent.casefold() in broken:
            return [f"{ref}: product model {parent!r} is unusable ({broken[parent.casefold()]})"]
        try:
            return resolve_product(product, models)
        except ValueError:
            return [f"{ref}: no product model {parent!r} in product_models.csv"]

    # -- PimSource --

    def definitions(self) -> CatalogDefinitions:
        return self._load().defs.catalog

    def iter_pages(
        self,
        updated_since: datetime | None = None,
        page_size: int = 100,
        resume: str | None = None,
    ) -> Iterator[Page]:
        if page_size < 1:
            raise SourceError(f"page_size must be at least 1, got {page_size}")
        offset = parse_offset(resume)
        catalog = self._load()
        entries = catalog.entries
        if updated_since is not None:
            since = _as_utc(updated_since)
            entries = [e for e in entries if e.updated > since]
        while offset < len(entries):
            # broken model rows are reported once, with the first page of a full pass
            errors = (
                [f"product_models.csv: {m}" for m in catalog.model_errors] if offset == 0 else []
            )
            chunk = entries[offset : offset + page_size]
            offset += len(chunk)
            errors.extend(message for e in chunk for message in e.errors)
            yield Page(
                items=[_fresh(e.product) for e in chunk if e.product is not None],
                next_cursor=str(offset) if offset < len(entries) else None,
                errors=errors,
                total=len(entries) if offset == len(chunk) else None,
            )

    def get(self, identifier: str) -> dict[str, Any] | None:
        catalog = self._load()
        position = catalog.by_identifier.get(identifier)
        if position is None:  # Akeneo identifiers are case-insensitive
            position = catalog.by_folded.get(identifier.casefold())
        if position is None:
            return None
        return _fresh(catalog.entries[position].product)

    def get_model(self, code: str) -> dict[str, Any] | None:
        model = self._load().models.get(code.casefold())
        return _fresh(model) if model is not None else None

    def iter_models(self) -> Iterator[dict[str, Any]]:
        """Every usable product model in csv order, completed from its root as the API does."""
        for model in self._load().models.values():
            yield _fresh(model)

    @property
    def model_errors(self) -> list[str]:
        """Product model rows that could not be converted (their variants report them too)."""
        return list(self._load().model_errors)

    def close(self) -> None:
        self._catalog = None
