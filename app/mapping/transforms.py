"""The transform registry: one small function per way a PIM value becomes a channel value.

A transform gets the raw ``data`` of one value, the unit's context and its mapping spec, and
returns the channel value or raises ``TransformError`` (through ``ctx.fail``) naming SKU,
attribute, value and contract version. Computed transforms are named functions registered in
code with ``@register_computed``; they see the whole product.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, NoReturn

from app.channels.config import ChannelConfig
from app.channels.filters import categories_in_tree
from app.mapping.errors import TransformError
from app.pim.catalog import AttributeDef, CatalogDefinitions
from app.pim.product import Product

if TYPE_CHECKING:  # types only: the contract module imports this registry
    from app.mapping.contract import Contract, MappingSpec


@dataclass(slots=True)
class TransformContext:
    product: Product
    channel: ChannelConfig
    contract: Contract
    defs: CatalogDefinitions
    attribute: str = ""
    locale: str | None = None  # the channel locale a per-locale transform is producing

    @property
    def sku(self) -> str:
        return self.product.identifier

    @property
    def attribute_def(self) -> AttributeDef | None:
        return self.defs.attributes.get(self.attribute)

    def fail(self, value: Any, reason: str) -> NoReturn:
        raise TransformError(self.sku, self.attribute, value, self.contract.key, reason)


TransformFn = Callable[[Any, TransformContext, "MappingSpec"], Any]
ComputedFn = Callable[[TransformContext, "MappingSpec"], Any]

TRANSFORMS: dict[str, TransformFn] = {}
COMPUTED: dict[str, ComputedFn] = {}


def register_transform(name: str) -> Callable[[TransformFn], TransformFn]:
    def deco(fn: TransformFn) -> TransformFn:
        TRANSFORMS[name] = fn
        return fn

    return deco


def register_computed(name: str) -> Callable[[ComputedFn], ComputedFn]:
    """Register a named computed transform (``transform: computed, function: <name>``)."""

    def deco(fn: ComputedFn) -> ComputedFn:
        COMPUTED[name] = fn
        return fn

    return deco


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and ("_" in value or not value.strip().isascii()):
        return None  # Decimal accepts "1_000" and "١٢"; a catalog value with them is an error
    if isinstance(value, (int, float, str)):
        try:
            d = Decimal(str(value).strip())
        except InvalidOperation:
            return None
        return d if d.is_finite() else None
    return None


def _plain(d: Decimal) -> str:
    """``800.0000`` -> ``800``, ``1.50`` -> ``1.5``, never scientific notation."""
    text = format(d.normalize(), "f")
    return "0" if text == "-0" else text  # as the fast path in _plain_amount


def _quantize(d: Decimal, precision: int) -> Decimal | None:
    """``d`` rounded to ``precision`` places, or None when that needs more than the decimal
    context's 28 digits (``1e30`` with 2 places): the caller reports it as a bad value."""
    try:
        return d.quantize(Decimal(1).scaleb(-precision), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        return None


def option_label(ctx: TransformContext, code: str) -> str:
    """The option's label in the locale being produced (fallback chain), else its code."""
    return ctx.defs.option_label(ctx.attribute, code, _locale_chain(ctx))


def _locale_chain(ctx: TransformContext) -> tuple[str, ...]:
    for loc in ctx.channel.locales:
        if loc.code == ctx.locale:
            return loc.chain
    return ctx.channel.locales[0].chain


@register_transform("direct")
def direct(data: Any, ctx: TransformContext, spec: MappingSpec) -> Any:
    if spec.labels:
        if isinstance(data, str):
            return option_label(ctx, data)
        if isinstance(data, list) and all(isinstance(x, str) for x in data):
            return [option_label(ctx, x) for x in data]
        ctx.fail(data, "labels need an option code or a list of option codes")
    return data


@register_transform("lookup")
def lookup(data: Any, ctx: TransformContext, spec: MappingSpec) -> Any:
    table = ctx.contract.lookups[spec.table or ""]

    def one(code: Any) -> Any:
        if not isinstance(code, str):
            ctx.fail(data, f"lookup needs an option code, got {type(code).__name__}")
        if code in table:
            return table[code]
        if "__default__" in table:
            return table["__default__"]
        ctx.fail(data, f"no option mapping for {code!r} in lookup table {spec.table!r}")

    if isinstance(data, list):
        return [one(code) for code in data]
    return one(data)


def _plain_amount(amount: Any) -> str | None:
    """A metric amount as plain text (``800.0000`` -> ``800``), or None if not a number."""
    if amount.__class__ is str:
        text = amount.strip()
        # Fast path for Akeneo's usual "123.4500": digits, at most one dot and a sign.
        body = text[1:] if text[:1] == "-" else text
        # ASCII digits only ("²".isdigit() is true), no bare ".5", no leading zeros ("007"):
        # anything else takes the Decimal path, so both paths give the same text.
        if (
            body
            and body.isascii()
            and body.replace(".", "", 1).isdigit()
            and body[0] != "."
            and not (body[0] == "0" and body[1:2].isdigit())
        ):
            if "." in text:
                text = text.rstrip("0").rstrip(".")
            return "0" if text in ("", "-", "-0") else text
    d = _decimal(amount)
    return None if d is None else _plain(d)


@register_transform("metric_to_string")
def metric_to_string(data: Any, ctx: TransformContext, spec: MappingSpec) -> str:
    if data.__class__ is not dict or "amount" not in data:
        ctx.fail(data, "metric_to_string needs a metric {amount, unit}")
    unit = data.get("unit")
    if not isinstance(unit, str) or not unit:
        ctx.fail(data, "metric has no unit")
    if spec.precision is not None:
        d = _decimal(data.get("amount"))
        q = None if d is None else _quantize(d, spec.precision)
        text = None if q is None else _plain(q)
    else:
        text = _plain_amount(data.get("amount"))
    if text is None:
        ctx.fail(data, "metric amount is not a number")
    shown = unit if spec.unit == "code" else ctx.defs.unit_symbols.get(unit, unit)
    return f"{text} {shown}"


@register_transform("multi_to_csv")
def multi_to_csv(data: Any, ctx: TransformContext, spec: MappingSpec) -> str:
    if isinstance(data, str):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
        ctx.fail(data, "multi_to_csv needs a list of option codes")
    items = [option_label(ctx, x) for x in data] if spec.labels else data
    return spec.separator.join(items)


@register_transform("boolean")
def boolean(data: Any, ctx: TransformContext, spec: MappingSpec) -> bool:
    if isinstance(data, bool):
        return data
    if isinstance(data, int) and data in (0, 1):
        return bool(data)
    if isinstance(data, str):
        text = data.strip().lower()
        if text in ("1", "true", "yes", "y", "on"):
            return True
        if text in ("0", "false", "no", "n", "off"):
            return False
    ctx.fail(data, "not a boolean (true/false, 1/0, yes/no)")


@register_transform("number")
def number(data: Any, ctx: TransformContext, spec: MappingSpec) -> int | float:
    if isinstance(data, dict) and "amount" in data:  # a metric's amount, unit dropped
        data = data["amount"]
    d = _decimal(data)
    if d is None:
        ctx.fail(data, "not a number")
    precision = 2 if spec.precision is None else spec.precision
    q = _quantize(d, precision)
    if q is None:
        ctx.fail(data, f"number too large for {precision} decimal places")
    # JSON consumers (and orjson) stop at 64-bit integers; a float keeps ~15 digits.
    if abs(q) >= _INT64:
        ctx.fail(data, "number out of range (beyond 64-bit)")
    return int(q) if precision == 0 else float(q)


_INT64 = Decimal(2**63)


@register_transform("price")
def price(data: Any, ctx: TransformContext, spec: MappingSpec) -> dict[str, str]:
    if not isinstance(data, list):
        ctx.fail(data, "price needs a price collection [{amount, currency}]")
    currency = ctx.channel.currency
    for item in data:
        if isinstance(item, dict) and item.get("currency") == currency:
            amount = _decimal(item.get("amount"))
            if amount is None:
                ctx.fail(data, f"price amount for {currency} is not a number")
            precision = 2 if spec.precision is None else spec.precision
            q = _quantize(amount, precision)
            if q is None:
                ctx.fail(data, f"price amount for {currency} is too large")
            return {"amount": format(q, "f"), "currency": currency}
    ctx.fail(data, f"no price in the channel's currency {currency}")


@register_transform("localized")
def localized(data: Any, ctx: TransformContext, spec: MappingSpec) -> Any:
    # Applied per locale by the mapper (it resolves the fallback chain); here, the inner one.
    inner = TRANSFORMS[spec.of or "direct"]
    return inner(data, ctx, spec)


@register_transform("computed")
def computed(data: Any, ctx: TransformContext, spec: MappingSpec) -> Any:
    return COMPUTED[spec.function or ""](ctx, spec)


@register_transform("auto")
def auto(data: Any, ctx: TransformContext, spec: MappingSpec) -> Any:
    """Pick the transform from the attribute's type (bulk mappings of technical specs)."""
    return TRANSFORMS[auto_transform_name(ctx.attribute_def, data)](data, ctx, spec)


def auto_transform_name(adef: AttributeDef | None, data: Any) -> str:
    kind = adef.type if adef else None
    if kind == "pim_catalog_metric" or (kind is None and isinstance(data, dict)):
        return "metric_to_string"
    if kind == "pim_catalog_multiselect":
        return "multi_to_csv"
    if kind == "pim_catalog_price_collection":
        return "price"
    if kind == "pim_catalog_boolean":
        return "boolean"
    return "direct"


# --- computed transforms shipped with pimsync -------------------------------------------------

_SLUG_STRIP = re.compile(r"[^a-z0-9]+")


# Letters NFKD does not decompose into ASCII (German, Nordic, Polish, Croatian, Icelandic).
_TRANSLITERATE = str.maketrans(
    {
        "ß": "ss",
        "ẞ": "SS",
        "æ": "ae",
        "Æ": "AE",
        "ø": "o",
        "Ø": "O",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "Đ": "D",
        "þ": "th",
        "Þ": "Th",
        "œ": "oe",
        "Œ": "OE",
    }
)


def slugify(text: str) -> str:
    text = text.translate(_TRANSLITERATE)
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _SLUG_STRIP.sub("-", ascii_text.lower()).strip("-")


@register_computed("slug")
def slug(ctx: TransformContext, spec: MappingSpec) -> str:
    """URL slug from the product name in the channel's first locale, then the SKU."""
    source = spec.params.get("attribute", "name")
    for loc in (*ctx.channel.locales[0].chain, None):
        value = ctx.product.value(source, loc, None)
        if isinstance(value, str) and value.strip():
            # a name with no ASCII letters slugs to "": no leading "-" then
            return "-".join(part for part in (slugify(value), slugify(ctx.sku)) if part)
    return slugify(ctx.sku)


@register_computed("vat_rate")
def vat_rate(ctx: TransformContext, spec: MappingSpec) -> Any:
    """The channel's VAT rate (channel ``extra.vat_rate``): tax rules differ per country."""
    rate = ctx.channel.extra.get("vat_rate")
    if rate is None:
        ctx.fail(None, f"channel {ctx.channel.code!r} has no extra.vat_rate")
    return rate


@register_computed("category_codes")
def category_codes(ctx: TransformContext, spec: MappingSpec) -> list[str]:
    """The product's categories inside the channel's tree."""
    return categories_in_tree(ctx.product, ctx.channel, ctx.defs)


@register_computed("tax_class")
def tax_class(ctx: TransformContext, spec: MappingSpec) -> Any:
    """The channel's tax class (channel ``extra.tax_class``)."""
    value = ctx.channel.extra.get("tax_class")
    if value is None:
        ctx.fail(None, f"channel {ctx.channel.code!r} has no extra.tax_class")
    return value
