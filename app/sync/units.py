"""One publish unit, (sku, channel), decided without I/O.

Order: disabled in the PIM -> channel filters (incl. the category tree) -> completeness ->
ownership (strip what the PIM does not own) -> mapping contract (with drift) -> published.
Filters come before completeness on purpose: a product that does not belong in a channel is
reported as filtered, not as "incomplete", so the catalog team's "why is this not online?"
gets the real answer and incomplete counts mean what they say.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from app.channels.completeness import CompletenessPlan
from app.channels.config import ChannelConfig
from app.channels.filters import categories_in_tree, first_failing_filter
from app.channels.statuses import DISABLED_IN_PIM, FILTERED, INCOMPLETE, PUBLISHED
from app.mapping.contract import CompiledContract
from app.mapping.errors import MappingError
from app.mapping.mapper import MappingPlan
from app.ownership import OwnershipTable, Violation
from app.pim.catalog import CatalogDefinitions
from app.pim.product import Product

FAILED = "failed"
# the reason a channel skips a product the PIM gave no identifier
NO_IDENTIFIER = "no identifier"


@dataclass(slots=True)
class ChannelRuntime:
    """Everything a unit of one channel needs, built once per process and reused."""

    channel: ChannelConfig
    contract: CompiledContract
    defs: CatalogDefinitions
    ownership: OwnershipTable
    defs_hash: str
    fingerprint: str = ""
    plan: MappingPlan = field(init=False)
    completeness: CompletenessPlan = field(init=False)

    def __post_init__(self) -> None:
        self.plan = MappingPlan(self.channel, self.contract, self.defs, self.ownership)
        self.completeness = CompletenessPlan(self.channel, self.defs)
        body = "|".join(
            (
                self.channel.fingerprint(),
                self.contract.contract.fingerprint(),
                self.defs_hash,
                repr(sorted(self.ownership.owners.items())),
                repr(sorted(self.ownership.attribute_domains.items())),
            )
        )
        self.fingerprint = hashlib.blake2b(body.encode(), digest_size=8).hexdigest()

    def input_hash(self, content_hash: str) -> str:
        """Equal input hash, equal result: the unit writes nothing."""
        return f"{content_hash}:{self.fingerprint}"


@dataclass(slots=True)
class UnitOutcome:
    sku: str
    status: str
    doc: dict[str, Any] | None = None
    detail: dict[str, Any] | None = None
    completeness: int | None = None
    drift: list[str] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    error: MappingError | None = None

    @property
    def enabled(self) -> bool:
        return self.status == PUBLISHED


def evaluate(product: Product, rt: ChannelRuntime) -> UnitOutcome:
    """Decide one unit. Mapping errors are captured in the outcome; nothing else is raised."""
    sku = product.identifier
    if not product.enabled:
        return UnitOutcome(sku, DISABLED_IN_PIM, detail={"reason": "disabled in the PIM"})
    if not product.has_identifier and rt.channel.without_identifier == "skip":
        return UnitOutcome(sku, FILTERED, detail={"filter": NO_IDENTIFIER})
    failing = first_failing_filter(product, rt.channel, rt.defs)
    if failing is not None:
        return UnitOutcome(sku, FILTERED, detail={"filter": failing})
    completeness = rt.completeness.compute(product)
    if not completeness.complete:
        detail: dict[str, Any] = {"missing": completeness.missing}
        if completeness.reason is not None:
            detail["reason"] = completeness.reason
        return UnitOutcome(sku, INCOMPLETE, detail=detail, completeness=completeness.ratio)
    try:
        # Ownership is enforced inside the plan: attributes of domains the PIM does not own
        # (prices, stock, media by default) are left out and reported as violations.
        result = rt.plan.map(product)
    except MappingError as exc:
        return UnitOutcome(sku, FAILED, error=exc, completeness=completeness.ratio)
    violations = result.violations
    if result.missing_required:
        return UnitOutcome(
            sku,
            INCOMPLETE,
            detail={"missing": sorted(result.missing_required), "rule": "contract"},
            completeness=completeness.ratio,
            drift=result.drift,
            violations=violations,
        )
    doc = {
        "sku": sku,
        "family": product.family,
        "parent": product.parent,
        "categories": categories_in_tree(product, rt.channel, rt.defs),
        **result.doc,
    }
    return UnitOutcome(
        sku,
        PUBLISHED,
        doc=doc,
        completeness=completeness.ratio,
        drift=result.drift,
        violations=violations,
    )
