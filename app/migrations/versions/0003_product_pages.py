"""The Product Page Service and event intake: product_page, webhook_event, pending_sku.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.db import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSONDoc = postgresql.JSONB(none_as_null=True).with_variant(sa.JSON(none_as_null=True), "sqlite")


def upgrade() -> None:
    op.create_table(
        "product_page",
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(255), nullable=False),
        sa.Column("catalog", JSONDoc),
        sa.Column("catalog_version", sa.BigInteger(), nullable=False),
        sa.Column("catalog_enabled", sa.Boolean(), nullable=False),
        sa.Column("catalog_status", sa.String(20)),
        sa.Column("pricing", JSONDoc),
        sa.Column("pricing_version", sa.BigInteger(), nullable=False),
        sa.Column("inventory", JSONDoc),
        sa.Column("inventory_version", sa.BigInteger(), nullable=False),
        sa.Column("media", JSONDoc),
        sa.Column("media_version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("channel", "sku", name=op.f("pk_product_page")),
    )
    op.create_table(
        "webhook_event",
        sa.Column("event_id", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(60), nullable=False),
        sa.Column("subject", sa.String(255)),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_webhook_event")),
    )
    op.create_table(
        "pending_sku",
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("product", JSONDoc),
        sa.Column("event_time", UTCDateTime()),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("first_event_at", UTCDateTime(), nullable=False),
        sa.Column("claimed_at", UTCDateTime()),
        sa.Column("claimed_events", sa.BigInteger()),
        sa.Column("note", sa.Text()),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_pending_sku")),
    )
    if op.get_bind().dialect.name == "postgresql":
        bind = op.get_bind()
        has_lz4 = bind.exec_driver_sql(
            "SELECT count(*) FROM pg_settings WHERE name = 'default_toast_compression' "
            "AND 'lz4' = ANY(enumvals)"
        ).scalar()
        if has_lz4:
            op.execute("ALTER TABLE product_page ALTER COLUMN catalog SET COMPRESSION lz4")


def downgrade() -> None:
    op.drop_table("pending_sku")
    op.drop_table("webhook_event")
    op.drop_table("product_page")
