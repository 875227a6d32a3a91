"""The completeness report: per channel and locale, products, complete, most missing (pure).

The catalog team's first question, "why is this product not online?", answered from the PIM
alone, without a sync.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from app.channels.completeness import compute_completeness
from app.channels.config import ChannelConfig
from app.channels.filters import first_failing_filter
from app.pim.catalog import CatalogDefinitions
from app.pim.product import Product


@dataclass
class LocaleStats:
    products: int = 0
    complete: int = 0
    missing: Counter[str] = field(default_factory=Counter)


@dataclass
class CompletenessReport:
    channels: dict[str, dict[str, LocaleStats]]
    filtered: dict[str, Counter[str]]
    rejected: list[str] = field(default_factory=list)

    def to_json(self, top: int = 10) -> dict[str, Any]:
        return {
            "channels": {
                code: {
                    loc: {
                        "products": st.products,
                        "complete": st.complete,
                        "missing_top": dict(st.missing.most_common(top)),
                    }
                    for loc, st in locales.items()
                }
                for code, locales in self.channels.items()
            }
        }


def completeness_report(
    products: Iterable[Product],
    channels: dict[str, ChannelConfig],
    defs: CatalogDefinitions,
) -> CompletenessReport:
    """Products count in a channel when they pass its filters (category tree included)."""
    stats = {code: {loc.code: LocaleStats() for loc in ch.locales} for code, ch in channels.items()}
    filtered: dict[str, Counter[str]] = {code: Counter() for code in channels}
    for product in products:
        for code, ch in channels.items():
            failing = first_failing_filter(product, ch, defs)
            if failing is not None:
                filtered[code][failing] += 1
                continue
            result = compute_completeness(product, ch, defs)
            for loc, lc in result.per_locale.items():
                st = stats[code][loc]
                st.products += 1
                if lc.complete:
                    st.complete += 1
                st.missing.update(lc.missing)
                if lc.reason is not None:
                    st.missing[f"({lc.reason})"] += 1
    return CompletenessReport(stats, filtered)
