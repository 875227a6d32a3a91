"""Small hand-written catalogs and a running reference PIM, shared by the Akeneo tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from app.dev.reference_server import ReferenceCatalog, create_app, serve_in_thread
from app.pim.catalog import CatalogDefinitions, build_definitions

CLIENT = {
    "client_id": "pimsync",
    "secret": "pimsync-secret",
    "username": "pimsync",
    "password": "pimsync",
}


def value(data: Any, locale: str | None = None, scope: str | None = None) -> dict[str, Any]:
    return {"locale": locale, "scope": scope, "data": data}


def product(sku: str, updated: str = "2024-01-15T10:00:00+00:00", **extra: Any) -> dict[str, Any]:
    """A standard-format product as Akeneo's products-uuid endpoint would hold it."""
    values = {
        "sku": [value(sku)],
        "name": [value(f"Name of {sku}", "en_US"), value(f"Nom de {sku}", "fr_FR")],
        "color": [value("red")],
    }
    values.update(extra.pop("values", {}))
    return {
        "family": "shoes",
        "categories": ["master"],
        "enabled": True,
        "updated": updated,
        "values": values,
        **extra,
    }


def definitions(extra_attributes: int = 0, color_options: int = 3) -> CatalogDefinitions:
    attributes: list[dict[str, Any]] = [
        {"code": "sku", "type": "pim_catalog_identifier"},
        {"code": "name", "type": "pim_catalog_text", "localizable": True},
        {"code": "color", "type": "pim_catalog_simpleselect"},
    ]
    attributes += [
        {"code": f"attr_{i:03d}", "type": "pim_catalog_text"} for i in range(extra_attributes)
    ]
    return build_definitions(
        attributes=attributes,
        families=[{"code": "shoes", "attributes": ["sku", "name", "color"]}],
        channels=[{"code": "ecommerce", "locales": ["en_US", "fr_FR"], "currencies": ["EUR"]}],
        categories=[{"code": "master", "parent": None}, {"code": "shoes", "parent": "master"}],
        options=[
            {"attribute": "color", "code": f"c{i:03d}", "labels": {"en_US": f"Colour {i}"}}
            for i in range(color_options)
        ],
    )


def catalog(
    count: int = 0, products: list[dict[str, Any]] | None = None, **kwargs: Any
) -> ReferenceCatalog:
    items = [product(f"SKU-{i:04d}") for i in range(count)] + (products or [])
    models = [{"code": "Model-Boot", "family": "shoes", "values": {}}]
    return ReferenceCatalog.from_products(items, definitions(**kwargs), models)


@dataclass
class RunningPim:
    url: str
    catalog: ReferenceCatalog
    admin: httpx.Client

    def faults(self, **faults: Any) -> None:
        self.admin.post("/_admin/faults", json=faults).raise_for_status()

    def stats(self) -> dict[str, Any]:
        return self.admin.get("/_admin/stats").json()

    def reset_stats(self) -> None:
        self.admin.post("/_admin/stats/reset").raise_for_status()


@contextmanager
def running_pim(pim_catalog: ReferenceCatalog, **app_options: Any) -> Iterator[RunningPim]:
    app = create_app(pim_catalog, **app_options)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as admin:
        yield RunningPim(url, pim_catalog, admin)
