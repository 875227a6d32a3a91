"""Apply a mapping contract to one product for one channel (pure).

Values are read for the channel's PIM scope when the attribute is scopable; a ``localized``
mapping produces ``{locale: value}`` for every channel locale through its fallback chain, any
other mapping reads the channel's first locale (with fallbacks) when the attribute is
localizable. Attributes the contract does not cover are drift, handled by the contract's
``unmapped`` strategy. Only ``MappingError`` subclasses ever leave this module.

A ``MappingPlan`` compiles, per attribute code, everything that does not depend on the
product (scope, contract mappings, ownership domain, transforms), so the per-product loop is
a dictionary lookup and the transform calls: catalogs have ~200 attributes per product and
hundreds of thousands of units per sync.

Values are resolved through the product's indexes (``Product.unlocalized``/``localized``:
one pass over its values, shared by every channel), so a locale fallback chain costs a
dictionary lookup per locale. The result of a built-in transform depends only on the value it
reads and on parameters the plan knows (spec, locale chains, the channel's currency, the
contract's lookup tables, the catalog definitions): each such step carries a *memo id* naming
all of them, and the product keeps the results (``Product.memo``), so the next channel that
asks the same question (same attribute, scope, locales and transform) takes the answer
instead of computing it again. Errors are never kept: each channel raises its own.

Most attributes are mapped in *groups* (``_Group``): those read alike from one index and
placed under one parent (as they are, through a shared transform, or as a one-locale
``{locale: value}``) are filtered out of the index and placed all at once with C-level
``filter``/``map``/``zip``, not one Python step per attribute and channel. The rest (foreign,
drift, several steps, a transform nobody shares, several locales) are mapped one by one in
the product's order. The result is the same as mapping every attribute in the product's
order (tests/mapping/test_groups.py); where it could differ (two attributes writing one
place) the plan stops grouping, and an error is reported by an in-order pass, so it names
the first failing attribute in the product's order.
"""

from __future__ import annotations

import threading
from bisect import insort
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from app.channels.config import ChannelConfig
from app.mapping import transforms as builtin
from app.mapping.contract import CompiledContract, MappingSpec
from app.mapping.errors import DriftError, MappingError, TransformError
from app.mapping.transforms import (
    COMPUTED,
    TRANSFORMS,
    TransformContext,
    TransformFn,
    auto_transform_name,
)
from app.ownership import OwnershipTable, Violation
from app.pim.catalog import IDENTIFIER_TYPE, AttributeDef, CatalogDefinitions
from app.pim.product import MISSING, Product, is_empty


@dataclass(slots=True)
class MapResult:
    doc: dict[str, Any]
    drift: list[str] = field(default_factory=list)  # unmapped attributes (warn strategy)
    missing_required: list[str] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)


@dataclass(slots=True)
class _Step:
    spec: MappingSpec
    parent: tuple[str, ...]  # where the value goes: doc[parent...][key]
    key: str
    fn: Callable[[Any, TransformContext, MappingSpec], Any] | None  # None: the value as is
    localized: bool
    # Non-localized steps: the locale chain to read (() = the value has no locale).
    chain: tuple[str, ...] | None = None
    # Fast path (most attributes): a defined, non-localizable attribute read at this scope
    # (None or the channel's); _COMPLEX when the general reader is needed.
    read_scope: Any = None
    # The transform's result is shared across channels under this id (None: never kept).
    memo: int | None = None


# What to do with an attribute code, decided once per plan.
_SKIP, _FOREIGN, _DRIFT, _MAP = 0, 1, 2, 3
_COMPLEX = object()
_NOTHING: dict[str, Any] = {}
_NO_MEMO = object()

# Memo ids: one small int per question a step asks (attribute, scope, locales, transform and
# its parameters, the catalog definitions by their token). Keys hold values only, no object;
# ints are never reused: the table is emptied when it grows past _MEMO_MAX (a process that
# reloads its configuration many times) and the counter goes on, so an id kept on a product
# can never name another question.
_MEMO_IDS: dict[tuple[Any, ...], int] = {}
_MEMO_MAX = 200_000
_memo_next = 0


def _memo_id(key: tuple[Any, ...]) -> int:
    global _memo_next
    hit = _MEMO_IDS.get(key)
    if hit is None:
        if len(_MEMO_IDS) >= _MEMO_MAX:
            _MEMO_IDS.clear()
        _memo_next += 1
        hit = _MEMO_IDS[key] = _memo_next
    return hit


def _resolve(
    localized: dict[tuple[str, str | None], dict[str, Any]],
    unlocalized: dict[str | None, dict[str, Any]],
    attr: str,
    scope: str | None,
    chain: tuple[str, ...],
) -> Any:
    """``_pick`` for a defined attribute, through the product's indexes: the first non-empty
    value along ``chain`` (``()``: the value without a locale); None if there is none."""
    if not chain:
        return (unlocalized.get(scope) or _NOTHING).get(attr)
    for loc in chain:
        by_attribute = localized.get((loc, scope))
        if by_attribute is not None:
            data = by_attribute.get(attr)
            if data is not None:
                return data
    return None


@dataclass(slots=True)
class _AttrPlan:
    action: int
    adef: AttributeDef | None = None
    steps: list[_Step] = field(default_factory=list)
    violation: Violation | None = None
    # The hot path, unpacked once: one step, read without a locale, placed at most one level
    # down: (read unscoped?, transform or None, spec, parent key or None, key, memo id)
    fast: tuple[bool, Any, MappingSpec, str | None, str, int | None] | None = None


# How a group reads its values: the product's values without a locale, unscoped or at the
# channel's scope; or the channel's one locale (through its fallback chain) at a scope.
_UNSCOPED, _AT_SCOPE, _LOCALE = 0, 1, 2


@dataclass(slots=True)
class _Group:
    """Attributes of one plan mapped alike, all at once per product: read from one of the
    product's indexes (``source``; ``scope`` for a locale's), placed under ``parent`` (None:
    at the top), as they are or through a shared transform (``memo``: attribute -> memo id).

    The per-attribute work is C-level (a filter of the index by ``attrs``, ``zip``, ``map``),
    and a transform's result is taken from the product's memo (computed by the first channel
    that asks): a Python loop per attribute and per channel is what the plans spent most of
    their time in (~0.5 us an attribute on the bench machine, ~190 attributes x 4 channels).
    """

    source: int
    scope: str | None
    parent: str | None
    attrs: set[str] = field(default_factory=set)
    listed: list[str] = field(default_factory=list)  # ``attrs`` in code order
    keys: dict[str, str] = field(default_factory=dict)  # attribute -> document key
    renamed: bool = False  # some key is not its attribute's code
    transformed: bool = False  # through each attribute's transform, shared by memo id
    memo: dict[str, int] = field(default_factory=dict)
    steps: dict[str, _Step] = field(default_factory=dict)  # what computes a memo miss

    @property
    def order(self) -> tuple[Any, ...]:
        return (self.source, self.scope or "", self.parent or "", self.transformed)


def _find(entries: list[dict[str, Any]], locale: str | None, scope: str | None) -> Any:
    for e in entries:
        if e.get("locale") == locale and e.get("scope") == scope:
            return e.get("data")
    return MISSING


def _pick(
    entries: list[dict[str, Any]], adef: AttributeDef | None, scope: str, chain: tuple[str, ...]
) -> Any:
    """The value for one locale chain (``()`` for a non-localizable read); MISSING if none."""
    loc: str | None
    if adef is not None:
        sc = scope if adef.scopable else None
        if not chain:
            for e in entries:
                if e.get("locale") is None and e.get("scope") == sc:
                    return e.get("data")
            return MISSING
        for loc in chain:
            for e in entries:
                if e.get("locale") == loc and e.get("scope") == sc:
                    data = e.get("data")
                    if not is_empty(data):
                        return data
                    break
        return MISSING
    # Unknown definition: prefer the channel's scope, then unscoped; locale chain, then none.
    for sc in (scope, None):
        for loc in (*chain, None):
            data = _find(entries, loc, sc)
            if not is_empty(data):
                return data
    return MISSING


def _localizable(adef: AttributeDef | None, entries: list[dict[str, Any]]) -> bool:
    if adef is not None:
        return adef.localizable
    return any(e.get("locale") for e in entries)


def _set(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = doc
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def _get(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = doc
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


# The built-in transforms whose result depends only on the value and the parameters
# ``MappingPlan._params`` names (the registry may replace one: then it is not shared).
_PURE: dict[str, TransformFn] = {
    "direct": builtin.direct,
    "lookup": builtin.lookup,
    "metric_to_string": builtin.metric_to_string,
    "multi_to_csv": builtin.multi_to_csv,
    "boolean": builtin.boolean,
    "number": builtin.number,
    "price": builtin.price,
}


class MappingPlan:
    """A contract compiled for one channel and one set of catalog definitions."""

    def __init__(
        self,
        channel: ChannelConfig,
        contract: CompiledContract,
        defs: CatalogDefinitions,
        ownership: OwnershipTable | None = None,
        source: str = "pim",
    ) -> None:
        self.channel = channel
        self.contract = contract
        self.defs = defs
        self.ownership = ownership
        self.source = source
        self.scope = channel.pim_scope
        self.locales = channel.locales
        self.first_chain = channel.locales[0].chain
        self.first_locale = channel.locales[0].code
        self._plans: dict[str, _AttrPlan] = {}
        self._required = [
            (spec, tuple(spec.target.split(".")))
            for spec in contract.required_exact
            if channel.in_attribute_scope(spec.pim or "")
        ]
        self._computed = [(spec, tuple(spec.target.split("."))) for spec in contract.computed]
        # what a lookup's result depends on: the contract's tables (same key, same content)
        self._contract_token = (contract.key, contract.contract.fingerprint())
        # Grouped mapping (``_fill_groups``): the planned attributes mapped in groups, those
        # mapped one by one in the product's order (``_rest``), and the document paths the
        # plans write (``_claims``: path -> attribute; ``_inner``: paths that hold others).
        # Two attributes claiming one path (or a path inside another's value) would make the
        # result depend on the order of writes: the plan then maps every attribute in the
        # product's order, as without groups (``_grouping`` False, for good).
        self._grouping = True
        self._planning = threading.Lock()
        self._groups: dict[tuple[Any, ...], _Group] = {}
        self._group_list: list[_Group] = []
        self._rest: set[str] = set()
        self._claims: dict[tuple[str, ...], str] = {}
        self._inner: set[tuple[str, ...]] = set()
        single = channel.locales[0] if len(channel.locales) == 1 else None
        self._locale_code = single.code if single is not None else None
        # a locale's values through its fallback chain, merged once per product (memo id)
        self._views = {sc: _memo_id(("view", self.first_chain, sc)) for sc in {self.scope, None}}

    def _plan(self, attr: str, entries: list[dict[str, Any]]) -> _AttrPlan:
        adef = self.defs.attributes.get(attr)
        if not self.channel.in_attribute_scope(attr):
            return _AttrPlan(_SKIP)
        if adef is not None and adef.type == IDENTIFIER_TYPE and not self.contract.exact.get(attr):
            return _AttrPlan(_SKIP)  # the SKU is the document's key: mapped only if asked
        if self.ownership is not None:
            sample = entries[0].get("data") if entries else None
            domain = self.ownership.attribute_domain(attr, adef.type if adef else None, sample)
            if not self.ownership.owns(self.source, domain):
                return _AttrPlan(_FOREIGN, violation=Violation(self.source, domain, attr))
        specs = self.contract.specs_for(attr)
        if not specs:
            if self.contract.is_ignored(attr):
                return _AttrPlan(_SKIP)
            return _AttrPlan(_DRIFT)
        steps = []
        localizable = _localizable(adef, entries)
        for spec in specs:
            *parent, key = spec.target.replace("{attribute}", attr).split(".")
            transform = spec.transform
            if transform == "auto":
                transform = auto_transform_name(adef, entries[0].get("data") if entries else None)
                if localizable:  # a localizable spec becomes {locale: value} like `localized`
                    spec = spec.model_copy(update={"transform": "localized", "of": transform})
                    transform = "localized"
            fn: TransformFn | None = TRANSFORMS[transform]
            identity = transform == "direct" and not spec.labels
            localized = transform == "localized"
            if localized and (spec.of or "direct") == "direct" and not spec.labels:
                fn = None  # per-locale values as they are
            simple = not localized and adef is not None and not adef.localizable
            step = _Step(
                spec,
                tuple(parent),
                key,
                None if identity else fn,
                localized,
                None if localized else (self.first_chain if localizable else ()),
                (self.scope if adef.scopable else None) if simple and adef else _COMPLEX,
            )
            if adef is not None:
                step.memo = self._memo(attr, adef, transform, step, localizable)
            steps.append(step)
        plan = _AttrPlan(_MAP, adef=adef, steps=steps)
        only = steps[0] if len(steps) == 1 else None
        if only is not None and only.read_scope is not _COMPLEX and len(only.parent) <= 1:
            plan.fast = (
                only.read_scope is None,
                only.fn,
                only.spec,
                only.parent[0] if only.parent else None,
                only.key,
                only.memo,
            )
        return plan

    def _params(self, name: str, spec: MappingSpec, chain: Any) -> tuple[Any, ...] | None:
        """What a built-in transform's result depends on besides its value (None: a transform
        this module does not know, or one replaced in the registry: never shared)."""
        known = _PURE.get(name)
        if known is None or TRANSFORMS.get(name) is not known:
            return None
        if name == "direct":
            return (spec.labels, chain if spec.labels else None)
        if name == "lookup":
            return (self._contract_token, spec.table)
        if name == "metric_to_string":
            return (spec.precision, spec.unit)
        if name == "multi_to_csv":
            return (spec.labels, spec.separator, chain if spec.labels else None)
        if name == "number":
            return (spec.precision,)
        if name == "price":
            return (self.channel.currency, spec.precision)
        return ()  # boolean

    def _memo(
        self, attr: str, adef: AttributeDef, transform: str, step: _Step, localizable: bool
    ) -> int | None:
        """The step's memo id, when its result can be shared with other channels."""
        spec = step.spec
        sc = self.scope if adef.scopable else None
        key: tuple[Any, ...]
        if step.localized:
            if step.fn is not None and TRANSFORMS.get("localized") is not builtin.localized:
                return None
            inner = spec.of or "direct"
            params = self._params(inner, spec, None) if step.fn is not None else ("as is",)
            if params is None:
                return None
            # the per-locale label chain is each locale's own: the locales name it
            locales = tuple((loc.code, loc.chain) for loc in self.locales)
            key = ("localized", attr, sc, localizable, locales, spec.required, inner, params)
        else:
            if step.fn is None:
                return None  # the value as it is: nothing to share
            # a non-localized step's labels come from the channel's first locale chain
            params = self._params(transform, spec, self.first_chain)
            if params is None:
                return None
            key = ("value", attr, sc, step.chain, transform, params)
        return _memo_id((*key, self.defs.token))

    def map(self, product: Product) -> MapResult:
        try:
            return self._map(product)
        except MappingError:
            raise
        except Exception as exc:  # a bug in a (custom) transform must still name the unit
            raise TransformError(
                product.identifier,
                "<unknown>",
                None,
                self.contract.key,
                f"{type(exc).__name__}: {exc}",
            ) from exc

    def _enroll(self, attr: str, plan: _AttrPlan) -> None:
        """File a stored plan: into a group, or among the attributes mapped one by one."""
        for step in plan.steps:
            self._claim(attr, (*step.parent, step.key))
        if plan.action == _SKIP:
            return  # nothing to write, nothing to report
        group = self._group_for(plan) if plan.action == _MAP else None
        if group is None:
            self._rest.add(attr)
            return
        step = plan.steps[0]
        # Copied, never changed in place: a thread mapping with this plan reads the group
        # without the lock. What an attribute needs is in place before it appears in
        # ``listed`` and ``attrs``, which a reader filters by.
        if group.transformed:
            assert step.memo is not None
            group.memo = {**group.memo, attr: step.memo}
            group.steps = {**group.steps, attr: step}
        group.keys = {**group.keys, attr: step.key}
        group.renamed = group.renamed or step.key != attr
        listed = group.listed.copy()
        insort(listed, attr)
        group.listed = listed
        group.attrs = group.attrs | {attr}

    def _claim(self, attr: str, path: tuple[str, ...]) -> None:
        if not self._grouping:
            return
        holder = self._claims.get(path)
        if (
            (holder is not None and holder != attr)
            or path in self._inner
            or any(path[:i] in self._claims for i in range(1, len(path)))
        ):
            self._grouping = False  # the order of writes decides: keep the product's order
            return
        self._claims[path] = attr
        self._inner.update(path[:i] for i in range(1, len(path)))

    def _group_for(self, plan: _AttrPlan) -> _Group | None:
        if len(plan.steps) != 1:
            return None
        step = plan.steps[0]
        if plan.fast is not None:
            read_unscoped, fn, _spec, first, _key, m = plan.fast
            if fn is not None and m is None:
                return None  # a transform whose result is not shared: called per channel
            return self._group(_UNSCOPED if read_unscoped else _AT_SCOPE, None, first, fn)
        adef = plan.adef
        if (
            step.localized
            and step.fn is None
            and adef is not None
            and adef.localizable
            and self._locale_code is not None  # one locale: {locale: value} or nothing
            and len(step.parent) <= 1
        ):
            scope = self.scope if adef.scopable else None
            return self._group(_LOCALE, scope, step.parent[0] if step.parent else None, None)
        return None

    def _group(self, source: int, scope: str | None, parent: str | None, fn: Any) -> _Group:
        key = (source, scope, parent, fn is not None)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(source, scope, parent, transformed=fn is not None)
            # one order, whatever came first; a new list (readers iterate the one they took)
            self._group_list = sorted([*self._group_list, group], key=lambda g: g.order)
        return group

    def _view(
        self,
        localized: dict[tuple[str, str | None], dict[str, Any]],
        memo: dict[int, Any],
        scope: str | None,
    ) -> dict[str, Any]:
        """The product's values in the channel's (one) locale at ``scope``: for each
        attribute, the first along the locale's fallback chain (the indexes hold no empty
        value). Built once per product for every channel with the same chain and scope."""
        chain = self.first_chain
        if len(chain) == 1:
            return localized.get((chain[0], scope)) or _NOTHING
        m = self._views[scope]
        view = memo.get(m)
        if view is None:
            view = {}
            for loc in reversed(chain):
                by_attribute = localized.get((loc, scope))
                if by_attribute:
                    view.update(by_attribute)
            memo[m] = view
        return view  # type: ignore[no-any-return]

    def _fill_groups(
        self,
        doc: dict[str, Any],
        ctx: TransformContext,
        unscoped: dict[str, Any],
        at_scope: dict[str, Any],
        localized: dict[tuple[str, str | None], dict[str, Any]],
        memo: dict[int, Any],
    ) -> None:
        for group in self._group_list:
            source = group.source
            if source == _LOCALE:
                src = self._view(localized, memo, group.scope)
            else:
                src = unscoped if source == _UNSCOPED else at_scope
            if not src:
                continue
            # the shorter walked: the index, in the product's order; or the group's attributes
            if len(group.listed) < len(src):
                present = list(filter(src.__contains__, group.listed))
            else:
                present = list(filter(group.attrs.__contains__, src))
            if not present:
                continue
            values: Any
            if group.transformed:
                ids = list(map(group.memo.__getitem__, present))
                values = list(map(memo.get, ids))
                if None in values:  # asked first here (or a None result: asked again)
                    steps = group.steps
                    for i, value in enumerate(values):
                        if value is None:
                            attr = present[i]
                            step = steps[attr]
                            ctx.attribute = attr
                            values[i] = memo[ids[i]] = step.fn(src[attr], ctx, step.spec)  # type: ignore[misc]
            elif source == _LOCALE:
                values = map(
                    dict.fromkeys, repeat((self._locale_code,)), map(src.__getitem__, present)
                )
            else:
                values = map(src.__getitem__, present)
            keys = map(group.keys.__getitem__, present) if group.renamed else present
            fragment = dict(zip(keys, values, strict=True))
            parent = group.parent
            if parent is None:
                doc.update(fragment)
                continue
            node = doc.get(parent)
            if node.__class__ is dict:
                node.update(fragment)
            else:
                doc[parent] = fragment

    def _map(self, product: Product, grouped: bool = True) -> MapResult:
        values = product.values
        plans = self._plans
        extra: dict[str, _AttrPlan] | None = None
        if not plans.keys() >= values.keys():
            with self._planning:  # one thread plans an attribute and files it
                for attr, entries in values.items():
                    if attr in plans:
                        continue
                    plan = self._plan(attr, entries)
                    # Without a definition the plan is read off this product's values
                    # (locales, ownership by value, auto transform): it must not decide for
                    # the next one.
                    if attr in self.defs.attributes:
                        self._enroll(attr, plan)
                        plans[attr] = plan  # filed first: a reader finds it complete
                    else:
                        if extra is None:
                            extra = {}
                        extra[attr] = plan
        ctx = TransformContext(product, self.channel, self.contract.contract, self.defs)
        doc: dict[str, Any] = {}
        unmapped: list[str] = []
        violations: list[Violation] = []
        scope = self.scope
        first_locale = self.first_locale
        # the product's values without a locale, indexed once for every channel
        unlocalized = product.unlocalized()
        localized = product.localized()
        memo = product.memo  # transform results shared with the product's other channels
        at_scope = unlocalized.get(scope) or _NOTHING
        unscoped = unlocalized.get(None) or _NOTHING
        attrs: Iterable[str] = values
        if grouped and extra is None and self._grouping:
            try:
                self._fill_groups(doc, ctx, unscoped, at_scope, localized, memo)
            except Exception:
                # the error reported is the first in the product's order, as without groups
                return self._map(product, grouped=False)
            attrs = filter(self._rest.__contains__, values)
        for attr in attrs:
            entries = values[attr]
            found = plans.get(attr)
            if found is None:
                assert extra is not None
                found = extra[attr]
            plan = found
            fast = plan.fast
            if fast is not None:
                # the hot path for ~90 % of attributes: emptiness is already judged
                read_unscoped, fn, spec, first, key, m = fast
                data = (unscoped if read_unscoped else at_scope).get(attr)
                if data is None:
                    continue
                if fn is None:
                    value = data
                elif m is None:
                    ctx.attribute = attr  # ctx.locale is None between steps
                    value = fn(data, ctx, spec)
                else:
                    value = memo.get(m, _NO_MEMO)
                    if value is _NO_MEMO:
                        ctx.attribute = attr
                        value = memo[m] = fn(data, ctx, spec)
                if first is None:
                    doc[key] = value
                else:
                    node = doc.get(first)
                    if node.__class__ is not dict:
                        node = doc[first] = {}
                    node[key] = value
                continue
            action = plan.action
            if action == _MAP:
                for step in plan.steps:
                    sc = step.read_scope
                    if sc is not _COMPLEX:
                        # the hot path for ~90 % of attributes: emptiness is already judged
                        data = (unscoped if sc is None else at_scope).get(attr)
                        if data is None:
                            continue
                        fn = step.fn
                        if fn is None:
                            value = data
                        else:
                            m = step.memo
                            value = _NO_MEMO if m is None else memo.get(m, _NO_MEMO)
                            if value is _NO_MEMO:
                                ctx.attribute = attr  # ctx.locale is None between steps
                                value = fn(data, ctx, step.spec)
                                if m is not None:
                                    memo[m] = value
                    elif step.localized:
                        m = step.memo
                        value = _NO_MEMO if m is None else memo.get(m, _NO_MEMO)
                        if value is _NO_MEMO:
                            ctx.attribute = attr
                            value = self._localized(
                                ctx, step, entries, plan.adef, localized, unlocalized
                            )
                            if m is not None:
                                memo[m] = value
                        if value is None:
                            continue
                        if m is not None:
                            value = dict(value)  # each channel's document its own
                    else:
                        adef = plan.adef
                        if adef is not None:
                            data = _resolve(
                                localized,
                                unlocalized,
                                attr,
                                scope if adef.scopable else None,
                                step.chain,  # type: ignore[arg-type]
                            )
                            if data is None:
                                continue
                        else:
                            data = _pick(entries, None, scope, step.chain)  # type: ignore[arg-type]
                            if is_empty(data):
                                continue
                        if step.fn is None:
                            value = data
                        else:
                            m = step.memo
                            value = _NO_MEMO if m is None else memo.get(m, _NO_MEMO)
                            if value is _NO_MEMO:
                                ctx.attribute = attr
                                ctx.locale = first_locale if step.chain else None
                                value = step.fn(data, ctx, step.spec)
                                ctx.locale = None
                                if m is not None:
                                    memo[m] = value
                    parent = step.parent
                    if not parent:
                        doc[step.key] = value
                        continue
                    first = parent[0]  # most targets sit one level down ("specs.x")
                    node = doc.get(first)
                    if node.__class__ is not dict:
                        node = doc[first] = {}
                    if len(parent) > 1:
                        for part in parent[1:]:
                            child = node.get(part)
                            if child.__class__ is not dict:
                                child = node[part] = {}
                            node = child
                    node[step.key] = value
            elif action == _DRIFT:
                unmapped.append(attr)
            elif action == _FOREIGN:
                assert plan.violation is not None
                violations.append(plan.violation)

        missing_required = [
            spec.pim or spec.target for spec, path in self._required if _get(doc, path) is None
        ]
        for spec, path in self._computed:
            ctx.attribute = spec.function or spec.target
            _set(doc, path, COMPUTED[spec.function or ""](ctx, spec))

        strategy = self.contract.contract.unmapped
        if unmapped and strategy == "fail":
            raise DriftError(product.identifier, self.contract.key, sorted(unmapped))
        return MapResult(
            doc=doc,
            drift=sorted(unmapped) if strategy == "warn" else [],
            missing_required=missing_required,
            violations=violations,
        )

    def _localized(
        self,
        ctx: TransformContext,
        step: _Step,
        entries: list[dict[str, Any]],
        adef: AttributeDef | None,
        localized: dict[tuple[str, str | None], dict[str, Any]],
        unlocalized: dict[str | None, dict[str, Any]],
    ) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        missing = None
        localizable = _localizable(adef, entries)
        sc = self.scope if adef is not None and adef.scopable else None
        for loc in self.locales:
            chain = loc.chain if localizable else ()
            if adef is not None:
                data = _resolve(localized, unlocalized, ctx.attribute, sc, chain)
            else:
                data = _pick(entries, adef, self.scope, chain)
            if is_empty(data):
                if missing is None:
                    missing = loc
                continue
            if step.fn is None:
                out[loc.code] = data
            else:
                ctx.locale = loc.code
                out[loc.code] = step.fn(data, ctx, step.spec)
        ctx.locale = None
        if missing is not None and out and step.spec.required:
            ctx.fail(None, f"no value for locale {missing.code} (tried {', '.join(missing.chain)})")
        return out or None


def map_product(
    product: Product,
    channel: ChannelConfig,
    contract: CompiledContract,
    defs: CatalogDefinitions,
    ownership: OwnershipTable | None = None,
) -> MapResult:
    """Map one product (builds a throw-away plan: use ``MappingPlan`` for many products)."""
    return MappingPlan(channel, contract, defs, ownership).map(product)
