"""Channel configuration: a YAML or TOML file, validated on load with clear errors.

A pimsync channel is a *target* (a storefront, a marketplace, a B2B portal). It reads one PIM
scope, publishes in its own locales (each with a fallback chain) and currency, keeps an
attribute scope, requires attributes for completeness, lives in one category tree, may filter
products, and pins one version of its mapping contract.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from app.pim.catalog import CatalogDefinitions
from app.yamlio import load_yaml

CODE_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
LOCALE_RE = re.compile(r"^[a-z]{2,3}(_[A-Za-z0-9]{2,8})*$")
CURRENCY_RE = re.compile(r"^[A-Z]{3}$")


class ChannelConfigError(ValueError):
    """The channel configuration cannot be used; the message says where and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocaleConfig(_Strict):
    code: str
    fallback: tuple[str, ...] = ()

    @field_validator("code")
    @classmethod
    def _locale(cls, v: str) -> str:
        if not LOCALE_RE.match(v):
            raise ValueError(f"{v!r} is not a locale code like de_DE")
        return v

    @field_validator("fallback")
    @classmethod
    def _fallbacks(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for code in v:
            if not LOCALE_RE.match(code):
                raise ValueError(f"fallback {code!r} is not a locale code like de_DE")
        return v

    @cached_property
    def chain(self) -> tuple[str, ...]:
        """The locales to try, in order: the locale itself, then its fallbacks."""
        return (self.code, *(f for f in self.fallback if f != self.code))


class EnabledFilter(_Strict):
    type: Literal["enabled"] = "enabled"
    name: str = "enabled"
    value: bool = True


class FamilyFilter(_Strict):
    type: Literal["family_in"] = "family_in"
    name: str = "family_in"
    families: tuple[str, ...]
    negate: bool = False


class CategoryFilter(_Strict):
    type: Literal["category_under"] = "category_under"
    name: str = "category_under"
    categories: tuple[str, ...]


AttributeOp = Literal["eq", "ne", "in", "not_in", "empty", "not_empty", "gt", "gte", "lt", "lte"]


class AttributeFilter(_Strict):
    type: Literal["attribute"] = "attribute"
    name: str = ""
    attribute: str
    op: AttributeOp
    value: Any = None
    locale: str | None = None

    @model_validator(mode="after")
    def _check(self) -> AttributeFilter:
        if self.op in ("in", "not_in") and not isinstance(self.value, (list, tuple)):
            raise ValueError(f"attribute filter on {self.attribute!r}: op {self.op} needs a list")
        if self.op not in ("empty", "not_empty") and self.value is None:
            raise ValueError(f"attribute filter on {self.attribute!r}: op {self.op} needs a value")
        if not self.name:
            object.__setattr__(self, "name", f"attribute:{self.attribute}:{self.op}")
        return self


FilterConfig = Annotated[
    EnabledFilter | FamilyFilter | CategoryFilter | AttributeFilter, Field(discriminator="type")
]


class CompletenessConfig(_Strict):
    # Attributes this channel requires on top of (or instead of) the family's requirements.
    required: tuple[str, ...] = ()
    # Akeneo's rule: the family's attribute requirements for the channel's PIM scope.
    family_requirements: bool = True
    # Akeneo computes no completeness for a product without a family: such a product is
    # incomplete here (reason "no family") unless the channel publishes it anyway.
    publish_without_family: bool = False


class ContractRef(_Strict):
    id: str
    version: int = Field(ge=1)

    @property
    def key(self) -> str:
        return f"{self.id}@{self.version}"


class ChannelConfig(_Strict):
    code: str
    label: str = ""
    pim_scope: str
    # A product the PIM gives no identifier (only a uuid): skipped ("filtered" by
    # `no identifier`), or published with its uuid as the SKU.
    without_identifier: Literal["skip", "uuid"] = "skip"
    locales: tuple[LocaleConfig, ...] = Field(min_length=1)
    currencies: tuple[str, ...] = Field(min_length=1)
    # PIM attribute codes or globs this channel publishes ("*" = every attribute).
    # The storefront's read of a product that is disabled, removed or orphaned in this
    # channel: 404 (default), or its last document with `enabled: false` (tombstones).
    tombstones: bool = False
    attribute_scope: tuple[str, ...] = ("*",)
    completeness: CompletenessConfig = CompletenessConfig()
    category_tree: str | None = None
    filters: tuple[FilterConfig, ...] = ()
    contract: ContractRef | None = None
    # Free-form channel facts the contract's computed transforms may read (tax rules...).
    extra: dict[str, Any] = Field(default_factory=dict)
    _scope_cache: dict[str, bool] = PrivateAttr(default_factory=dict)

    @field_validator("code")
    @classmethod
    def _code(cls, v: str) -> str:
        if not CODE_RE.match(v):
            raise ValueError(f"{v!r} must be 1-64 letters, digits or underscores")
        return v

    @field_validator("currencies")
    @classmethod
    def _currencies(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for code in v:
            if not CURRENCY_RE.match(code):
                raise ValueError(f"{code!r} is not an ISO 4217 currency code like EUR")
        return v

    @property
    def currency(self) -> str:
        return self.currencies[0]

    @property
    def locale_codes(self) -> tuple[str, ...]:
        return tuple(loc.code for loc in self.locales)

    def in_attribute_scope(self, attribute: str) -> bool:
        """Included by a pattern and not excluded by a ``!pattern`` (memoised: hot path)."""
        # Straight to pydantic's private storage: its __getattr__ is slow on a hot path.
        cache = self.__pydantic_private__["_scope_cache"]  # type: ignore[index]
        hit = cache.get(attribute)
        if hit is None:
            hit = cache[attribute] = self._match_scope(attribute)
        return hit

    def _match_scope(self, attribute: str) -> bool:
        # Only exclusions (["!price"]) means everything but those.
        included = all(p.startswith("!") for p in self.attribute_scope)
        for pat in self.attribute_scope:
            if pat.startswith("!"):
                if fnmatch.fnmatchcase(attribute, pat[1:]):
                    return False
            elif not included and (pat == "*" or fnmatch.fnmatchcase(attribute, pat)):
                included = True
        return included

    def fingerprint(self) -> str:
        """Changes whenever anything that shapes this channel's documents changes (how the
        storefront reads them, ``tombstones``, does not)."""
        body = orjson.dumps(
            self.model_dump(mode="json", exclude={"tombstones"}), option=orjson.OPT_SORT_KEYS
        )
        return hashlib.blake2b(body, digest_size=8).hexdigest()


def _normalise_channel(code: str, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ChannelConfigError(f"channel {code!r}: expected a mapping of settings")
    data = dict(raw)
    data.setdefault("code", code)
    locales = data.get("locales")
    if isinstance(locales, (list, tuple)):
        data["locales"] = [{"code": x} if isinstance(x, str) else x for x in locales]
    if "currency" in data:
        if "currencies" in data:
            raise ChannelConfigError(f"channel {code!r}: give `currency` or `currencies`, not both")
        data["currencies"] = [data.pop("currency")]
    contract = data.get("contract")
    if isinstance(contract, str):
        cid, _, version = contract.partition("@")
        # isascii: str.isdigit() also accepts "²", which int() refuses
        if not cid or not (version.isascii() and version.isdigit()):
            raise ChannelConfigError(
                f"channel {code!r}: contract {contract!r} must look like ID@VERSION (e.g. web@2)"
            )
        data["contract"] = {"id": cid, "version": int(version)}
    filters = []
    for i, f in enumerate(data.get("filters") or ()):
        if not isinstance(f, dict) or len(f) == 0:
            raise ChannelConfigError(f"channel {code!r}: filter #{i + 1} must be a mapping")
        if "type" not in f and len(f) == 1:
            # shorthand: `- family_in: [a, b]`, `- enabled: true`, `- category_under: x`
            ((key, value),) = f.items()
            if key == "enabled":
                f = {"type": "enabled", "value": value}
            elif key in ("family_in", "family_not_in"):
                f = {
                    "type": "family_in",
                    "families": value,
                    "negate": key == "family_not_in",
                    "name": key,
                }
            elif key == "category_under":
                f = {
                    "type": "category_under",
                    "categories": [value] if isinstance(value, str) else value,
                }
            elif key == "attribute" and isinstance(value, dict):
                f = {"type": "attribute", **value}
        filters.append(f)
    if filters:
        data["filters"] = filters
    return data


def _format_validation(code: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        lines.append(f"channel {code!r}: {loc}: {err['msg']}")
    return "; ".join(lines)


def parse_channels(data: Any, source: str = "<config>") -> dict[str, ChannelConfig]:
    if not isinstance(data, dict) or "channels" not in data:
        raise ChannelConfigError(f"{source}: expected a top-level `channels:` mapping")
    raw_channels = data["channels"]
    if isinstance(raw_channels, list):
        items = [
            (c.get("code", f"#{i + 1}") if isinstance(c, dict) else f"#{i + 1}", c)
            for i, c in enumerate(raw_channels)
        ]
    elif isinstance(raw_channels, dict):
        items = list(raw_channels.items())
    else:
        raise ChannelConfigError(f"{source}: `channels` must be a mapping or a list")
    if not items:
        raise ChannelConfigError(f"{source}: no channels defined")
    channels: dict[str, ChannelConfig] = {}
    for code, raw in items:
        try:
            channel = ChannelConfig.model_validate(_normalise_channel(str(code), raw))
        except ChannelConfigError as exc:
            raise ChannelConfigError(f"{source}: {exc}") from None
        except ValidationError as exc:
            raise ChannelConfigError(f"{source}: {_format_validation(str(code), exc)}") from None
        if channel.code in channels:
            raise ChannelConfigError(f"{source}: channel {channel.code!r} is defined twice")
        channels[channel.code] = channel
    return channels


def load_channels(path: Path | str) -> dict[str, ChannelConfig]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ChannelConfigError(
            f"cannot read channel configuration {path}: {exc.strerror}"
        ) from None
    except UnicodeDecodeError as exc:
        raise ChannelConfigError(f"cannot read channel configuration {path}: {exc}") from None
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else load_yaml(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ChannelConfigError(
            f"{path}: not valid {path.suffix.lstrip('.').upper()}: {exc}"
        ) from None
    return parse_channels(data, source=str(path))


def channels_from_pim(defs: CatalogDefinitions) -> dict[str, ChannelConfig]:
    """Akeneo's own channels as pimsync channels: its locales, currencies, tree, family rules."""
    out: dict[str, ChannelConfig] = {}
    for pim in defs.channels.values():
        try:
            out[pim.code] = ChannelConfig(
                code=pim.code,
                label=pim.labels.get("en_US", pim.code),
                pim_scope=pim.code,
                locales=tuple(LocaleConfig(code=loc) for loc in pim.locales),
                currencies=pim.currencies,
                completeness=CompletenessConfig(family_requirements=True),
                category_tree=None,
            )
        except ValidationError as exc:
            raise ChannelConfigError(
                f"the PIM's channel {pim.code!r} cannot be used: "
                f"{_format_validation(pim.code, exc)}"
            ) from None
    return out
