"""IcecatSource against Akeneo's real demo catalog, and against small fixtures of our own.

Expected numbers are computed from the CSVs with the csv module, independently of the source.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.pim.catalog import CatalogDefinitions
from app.pim.icecat import ICECAT_TIMESTAMP, IcecatSource, product_uuid
from app.pim.product import Product, content_hash, is_missing, parse_product
from app.pim.source import Page, PimSource, SourceError
from app.pim.sources import open_source

# --- helpers --------------------------------------------------------------------------------


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter=";"))


def all_pages(source: IcecatSource, **kwargs: Any) -> list[Page]:
    return list(source.iter_pages(**kwargs))


def items_of(pages: list[Page]) -> list[dict[str, Any]]:
    return [item for page in pages for item in page.items]


def value(raw: dict[str, Any], attribute: str, locale: str | None = None, scope: str | None = None):
    return Product.trusted(raw, raw["identifier"]).value(attribute, locale, scope)


# --- the real catalog -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def source(icecat_dir: Path) -> IcecatSource:
    return IcecatSource(icecat_dir)


@pytest.fixture(scope="module")
def products(source: IcecatSource) -> dict[str, dict[str, Any]]:
    return {p["identifier"]: p for p in items_of(all_pages(source, page_size=100))}


@pytest.fixture(scope="module")
def csv_products(icecat_dir: Path) -> list[dict[str, str]]:
    return read_rows(icecat_dir / "products.csv")


@pytest.fixture(scope="module")
def csv_models(icecat_dir: Path) -> dict[str, dict[str, str]]:
    return {row["code"]: row for row in read_rows(icecat_dir / "product_models.csv")}


@pytest.mark.icecat
def test_is_a_pim_source_opened_from_its_folder(icecat_dir: Path) -> None:
    opened = open_source(icecat_dir)
    assert isinstance(opened, IcecatSource)
    assert isinstance(opened, PimSource)


@pytest.mark.icecat
def test_counts(
    source: IcecatSource,
    products: dict[str, dict[str, Any]],
    csv_products: list[dict[str, str]],
    csv_models: dict[str, dict[str, str]],
) -> None:
    assert len(csv_products) == 1239
    assert len(products) == len(csv_products)
    models = list(source.iter_models())
    assert len(models) == len(csv_models) == 81
    roots = [m for m in models if not m["parent"]]
    subs = [m for m in models if m["parent"]]
    assert len(roots) == sum(1 for m in csv_models.values() if not m["parent"]) == 50
    assert len(subs) == sum(1 for m in csv_models.values() if m["parent"]) == 31
    expected_variants = sum(1 for row in csv_products if row["parent"])
    assert expected_variants == 240
    assert sum(1 for p in products.values() if p["parent"]) == expected_variants


@pytest.mark.icecat
def test_definitions(source: IcecatSource, icecat_dir: Path) -> None:
    defs = source.definitions()
    assert isinstance(defs, CatalogDefinitions)
    assert len(defs.attributes) == len(read_rows(icecat_dir / "attributes.csv")) == 77
    assert len(defs.families) == 17
    assert set(defs.channels) == {"ecommerce", "mobile", "print"}
    for channel in defs.channels.values():
        assert set(channel.locales) == {"de_DE", "en_US", "fr_FR"}
        assert set(channel.currencies) == {"USD", "EUR"}
        assert channel.category_tree == "master"
    roots = {code for code, parent in defs.categories.items() if parent is None}
    assert roots == {"master", "sales", "print", "suppliers"}
    assert len(defs.categories) == len(read_rows(icecat_dir / "categories.csv"))
    description = defs.attributes["description"]
    assert description.localizable and description.scopable
    assert defs.attributes["weight"].metric_family == "Weight"
    assert defs.attributes["weight"].default_metric_unit == "KILOGRAM"
    assert defs.attributes["price"].decimals_allowed
    assert defs.attributes["sku"].type == "pim_catalog_identifier"
    assert defs.families["webcams"].requirements["ecommerce"] == (
        "description",
        "maximum_video_resolution",
        "name",
        "price",
        "sku",
        "total_megapixels",
    )
    assert defs.families["clothing"].attribute_as_label == "variation_name"
    assert defs.options["sensor_type"]["cmos"]["en_US"] == "CMOS"
    option_rows = read_rows(icecat_dir / "attribute_options.csv")
    assert sum(len(opts) for opts in defs.options.values()) == len(option_rows)
    # unit symbols from measure.yml
    assert defs.unit_symbols["KILOGRAM"] == "kg"
    assert defs.unit_symbols["INCH"] == "in"
    assert defs.unit_symbols["SQUARE_METER"] == "m²"
    assert defs.category_root("digital_cameras") == "master"


@pytest.mark.icecat
def test_no_errors_and_every_product_parses(source: IcecatSource) -> None:
    pages = all_pages(source, page_size=100)
    assert [e for page in pages for e in page.errors] == []
    assert source.model_errors == []
    for item in items_of(pages):
        parsed = parse_product(item)
        assert parsed.identifier == item["identifier"]
        assert parsed.updated == datetime(2024, 4, 8, tzinfo=UTC)


@pytest.mark.icecat
def test_product_shape(products: dict[str, dict[str, Any]]) -> None:
    sticker = products["AKNSTK"]
    assert set(sticker) == {
        "identifier",
        "uuid",
        "family",
        "parent",
        "root_parent",
        "groups",
        "categories",
        "enabled",
        "values",
        "associations",
        "created",
        "updated",
    }
    assert sticker["uuid"] == product_uuid("AKNSTK")
    assert sticker["family"] is None  # the only product without a family
    assert sticker["parent"] is None and sticker["root_parent"] is None
    assert sticker["enabled"] is True
    assert sticker["categories"] == ["goodies", "stickers"]
    assert sticker["updated"] == ICECAT_TIMESTAMP
    assert sticker["values"]["sku"] == [{"locale": None, "scope": None, "data": "AKNSTK"}]
    assert set(sticker["associations"]) == {"X_SELL", "UPSELL", "SUBSTITUTION", "PACK"}
    assert sticker["associations"]["PACK"] == {"groups": [], "products": [], "product_models": []}


@pytest.mark.icecat
def test_price_collection(products: dict[str, dict[str, Any]]) -> None:
    assert products["AKNSTK"]["values"]["price"] == [
        {
            "locale": None,
            "scope": None,
            "data": [{"amount": "2.00", "currency": "EUR"}, {"amount": "3.00", "currency": "USD"}],
        }
    ]


@pytest.mark.icecat
def test_metrics_numbers_booleans_dates_selects(
    products: dict[str, dict[str, Any]], csv_products: list[dict[str, str]]
) -> None:
    weighed = [r for r in csv_products if r["weight"]]
    assert weighed
    for row in weighed:
        expected = {"amount": f"{Decimal(row['weight']):.4f}", "unit": row["weight-unit"]}
        assert value(products[row["sku"]], "weight") == expected
    diagonal = next(r for r in csv_products if r["display_diagonal"])
    # decimals not allowed: an integer amount
    assert value(products[diagonal["sku"]], "display_diagonal") == {
        "amount": int(diagonal["display_diagonal"]),
        "unit": diagonal["display_diagonal-unit"],
    }
    for flag, expected in (("1", True), ("0", False)):
        row = next(r for r in csv_products if r["color_scanning"] == flag)
        assert value(products[row["sku"]], "color_scanning") is expected
    zoom = next(r for r in csv_products if r["optical_zoom"])
    assert value(products[zoom["sku"]], "optical_zoom") == int(zoom["optical_zoom"])
    dated = next(r for r in csv_products if r["release_date-ecommerce"])
    assert (
        value(products[dated["sku"]], "release_date", None, "ecommerce")
        == f"{dated['release_date-ecommerce']}T00:00:00+00:00"
    )
    multi = next(r for r in csv_products if "," in r["multifunctional_functions"])
    assert value(products[multi["sku"]], "multifunctional_functions") == multi[
        "multifunctional_functions"
    ].split(",")
    select = next(r for r in csv_products if r["sensor_type"])
    assert value(products[select["sku"]], "sensor_type") == select["sensor_type"]


@pytest.mark.icecat
def test_localizable_scopable_text_is_verbatim(
    products: dict[str, dict[str, Any]], csv_products: list[dict[str, str]]
) -> None:
    html = next(r for r in csv_products if r["description-fr_FR-print"].startswith("<"))
    raw = products[html["sku"]]
    assert "<" in value(raw, "description", "fr_FR", "print")
    for locale in ("de_DE", "en_US", "fr_FR"):
        cell = html[f"description-{locale}-print"]
        got = value(raw, "description", locale, "print")
        assert got == cell if cell else is_missing(got)
        # print descriptions are not ecommerce ones: scope is kept apart
        assert is_missing(value(raw, "description", locale, None))
    # real line breaks inside quoted cells survive
    broken = [r for r in csv_products if "\n" in r["description-en_US-ecommerce"]]
    assert broken
    for row in broken:
        got = value(products[row["sku"]], "description", "en_US", "ecommerce")
        assert got == row["description-en_US-ecommerce"]
        assert "\n" in got


@pytest.mark.icecat
def test_case_mismatched_parents_resolve(
    source: IcecatSource,
    products: dict[str, dict[str, Any]],
    csv_products: list[dict[str, str]],
    csv_models: dict[str, dict[str, str]],
) -> None:
    by_folded = {code.casefold(): code for code in csv_models}
    mismatched = [r for r in csv_products if r["parent"] and r["parent"] not in csv_models]
    assert mismatched, "the icecat data has variants naming their parent in another case"
    for row in mismatched:
        canonical = by_folded[row["parent"].casefold()]
        resolved = products[row["sku"]]
        assert resolved["parent"] == canonical
        expected_root = csv_models[canonical]["parent"] or canonical
        assert resolved["root_parent"] == by_folded[expected_root.casefold()]
    assert (
        source.get_model(mismatched[0]["parent"])["code"]
        == by_folded[mismatched[0]["parent"].casefold()]
    )


@pytest.mark.icecat
def test_variants_inherit_values_and_categories(
    source: IcecatSource,
    products: dict[str, dict[str, Any]],
    csv_products: list[dict[str, str]],
    csv_models: dict[str, dict[str, str]],
) -> None:
    by_folded = {code.casefold(): row for code, row in csv_models.items()}
    for row in (r for r in csv_products if r["parent"]):
        resolved = products[row["sku"]]
        sub = by_folded[row["parent"].casefold()]
        chain = [sub, *([by_folded[sub["parent"].casefold()]] if sub["parent"] else [])]
        expected = set(row["categories"].split(","))
        for model in chain:
            expected |= set(model["categories"].split(","))
        assert set(resolved["categories"]) == expected
        # every value the root model holds is present on its variants
        root = source.get_model(resolved["root_parent"])
        assert root is not None and not root["parent"]
        keys = {(a, e["locale"], e["scope"]) for a, es in resolved["values"].items() for e in es}
        for attribute, entries in root["values"].items():
            for e in entries:
                assert (attribute, e["locale"], e["scope"]) in keys
        assert resolved["family"] == row["family"]
    # values only a sub-model holds reach the variant (variation_image of the divided t-shirts)
    from_sub = [
        r
        for r in csv_products
        if r["parent"]
        and not r["variation_image"]
        and by_folded[r["parent"].casefold()]["variation_image"]
    ]
    assert from_sub
    for row in from_sub:
        sub = by_folded[row["parent"].casefold()]
        assert value(products[row["sku"]], "variation_image") == sub["variation_image"]


@pytest.mark.icecat
def test_sub_models_carry_root_values(source: IcecatSource) -> None:
    sub = source.get_model("apollon_blue")
    root = source.get_model("apollon")
    assert sub is not None and root is not None
    assert sub["parent"] == "apollon"
    assert sub["family"] == "clothing"
    assert sub["family_variant"] == "clothing_color_size"
    assert value({"identifier": "x", **sub}, "color") == "blue"
    assert "color" not in root["values"]  # a variant axis lives below the root
    for attribute, entries in root["values"].items():
        assert len(sub["values"][attribute]) >= len(entries)
    assert set(root["categories"]) <= set(sub["categories"])


@pytest.mark.icecat
def test_pagination_resume_and_uniqueness(
    source: IcecatSource, csv_products: list[dict[str, str]]
) -> None:
    pages = all_pages(source, page_size=97)
    skus = [p["identifier"] for p in items_of(pages)]
    assert skus == [row["sku"] for row in csv_products]  # csv order, each sku once
    assert all(page.next_cursor for page in pages[:-1]) and pages[-1].next_cursor is None
    assert all(len(page.items) == 97 for page in pages[:-1])
    # a worker killed after three pages resumes without duplicates or gaps
    first = pages[:3]
    resumed = all_pages(source, page_size=97, resume=first[-1].next_cursor)
    assert [p["identifier"] for p in items_of(first) + items_of(resumed)] == skus


@pytest.mark.icecat
def test_updated_since(source: IcecatSource) -> None:
    before = datetime(2024, 4, 7, tzinfo=UTC)
    assert len(items_of(all_pages(source, updated_since=before))) == 1239
    assert all_pages(source, updated_since=datetime(2024, 4, 8, tzinfo=UTC)) == []
    naive = datetime(2024, 1, 1)  # naive means UTC, as everywhere in pimsync
    assert len(items_of(all_pages(source, updated_since=naive))) == 1239


@pytest.mark.icecat
def test_loads_are_deterministic(icecat_dir: Path, products: dict[str, dict[str, Any]]) -> None:
    again = {p["identifier"]: p for p in items_of(all_pages(IcecatSource(icecat_dir)))}
    assert {k: content_hash(p) for k, p in again.items()} == {
        k: content_hash(p) for k, p in products.items()
    }
    assert again == products


@pytest.mark.icecat
def test_get_and_get_model(source: IcecatSource, products: dict[str, dict[str, Any]]) -> None:
    assert source.get("AKNSTK") == products["AKNSTK"]
    assert source.get("aknstk") == products["AKNSTK"]  # identifiers are case-insensitive
    assert source.get("no-such-sku") is None
    assert source.get_model("no-such-model") is None
    # callers get copies: editing one does not change the catalog
    source.get("AKNSTK")["values"].clear()
    assert source.get("AKNSTK") == products["AKNSTK"]


@pytest.mark.icecat
def test_bad_resume_token(source: IcecatSource) -> None:
    with pytest.raises(SourceError, match="resume"):
        all_pages(source, resume="abc")


# --- fixtures of our own: conversions and errors -----------------------------------------------

ATTRIBUTES = "\n".join(
    [
        "code;label-en_US;type;localizable;scopable;decimals_allowed;metric_family;"
        "default_metric_unit;group;available_locales",
        "sku;SKU;pim_catalog_identifier;0;0;;;;erp;",
        "name;Name;pim_catalog_text;0;0;;;;marketing;",
        "description;Description;pim_catalog_textarea;1;1;;;;marketing;",
        "care;Care;pim_catalog_textarea;0;0;;;;marketing;",
        "price;Price;pim_catalog_price_collection;0;0;1;;;erp;",
        "weight;Weight;pim_catalog_metric;0;0;1;Weight;KILOGRAM;technical;",
        "waterproof;Waterproof;pim_catalog_boolean;0;0;;;;technical;",
        "color;Color;pim_catalog_simpleselect;0;0;;;;product;",
        "tags;Tags;pim_catalog_multiselect;0;0;;;;product;",
        "zoom;Zoom;pim_catalog_number;0;0;0;;;technical;",
        "ratio;Ratio;pim_catalog_number;0;0;1;;;technical;",
        "release_date;Release;pim_catalog_date;0;1;;;;marketing;",
        "picture;Picture;pim_catalog_image;0;0;;;;medias;",
    ]
)
OPTIONS = """code;label-en_US;attribute;sort_order
red;Red;color;1
blue;Blue;color;2
eco;Eco;tags;1
new;New;tags;2
"""
FAMILY_VARIANTS = (
    "code;family;label-en_US;variant-axes_1;variant-axes_2;variant-attributes_1;"
    "variant-attributes_2\n"
    "shirt_color_size;shirts;Shirts;color;size;color;sku,weight\n"
)
MEASURES = """measures_config:
    Weight:
        standard: KILOGRAM
        units:
            GRAM: {convert: [{'mul': '0.001'}], symbol: g}
            KILOGRAM: {convert: [{'mul': '1'}], symbol: kg}
    Length:
        standard: METER
        units:
            METER: {convert: [{'mul': '1'}], symbol: m}
"""
MODELS = """code;family_variant;parent;categories;name;care;color;description-en_US-ecommerce
Shirt;shirt_color_size;;shirts;Shirt;Wash cold;;Root text
shirt-red;shirt_color_size;SHIRT;red_things;;;red;
"""
COLUMNS = [
    "sku",
    "categories",
    "enabled",
    "family",
    "parent",
    "groups",
    "name",
    "description-en_US-ecommerce",
    "description-fr_FR-print",
    "price-EUR",
    "price-USD",
    "weight",
    "weight-unit",
    "waterproof",
    "color",
    "tags",
    "zoom",
    "ratio",
    "release_date-ecommerce",
    "picture",
    "X_SELL-products",
    "X_SELL-groups",
]
HEADER = ";".join(COLUMNS)


def row(columns: list[str] = COLUMNS, **cells: str) -> str:
    """One CSV line with Akeneo's quoting (cells may hold ';', quotes and line breaks)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", quotechar='"', lineterminator="")
    writer.writerow([cells.get(column.replace("-", "_"), "") for column in columns])
    return buffer.getvalue()


def write_fixture(directory: Path, rows: list[str], models: str = MODELS) -> Path:
    files = {
        "attributes.csv": ATTRIBUTES,
        "attribute_options.csv": OPTIONS,
        "family_variants.csv": FAMILY_VARIANTS,
        "measure.yml": MEASURES,
        "product_models.csv": models,
        "products.csv": "\n".join([HEADER, *rows]) + "\n",
    }
    for name, text in files.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


GOOD = row(
    sku="full",
    categories="a,b",
    enabled="1",
    family="shirts",
    groups="promo",
    name="Full",
    description_en_US_ecommerce="<p>Hello; world</p>\nsecond line",
    description_fr_FR_print='Bonjour "toi"',
    price_EUR="12.5",
    price_USD="13",
    weight="0.5",
    weight_unit="GRAM",
    waterproof="1",
    color="Blue",
    tags="eco,new",
    zoom="3",
    ratio="0.25",
    release_date_ecommerce="2012-04-20",
    picture="files/full.jpg",
    X_SELL_products="other,more",
    X_SELL_groups="grp",
)
VARIANT = row(
    sku="shirt-red-s",
    categories="sizes",
    enabled="0",
    parent="Shirt-RED",
    weight="700",
    weight_unit="GRAM",
)


def test_conversion_of_every_type(tmp_path: Path) -> None:
    source = IcecatSource(write_fixture(tmp_path, [GOOD]))
    [page] = all_pages(source)
    assert page.errors == [] and page.next_cursor is None
    [raw] = page.items
    parse_product(raw)
    assert raw["categories"] == ["a", "b"]
    assert raw["groups"] == ["promo"]
    assert value(raw, "description", "en_US", "ecommerce") == "<p>Hello; world</p>\nsecond line"
    assert value(raw, "description", "fr_FR", "print") == 'Bonjour "toi"'
    assert value(raw, "price") == [
        {"amount": "12.50", "currency": "EUR"},
        {"amount": "13.00", "currency": "USD"},
    ]
    assert value(raw, "weight") == {"amount": "0.5000", "unit": "GRAM"}
    assert value(raw, "waterproof") is True
    assert value(raw, "color") == "blue"  # option codes are case-insensitive: canonical code
    assert value(raw, "tags") == ["eco", "new"]
    assert value(raw, "zoom") == 3
    assert value(raw, "ratio") == "0.2500"
    assert value(raw, "release_date", None, "ecommerce") == "2012-04-20T00:00:00+00:00"
    assert value(raw, "picture") == "files/full.jpg"
    assert value(raw, "sku") == "full"
    assert "care" not in raw["values"]  # empty cells produce no value
    assert raw["associations"]["X_SELL"] == {
        "groups": ["grp"],
        "products": ["other", "more"],
        "product_models": [],
    }


def test_root_only_values_and_category_union(tmp_path: Path) -> None:
    source = IcecatSource(write_fixture(tmp_path, [VARIANT]))
    [raw] = items_of(all_pages(source))
    assert raw["parent"] == "shirt-red"
    assert raw["root_parent"] == "Shirt"
    assert raw["family"] == "shirts"  # from the family variant of its models
    assert raw["enabled"] is False
    assert value(raw, "care") == "Wash cold"  # only the root model holds it
    assert value(raw, "name") == "Shirt"
    assert value(raw, "description", "en_US", "ecommerce") == "Root text"
    assert value(raw, "color") == "red"  # from the sub-model
    assert value(raw, "weight") == {"amount": "700.0000", "unit": "GRAM"}
    assert sorted(raw["categories"]) == ["red_things", "shirts", "sizes"]
    model = source.get_model("SHIRT-red")
    assert model is not None and model["code"] == "shirt-red" and model["parent"] == "Shirt"
    assert value({"identifier": "m", **model}, "care") == "Wash cold"


@pytest.mark.parametrize(
    ("bad", "column", "reason"),
    [
        (row(sku="bad-bool", waterproof="yes"), "waterproof", "not a boolean"),
        (row(sku="bad-enabled", enabled="maybe"), "enabled", "not a boolean"),
        (row(sku="orphan", parent="no-such-model"), "parent", "no-such-model"),
        (row(sku="bad-option", color="purple"), "color", "not an option"),
        (row(sku="bad-number", zoom="2.5"), "zoom", "allows none"),
        (row(sku="bad-unit", weight="5", weight_unit="METER"), "weight", "not a unit of Weight"),
        (
            row(sku="bad-date", release_date_ecommerce="20/04/2012"),
            "release_date-ecommerce",
            "not a date",
        ),
        (row(sku="bad-price", price_EUR="abc"), "price-EUR", "not a number"),
    ],
)
def test_bad_rows_are_reported_not_dropped(
    tmp_path: Path, bad: str, column: str, reason: str
) -> None:
    source = IcecatSource(write_fixture(tmp_path, [GOOD, bad, VARIANT]))
    pages = all_pages(source, page_size=2)
    assert [p["identifier"] for p in items_of(pages)] == ["full", "shirt-red-s"]
    errors = [e for page in pages for e in page.errors]
    assert len(errors) == 1
    sku = bad.split(";")[0]
    assert f"sku {sku!r}" in errors[0]
    assert f"column {column!r}" in errors[0]
    assert reason in errors[0]
    # the bad row is on the first page (rows 1-2), not moved elsewhere
    assert pages[0].errors == errors
    assert source.get(sku) is None


def test_metric_without_unit_takes_the_default_unit(tmp_path: Path) -> None:
    rows = [row(sku="no-unit", weight="5"), row(sku="one-cell", weight="250 GRAM")]
    items = items_of(all_pages(IcecatSource(write_fixture(tmp_path, rows))))
    assert [value(raw, "weight") for raw in items] == [
        {"amount": "5.0000", "unit": "KILOGRAM"},
        {"amount": "250.0000", "unit": "GRAM"},
    ]


def test_unknown_column_and_duplicate_sku(tmp_path: Path) -> None:
    directory = write_fixture(tmp_path, [])
    columns = [*COLUMNS, "mystery-en_US"]
    rows = [GOOD + ";", GOOD + ";", row(columns, sku="odd", mystery_en_US="boo")]
    header = ";".join(columns)
    (directory / "products.csv").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    pages = all_pages(IcecatSource(directory))
    assert [p["identifier"] for p in items_of(pages)] == ["full"]
    errors = [e for page in pages for e in page.errors]
    assert len(errors) == 2
    assert "repeated" in errors[0] and "'full'" in errors[0]
    assert "sku 'odd'" in errors[1] and "column 'mystery-en_US'" in errors[1]


def test_broken_model_is_reported_with_its_variants(tmp_path: Path) -> None:
    models = MODELS.replace(
        "shirt-red;shirt_color_size;SHIRT;red_things;;;red;",
        "shirt-red;shirt_color_size;SHIRT;red_things;;;violet;",
    )
    source = IcecatSource(write_fixture(tmp_path, [GOOD, VARIANT], models=models))
    pages = all_pages(source)
    assert [p["identifier"] for p in items_of(pages)] == ["full"]
    errors = pages[0].errors
    assert any(e.startswith("product_models.csv:") and "'shirt-red'" in e for e in errors)
    assert any("sku 'shirt-red-s'" in e and "column 'parent'" in e for e in errors)
    assert source.get_model("shirt-red") is None
    assert source.get_model("Shirt") is not None


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"products\.csv not found"):
        IcecatSource(tmp_path)
