"""Attachments: files uploaded to a session, their rows here and their bytes in the snapshot store."""

from __future__ import annotations
