"""credentials and usage events

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ash_server.store.models import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "credentials",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=True),
        sa.Column("hint", sa.String(length=32), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_credentials_tenant_created", "credentials", ["tenant_id", "created_at"], unique=False)

    op.create_table(
        "usage_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=255), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=False),
        sa.Column("agent_name", sa.String(length=255), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["session_id"], ["sessions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_usage_events_session_created", "usage_events", ["session_id", "created_at"], unique=False)
    op.create_index("ix_usage_events_tenant_agent", "usage_events", ["tenant_id", "agent_name"], unique=False)
    op.create_index("ix_usage_events_tenant_created", "usage_events", ["tenant_id", "created_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_usage_events_tenant_created", table_name="usage_events")
    op.drop_index("ix_usage_events_tenant_agent", table_name="usage_events")
    op.drop_index("ix_usage_events_session_created", table_name="usage_events")
    op.drop_table("usage_events")
    op.drop_index("ix_credentials_tenant_created", table_name="credentials")
    op.drop_table("credentials")
