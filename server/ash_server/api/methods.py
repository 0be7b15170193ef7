"""405 Method Not Allowed, with an `Allow` that lists every method of the resource.

Starlette's router answers 405 for the first route whose path matched, and FastAPI makes one route per method, so
its `Allow` named one method of several (`GET /api/agents/{name}` said `Allow: GET` to a PUT, not `DELETE, GET,
PATCH`). And where paths overlap, the one with the fewest parameters is the resource, for every method:
`DELETE /api/queue/stats` is a 405 (`Allow: GET`), not the `DELETE /api/queue/{item_id}` route's 400 for an id
that is not one.
"""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import error_response

Paths = list[tuple[re.Pattern[str], int, frozenset[str], bool]]


def _paths(app: FastAPI) -> Paths:
    """Each route's path pattern, its number of parameters, its methods, and whether it is a catch-all."""
    return [
        (compile_path(r.path)[0], r.path.count("{"), frozenset(r.methods), ":path}" in r.path)
        for r in iter_route_contexts(app.routes)
        if r.path and r.methods
    ]


def allowed_methods(paths: Paths, path: str) -> list[str] | None:
    """The methods of the resource `path` names (the matching paths with the fewest parameters), or None. A
    catch-all route (`{rest:path}`: a coordinator forwarding the session API to its runners) always counts: it
    serves every path under it, whatever narrower route also matches."""
    matching = [(params, methods, catch_all) for pattern, params, methods, catch_all in paths if pattern.match(path)]
    if not matching:
        return None
    fewest = min(params for params, _, _ in matching)
    return sorted(set().union(*(methods for params, methods, catch_all in matching if params == fewest or catch_all)))


def _refusal(allow: list[str]) -> JSONResponse:
    return error_response(405, "Method Not Allowed", headers={"Allow": ", ".join(allow)})


async def method_not_allowed(request: Request, _exc: Exception) -> JSONResponse:
    return _refusal(allowed_methods(_paths(request.app), request.url.path) or [])


class ResourceMethods:
    """Answers 405 for a method the resource lacks, before a route of an overlapping path can take the request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._paths: Paths | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if self._paths is None:  # the routes are all in by the first request
                self._paths = _paths(scope["app"])
            allowed = allowed_methods(self._paths, scope["path"])
            method = "GET" if scope["method"] == "HEAD" else scope["method"]
            if allowed is not None and method not in allowed:
                await _refusal(allowed)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_method_handling(app: FastAPI) -> None:
    app.add_middleware(ResourceMethods)
    app.add_exception_handler(405, method_not_allowed)
