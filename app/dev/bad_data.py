"""The reference PIM's bad days in its data: a catalog as real PIMs hold it, not as pimsync
would like it (development tooling; production code never imports it).

- a renamed identifier attribute: the SKU lives in ``values.<name>`` (``ean``, ``code``...),
  the attribute of type ``pim_catalog_identifier`` carries that name, and families require it
  under that name;
- products without an identifier (allowed since products are keyed by uuid): only a uuid;
- products without a family: no requirements, so Akeneo computes no completeness for them.

Which products are spoiled is deterministic: the first simple products (no parent) in uuid
order, identifier-less ones first, then the family-less ones, so tests know the exact counts.
"""

from __future__ import annotations

import copy
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any

from app.pim.catalog import IDENTIFIER_TYPE, CatalogDefinitions, definitions_from_dict

# uuid5 namespace for products that come without a uuid (the reference server's own)
UUID_NAMESPACE = uuidlib.UUID("6b5f4a52-3c1e-4d8e-9a57-0f1f3f2b9c11")


@dataclass(frozen=True, slots=True)
class BadData:
    identifier_attribute: str | None = None  # rename the identifier attribute to this
    without_identifier: int = 0  # this many simple products lose their identifier
    without_family: int = 0  # this many (other) simple products lose their family

    @property
    def any(self) -> bool:
        return bool(self.identifier_attribute or self.without_identifier or self.without_family)


def current_identifier_attribute(defs: CatalogDefinitions) -> str:
    return defs.identifier_attribute() or "sku"


def _identifier(product: dict[str, Any], attribute: str) -> str | None:
    identifier = product.get("identifier")
    if isinstance(identifier, str) and identifier:
        return identifier
    for entry in (product.get("values") or {}).get(attribute) or ():
        if isinstance(entry, dict) and isinstance(entry.get("data"), str) and entry["data"]:
            return str(entry["data"])
    return None


def rename_identifier_definitions(
    defs: CatalogDefinitions, old: str, new: str
) -> CatalogDefinitions:
    """The definitions with the identifier attribute ``old`` called ``new`` everywhere."""
    data = defs.to_dict()

    def swap(code: Any) -> Any:
        return new if code == old else code

    attributes = [a for a in data["attributes"] if a["code"] not in (old, new)]
    attributes.insert(
        0,
        {
            "code": new,
            "type": IDENTIFIER_TYPE,
            "localizable": False,
            "scopable": False,
            "labels": {"en_US": new.upper()},
            "is_main_identifier": True,
        },
    )
    data["attributes"] = attributes
    for family in data["families"]:
        family["attributes"] = [swap(a) for a in family["attributes"]]
        family["attribute_requirements"] = {
            channel: [swap(a) for a in codes]
            for channel, codes in family["attribute_requirements"].items()
        }
        family["attribute_as_label"] = swap(family.get("attribute_as_label"))
    return definitions_from_dict(data)


def degrade(
    products: list[dict[str, Any]], defs: CatalogDefinitions, bad: BadData
) -> tuple[list[dict[str, Any]], CatalogDefinitions, str]:
    """``products`` and ``defs`` spoiled as ``bad`` says; returns them and the identifier
    attribute the catalog now has."""
    old = current_identifier_attribute(defs)
    new = bad.identifier_attribute or old
    if new != old and new in defs.attributes:
        raise ValueError(
            f"cannot rename the identifier attribute {old!r} to {new!r}: the catalog already "
            f"has an attribute {new!r} (pick a free code)"
        )
    out: list[dict[str, Any]] = []
    for raw in products:
        product = copy.deepcopy(raw)
        identifier = _identifier(product, old)
        if not product.get("uuid") and identifier:
            product["uuid"] = str(uuidlib.uuid5(UUID_NAMESPACE, identifier))
        values = product.setdefault("values", {})
        values.pop(old, None)
        product.pop("identifier", None)  # products-uuid items carry it in values only
        if identifier:
            values[new] = [{"locale": None, "scope": None, "data": identifier}]
        out.append(product)
    if new != old:
        defs = rename_identifier_definitions(defs, old, new)
    simple = sorted(
        (p for p in out if not p.get("parent") and p.get("uuid")), key=lambda p: str(p["uuid"])
    )
    for product in simple[: bad.without_identifier]:
        product["values"].pop(new, None)
    start = bad.without_identifier
    for product in simple[start : start + bad.without_family]:
        product["family"] = None
    return out, defs, new
