"""The Ash server: REST + SSE API, sessions, sandboxes and their bridges, persistence."""

__version__ = "0.1.0"
