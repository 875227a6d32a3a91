"""The ownership table as data, and the check every writer calls.

Each data domain has exactly one system of record. A source never writes a domain it does not
own: a PIM payload carrying prices or stock has those values stripped (and the violation
recorded), and a domain event from a source that does not own its domain is refused.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.pim.catalog import IDENTIFIER_TYPE, MEDIA_TYPES, PRICE_TYPE, CatalogDefinitions
from app.yamlio import load_yaml

DOMAINS = (
    "identity",
    "pricing",
    "inventory",
    "content",
    "attributes",
    "taxonomy",
    "localisation",
    "media",
)
SOURCES = ("erp", "wms", "pim", "dam", "pricing_engine")

DEFAULT_OWNERS: dict[str, str] = {
    "identity": "erp",
    "pricing": "erp",
    "inventory": "wms",
    "content": "pim",
    "attributes": "pim",
    "taxonomy": "pim",
    "localisation": "pim",
    "media": "dam",
}
# PIM attributes that belong to a domain other than "attributes", by code (globs allowed).
# Attribute *types* classify too: price collections are pricing, images/files/assets media.
DEFAULT_ATTRIBUTE_DOMAINS: dict[str, tuple[str, ...]] = {
    "pricing": ("price", "prices", "price_*", "*_price", "special_price", "cost", "msrp"),
    "inventory": ("stock", "stock_*", "*_stock", "qty", "quantity", "inventory", "inventory_*"),
    "media": (),
}


class OwnershipError(PermissionError):
    """A source tried to write a domain it does not own."""

    def __init__(self, source: str, domain: str, owner: str) -> None:
        self.source, self.domain, self.owner = source, domain, owner
        super().__init__(f"source {source!r} does not own domain {domain!r} (owner: {owner!r})")


class OwnershipConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Violation:
    source: str
    domain: str
    attribute: str


@dataclass(frozen=True)
class OwnershipTable:
    owners: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_OWNERS))
    attribute_domains: dict[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_ATTRIBUTE_DOMAINS)
    )
    _domain_cache: dict[tuple[str, str | None], str] = field(
        default_factory=dict, compare=False, repr=False
    )

    def owner(self, domain: str) -> str:
        try:
            return self.owners[domain]
        except KeyError:
            raise OwnershipConfigError(
                f"unknown domain {domain!r} (known: {', '.join(DOMAINS)})"
            ) from None

    def owns(self, source: str, domain: str) -> bool:
        return self.owner(domain) == source

    def check(self, source: str, domain: str) -> None:
        """Raise ``OwnershipError`` unless ``source`` is the system of record for ``domain``."""
        owner = self.owner(domain)
        if owner != source:
            raise OwnershipError(source, domain, owner)

    def attribute_domain(self, code: str, attr_type: str | None, data: Any = None) -> str:
        """Which domain a PIM attribute's values belong to (memoised per code and type)."""
        if attr_type is None and _looks_like_prices(data):
            # An undefined attribute holding prices: decided by this value, never memoised
            # (nor may an earlier non-price value's answer be reused for it).
            return self._classify(code, attr_type, data)
        key = (code, attr_type)
        hit = self._domain_cache.get(key)
        if hit is None:
            hit = self._classify(code, attr_type, data)
            self._domain_cache[key] = hit
        return hit

    def _classify(self, code: str, attr_type: str | None, data: Any) -> str:
        for domain, patterns in self.attribute_domains.items():
            if any(p == code or fnmatch.fnmatchcase(code, p) for p in patterns):
                return domain
        if attr_type == PRICE_TYPE:
            return "pricing"
        if attr_type in MEDIA_TYPES:
            return "media"
        if attr_type is None and _looks_like_prices(data):
            return "pricing"
        return "attributes"

    def foreign_attributes(
        self,
        source: str,
        values: dict[str, list[dict[str, Any]]],
        defs: CatalogDefinitions,
        memo: dict[str, Violation | None] | None = None,
    ) -> list[Violation]:
        """Attributes in ``values`` whose domain ``source`` does not own.

        ``memo`` (per ``source`` and ``defs``, kept by the caller across products) holds the
        answer for each defined attribute, so a page of products costs one classification
        per attribute code, not one per value list.
        """
        if memo is None:
            memo = {}
        elif memo.keys() >= values.keys():
            # every code answered already (the common case past a catalog's first products):
            # the answers in the product's order, without a Python step per attribute
            return list(filter(None, map(memo.__getitem__, values)))
        out = []
        for code, entries in values.items():
            if code in memo:
                hit = memo[code]
                if hit is not None:
                    out.append(hit)
                continue
            attr_type = defs.attribute_type(code)
            if attr_type == IDENTIFIER_TYPE:
                memo[code] = None  # the SKU is the key every system shares, not data to own
                continue
            sample = entries[0].get("data") if entries else None
            domain = self.attribute_domain(code, attr_type, sample)
            violation = None if self.owns(source, domain) else Violation(source, domain, code)
            if attr_type is not None:  # an undefined one is judged by each product's value
                memo[code] = violation
            if violation is not None:
                out.append(violation)
        return out

    def as_rows(self) -> list[tuple[str, str]]:
        return sorted(self.owners.items())


def _looks_like_prices(data: Any) -> bool:
    return (
        isinstance(data, list)
        and bool(data)
        and all(isinstance(p, dict) and "currency" in p for p in data)
    )


def strip_foreign(
    table: OwnershipTable,
    source: str,
    values: dict[str, list[dict[str, Any]]],
    defs: CatalogDefinitions,
) -> tuple[dict[str, list[dict[str, Any]]], list[Violation]]:
    """``values`` without the attributes ``source`` does not own, and the violations found."""
    violations = table.foreign_attributes(source, values, defs)
    if not violations:
        return values, []
    foreign = {v.attribute for v in violations}
    return {k: v for k, v in values.items() if k not in foreign}, violations


def load_ownership(path: Path | str | None) -> OwnershipTable:
    """The ownership table from YAML (``owners:``, ``attribute_domains:``), or the defaults."""
    if path is None:
        return OwnershipTable()
    path = Path(path)
    try:
        data = load_yaml(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise OwnershipConfigError(f"cannot read ownership table {path}: {exc}") from None
    if not isinstance(data, dict):
        raise OwnershipConfigError(
            f"{path}: expected a mapping with `owners:` and `attribute_domains:`"
        )
    unknown = set(data) - {"owners", "attribute_domains", "sources"}
    if unknown:
        raise OwnershipConfigError(
            f"{path}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
            "(expected owners, attribute_domains, sources)"
        )
    for section, what in (("owners", "its source"), ("attribute_domains", "code patterns")):
        if not isinstance(data.get(section) or {}, dict):
            raise OwnershipConfigError(f"{path}: `{section}` must map each domain to {what}")
    owners = dict(DEFAULT_OWNERS)
    # Systems of record beyond the usual ones must be declared: a typo (`pimm`) would
    # otherwise make every PIM attribute foreign.
    known_sources = set(SOURCES) | {str(x) for x in _as_list(data.get("sources"))}
    for domain, source in (data.get("owners") or {}).items():
        if domain not in DOMAINS:
            raise OwnershipConfigError(
                f"{path}: unknown domain {domain!r} (known: {', '.join(DOMAINS)})"
            )
        if not isinstance(source, str) or not source:
            raise OwnershipConfigError(f"{path}: domain {domain!r} needs one owning source")
        if source not in known_sources:
            raise OwnershipConfigError(
                f"{path}: domain {domain!r} owned by unknown source {source!r} (known: "
                f"{', '.join(sorted(known_sources))}; declare others under `sources:`)"
            )
        owners[domain] = source
    attr_domains = dict(DEFAULT_ATTRIBUTE_DOMAINS)
    for domain, patterns in (data.get("attribute_domains") or {}).items():
        if domain not in DOMAINS:
            raise OwnershipConfigError(f"{path}: unknown domain {domain!r} in attribute_domains")
        if patterns is not None and not isinstance(patterns, (str, list)):
            raise OwnershipConfigError(
                f"{path}: attribute_domains.{domain} must be a code pattern or a list of them"
            )
        attr_domains[domain] = tuple(_as_list(patterns))
    return OwnershipTable(owners=owners, attribute_domains=attr_domains)


def _as_list(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value or ()]
