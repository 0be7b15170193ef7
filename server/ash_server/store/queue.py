"""The queue: prompts enqueued for an agent or a session, worked off by a DB-backed worker."""

from __future__ import annotations
