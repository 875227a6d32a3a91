"""The catalog store: PIM mirror, channel catalog, runs, cursors, drift, dead letters.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.db import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSONDoc = postgresql.JSONB().with_variant(sa.JSON(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pim_product",
        sa.Column("identifier", sa.String(255), nullable=False),
        sa.Column("uuid", sa.String(64)),
        sa.Column("family", sa.String(100)),
        sa.Column("parent_key", sa.String(255)),
        sa.Column("root_parent_key", sa.String(255)),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("updated", UTCDateTime()),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(32), nullable=False),
        sa.Column("change_seq", sa.BigInteger(), nullable=False),
        sa.Column("ingested_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_run", sa.Uuid()),
        sa.Column("removed_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("identifier", name=op.f("pk_pim_product")),
        comment="Mirror of the PIM's products, read once for every channel.",
    )
    op.create_index("ix_pim_product_change_seq", "pim_product", ["change_seq"])
    op.create_index("ix_pim_product_uuid", "pim_product", ["uuid"])
    op.create_index("ix_pim_product_parent_key", "pim_product", ["parent_key"])
    op.create_index("ix_pim_product_root_parent_key", "pim_product", ["root_parent_key"])

    op.create_table(
        "channel_product",
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(255), nullable=False),
        sa.Column("doc", JSONDoc),
        sa.Column("contract_version", sa.String(100)),
        sa.Column("input_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(40)),
        sa.Column("detail", JSONDoc),
        sa.Column("completeness", sa.SmallInteger()),
        sa.Column("sync_run_id", sa.Uuid()),
        sa.Column("synced_at", UTCDateTime(), nullable=False),
        sa.Column("source_seq", sa.BigInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("channel", "sku", name=op.f("pk_channel_product")),
    )
    op.create_index("ix_channel_product_channel_enabled", "channel_product", ["channel", "enabled"])
    op.create_index("ix_channel_product_sync_run_id", "channel_product", ["sync_run_id"])
    op.create_index("ix_channel_product_channel_status", "channel_product", ["channel", "status"])

    op.create_table(
        "sync_run",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("channel", sa.String(64)),
        sa.Column("parent_id", sa.Uuid()),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime()),
        sa.Column("heartbeat_at", UTCDateTime()),
        sa.Column("read", sa.BigInteger(), nullable=False),
        sa.Column("rejected", sa.BigInteger(), nullable=False),
        sa.Column("synced", sa.BigInteger(), nullable=False),
        sa.Column("unchanged", sa.BigInteger(), nullable=False),
        sa.Column("skipped_incomplete", sa.BigInteger(), nullable=False),
        sa.Column("filtered", sa.BigInteger(), nullable=False),
        sa.Column("disabled", sa.BigInteger(), nullable=False),
        sa.Column("failed", sa.BigInteger(), nullable=False),
        sa.Column("orphans_disabled", sa.BigInteger(), nullable=False),
        sa.Column("planned_units", sa.BigInteger(), nullable=False),
        sa.Column("planned_batches", sa.Integer(), nullable=False),
        sa.Column("pending_batches", sa.Integer(), nullable=False),
        sa.Column("planning_done", sa.Boolean(), nullable=False),
        sa.Column("cursor_from", sa.String(64)),
        sa.Column("cursor_to", sa.String(64)),
        sa.Column("resume_token", sa.Text()),
        sa.Column("error", sa.Text()),
        sa.Column("details", sa.JSON()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_run")),
    )
    op.create_index(
        "ix_sync_run_channel_kind_started", "sync_run", ["channel", "kind", "started_at"]
    )
    op.create_index("ix_sync_run_parent_id", "sync_run", ["parent_id"])
    op.create_index("ix_sync_run_status", "sync_run", ["status"])

    op.create_table(
        "sync_cursor",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("value", sa.String(64), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("run_id", sa.Uuid()),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sync_cursor")),
    )

    op.create_table(
        "drift_event",
        sa.Column("contract_id", sa.String(64), nullable=False),
        sa.Column("contract_version", sa.BigInteger(), nullable=False),
        sa.Column("attribute", sa.String(255), nullable=False),
        sa.Column("channel", sa.String(64)),
        sa.Column("strategy", sa.String(8), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("first_seen", UTCDateTime(), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=False),
        sa.Column("sample_sku", sa.String(255)),
        sa.PrimaryKeyConstraint(
            "contract_id", "contract_version", "attribute", name=op.f("pk_drift_event")
        ),
    )

    op.create_table(
        "dead_letter",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(255), nullable=False),
        sa.Column("run_id", sa.Uuid()),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("error_type", sa.String(100), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("permanent", sa.Boolean(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("first_failed_at", UTCDateTime(), nullable=False),
        sa.Column("last_failed_at", UTCDateTime(), nullable=False),
        sa.Column("replayed_at", UTCDateTime()),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letter")),
    )
    op.create_index(
        "uq_dead_letter_open_unit",
        "dead_letter",
        ["channel", "sku"],
        unique=True,
        postgresql_where=sa.text("status = 'open'"),
        sqlite_where=sa.text("status = 'open'"),
    )
    op.create_index(
        "ix_dead_letter_status_last_failed_at", "dead_letter", ["status", "last_failed_at"]
    )

    if op.get_bind().dialect.name == "postgresql":
        _lz4("pim_product", "raw")
        _lz4("channel_product", "doc")


def _lz4(table: str, column: str) -> None:
    """lz4 instead of pglz for large documents: ~40 % of their write cost is compression.

    Only where the server was built with lz4 (PostgreSQL 14+ from Debian/PGDG is).
    """
    bind = op.get_bind()
    has_lz4 = bind.exec_driver_sql(
        "SELECT count(*) FROM pg_settings WHERE name = 'default_toast_compression' "
        "AND 'lz4' = ANY(enumvals)"
    ).scalar()
    if has_lz4:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION lz4")


def downgrade() -> None:
    op.drop_table("dead_letter")
    op.drop_table("drift_event")
    op.drop_table("sync_cursor")
    op.drop_table("sync_run")
    op.drop_table("channel_product")
    op.drop_table("pim_product")
