"""The dashboard's HTTP layer: its router, sign-in (an API key once, then a signed cookie), CSRF, the security
headers and error pages every page gets (dashboard/pages.py has the pages)."""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from ..api.deps import Services, ServicesDep
from ..auth import Principal
from ..errors import AshError, Invalid, NotFound, PayloadTooLarge, Unauthorized
from .render import ASSETS, asset, render
from .tokens import TOKEN_LIFETIME_S, TokenSigner

log = logging.getLogger(__name__)

COOKIE = "ash_dashboard"
CSRF_COOKIE = "ash_dashboard_csrf"
CSRF_LIFETIME_S = 3600
FORM_LIMIT = 16 * 1024
MESSAGE_PAGE = 200
EVENT_PAGE = 200
SESSION_PAGE = 50
# Only this server's own files: no inline script or style, no other origin, no framing.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class SignInRequired(Exception):
    """A page was asked for without credentials: the browser goes to the sign-in page."""


@dataclass(frozen=True, slots=True)
class Viewer:
    principal: Principal
    # Signed in through the form (a cookie), rather than sending a bearer key: the pages offer to sign out.
    by_cookie: bool


def _error_page(status_code: int, message: str, headers: dict[str, str] | None = None) -> HTMLResponse:
    body = render("error.html", viewer=None, status_code=status_code, message=message)
    return HTMLResponse(body, status_code=status_code, headers=headers or None)


def _validation_message(exc: RequestValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid request"
    first = errors[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part not in ("path", "query", "header"))
    return f"invalid request: {where}: {first.get('msg')}" if where else f"invalid request: {first.get('msg')}"


def _sign_in_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"/dashboard/login?next={quote(target, safe='/')}", status_code=303)
    if COOKIE in request.cookies:
        response.delete_cookie(COOKIE, path="/dashboard", httponly=True, samesite="strict")
    return response


class DashboardRoute(APIRoute):
    """Dashboard routes answer in HTML whatever happens (errors are pages, a missing sign-in is a redirect) and
    every response carries the security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                response = await handler(request)
            except SignInRequired:
                response = _sign_in_redirect(request)
            except AshError as exc:
                if exc.status_code >= 500:
                    log.warning("%s: %s", type(exc).__name__, exc.message)
                response = _error_page(exc.status_code, exc.message, exc.headers)
            except RequestValidationError as exc:
                response = _error_page(400, _validation_message(exc))
            except HTTPException as exc:
                response = _error_page(exc.status_code, str(exc.detail))
            except Exception:
                log.exception("dashboard page %s failed", request.url.path)
                response = _error_page(500, "internal server error")
            for name, value in SECURITY_HEADERS.items():
                response.headers[name] = value
            response.headers.setdefault("Cache-Control", "no-store")
            return response

        return handle


router = APIRouter(prefix="/dashboard", include_in_schema=False, route_class=DashboardRoute)


# -- Authentication ---------------------------------------------------------------------------------------------


def _signer(services: Services) -> TokenSigner:
    return TokenSigner.derived(services.auth.hash)


def _client_ip(request: Request) -> str | None:
    return request.client.host if request.client is not None else None


async def _viewer(request: Request, services: Services) -> Viewer:
    header = request.headers.get("authorization")
    if header:
        return Viewer(await services.auth.authenticate(header, _client_ip(request)), by_cookie=False)
    token = request.cookies.get(COOKIE)
    claims = _signer(services).verify(token, time.time()) if token else None
    if claims is None:
        raise SignInRequired
    # The key the token names is looked up every time: a revoked or expired key signs its dashboard sessions out.
    principal = await services.auth.principal_of_key(claims.tenant_id, claims.key_id)
    if principal is None:
        raise SignInRequired
    return Viewer(principal, by_cookie=True)


async def page_viewer(request: Request, services: ServicesDep) -> Viewer:
    return await _viewer(request, services)


async def script_viewer(request: Request, services: ServicesDep) -> Viewer:
    """For what the page's script fetches: a 401 it can act on, not a redirect to a form."""
    try:
        return await _viewer(request, services)
    except SignInRequired:
        raise Unauthorized("sign in to the dashboard first") from None


PageViewer = Annotated[Viewer, Depends(page_viewer)]
ScriptViewer = Annotated[Viewer, Depends(script_viewer)]


def _set_cookie(response: Response, request: Request, name: str, value: str, *, max_age: int, path: str) -> None:
    # Secure over https (also behind a proxy listed in ASH_TRUSTED_PROXIES that says X-Forwarded-Proto: https).
    secure = request.url.scheme == "https"
    response.set_cookie(name, value, max_age=max_age, path=path, secure=secure, httponly=True, samesite="strict")


def _safe_next(target: str) -> str:
    """Where to go after signing in: a dashboard page of this server, never anywhere else."""
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not parts.path.startswith("/dashboard")
        or parts.path.startswith(("/dashboard/login", "/dashboard/logout"))
        or "\\" in target
        or not target.isprintable()
    ):
        return "/dashboard"
    return target


async def _form(request: Request) -> dict[str, str]:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise Invalid("expected a form (application/x-www-form-urlencoded)")
    body = await request.body()
    if len(body) > FORM_LIMIT:
        raise PayloadTooLarge(f"the form exceeds {FORM_LIMIT} bytes", limit=FORM_LIMIT)
    try:
        fields = parse_qs(body.decode("utf-8", "replace"), max_num_fields=8)
    except ValueError as exc:
        raise Invalid("too many form fields") from exc
    return {name: values[0] for name, values in fields.items()}


def _login_page(
    request: Request, services: Services, next_page: str, *, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    csrf = _signer(services).csrf_token()
    body = render("login.html", viewer=None, csrf=csrf, next_page=next_page, error=error)
    response = HTMLResponse(body, status_code=status_code)
    _set_cookie(response, request, CSRF_COOKIE, csrf, max_age=CSRF_LIFETIME_S, path="/dashboard/login")
    return response


@router.get("/login")
async def login_form(
    request: Request, services: ServicesDep, next_page: Annotated[str, Query(alias="next", max_length=2000)] = ""
) -> HTMLResponse:
    return _login_page(request, services, _safe_next(next_page))


@router.post("/login")
async def login(request: Request, services: ServicesDep) -> Response:
    """Exchange an API key for the dashboard cookie. The form's CSRF token must match the cookie set with it."""
    form = await _form(request)
    next_page = _safe_next(form.get("next", ""))
    csrf = form.get("csrf", "")
    if not (
        csrf
        and hmac.compare_digest(csrf.encode(), request.cookies.get(CSRF_COOKIE, "").encode())
        and _signer(services).csrf_valid(csrf)
    ):
        error = "The sign-in form expired or was not sent from this page. Try again."
        return _login_page(request, services, next_page, error=error, status_code=403)
    key = form.get("key", "").strip()
    if not key:
        return _login_page(request, services, next_page, error="Enter an API key.", status_code=401)
    try:
        principal = await services.auth.authenticate(f"Bearer {key}", _client_ip(request))
    except AshError as exc:  # an unknown key (401) or too many failures from this address (429)
        refused = _login_page(request, services, next_page, error=exc.message, status_code=exc.status_code)
        refused.headers.update(exc.headers)
        return refused
    token = _signer(services).issue(principal.tenant_id, uuid.UUID(principal.key_id), time.time())
    response = RedirectResponse(next_page, status_code=303)
    _set_cookie(response, request, COOKIE, token, max_age=TOKEN_LIFETIME_S, path="/dashboard")
    response.delete_cookie(CSRF_COOKIE, path="/dashboard/login", httponly=True, samesite="strict")
    return response


@router.post("/logout")
async def logout() -> RedirectResponse:
    response = RedirectResponse("/dashboard/login", status_code=303)
    response.delete_cookie(COOKIE, path="/dashboard", httponly=True, samesite="strict")
    return response


@router.get("/static/{name}")
async def static(name: str) -> Response:
    try:
        content, _ = asset(name)
    except KeyError:
        raise NotFound(f"no dashboard asset {name}") from None
    # Pages link assets with their content hash (?v=...), so a long cache never serves a stale file.
    return Response(content, media_type=ASSETS[name], headers={"Cache-Control": "public, max-age=86400"})


# -- Pages ------------------------------------------------------------------------------------------------------
