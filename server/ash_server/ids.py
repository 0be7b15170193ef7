"""Ids as clients and agents send them: text that may or may not be a UUID."""

from __future__ import annotations

import uuid


def parse_uuid(text: str) -> uuid.UUID | None:
    """The UUID `text` spells, or None: callers turn None into the error their route owes (a 404, a 400)."""
    try:
        return uuid.UUID(text)
    except ValueError:
        return None
