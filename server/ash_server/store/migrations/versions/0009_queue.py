"""queue: prompts waiting for an agent or session

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ash_server.store.models import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "queue_items",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=255), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("agent_name", sa.String(length=255), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("retry_count", sa.Integer(), nullable=False),
        sa.Column("max_retries", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("retry_after", UTCDateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(length=255), nullable=True),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_queue_items_tenant_idempotency_key"),
    )
    op.create_index("ix_queue_items_tenant_created", "queue_items", ["tenant_id", "created_at"], unique=False)
    op.create_index("ix_queue_items_status_priority", "queue_items", ["status", "priority"], unique=False)
    op.create_index("ix_queue_items_session_status", "queue_items", ["session_id", "status"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_queue_items_session_status", table_name="queue_items")
    op.drop_index("ix_queue_items_status_priority", table_name="queue_items")
    op.drop_index("ix_queue_items_tenant_created", table_name="queue_items")
    op.drop_table("queue_items")
