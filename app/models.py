"""Every table, imported in one place (Alembic's metadata, tests' create_all)."""

from app.channels.models import ChannelProduct
from app.db import Base
from app.mapping.models import DriftEvent, OwnershipViolation
from app.pages.models import ProductPage
from app.pim.models import MirrorClock, PimDefinitions, PimProduct, PimProductModel
from app.sync.models import DeadLetter, SyncBatch, SyncCursor, SyncLock, SyncRun
from app.sync.pim_events.models import PendingSku, WebhookEvent

__all__ = [
    "Base",
    "ChannelProduct",
    "DeadLetter",
    "DriftEvent",
    "MirrorClock",
    "OwnershipViolation",
    "PendingSku",
    "PimDefinitions",
    "PimProduct",
    "PimProductModel",
    "ProductPage",
    "SyncBatch",
    "SyncCursor",
    "SyncLock",
    "SyncRun",
    "WebhookEvent",
]
