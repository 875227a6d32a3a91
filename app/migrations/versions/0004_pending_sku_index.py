"""Index the unclaimed pending products by age (a PIM-event task claims the oldest along).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_UNCLAIMED = sa.text("claimed_at IS NULL")


def upgrade() -> None:
    op.create_index(
        "ix_pending_sku_unclaimed_first_event_at",
        "pending_sku",
        ["first_event_at"],
        postgresql_where=_UNCLAIMED,
        sqlite_where=_UNCLAIMED,
    )


def downgrade() -> None:
    op.drop_index("ix_pending_sku_unclaimed_first_event_at", table_name="pending_sku")
