"""405 Method Not Allowed with an `Allow` that lists every method of the path.

Starlette's router answers 405 for the first route whose path matched, and FastAPI makes one route per method, so
its `Allow` named one method of several (`GET /api/agents/{name}` said `Allow: GET` to a PUT, not `DELETE, GET,
PATCH`). This handler, registered for the status, lists them all.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.routing import iter_route_contexts
from starlette.routing import compile_path

from .errors import error_response


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    methods: set[str] = set()
    for route in iter_route_contexts(app.routes):
        route_path, route_methods = route.path, route.methods
        if route_path and route_methods and compile_path(route_path)[0].match(path):
            methods |= route_methods
    return sorted(methods)


async def method_not_allowed(request: Request, _exc: Exception) -> JSONResponse:
    allow = ", ".join(allowed_methods(request.app, request.url.path))
    return error_response(405, "Method Not Allowed", headers={"Allow": allow})


def install_method_handler(app: FastAPI) -> None:
    app.add_exception_handler(405, method_not_allowed)
