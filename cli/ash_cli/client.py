"""A thin, typed HTTP client for the Ash REST API and its SSE message stream.

It depends on httpx and the standard library only: a client must install without FastAPI or SQLAlchemy.

    with AshClient("http://127.0.0.1:4100", api_key) as ash:
        session = ash.create_session("hello-agent")
        for event, data in ash.send_message_stream(session["id"], "hello"):
            ...
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, cast
from urllib.parse import quote

import httpx

from . import errors
from .errors import *  # noqa: F403  (the errors are the client's too: `from ash_cli.client import NotFoundError`)
from .errors import AshClientError, ConnectionFailed, ConnectionLost, ProtocolError, RequestTimedOut, status_error
from .models import Agent, AgentVersion, Health, Message, Session
from .sse import iter_events

__all__ = [
    "DEFAULT_TIMEOUT",
    "Agent",
    "AgentVersion",
    "AshClient",
    "Health",
    "Message",
    "Session",
    *(name for name in errors.__all__ if name not in ("CliError", "status_error")),
]

# Creating a session starts a sandbox (seconds, up to the server's bridge start timeout), hence the long read.
DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=5.0)
MessageContent = str | list[dict[str, Any]]


class AshClient:
    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Accept": "application/json", "User-Agent": "ash-cli"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=self._timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AshClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- health -----------------------------------------------------------------------------------------------

    def health(self, *, timeout: float | None = None) -> Health:
        return cast(Health, self._request("GET", "/health", timeout=timeout))

    def check_model(self) -> dict[str, Any]:
        """`{keyConfigured, ok, status, error}`: one free `count_tokens` call with the server's model key."""
        return self._request("GET", "/api/model/check")

    # -- runners (coordinator mode) -----------------------------------------------------------------------------

    def list_runners(self) -> list[dict[str, Any]]:
        return cast(list[dict[str, Any]], self._field(self._request("GET", "/api/internal/runners"), "runners"))

    # -- queue ------------------------------------------------------------------------------------------------

    def queue(self, method: str, path: str = "", field: str = "item", **kwargs: Any) -> Any:
        """One call of /api/queue (enqueue, list, stats, get, cancel) and its `field`."""
        return self._field(self._request(method, "/api/queue" + path, **kwargs), field)

    # -- agents -----------------------------------------------------------------------------------------------

    def deploy_agent(
        self,
        name: str,
        files: Iterable[tuple[str, bytes]] | None = None,
        *,
        path: str | None = None,
        system_prompt: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Agent:
        """Deploy (or re-deploy, bumping the version) from uploaded `(relative posix path, bytes)` files or a server
        `path`."""
        body: dict[str, Any] = {"name": name}
        if files is not None:
            body["files"] = [{"path": p, "content": base64.b64encode(data).decode("ascii")} for p, data in files]
        if path is not None:
            body["path"] = path
        if system_prompt is not None:
            body["systemPrompt"] = system_prompt
        if env is not None:
            body["env"] = dict(env)
        return cast(Agent, self._field(self._request("POST", "/api/agents", json=body), "agent"))

    def list_agents(self) -> list[Agent]:
        return cast(list[Agent], self._field(self._request("GET", "/api/agents"), "agents"))

    def get_agent(self, name: str) -> Agent:
        return cast(Agent, self._field(self._request("GET", f"/api/agents/{_seg(name)}"), "agent"))

    def delete_agent(self, name: str) -> None:
        self._request("DELETE", f"/api/agents/{_seg(name)}")

    def list_agent_versions(self, name: str) -> list[AgentVersion]:
        body = self._request("GET", f"/api/agents/{_seg(name)}/versions")
        return cast(list[AgentVersion], self._field(body, "versions"))

    def activate_agent_version(self, name: str, version: int | str) -> int:
        """Make `version` (number or id) the one new sessions run; the number activated."""
        body = self._request("POST", f"/api/agents/{_seg(name)}/versions/{_seg(str(version))}/activate")
        return int(self._field(body, "versionNumber"))

    # -- sessions ---------------------------------------------------------------------------------------------

    def create_session(self, agent: str, *, model: str | None = None, **options: Any) -> Session:
        """Create a session; `options` are further camelCase fields of the request (`systemPrompt`, ...)."""
        body: dict[str, Any] = {"agent": agent, **options}
        if model is not None:
            body["model"] = model
        return cast(Session, self._field(self._request("POST", "/api/sessions", json=body), "session"))

    def list_sessions(
        self,
        *,
        agent: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> list[Session]:
        query = {"agent": agent, "status": status, "limit": limit, "offset": offset}
        body = self._request("GET", "/api/sessions", params={k: v for k, v in query.items() if v is not None})
        return cast(list[Session], self._field(body, "sessions"))

    def get_session(self, session_id: str) -> Session:
        return self._session("GET", f"/api/sessions/{_seg(session_id)}")

    def pause_session(self, session_id: str) -> Session:
        return self._session("POST", f"/api/sessions/{_seg(session_id)}/pause")

    def resume_session(self, session_id: str) -> Session:
        return self._session("POST", f"/api/sessions/{_seg(session_id)}/resume")

    def stop_session(self, session_id: str) -> Session:
        return self._session("POST", f"/api/sessions/{_seg(session_id)}/stop")

    def end_session(self, session_id: str) -> Session:
        return self._session("DELETE", f"/api/sessions/{_seg(session_id)}")

    def fork_session(self, session_id: str) -> Session:
        """A paused copy of the session (workspace, transcript, history); resume it to continue from there."""
        return self._session("POST", f"/api/sessions/{_seg(session_id)}/fork")

    def interrupt(self, session_id: str) -> bool:
        """End the running turn (it ends with `error` and `done`); False when no turn was running."""
        return bool(self._field(self._request("POST", f"/api/sessions/{_seg(session_id)}/interrupt"), "interrupted"))

    def list_files(self, session_id: str, *, include_hidden: bool = True) -> dict[str, Any]:
        """`{files: [{path, size, modifiedAt}], source: sandbox|snapshot}`."""
        params = {"includeHidden": "true" if include_hidden else "false"}
        return self._request("GET", f"/api/sessions/{_seg(session_id)}/files", params=params)

    def read_file(self, session_id: str, path: str) -> bytes:
        """A workspace file's bytes, as they are."""
        url = f"/api/sessions/{_seg(session_id)}/files/{quote(path.lstrip('/'), safe='/')}"
        try:
            response = self._http.get(url, params={"format": "raw"}, headers={"Accept": "application/octet-stream"})
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        if not response.is_success:
            raise status_error(response.status_code, _error_message(response))
        return response.content

    def exec(self, session_id: str, command: str, *, timeout_ms: int | None = None) -> dict[str, Any]:
        """Run `bash -c command` in the session's live sandbox: `{exitCode, stdout, stderr, timedOut, truncated}`."""
        body: dict[str, Any] = {"command": command}
        wait = None
        if timeout_ms is not None:
            body["timeout"] = timeout_ms
            wait = max(self._timeout.read or 0.0, timeout_ms / 1000 + 30)  # the command's time, and the answer's
        return self._request("POST", f"/api/sessions/{_seg(session_id)}/exec", json=body, timeout=wait)

    def follow_session(
        self, session_id: str, *, last_event_id: str | None = None, include_partial: bool = True
    ) -> Iterator[tuple[str, Any, str | None]]:
        """Re-attach to a session's stream and keep following its turns: `(event, data, id)` until closed.

        Frames after `last_event_id` are replayed first (without it: the running turn from its start, or the latest
        turn). The server keeps the stream open between turns (`follow=true`), sending keepalives.
        """
        params = {"includePartialMessages": "true" if include_partial else "false", "follow": "true"}
        headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
        url = f"/api/sessions/{_seg(session_id)}/stream"
        yield from self._event_stream("GET", url, params=params, headers=headers)

    def list_messages(self, session_id: str, *, limit: int | None = None, after: int | None = None) -> list[Message]:
        params = {k: v for k, v in {"limit": limit, "after": after}.items() if v is not None}
        body = self._request("GET", f"/api/sessions/{_seg(session_id)}/messages", params=params)
        return cast(list[Message], self._field(body, "messages"))

    def send_message_stream(
        self,
        session_id: str,
        content: MessageContent,
        include_partial: bool = True,
        **options: Any,
    ) -> Iterator[tuple[str, Any]]:
        """Send a message and yield the turn as `(event, data)` pairs, `data` decoded from JSON.

        A generator: nothing is sent until it is iterated, and HTTP errors are raised from the first `next()`.
        `options` are further camelCase fields of the request (`model`, `maxTurns`, ...).
        """
        body: dict[str, Any] = {"content": content, "includePartialMessages": include_partial, **options}
        url = f"/api/sessions/{_seg(session_id)}/messages"
        for event, data, _ in self._event_stream("POST", url, json=body):
            yield event, data

    def _event_stream(
        self, method: str, url: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> Iterator[tuple[str, Any, str | None]]:
        """An SSE response as `(event, data, id)`; HTTP errors raised as the client's error classes."""
        # A turn may run for minutes with nothing to say (a long tool call): no read timeout on the stream.
        timeout = httpx.Timeout(self._timeout.connect, connect=self._timeout.connect, read=None)
        headers = {"Accept": "text/event-stream", **(headers or {})}
        try:
            with self._http.stream(method, url, headers=headers, timeout=timeout, **kwargs) as response:
                if not response.is_success:
                    response.read()
                    raise status_error(response.status_code, _error_message(response))
                for sse in iter_events(response.iter_lines()):
                    try:
                        data = json.loads(sse.data)
                    except json.JSONDecodeError as exc:
                        raise ProtocolError(f"event {sse.event!r} carries invalid JSON: {sse.data[:200]!r}") from exc
                    yield sse.event, data, sse.id
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc

    # -- plumbing ---------------------------------------------------------------------------------------------

    def _session(self, method: str, path: str) -> Session:
        return cast(Session, self._field(self._request(method, path), "session"))

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        try:
            response = self._http.request(
                method,
                path,
                json=json,
                params=dict(params) if params else None,
                timeout=self._timeout if timeout is None else httpx.Timeout(timeout),
            )
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        if not response.is_success:
            raise status_error(response.status_code, _error_message(response))
        try:
            body = response.json()
        except ValueError as exc:
            raise ProtocolError(f"{method} {path}: the response is not JSON ({response.text[:200]!r})") from exc
        if not isinstance(body, dict):
            raise ProtocolError(f"{method} {path}: expected a JSON object, got {type(body).__name__}")
        return body

    @staticmethod
    def _field(body: dict[str, Any], name: str) -> Any:
        if name not in body:
            raise ProtocolError(f"the response has no {name!r} field")
        return body[name]

    def _transport_error(self, exc: httpx.HTTPError) -> AshClientError:
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            return ConnectionFailed(f"cannot connect to {self.base_url}: {exc}", url=self.base_url)
        if isinstance(exc, httpx.TimeoutException):
            return RequestTimedOut(f"{self.base_url} did not answer in time", url=self.base_url)
        if isinstance(exc, httpx.TransportError):
            return ConnectionLost(f"the connection to {self.base_url} was lost: {exc}", url=self.base_url)
        return AshClientError(f"request to {self.base_url} failed: {exc}")


def _seg(value: str) -> str:
    """One URL path segment: a name or id typed by a user must not turn into another path."""
    return quote(value, safe="")


def _error_message(response: httpx.Response) -> str:
    """The `error` of the `{error, statusCode}` envelope, or the best the body offers."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        if isinstance(body.get("error"), str):
            return str(body["error"])
        if "detail" in body:
            return str(body["detail"])
    text = response.text.strip()
    return text[:300] if text else f"HTTP {response.status_code} {response.reason_phrase}".strip()
