"""Every table of the schema: importing this module fills `Base.metadata` (Alembic compares it with the migrations).
The tables of a route family live beside its repository, in the family's own module."""

from __future__ import annotations

from . import agent_versions, attachments, evals, queue
from .models import Base

__all__ = ["Base", "agent_versions", "attachments", "evals", "queue"]
