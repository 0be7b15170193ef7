"""/dashboard: a read-only view of a tenant's agents, sessions (live), pool, runners and usage, in HTML.

Same keys as the API. A browser signs in once with an API key and gets a cookie holding a signed token, not the key
(dashboard/tokens.py); scripts may send `Authorization: Bearer` instead. Every page is scoped to the key's tenant like
the API (404 across tenants), rendered on the server with autoescaping, and sent with a Content-Security-Policy that
allows only this server's own script and styles. A session page follows its session live with an EventSource on
`/dashboard/sessions/{id}/stream` (the follow stream of `/api/sessions/{id}/stream`) and fetches the new messages as
rendered HTML from `/updates`, so there is one renderer: the templates.
"""

from __future__ import annotations

from ...dashboard.pages import router

__all__ = ["router"]
