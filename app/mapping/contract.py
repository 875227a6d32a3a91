"""Mapping contracts: versioned files, one folder per contract id, one file per version.

    contracts/<id>/v<version>.yaml

A channel pins ``<id>@<version>``; several versions may coexist while a channel moves from one
to the next. A contract maps PIM attributes (exact codes or globs) to target fields through a
named transform, says which mappings are required, and what to do with PIM attributes it does
not mention (``unmapped``: skip, warn or fail).
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from app.mapping.errors import ContractError
from app.mapping.transforms import COMPUTED, TRANSFORMS
from app.yamlio import load_yaml

UnmappedStrategy = Literal["skip", "warn", "fail"]
_TARGET_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_{][A-Za-z0-9_{}]*)*$|^\{attribute\}$")
_FILE_RE = re.compile(r"^v(\d+)\.(ya?ml|toml)$")


def _code(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


class MappingSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pim: str | None = None  # attribute code or glob (e.g. "spec_*"); none for computed fields
    target: str
    transform: str = "direct"
    required: bool = False
    # transform parameters
    table: str | None = None  # lookup: the contract's lookup table
    precision: int | None = Field(default=None, ge=0, le=10)  # number, price
    separator: str = ", "  # multi_to_csv
    labels: bool = False  # multi_to_csv / direct on options: option labels, not codes
    of: str | None = None  # localized: the transform applied per locale
    function: str | None = None  # computed: the registered function
    unit: Literal["symbol", "code"] = "symbol"  # metric_to_string
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_glob(self) -> bool:
        return self.pim is not None and any(ch in self.pim for ch in "*?[")


class Contract(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(alias="contract")
    version: int = Field(ge=1)
    description: str = ""
    unmapped: UnmappedStrategy = "warn"
    ignore: tuple[str, ...] = ()  # attributes (globs) never reported as drift
    lookups: dict[str, dict[str, Any]] = Field(default_factory=dict)
    mappings: tuple[MappingSpec, ...] = Field(min_length=1)

    @property
    def key(self) -> str:
        return f"{self.id}@{self.version}"

    @field_validator("lookups", mode="before")
    @classmethod
    def _string_keys(cls, value: Any) -> Any:
        # Option codes are strings; YAML turns `yes`, `no`, `1` into booleans and numbers.
        if isinstance(value, dict):
            return {
                name: {_code(k): v for k, v in table.items()} if isinstance(table, dict) else table
                for name, table in value.items()
            }
        return value

    @model_validator(mode="after")
    def _check(self) -> Contract:
        targets: set[str] = set()
        # (where, target, fixed path, leaf?): "seo" and "seo.title" would overwrite each other
        paths: list[tuple[str, str, tuple[str, ...], bool]] = []
        for i, m in enumerate(self.mappings):
            where = f"mapping #{i + 1} ({m.pim or m.function or m.target})"
            if m.transform not in TRANSFORMS:
                raise ValueError(
                    f"{where}: unknown transform {m.transform!r} "
                    f"(known: {', '.join(sorted(TRANSFORMS))})"
                )
            if not _TARGET_RE.match(m.target):
                raise ValueError(f"{where}: target {m.target!r} is not a field path like a.b_c")
            if m.transform == "computed":
                if not m.function:
                    raise ValueError(f"{where}: a computed mapping needs `function`")
                if m.function not in COMPUTED:
                    raise ValueError(
                        f"{where}: unknown computed function {m.function!r} "
                        f"(registered: {', '.join(sorted(COMPUTED)) or 'none'})"
                    )
            elif not m.pim:
                raise ValueError(f"{where}: `pim` (the PIM attribute) is required")
            if m.transform == "lookup":
                if not m.table:
                    raise ValueError(f"{where}: a lookup mapping needs `table`")
                if m.table not in self.lookups:
                    raise ValueError(f"{where}: lookup table {m.table!r} is not in `lookups`")
            if m.transform == "localized" and m.of is not None:
                if m.of not in TRANSFORMS or m.of in ("localized", "computed"):
                    raise ValueError(f"{where}: localized cannot apply {m.of!r} per locale")
                if m.of == "lookup" and (not m.table or m.table not in self.lookups):
                    raise ValueError(f"{where}: localized lookup needs a known `table`")
            if "{attribute}" in m.target and not m.is_glob:
                raise ValueError(f"{where}: {{attribute}} in a target needs a glob `pim`")
            if m.is_glob and "{attribute}" not in m.target:
                raise ValueError(
                    f"{where}: a glob mapping needs {{attribute}} in its target, or every "
                    "matching attribute would overwrite the same field"
                )
            if m.is_glob and m.required:
                raise ValueError(f"{where}: a glob mapping cannot be required")
            if not m.is_glob:
                if m.target in targets:
                    raise ValueError(f"{where}: target {m.target!r} is mapped twice")
                targets.add(m.target)
            fixed = _fixed_path(m.target)
            for other_where, other, other_fixed, other_leaf in paths:
                if _clash(fixed, not m.is_glob, other_fixed, other_leaf):
                    raise ValueError(
                        f"{where}: target {m.target!r} overlaps {other!r} of {other_where}"
                    )
            paths.append((where, m.target, fixed, not m.is_glob))
        return self

    def fingerprint(self) -> str:
        body = orjson.dumps(self.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
        return hashlib.blake2b(body, digest_size=8).hexdigest()


def _fixed_path(target: str) -> tuple[str, ...]:
    """The target's path up to its first ``{attribute}`` part (the whole path if none)."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if "{" in part:
            return tuple(parts[:i])
    return tuple(parts)


def _clash(a: tuple[str, ...], a_leaf: bool, b: tuple[str, ...], b_leaf: bool) -> bool:
    """A value written at leaf ``a`` and one under/at ``b`` would replace each other."""
    if a_leaf and b[: len(a)] == a and (len(b) > len(a) or not b_leaf):
        return True
    return b_leaf and a[: len(b)] == b and (len(a) > len(b) or not a_leaf)


@dataclass
class CompiledContract:
    """A contract with its attribute -> mappings resolution precomputed and cached."""

    contract: Contract
    exact: dict[str, list[MappingSpec]] = field(default_factory=dict)
    globs: list[MappingSpec] = field(default_factory=list)
    computed: list[MappingSpec] = field(default_factory=list)
    required_exact: list[MappingSpec] = field(default_factory=list)
    _cache: dict[str, tuple[MappingSpec, ...]] = field(default_factory=dict)
    _ignored: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def compile(cls, contract: Contract) -> CompiledContract:
        cc = cls(contract)
        for m in contract.mappings:
            if m.transform == "computed":
                cc.computed.append(m)
            elif m.is_glob:
                cc.globs.append(m)
            else:
                assert m.pim is not None
                cc.exact.setdefault(m.pim, []).append(m)
                if m.required:
                    cc.required_exact.append(m)
        return cc

    @property
    def key(self) -> str:
        return self.contract.key

    def specs_for(self, attribute: str) -> tuple[MappingSpec, ...]:
        """Mappings that apply to ``attribute``: its exact ones, else the first matching glob."""
        hit = self._cache.get(attribute)
        if hit is None:
            exact = self.exact.get(attribute)
            if exact:
                hit = tuple(exact)
            else:
                hit = next(
                    ((g,) for g in self.globs if fnmatch.fnmatchcase(attribute, g.pim or "")), ()
                )
            self._cache[attribute] = hit
        return hit

    def is_ignored(self, attribute: str) -> bool:
        hit = self._ignored.get(attribute)
        if hit is None:
            hit = any(
                p == attribute or fnmatch.fnmatchcase(attribute, p) for p in self.contract.ignore
            )
            self._ignored[attribute] = hit
        return hit


def _format_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def parse_contract(data: Any, source: str = "<contract>") -> Contract:
    if not isinstance(data, dict):
        raise ContractError(f"{source}: expected a mapping with contract, version, mappings")
    try:
        return Contract.model_validate(data)
    except ValidationError as exc:
        raise ContractError(f"{source}: {_format_errors(exc)}") from None


def load_contract_file(path: Path) -> Contract:
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else load_yaml(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise ContractError(f"cannot read contract {path}: {exc}") from None
    contract = parse_contract(data, str(path))
    m = _FILE_RE.match(path.name)
    if m and int(m.group(1)) != contract.version:
        raise ContractError(
            f"{path}: file name says version {m.group(1)} but the file says {contract.version}"
        )
    if path.parent.name != contract.id and m:
        raise ContractError(
            f"{path}: folder {path.parent.name!r} does not match contract id {contract.id!r}"
        )
    return contract


class ContractStore:
    """Every contract version found under a folder, looked up by (id, version)."""

    def __init__(
        self,
        contracts: dict[tuple[str, int], Contract],
        broken: dict[tuple[str, int], str] | None = None,
    ) -> None:
        self._contracts = contracts
        # (id, version) -> why its file cannot be used (lenient loading only)
        self._broken = broken or {}
        self._compiled: dict[tuple[str, int], CompiledContract] = {}

    @classmethod
    def load(cls, root: Path | str, strict: bool = True) -> ContractStore:
        """Every contract under ``root``. ``strict``: the first unusable file raises (``pimsync
        check``); otherwise an unusable file takes down only the contract version its path
        names (``<id>/v<N>.yaml``), and ``get`` raises its error: workers keep publishing
        the channels whose contracts are fine."""
        root = Path(root)
        if not root.is_dir():
            raise ContractError(f"contracts folder {root} not found")
        found: dict[tuple[str, int], Contract] = {}
        broken: dict[tuple[str, int], str] = {}
        for path in sorted(root.rglob("*")):
            # Only <id>/v<N>.yaml (or .toml) are contract versions; a README.yaml or an
            # editor's backup file beside them is not read.
            m = _FILE_RE.match(path.name)
            if not path.is_file() or not m:
                continue
            try:
                contract = load_contract_file(path)
            except ContractError as exc:
                if strict:
                    raise
                broken[(path.parent.name, int(m.group(1)))] = str(exc)
                continue
            key = (contract.id, contract.version)
            if key in found or key in broken:
                error = f"{path}: contract {contract.key} is defined twice"
                if strict:
                    raise ContractError(error)
                found.pop(key, None)  # which of the two is meant? neither
                broken[key] = error
                continue
            found[key] = contract
        return cls(found, broken)

    def get(self, contract_id: str, version: int) -> CompiledContract:
        key = (contract_id, version)
        compiled = self._compiled.get(key)
        if compiled is None:
            if key in self._broken:
                raise ContractError(self._broken[key])
            contract = self._contracts.get(key)
            if contract is None:
                have = sorted(v for (cid, v) in self._contracts if cid == contract_id)
                hint = f"versions present: {have}" if have else "no version of it exists"
                raise ContractError(f"contract {contract_id}@{version} not found ({hint})")
            compiled = CompiledContract.compile(contract)
            self._compiled[key] = compiled
        return compiled

    def versions(self) -> list[str]:
        return sorted(c.key for c in self._contracts.values())
