"""Does the model key work? One `count_tokens` call (free, no tokens spent) with the server's own credential, for
`GET /api/model/check` and `ash health --model`. Opt-in: /health itself never calls the model."""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx

from ..credentials import UpstreamAuth

PROBE_MODEL = "claude-haiku-4-5"
PROBE_TIMEOUT = httpx.Timeout(15.0)


@dataclass(frozen=True, slots=True)
class ModelCheck:
    key_configured: bool
    ok: bool
    status: int | None  # the model's HTTP status; None when it was not reached
    error: str | None


async def probe_model(
    upstream_url: str, auth: UpstreamAuth | None, *, transport: httpx.AsyncBaseTransport | None = None
) -> ModelCheck:
    """Any answer but 401/403 means the key was accepted (a 404 for the probe's model name still authenticated)."""
    headers = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
    if auth is not None:
        headers[auth.header] = auth.value
    body = {"model": PROBE_MODEL, "messages": [{"role": "user", "content": "ping"}]}
    url = upstream_url.rstrip("/") + "/v1/messages/count_tokens"
    try:
        async with httpx.AsyncClient(timeout=PROBE_TIMEOUT, transport=transport, trust_env=True) as client:
            response = await client.post(url, headers=headers, content=json.dumps(body))
    except httpx.HTTPError as exc:
        return ModelCheck(auth is not None, False, None, f"model unreachable at {upstream_url}: {exc!r}")
    if response.status_code in (401, 403):
        words = "model authentication failed" if auth is not None else "no model key is set"
        return ModelCheck(auth is not None, False, response.status_code, f"{words}: {_message(response)}")
    return ModelCheck(auth is not None, True, response.status_code, None)


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or f"HTTP {response.status_code}"
