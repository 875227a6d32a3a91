"""The sync engine: batches, leases, product models, ownership violations, the SQLite clock.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op

from app.db import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_batch",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("skus", sa.JSON(), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("group_key", sa.String(80)),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("enqueued_at", UTCDateTime()),
        sa.Column("done_at", UTCDateTime()),
        sa.Column("not_before", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_batch")),
    )
    op.create_index("ix_sync_batch_run_status", "sync_batch", ["run_id", "status"])
    op.create_index("ix_sync_batch_status_enqueued_at", "sync_batch", ["status", "enqueued_at"])

    op.create_table(
        "sync_lock",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("acquired_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sync_lock")),
    )

    op.create_table(
        "pim_product_model",
        sa.Column("code_key", sa.String(255), nullable=False),
        sa.Column("code", sa.String(255), nullable=False),
        sa.Column("parent_key", sa.String(255)),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("updated", UTCDateTime()),
        sa.Column("removed_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("code_key", name=op.f("pk_pim_product_model")),
    )

    op.create_table(
        "ownership_violation",
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("domain", sa.String(32), nullable=False),
        sa.Column("attribute", sa.String(255), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("first_seen", UTCDateTime(), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=False),
        sa.Column("sample_sku", sa.String(255)),
        sa.PrimaryKeyConstraint("source", "domain", "attribute", name=op.f("pk_ownership_violation")),
    )

    op.create_table(
        "pim_definitions",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("hash", sa.String(32), nullable=False),
        sa.Column("source", sa.String(500), nullable=False),
        sa.Column("fetched_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pim_definitions")),
    )

    op.create_table(
        "mirror_clock",
        sa.Column("id", sa.BigInteger(), server_default=sa.text("1"), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mirror_clock")),
    )


def downgrade() -> None:
    op.drop_table("mirror_clock")
    op.drop_table("pim_definitions")
    op.drop_table("ownership_violation")
    op.drop_table("pim_product_model")
    op.drop_table("sync_lock")
    op.drop_table("sync_batch")
