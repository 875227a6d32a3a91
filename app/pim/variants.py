"""Akeneo product models and the variant products under them (pure: no I/O).

Akeneo keeps at most two model levels: a root model (no parent) and sub-models (parent = a
root). A variant product's ``parent`` names a sub-model or, for one-level family variants, a
root model. The PIM's API returns variants *complete*: values inherited from every ancestor
(the most specific level wins per attribute, locale and scope) and the union of categories.
Sources that only hold each level's own data (CSV fixtures, exports) resolve them here.

Model codes are case-insensitive in Akeneo, and the icecat fixtures do spell some parents
differently from the model's code, so every lookup goes through ``str.casefold``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any

# Akeneo allows two model levels; a longer chain means a cycle or corrupt data.
MAX_MODEL_DEPTH = 5

ModelIndex = Mapping[str, dict[str, Any]]


def _ref(raw: Mapping[str, Any]) -> str:
    for key in ("identifier", "code", "uuid"):
        value = raw.get(key)
        if isinstance(value, str) and value:
            return value
    return "<unknown>"


def index_models(models: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Product models by casefolded code; raises ValueError on a missing or repeated code."""
    index: dict[str, dict[str, Any]] = {}
    for model in models:
        code = model.get("code")
        if not isinstance(code, str) or not code:
            raise ValueError(f"product model without a code: {_ref(model)!r}")
        key = code.casefold()
        if key in index:
            raise ValueError(
                f"product model {code!r} is defined twice (codes are case-insensitive: "
                f"{index[key]['code']!r})"
            )
        index[key] = model
    return index


def find_model(code: str, models_index: ModelIndex) -> dict[str, Any] | None:
    return models_index.get(code.casefold())


def model_lineage(model: dict[str, Any], models_index: ModelIndex) -> list[dict[str, Any]]:
    """``[root, ..., model]``; raises ValueError naming the model on a missing parent or a cycle."""
    chain = [model]
    seen = {str(model.get("code", "")).casefold()}
    current = model
    while current.get("parent"):
        parent_code = current["parent"]
        if not isinstance(parent_code, str):
            raise ValueError(f"product model {_ref(current)!r}: parent must be a model code")
        parent = models_index.get(parent_code.casefold())
        if parent is None:
            raise ValueError(
                f"product model {_ref(current)!r}: parent product model {parent_code!r} not found"
            )
        key = parent_code.casefold()
        if key in seen or len(chain) >= MAX_MODEL_DEPTH:
            raise ValueError(f"product model {_ref(model)!r}: its parents form a cycle")
        seen.add(key)
        chain.append(parent)
        current = parent
    chain.reverse()
    return chain


def merge_values(*layers: Mapping[str, Any] | None) -> dict[str, list[dict[str, Any]]]:
    """Merge value sets from least to most specific; a later layer wins per (attr, locale, scope).

    Entries are copied so the result never aliases a model's values (models are shared by all
    their variants).
    """
    merged: dict[str, dict[tuple[Any, Any], dict[str, Any]]] = {}
    for layer in layers:
        for attribute, entries in (layer or {}).items():
            slots = merged.setdefault(attribute, {})
            for entry in entries or ():
                if not isinstance(entry, dict):
                    continue  # not a value: parse_product reports it on the product itself
                slots[(entry.get("locale"), entry.get("scope"))] = copy.deepcopy(entry)
    return {attribute: list(slots.values()) for attribute, slots in merged.items()}


def merge_categories(*layers: Iterable[str] | None) -> list[str]:
    """Union of category codes, in first-seen order (root first) so output is deterministic."""
    seen: dict[str, None] = {}
    for layer in layers:
        for code in layer or ():
            seen.setdefault(code, None)
    return list(seen)


def _family_of(lineage: list[dict[str, Any]]) -> str | None:
    for model in reversed(lineage):
        if model.get("family"):
            return model["family"]
    return None


def resolve_model(model: dict[str, Any], models_index: ModelIndex) -> dict[str, Any]:
    """A model as Akeneo's API returns it: its ancestors' values and categories merged in."""
    lineage = model_lineage(model, models_index)
    resolved = dict(model)
    if len(lineage) > 1:
        resolved["parent"] = lineage[-2]["code"]
    resolved["values"] = merge_values(*(m.get("values") for m in lineage))
    resolved["categories"] = merge_categories(*(m.get("categories") for m in lineage))
    if not resolved.get("family"):
        resolved["family"] = _family_of(lineage)
    return resolved


def resolve_product(raw: dict[str, Any], models_index: ModelIndex) -> dict[str, Any]:
    """A variant product completed from its models (a new dict); other products unchanged.

    ``parent`` becomes the model's canonical code and ``root_parent`` the root model's code.
    Raises ValueError naming the product and the parent when the parent is unknown.
    """
    parent = raw.get("parent")
    if not parent:
        return raw
    ref = _ref(raw)
    if not isinstance(parent, str):
        raise ValueError(f"product {ref!r}: parent must be a product model code, got {parent!r}")
    model = models_index.get(parent.casefold())
    if model is None:
        raise ValueError(f"product {ref!r}: parent product model {parent!r} not found")
    try:
        lineage = model_lineage(model, models_index)
    except ValueError as exc:
        raise ValueError(f"product {ref!r}: {exc}") from None
    resolved = dict(raw)
    resolved["parent"] = model["code"]
    resolved["root_parent"] = lineage[0]["code"]
    resolved["values"] = merge_values(*(m.get("values") for m in lineage), raw.get("values"))
    resolved["categories"] = merge_categories(
        *(m.get("categories") for m in lineage), raw.get("categories")
    )
    if not resolved.get("family"):
        resolved["family"] = _family_of(lineage)
    return resolved


def variants_of(
    model_code: str, products: Iterable[dict[str, Any]], models_index: ModelIndex
) -> list[dict[str, Any]]:
    """Products under a model, directly or through one of its sub-models."""
    target = model_code.casefold()
    found: list[dict[str, Any]] = []
    for product in products:
        parent = product.get("parent")
        if not isinstance(parent, str) or not parent:
            continue
        model = models_index.get(parent.casefold())
        if model is None:
            continue
        try:
            lineage = model_lineage(model, models_index)
        except ValueError:
            continue  # a broken chain is reported when the product itself is resolved
        if any(str(m.get("code", "")).casefold() == target for m in lineage):
            found.append(product)
    return found
