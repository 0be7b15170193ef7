"""agent versions keep their files: agent_bundles (the current version only) becomes agent_versions

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from ash_server.store.models import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    versions = op.create_table(
        "agent_versions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=255), nullable=False),
        sa.Column("agent_name", sa.String(length=255), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("system_prompt", sa.Text(), nullable=True),
        sa.Column("release_notes", sa.Text(), nullable=True),
        sa.Column("knowledge_files", JSON, nullable=True),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("activated_at", UTCDateTime(), nullable=True),
        sa.Column("archive", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("agent_id", "version_number", name="uq_agent_versions_number"),
    )
    op.create_index("ix_agent_versions_agent_id", "agent_versions", ["agent_id"])
    # Each agent's current files become its active version, under the number its sessions already carry.
    connection = op.get_bind()
    rows = connection.execute(
        sa.text(
            "SELECT b.agent_id, b.version, b.archive, b.size, b.sha256, a.tenant_id, a.name "
            "FROM agent_bundles b JOIN agents a ON a.id = b.agent_id"
        )
    ).all()
    now = datetime.now(UTC)
    if rows:
        op.bulk_insert(
            versions,
            [
                {
                    "id": uuid.uuid4(),
                    "agent_id": row.agent_id if isinstance(row.agent_id, uuid.UUID) else uuid.UUID(str(row.agent_id)),
                    "tenant_id": row.tenant_id,
                    "agent_name": row.name,
                    "version_number": row.version,
                    "name": f"v{row.version}",
                    "system_prompt": None,
                    "release_notes": None,
                    "knowledge_files": None,
                    "created_by": None,
                    "is_active": True,
                    "activated_at": now,
                    "archive": row.archive,
                    "size": row.size,
                    "sha256": row.sha256,
                    "file_count": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for row in rows
            ],
        )
    op.drop_table("agent_bundles")


def downgrade() -> None:
    op.create_table(
        "agent_bundles",
        sa.Column("agent_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("archive", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("agent_id"),
    )
    op.execute(
        "INSERT INTO agent_bundles (agent_id, version, archive, size, sha256) "
        "SELECT agent_id, version_number, archive, size, sha256 FROM agent_versions WHERE is_active"
    )
    op.drop_index("ix_agent_versions_agent_id", table_name="agent_versions")
    op.drop_table("agent_versions")
