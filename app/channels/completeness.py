"""Completeness per channel and locale, with Akeneo's rule (pure).

A required attribute counts when it has a non-empty value for the channel's PIM scope (if the
attribute is scopable) and locale (if localizable, trying the channel locale's fallback chain);
a price collection counts only when every currency of the channel has an amount; a
locale-specific attribute is required only in its available locales. The ratio is
``floor(100 * present / required)``, so 100 means complete and nothing else does.

A product without a family has no completeness in Akeneo (no requirements to meet): it is
incomplete in every channel and locale with the reason ``no family``, unless the channel opts
in to publish family-less products (``completeness.publish_without_family``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from app.channels.config import ChannelConfig, LocaleConfig
from app.pim.catalog import IDENTIFIER_TYPE, PRICE_TYPE, AttributeDef, CatalogDefinitions
from app.pim.product import MISSING, Product, is_empty

NO_FAMILY = "no family"


@dataclass(frozen=True, slots=True)
class LocaleCompleteness:
    locale: str
    required: int
    missing: tuple[str, ...]
    # why the product cannot be complete whatever its values (``NO_FAMILY``)
    reason: str | None = None

    @property
    def ratio(self) -> int:
        if self.reason is not None:
            return 0
        if self.required == 0:
            return 100
        return (100 * (self.required - len(self.missing))) // self.required

    @property
    def complete(self) -> bool:
        return not self.missing and self.reason is None


@dataclass(frozen=True, slots=True)
class Completeness:
    per_locale: dict[str, LocaleCompleteness]

    @property
    def ratio(self) -> int:
        return min((lc.ratio for lc in self.per_locale.values()), default=100)

    @property
    def complete(self) -> bool:
        return all(lc.complete for lc in self.per_locale.values())

    @property
    def reason(self) -> str | None:
        return next((lc.reason for lc in self.per_locale.values() if lc.reason), None)

    @property
    def missing(self) -> list[str]:
        """Missing attributes over all locales, as ``attr`` or ``attr[locale]`` when partial."""
        locales = list(self.per_locale)
        by_attr: dict[str, list[str]] = {}
        for loc, lc in self.per_locale.items():
            for attr in lc.missing:
                by_attr.setdefault(attr, []).append(loc)
        out = []
        for attr, locs in by_attr.items():
            out.append(attr if len(locs) == len(locales) else f"{attr}[{','.join(locs)}]")
        return sorted(out)


def required_attributes(
    product: Product,
    channel: ChannelConfig,
    defs: CatalogDefinitions,
    extra: Iterable[str] = (),
) -> list[str]:
    required: dict[str, None] = {}
    if channel.completeness.family_requirements and product.family:
        family = defs.families.get(product.family)
        if family is not None:
            required.update(dict.fromkeys(family.requirements.get(channel.pim_scope, ())))
    required.update(dict.fromkeys(channel.completeness.required))
    required.update(dict.fromkeys(extra))
    return list(required)


def _price_complete(data: object, currencies: tuple[str, ...]) -> bool:
    if not isinstance(data, list):
        return False
    have = {
        p.get("currency")
        for p in data
        if isinstance(p, dict) and not is_empty({"amount": p.get("amount")})
    }
    return all(c in have for c in currencies)


def _present(
    product: Product,
    attr: str,
    adef: AttributeDef | None,
    loc: LocaleConfig,
    channel: ChannelConfig,
) -> bool:
    if adef is None:
        # Unknown to the catalog definitions: accept a value in any matching slot.
        for entry in product.values.get(attr, ()):
            if entry.get("scope") not in (None, channel.pim_scope):
                continue
            if entry.get("locale") not in (None, *loc.chain):
                continue
            if not is_empty(entry.get("data")):
                return True
        return False
    if adef.type == IDENTIFIER_TYPE:
        return True
    scope = channel.pim_scope if adef.scopable else None
    candidates = loc.chain if adef.localizable else (None,)
    for locale in candidates:
        data = product.value(attr, locale, scope)
        if data is MISSING:
            continue
        if adef.type == PRICE_TYPE:
            if _price_complete(data, channel.currencies):
                return True
        elif not is_empty(data):
            return True
    return False


def compute_completeness(
    product: Product,
    channel: ChannelConfig,
    defs: CatalogDefinitions,
    extra_required: Iterable[str] = (),
) -> Completeness:
    if product.family is None and not channel.completeness.publish_without_family:
        return Completeness(
            {loc.code: LocaleCompleteness(loc.code, 0, (), NO_FAMILY) for loc in channel.locales}
        )
    required = required_attributes(product, channel, defs, extra_required)
    per_locale: dict[str, LocaleCompleteness] = {}
    for loc in channel.locales:
        counted = 0
        missing: list[str] = []
        for attr in required:
            adef = defs.attributes.get(attr)
            if adef is not None and not adef.required_in_locale(loc.code):
                continue
            counted += 1
            if not _present(product, attr, adef, loc, channel):
                missing.append(attr)
        per_locale[loc.code] = LocaleCompleteness(loc.code, counted, tuple(missing))
    return Completeness(per_locale)


# How a compiled check reads its attribute.
_ALWAYS, _SCAN, _PLAIN, _CHAIN = 0, 1, 2, 3


class CompletenessPlan:
    """``compute_completeness`` compiled for one channel and one set of catalog definitions:
    per family, the attributes each channel locale requires, their definitions and where to
    read them, decided once; a product's values are read through its indexes
    (``Product.unlocalized``/``localized``), shared with the mapping of every channel."""

    def __init__(self, channel: ChannelConfig, defs: CatalogDefinitions) -> None:
        self.channel = channel
        self.defs = defs
        # family -> per channel locale: (locale code, [(attribute, how, a, b)])
        self._families: dict[str | None, list[tuple[str, list[tuple[str, int, Any, Any]]]]] = {}

    def _compile(self, family: str | None) -> list[tuple[str, list[tuple[str, int, Any, Any]]]]:
        channel, defs = self.channel, self.defs
        per_locale = []
        for loc in channel.locales:
            checks: list[tuple[str, int, Any, Any]] = []
            for attr in required_attributes_of(family, channel, defs):
                adef = defs.attributes.get(attr)
                if adef is not None and not adef.required_in_locale(loc.code):
                    continue
                if adef is None or adef.type == PRICE_TYPE:
                    checks.append((attr, _SCAN, adef, loc))  # as compute_completeness reads it
                elif adef.type == IDENTIFIER_TYPE:
                    checks.append((attr, _ALWAYS, None, None))
                else:
                    scope = channel.pim_scope if adef.scopable else None
                    if adef.localizable:
                        checks.append((attr, _CHAIN, scope, loc.chain))
                    else:
                        checks.append((attr, _PLAIN, scope, None))
            per_locale.append((loc.code, checks))
        return per_locale

    def compute(self, product: Product) -> Completeness:
        family = product.family
        if family is None and not self.channel.completeness.publish_without_family:
            return Completeness(
                {
                    loc.code: LocaleCompleteness(loc.code, 0, (), NO_FAMILY)
                    for loc in self.channel.locales
                }
            )
        compiled = self._families.get(family)
        if compiled is None:
            compiled = self._families[family] = self._compile(family)
        unlocalized = product.unlocalized()
        localized = product.localized()
        per_locale: dict[str, LocaleCompleteness] = {}
        for code, checks in compiled:
            missing: list[str] = []
            for attr, how, a, b in checks:
                if how == _PLAIN:
                    present = (unlocalized.get(a) or _NONE).get(attr) is not None
                elif how == _CHAIN:
                    present = False
                    for locale in b:
                        by_attribute = localized.get((locale, a))
                        if by_attribute is not None and by_attribute.get(attr) is not None:
                            present = True
                            break
                elif how == _SCAN:
                    present = _present(product, attr, a, b, self.channel)
                else:
                    present = True
                if not present:
                    missing.append(attr)
            per_locale[code] = LocaleCompleteness(code, len(checks), tuple(missing))
        return Completeness(per_locale)


def required_attributes_of(
    family: str | None, channel: ChannelConfig, defs: CatalogDefinitions
) -> list[str]:
    """``required_attributes`` for a product of ``family`` (nothing else of it counts)."""
    required: dict[str, None] = {}
    if channel.completeness.family_requirements and family:
        fam = defs.families.get(family)
        if fam is not None:
            required.update(dict.fromkeys(fam.requirements.get(channel.pim_scope, ())))
    required.update(dict.fromkeys(channel.completeness.required))
    return list(required)


_NONE: dict[str, Any] = {}
