"""tenants, per-session sequence counters, indexes for api key listing and session status

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from ash_server.store.models import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tenants",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("label", sa.String(length=255), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # Every tenant that already owns something becomes a registered tenant.
    op.execute(
        "INSERT INTO tenants (id, created_at) SELECT tenant_id, MIN(created_at) FROM ("
        " SELECT tenant_id, created_at FROM api_keys"
        " UNION ALL SELECT tenant_id, created_at FROM agents"
        " UNION ALL SELECT tenant_id, created_at FROM sessions"
        ") AS owners GROUP BY tenant_id"
    )

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_message_seq", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("last_event_seq", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_index("ix_sessions_status", ["status"], unique=False)
    # Sequences were max()+1 until now: the counters start where the rows are.
    op.execute(
        "UPDATE sessions SET"
        " last_message_seq = COALESCE((SELECT MAX(sequence) FROM messages WHERE messages.session_id = sessions.id), 0),"
        " last_event_seq = COALESCE("
        "(SELECT MAX(sequence) FROM session_events WHERE session_events.session_id = sessions.id), 0)"
    )

    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index("ix_api_keys_tenant_created", ["tenant_id", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_index("ix_api_keys_tenant_created")

    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_sessions_status")
        batch_op.drop_column("last_event_seq")
        batch_op.drop_column("last_message_seq")

    op.drop_table("tenants")
