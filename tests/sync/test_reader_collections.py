"""The reader of a slice collects the young generation every few groups, not after each one
(issue 18): a young collection walks the group read ahead, alive, to free the ~200 objects
a written group leaves in cycles."""

from __future__ import annotations

import gc
from typing import Any

import pytest

from app.config import reset_settings_cache
from app.sync import ingest
from tests.sync.conftest import Harness
from tests.sync.memory_source import MemorySource


class _Recorder:
    """``gc`` as the reader sees it, recording the collections it asks for."""

    def __init__(self) -> None:
        self.collections: list[int] = []

    def collect(self, generation: int = 2) -> int:
        self.collections.append(generation)
        return gc.collect(generation)

    def __getattr__(self, name: str) -> Any:
        return getattr(gc, name)


@pytest.mark.parametrize(("products", "expected"), [(60, [1]), (85, [1, 1]), (35, [])])
def test_the_reader_collects_young_objects_every_few_groups(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, products: int, expected: list[int]
) -> None:
    monkeypatch.setenv("PIMSYNC_AKENEO_PAGE_SIZE", "5")
    monkeypatch.setenv("PIMSYNC_PUBLISH_BATCH_SIZE", "5")  # a group: one page of 5 products
    reset_settings_cache()
    harness.reload_settings()
    harness.source = MemorySource.generated(products)
    recorder = _Recorder()
    monkeypatch.setattr(ingest, "gc", recorder)
    assert ingest.YOUNG_COLLECTION_GROUPS == 8
    run_id = harness.full(["de_storefront"])
    # groups of 5: one young collection after each 8th group written, none after the last
    assert recorder.collections == expected
    runs = harness.runs(run_id)
    assert runs[None].read == products and runs[None].status == "completed"
    assert runs["de_storefront"].processed == products
    assert gc.isenabled()  # the slice's pause is over
