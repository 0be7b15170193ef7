"""The API's own description: Swagger UI at /docs, ReDoc at /redoc, the OpenAPI document at /openapi.json and at
/docs/json (where the reference serves it). Behind a key like every route but /health unless ASH_PUBLIC_DOCS."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from ..deps import get_principal, get_services

router = APIRouter(include_in_schema=False)

OPENAPI_PATH = "/openapi.json"


async def _allowed(request: Request) -> None:
    if not get_services(request).settings.public_docs:
        await get_principal(request)  # 401 without a key (ASH_PUBLIC_DOCS opens them)


@router.get(OPENAPI_PATH)
async def openapi_document(request: Request) -> JSONResponse:
    await _allowed(request)
    return JSONResponse(request.app.openapi())


@router.get("/docs/json")
async def openapi_at_reference_path(request: Request) -> JSONResponse:
    """The spec where the reference serves it (its docs and clients point here); `/openapi.json` is the same."""
    return await openapi_document(request)


@router.get("/docs")
async def swagger_ui(request: Request) -> HTMLResponse:
    await _allowed(request)
    return get_swagger_ui_html(openapi_url=OPENAPI_PATH, title=f"{request.app.title} API")


@router.get("/redoc")
async def redoc(request: Request) -> HTMLResponse:
    await _allowed(request)
    return get_redoc_html(openapi_url=OPENAPI_PATH, title=f"{request.app.title} API")
