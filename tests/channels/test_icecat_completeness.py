"""Completeness of Akeneo's icecat demo catalog for its own channels, checked against an
independent count made straight from the CSV fixtures (not through pimsync's loader)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.channels.config import channels_from_pim
from app.channels.report import completeness_report
from app.cli import app
from app.pim.icecat import IcecatSource
from app.pim.product import parse_product

pytestmark = pytest.mark.icecat

# Pinned so that a change in the rule shows up; the independent count below explains them.
# (Issue 16: AKNSTK, the one product without a family, is complete nowhere: Akeneo computes
# no completeness without a family. It was counted complete in every channel and locale.)
EXPECTED_COMPLETE = {
    "ecommerce": {"de_DE": 0, "en_US": 34, "fr_FR": 0},
    "mobile": {"de_DE": 0, "en_US": 38, "fr_FR": 12},
    "print": {"de_DE": 110, "en_US": 343, "fr_FR": 116},
}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh, delimiter=";"))


def independent_complete_counts(root: Path) -> dict[str, dict[str, int]]:
    """Akeneo's rule applied to raw CSV cells: a required attribute is present when its cell
    for the channel's scope/locale is non-empty; a price needs every channel currency; a
    product without a family has no completeness (never complete)."""
    attrs = {a["code"]: a for a in _rows(root / "attributes.csv")}
    families = {f["code"]: f for f in _rows(root / "families.csv")}
    channels = {c["code"]: c for c in _rows(root / "channels.csv")}
    models = {m["code"].lower(): m for m in _rows(root / "product_models.csv")}

    def cells(row: dict[str, str]) -> dict[str, str]:
        """A product's cells with its models' cells underneath (variants inherit)."""
        merged: dict[str, str] = {}
        chain = []
        parent = row.get("parent", "").lower()
        while parent:
            model = models[parent]
            chain.append(model)
            parent = model.get("parent", "").lower()
        for layer in [*reversed(chain), row]:
            merged.update({k: v for k, v in layer.items() if v not in ("", None)})
        return merged

    counts: dict[str, dict[str, int]] = {
        code: dict.fromkeys(ch["locales"].split(","), 0) for code, ch in channels.items()
    }
    for row in _rows(root / "products.csv"):
        values = cells(row)
        family = families.get(row["family"])
        if family is None:
            continue  # no family: Akeneo computes no completeness, so never complete
        for code, ch in channels.items():
            required = family[f"requirements-{code}"].split(",") if family else []
            for locale in ch["locales"].split(","):
                ok = True
                for attr in filter(None, required):
                    a = attrs[attr]
                    if a["type"] == "pim_catalog_identifier":
                        continue
                    if a["available_locales"] and locale not in a["available_locales"].split(","):
                        continue
                    suffix = (f"-{locale}" if a["localizable"] == "1" else "") + (
                        f"-{code}" if a["scopable"] == "1" else ""
                    )
                    if a["type"] == "pim_catalog_price_collection":
                        present = all(
                            values.get(f"{attr}{suffix}-{cur}", "").strip()
                            for cur in ch["currencies"].split(",")
                        )
                    else:
                        present = bool(values.get(f"{attr}{suffix}", "").strip())
                    if not present:
                        ok = False
                        break
                counts[code][locale] += ok
    return counts


def test_icecat_completeness_matches_an_independent_count(icecat_dir: Path):
    source = IcecatSource(icecat_dir)
    defs = source.definitions()
    channels = channels_from_pim(defs)
    assert sorted(channels) == ["ecommerce", "mobile", "print"]
    assert all(ch.locale_codes == ("fr_FR", "de_DE", "en_US") for ch in channels.values())
    products = [parse_product(item) for page in source.iter_pages() for item in page.items]
    assert len(products) == 1239
    report = completeness_report(products, channels, defs)
    ours = {
        c: {loc: st.complete for loc, st in locs.items()} for c, locs in report.channels.items()
    }
    assert ours == independent_complete_counts(icecat_dir)
    assert ours == EXPECTED_COMPLETE
    for locs in report.channels.values():
        assert all(st.products == 1239 for st in locs.values())
    assert report.channels["ecommerce"]["en_US"].missing.most_common(1)[0][0] == "description"
    # the family-less product is counted, and the report says why it is not complete
    for locs in report.channels.values():
        assert all(st.missing["(no family)"] == 1 for st in locs.values())


def test_completeness_command_json_on_icecat(icecat_dir: Path):
    result = CliRunner().invoke(app, ["completeness", "--source", str(icecat_dir), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"channels"}
    assert set(data["channels"]) == {"ecommerce", "mobile", "print"}
    for code, locales in data["channels"].items():
        assert set(locales) == {"de_DE", "en_US", "fr_FR"}
        for loc, st in locales.items():
            assert set(st) == {"products", "complete", "missing_top"}
            assert st["products"] == 1239
            assert st["complete"] == EXPECTED_COMPLETE[code][loc]
            assert all(isinstance(n, int) and n > 0 for n in st["missing_top"].values())
    one = CliRunner().invoke(
        app, ["completeness", "--source", str(icecat_dir), "--json", "--channel", "print"]
    )
    assert one.exit_code == 0 and set(json.loads(one.stdout)["channels"]) == {"print"}
    table = CliRunner().invoke(app, ["completeness", "--source", str(icecat_dir)])
    assert table.exit_code == 0 and "ecommerce" in table.stdout and "description" in table.stdout
