from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.config import SAMPLE_DIR
from app.mapping.contract import (
    CompiledContract,
    ContractStore,
    load_contract_file,
    parse_contract,
)
from app.mapping.errors import ContractError
from tests.catalog_builders import make_contract, make_contract_model

CONTRACTS = SAMPLE_DIR / "contracts"


def contract_error(mappings: list[dict[str, Any]], **fields: Any) -> str:
    with pytest.raises(ContractError) as info:
        parse_contract(
            {"contract": "web", "version": 1, "mappings": mappings, **fields}, source="web/v1.yaml"
        )
    message = str(info.value)
    assert message.startswith("web/v1.yaml: ")
    return message


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


MINIMAL = "contract: web\nversion: {version}\nmappings:\n  - {{pim: name, target: title}}\n"


# --- parsing -----------------------------------------------------------------------------------


def test_parse_contract_defaults() -> None:
    c = make_contract_model([{"pim": "name", "target": "title"}])
    assert (c.id, c.version, c.key) == ("web", 3, "web@3")
    assert c.unmapped == "warn" and c.ignore == () and c.lookups == {}
    m = c.mappings[0]
    assert (m.transform, m.required, m.separator, m.unit, m.labels) == (
        "direct",
        False,
        ", ",
        "symbol",
        False,
    )
    assert not m.is_glob
    assert make_contract_model([{"pim": "spec_*", "target": "s.{attribute}"}]).mappings[0].is_glob
    assert make_contract_model([{"pim": "spec_?", "target": "s.{attribute}"}]).mappings[0].is_glob


def test_fingerprint() -> None:
    a = make_contract_model([{"pim": "name", "target": "title"}])
    assert (
        a.fingerprint() == make_contract_model([{"pim": "name", "target": "title"}]).fingerprint()
    )
    b = make_contract_model([{"pim": "name", "target": "title", "required": True}])
    assert a.fingerprint() != b.fingerprint()


@pytest.mark.parametrize(
    ("mappings", "fields", "words"),
    [
        (
            [{"pim": "a", "target": "a", "transform": "nope"}],
            {},
            ["mapping #1 (a): unknown transform 'nope'", "known: auto, boolean, computed"],
        ),
        (
            [{"pim": "a", "target": "a", "transform": "lookup"}],
            {},
            ["mapping #1 (a): a lookup mapping needs `table`"],
        ),
        (
            [{"pim": "a", "target": "a", "transform": "lookup", "table": "colours"}],
            {"lookups": {"colors": {"red": 1}}},
            ["lookup table 'colours' is not in `lookups`"],
        ),
        (
            [{"target": "a", "transform": "computed"}],
            {},
            ["mapping #1 (a): a computed mapping needs `function`"],
        ),
        (
            [{"target": "a", "transform": "computed", "function": "magic"}],
            {},
            ["unknown computed function 'magic'", "registered: ", "slug"],
        ),
        ([{"target": "a"}], {}, ["mapping #1 (a): `pim` (the PIM attribute) is required"]),
        ([{"pim": "", "target": "a"}], {}, ["`pim` (the PIM attribute) is required"]),
        (
            [{"pim": "a", "target": "a", "transform": "localized", "of": "nope"}],
            {},
            ["localized cannot apply 'nope' per locale"],
        ),
        (
            [{"pim": "a", "target": "a", "transform": "localized", "of": "localized"}],
            {},
            ["localized cannot apply 'localized' per locale"],
        ),
        (
            [{"pim": "a", "target": "a", "transform": "localized", "of": "computed"}],
            {},
            ["localized cannot apply 'computed' per locale"],
        ),
        (
            [{"pim": "a", "target": "a", "transform": "localized", "of": "lookup"}],
            {},
            ["localized lookup needs a known `table`"],
        ),
        (
            [{"pim": "a", "target": "x.{attribute}"}],
            {},
            ["{attribute} in a target needs a glob `pim`"],
        ),
        (
            [{"pim": "a_*", "target": "x.{attribute}", "required": True}],
            {},
            ["mapping #1 (a_*): a glob mapping cannot be required"],
        ),
        (
            [{"pim": "a", "target": "title"}, {"pim": "b", "target": "title"}],
            {},
            ["mapping #2 (b): target 'title' is mapped twice"],
        ),
        (
            [
                {"pim": "a", "target": "slug"},
                {"target": "slug", "transform": "computed", "function": "slug"},
            ],
            {},
            ["mapping #2 (slug): target 'slug' is mapped twice"],
        ),
        (
            [{"pim": "a", "target": "seo"}, {"pim": "b", "target": "seo.title"}],
            {},
            ["mapping #2 (b): target 'seo.title' overlaps 'seo' of mapping #1 (a)"],
        ),
        (
            [{"pim": "b", "target": "seo.title"}, {"pim": "a", "target": "seo"}],
            {},
            ["mapping #2 (a): target 'seo' overlaps 'seo.title'"],
        ),
        (
            [{"pim": "s_*", "target": "specs.{attribute}"}, {"pim": "a", "target": "specs"}],
            {},
            ["target 'specs' overlaps 'specs.{attribute}'"],
        ),
        ([{"pim": "a", "target": "a..b"}], {}, ["target 'a..b' is not a field path"]),
        ([{"pim": "a", "target": "a-b"}], {}, ["target 'a-b' is not a field path"]),
        ([{"pim": "a", "target": "1a"}], {}, ["target '1a' is not a field path"]),
        ([{"pim": "a", "target": ""}], {}, ["target '' is not a field path"]),
        ([{"pim": "a", "target": "a", "precision": 11}], {}, ["mappings.0.precision"]),
        ([{"pim": "a", "target": "a", "precision": -1}], {}, ["mappings.0.precision"]),
        ([{"pim": "a", "target": "a", "unit": "name"}], {}, ["mappings.0.unit"]),
        ([{"pim": "a", "target": "a", "colour": 1}], {}, ["mappings.0.colour", "Extra inputs"]),
        ([{"pim": "a"}], {}, ["mappings.0.target", "Field required"]),
        ([], {}, ["mappings", "at least 1"]),
        (
            [{"pim": "a", "target": "a"}],
            {"unmapped": "ignore"},
            ["unmapped: Input should be 'skip', 'warn' or 'fail'"],
        ),
        ([{"pim": "a", "target": "a"}], {"version": 0}, ["version", "greater than or equal to 1"]),
        ([{"pim": "a", "target": "a"}], {"owner": "me"}, ["owner", "Extra inputs"]),
    ],
)
def test_bad_contracts(
    mappings: list[dict[str, Any]], fields: dict[str, Any], words: list[str]
) -> None:
    message = contract_error(mappings, **fields)
    for word in words:
        assert word in message
    assert "Value error, " not in message


def test_good_targets_and_overlaps_that_cannot_clash() -> None:
    c = make_contract_model(
        [
            {"pim": "a", "target": "seo.title"},
            {"pim": "b", "target": "seo.description"},
            {"pim": "s_*", "target": "specs.{attribute}"},
            {"pim": "t_*", "target": "specs.{attribute}"},
            {"pim": "c", "target": "specs.extra"},
            {"pim": "d", "target": "_private"},
            {"target": "tax.rate", "transform": "computed", "function": "vat_rate"},
        ]
    )
    assert len(c.mappings) == 7


def test_not_a_mapping_and_missing_id() -> None:
    with pytest.raises(ContractError, match=r"x\.yaml: expected a mapping"):
        parse_contract(["contract"], source="x.yaml")
    with pytest.raises(ContractError, match="contract: Field required"):
        parse_contract({"version": 1, "mappings": [{"pim": "a", "target": "a"}]})


# --- compiled contracts --------------------------------------------------------------------------


def test_specs_for_exact_before_glob_and_first_glob_wins() -> None:
    cc = make_contract(
        [
            {"pim": "tv_spec_*", "target": "tv.{attribute}", "transform": "auto"},
            {"pim": "*_spec_*", "target": "specs.{attribute}"},
            {"pim": "tv_spec_001", "target": "diagonal"},
            {"pim": "tv_spec_001", "target": "diagonal_text", "transform": "metric_to_string"},
            {"pim": "name", "target": "title", "required": True},
            {"target": "slug", "transform": "computed", "function": "slug"},
        ]
    )
    assert isinstance(cc, CompiledContract) and cc.key == "web@3"
    assert [s.target for s in cc.specs_for("tv_spec_001")] == ["diagonal", "diagonal_text"]
    assert [s.target for s in cc.specs_for("tv_spec_002")] == ["tv.{attribute}"]
    assert [s.target for s in cc.specs_for("pc_spec_002")] == ["specs.{attribute}"]
    assert cc.specs_for("brand") == ()
    assert cc.specs_for("brand") == ()  # memoised
    assert [s.pim for s in cc.required_exact] == ["name"]
    assert [s.function for s in cc.computed] == ["slug"]


def test_is_ignored() -> None:
    cc = make_contract([{"pim": "a", "target": "a"}], ignore=["internal_*", "legacy"])
    assert cc.is_ignored("internal_note")
    assert cc.is_ignored("legacy")
    assert not cc.is_ignored("legacy_code")
    assert not cc.is_ignored("name")


# --- files and the store --------------------------------------------------------------------------


def test_sample_contracts_load() -> None:
    store = ContractStore.load(CONTRACTS)
    assert store.versions() == [
        "b2b_portal@1",
        "marketplace_uk@1",
        "storefront_at@1",
        "storefront_de@1",
        "storefront_de@2",
    ]
    de2 = store.get("storefront_de", 2)
    assert de2.key == "storefront_de@2"
    assert de2.specs_for("sustainability_score")
    assert not store.get("storefront_de", 1).specs_for("sustainability_score")
    assert store.get("storefront_de", 2) is de2  # compiled once


def test_store_get_not_found_lists_versions() -> None:
    store = ContractStore.load(CONTRACTS)
    with pytest.raises(ContractError) as info:
        store.get("storefront_de", 3)
    assert str(info.value) == "contract storefront_de@3 not found (versions present: [1, 2])"
    with pytest.raises(ContractError) as info:
        store.get("shop", 1)
    assert str(info.value) == "contract shop@1 not found (no version of it exists)"


def test_store_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ContractError, match=r"contracts folder .*missing not found"):
        ContractStore.load(tmp_path / "missing")


def test_store_loads_yaml_yml_and_toml(tmp_path: Path) -> None:
    write(tmp_path / "web" / "v1.yaml", MINIMAL.format(version=1))
    write(tmp_path / "web" / "v2.yml", MINIMAL.format(version=2))
    write(
        tmp_path / "web" / "v3.toml",
        'contract = "web"\nversion = 3\n[[mappings]]\npim = "name"\ntarget = "title"\n',
    )
    write(tmp_path / "web" / "README.md", "not a contract")
    assert ContractStore.load(tmp_path).versions() == ["web@1", "web@2", "web@3"]


def test_store_duplicate_version(tmp_path: Path) -> None:
    write(tmp_path / "web" / "v1.yaml", MINIMAL.format(version=1))
    write(tmp_path / "web" / "v1.yml", MINIMAL.format(version=1))
    with pytest.raises(ContractError, match="contract web@1 is defined twice"):
        ContractStore.load(tmp_path)


def test_file_name_must_match_version(tmp_path: Path) -> None:
    path = write(tmp_path / "web" / "v2.yaml", MINIMAL.format(version=1))
    with pytest.raises(ContractError) as info:
        load_contract_file(path)
    assert str(info.value) == f"{path}: file name says version 2 but the file says 1"


def test_folder_must_match_id(tmp_path: Path) -> None:
    path = write(tmp_path / "shop" / "v1.yaml", MINIMAL.format(version=1))
    with pytest.raises(ContractError) as info:
        ContractStore.load(tmp_path)
    assert str(info.value) == f"{path}: folder 'shop' does not match contract id 'web'"


def test_bad_contract_file_names_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path / "web" / "v1.yaml",
        "contract: web\nversion: 1\nmappings:\n  - {pim: a, target: a, transform: x}\n",
    )
    with pytest.raises(ContractError) as info:
        ContractStore.load(tmp_path)
    assert str(info.value).startswith(f"{path}: mapping #1 (a): unknown transform 'x'")


def test_lenient_store_takes_down_only_the_broken_version(tmp_path: Path) -> None:
    """Workers load leniently: one unusable file must not make every channel unavailable."""
    write(tmp_path / "web" / "v1.yaml", MINIMAL.format(version=1))
    bad = write(
        tmp_path / "shop" / "v2.yaml",
        "contract: shop\nversion: 2\nmappings:\n  - {pim: a, target: a, transform: x}\n",
    )
    write(tmp_path / "shop" / "v1.yaml", MINIMAL.replace("web", "shop").format(version=1))
    write(tmp_path / "app" / "v1.yaml", MINIMAL.replace("web", "app").format(version=1))
    write(tmp_path / "app" / "v1.yml", MINIMAL.replace("web", "app").format(version=1))
    with pytest.raises(ContractError):
        ContractStore.load(tmp_path)  # strict, as `pimsync check` loads
    store = ContractStore.load(tmp_path, strict=False)
    assert store.versions() == ["shop@1", "web@1"]
    assert store.get("web", 1).key == "web@1" and store.get("shop", 1).key == "shop@1"
    with pytest.raises(ContractError) as info:
        store.get("shop", 2)
    assert str(info.value) == (
        f"{bad}: mapping #1 (a): unknown transform 'x' (known: auto, boolean, computed, direct, "
        "localized, lookup, metric_to_string, multi_to_csv, number, price)"
    )
    with pytest.raises(ContractError) as info:
        store.get("app", 1)
    assert str(info.value) == f"{tmp_path / 'app' / 'v1.yml'}: contract app@1 is defined twice"


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("v1.yaml", "contract: web\nmappings: [unclosed\n"),
        ("v1.toml", "contract = \n"),
        ("v1.yaml", b"contract: w\xe9b\n"),
    ],
)
def test_unreadable_contract_files(tmp_path: Path, name: str, content: str | bytes) -> None:
    path = write(tmp_path / "web" / name, content)
    with pytest.raises(ContractError, match="cannot read contract") as info:
        load_contract_file(path)
    assert str(path) in str(info.value)


def test_empty_contract_file(tmp_path: Path) -> None:
    path = write(tmp_path / "web" / "v1.yaml", "")
    with pytest.raises(ContractError, match="expected a mapping with contract, version"):
        load_contract_file(path)
