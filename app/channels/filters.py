"""Channel filters (pure): which products belong in a channel at all.

Every filter has a name; a product that fails one is recorded as ``filtered`` with that name,
so "why is this product not online?" has an answer.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from app.channels.config import (
    AttributeFilter,
    CategoryFilter,
    ChannelConfig,
    EnabledFilter,
    FamilyFilter,
)
from app.pim.catalog import CatalogDefinitions
from app.pim.product import MISSING, Product, is_empty

CATEGORY_TREE_FILTER = "category_tree"


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, dict):  # a metric compares on its amount
        value = value.get("amount")
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    # NaN cannot be ordered: comparing it raises InvalidOperation instead of failing the filter
    return None if d.is_nan() else d


def _attribute_value(
    product: Product, f: AttributeFilter, channel: ChannelConfig, defs: CatalogDefinitions
) -> Any:
    adef = defs.attributes.get(f.attribute)
    scope = channel.pim_scope if adef is not None and adef.scopable else None
    locales: list[str | None]
    if adef is not None and adef.localizable:
        locales = [f.locale] if f.locale else list(channel.locales[0].chain)
    elif adef is None:
        locales = [None, f.locale] if f.locale else [None, *channel.locales[0].chain]
    else:
        locales = [None]
    for locale in locales:
        for sc in (scope,) if adef is not None else (None, channel.pim_scope):
            data = product.value(f.attribute, locale, sc)
            if not is_empty(data):  # an empty de_AT value falls back to de_DE, as in mapping
                return data
    return MISSING


def _same(a: Any, b: Any) -> bool:
    """Equality as a catalog means it: "12.5000" equals 12.5, but 1 is not True."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else False
    if a == b:
        return True
    left, right = _number(a), _number(b)
    return left is not None and right is not None and left == right


def _attribute_passes(data: Any, f: AttributeFilter) -> bool:
    op = f.op
    if op == "empty":
        return is_empty(data)
    if op == "not_empty":
        return not is_empty(data)
    if data is MISSING or data is None:
        # A missing value is never equal to anything, and is "not in" any list.
        return op in ("ne", "not_in")
    if op in ("eq", "ne", "in", "not_in"):
        values = f.value if op in ("in", "not_in") else [f.value]
        candidates = data if isinstance(data, list) else [data]
        hit = any(_same(c, v) for c in candidates for v in values)
        return hit if op in ("eq", "in") else not hit
    left, right = _number(data), _number(f.value)
    if left is None or right is None:
        return False
    return {
        "gt": left > right,
        "gte": left >= right,
        "lt": left < right,
        "lte": left <= right,
    }[op]


def first_failing_filter(
    product: Product, channel: ChannelConfig, defs: CatalogDefinitions
) -> str | None:
    """The name of the first filter the product fails, or None when it belongs in the channel."""
    if channel.category_tree and not any(
        defs.is_under(c, channel.category_tree) for c in product.categories
    ):
        return CATEGORY_TREE_FILTER
    for f in channel.filters:
        if isinstance(f, EnabledFilter):
            ok = product.enabled == f.value
        elif isinstance(f, FamilyFilter):
            ok = (product.family in f.families) != f.negate
        elif isinstance(f, CategoryFilter):
            ok = any(defs.is_under(c, anc) for c in product.categories for anc in f.categories)
        else:
            ok = _attribute_passes(_attribute_value(product, f, channel, defs), f)
        if not ok:
            return f.name
    return None


def categories_in_tree(
    product: Product, channel: ChannelConfig, defs: CatalogDefinitions
) -> list[str]:
    """The product's categories as the channel sees them (its own tree only)."""
    if not channel.category_tree:
        return list(product.categories)
    return [c for c in product.categories if defs.is_under(c, channel.category_tree)]
