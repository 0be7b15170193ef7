"""Agent versions: every deploy of an agent is an immutable, numbered row; one of them is active."""

from __future__ import annotations
