"""The invariant is not vacuous: on the state of a clean full sync it holds, and each kind of
damage a fault could leave behind is caught, with what is wrong."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import delete, insert, select, update

from app.channels.models import ChannelProduct
from app.db import session_scope, utcnow
from app.sync.models import SyncLock, SyncRun
from tests.faults import invariant
from tests.faults.stack import open_stack

pytestmark = [pytest.mark.faults]


def test_the_invariant_catches_damage(redis_url: str, tmp_path_factory: pytest.TempPathFactory):
    with open_stack("invariant", redis_url, tmp_path_factory.mktemp("invariant")) as stack:
        # the state under test: a clean full sync on the stack's own database
        invariant.clean_sync(stack.base, stack.env["PIMSYNC_DATABASE_URL"])
        table, letters = invariant.clean_sync(stack.base, stack.ref_db)
        invariant.check(stack.catalog, table, letters)  # holds, undamaged

        def complaint(damage: object, repair: object) -> str:
            with session_scope() as s:
                s.execute(damage)  # type: ignore[call-overload]
            with pytest.raises(AssertionError) as caught:
                invariant.check(stack.catalog, table, letters)
            with session_scope() as s:
                s.execute(repair)  # type: ignore[call-overload]
            invariant.check(stack.catalog, table, letters)  # holds again
            return str(caught.value)

        sku = stack.pim_skus()[0]
        row = (ChannelProduct.channel == "de_storefront") & (ChannelProduct.sku == sku)
        with session_scope() as s:
            doc = s.execute(select(ChannelProduct.doc).where(row)).scalar_one()
            b2b = s.execute(select(SyncRun).where(SyncRun.channel == "b2b_portal")).scalar_one()
            b2b_id, synced = b2b.id, b2b.synced
        changed = complaint(
            update(ChannelProduct).where(row).values(doc={"title": "x"}),
            update(ChannelProduct).where(row).values(doc=doc),
        )
        assert "1 rows differ from a clean full sync" in changed
        miscounted = complaint(
            update(SyncRun).where(SyncRun.id == b2b_id).values(synced=synced - 1),
            update(SyncRun).where(SyncRun.id == b2b_id).values(synced=synced),
        )
        assert "b2b_portal" in miscounted
        running = complaint(
            update(SyncRun).where(SyncRun.id == b2b_id).values(status="running"),
            update(SyncRun).where(SyncRun.id == b2b_id).values(status="completed"),
        )
        assert "runs left running" in running
        now = utcnow()
        lease = {"name": "full:at_storefront", "run_id": uuid.uuid4(), "token": "t"}
        left = complaint(
            insert(SyncLock).values(**lease, acquired_at=now, expires_at=now + timedelta(1)),
            delete(SyncLock),
        )
        assert "leases left" in left and "full:at_storefront" in left
        with session_scope() as s:
            s.execute(delete(ChannelProduct).where(row))
        with pytest.raises(AssertionError) as lost:
            invariant.check(stack.catalog, table, letters)
        assert f"(de_storefront, '{sku}') accounted for 0x" in str(lost.value)
