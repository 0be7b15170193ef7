"""A scriptable fake of the Anthropic Messages API for offline tests.

The real Claude Code CLI (driven through ``claude-agent-sdk``) talks to it when ``ANTHROPIC_BASE_URL`` points
at :attr:`FakeAnthropic.url`. Give the CLI ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`` (so it only calls
``POST /v1/messages``) and ``CLAUDE_CODE_MAX_RETRIES=0`` (so scripted errors surface at once).

Usage::

    with FakeAnthropic() as fake:
        fake.on("write the file", [tool_use("Bash", {"command": "echo hi > out.txt"}), text("I wrote it.")])
        fake.on("hello", text("Hello there, friend!", chunks=4))
        fake.on("boom", api_error(500, "overloaded_error", "upstream exploded"))
        fake.default = text("ok")
        ...  # run the CLI with ANTHROPIC_BASE_URL=fake.url

Rules are matched against the *prompt* of a request (see :meth:`FakeAnthropic.prompt_of`). A rule holds a list
of replies; which one is sent depends only on the request body (see :meth:`FakeAnthropic.reply_index`), so the
fake is stateless across CLI restarts and resumed conversations.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, TypeAlias

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

__all__ = [
    "FakeAnthropic",
    "Matcher",
    "Reply",
    "api_error",
    "echo",
    "text",
    "tool_use",
]

JSONDict: TypeAlias = dict[str, Any]
Matcher: TypeAlias = str | Callable[[str], bool]
ReplyKind: TypeAlias = Literal["text", "tool_use", "error", "echo"]

_SYSTEM_REMINDER = re.compile(r"<system-reminder>.*?(?:</system-reminder>|\Z)", re.DOTALL)
# Markers the CLI itself inserts as user text; they are not something the user typed.
_CLI_MARKERS = ("[Request interrupted by user",)
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]


@dataclass(frozen=True)
class Reply:
    """One scripted model reply; build it with text(), tool_use(), api_error() or echo()."""

    kind: ReplyKind
    text: str = ""
    chunks: int = 1
    delay: float = 0.0
    tool_name: str = ""
    tool_input: JSONDict = field(default_factory=dict)
    tool_id: str | None = None
    preamble: str | None = None
    status: int = 200
    error_type: str = ""
    error_message: str = ""
    should_retry: str | None = "false"

    @property
    def is_text(self) -> bool:
        return self.kind in ("text", "echo")


def text(s: str, chunks: int = 1, delay: float = 0.0) -> Reply:
    """A text reply streamed as ``chunks`` ``text_delta`` events, ``delay`` seconds apart."""
    if chunks < 1:
        raise ValueError("chunks must be >= 1")
    if delay < 0:
        raise ValueError("delay must be >= 0")
    return Reply(kind="text", text=s, chunks=chunks, delay=delay)


def tool_use(name: str, input: JSONDict, id: str | None = None, preamble: str | None = None) -> Reply:
    """A reply with one ``tool_use`` block (optionally after a text block); stop_reason ``tool_use``."""
    return Reply(kind="tool_use", tool_name=name, tool_input=dict(input), tool_id=id, preamble=preamble)


def api_error(status: int, type: str, message: str, *, should_retry: str | None = "false") -> Reply:
    """An HTTP error answered with the Anthropic error body ``{"type": "error", "error": {...}}``.
    ``should_retry``: its ``x-should-retry`` header, None for none (as the real API answers a wrong key)."""
    if status < 400:
        raise ValueError("api_error status must be >= 400")
    return Reply(kind="error", status=status, error_type=type, error_message=message, should_retry=should_retry)


def echo(chunks: int = 1) -> Reply:
    """A text reply whose text is a JSON summary of the request (user_texts, system, model, ...)."""
    return Reply(kind="echo", chunks=max(1, chunks))


@dataclass(frozen=True)
class _Block:
    type: Literal["text", "tool_use"]
    text: str = ""
    tool_id: str = ""
    name: str = ""
    input: JSONDict = field(default_factory=dict)


@dataclass(frozen=True)
class _Rule:
    matcher: Matcher
    replies: tuple[Reply, ...]

    def matches(self, prompt: str) -> bool:
        if isinstance(self.matcher, str):
            return self.matcher in prompt
        return bool(self.matcher(prompt))


def _real_text(raw: str) -> str:
    """The part of a user text the user actually wrote: system reminders and CLI markers removed."""
    cleaned = _SYSTEM_REMINDER.sub("", raw).strip()
    if any(cleaned.startswith(marker) for marker in _CLI_MARKERS):
        return ""
    return cleaned


def _message_texts(message: JSONDict) -> list[str]:
    """Real user texts of one message (empty for tool_result-only or reminder-only messages)."""
    content = message.get("content")
    raws: list[str] = []
    if isinstance(content, str):
        raws.append(content)
    elif isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str):
                raws.append(block["text"])
    return [t for t in (_real_text(r) for r in raws) if t]


def _messages(body: JSONDict) -> list[JSONDict]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [m for m in messages if isinstance(m, dict)]


def _system_text(body: JSONDict) -> str:
    system = body.get("system")
    if isinstance(system, str):
        return system
    if isinstance(system, list):
        return "\n".join(b["text"] for b in system if isinstance(b, dict) and isinstance(b.get("text"), str))
    return ""


def _split(s: str, n: int) -> list[str]:
    """Split ``s`` into at most ``n`` non-empty, nearly equal pieces."""
    if not s:
        return []
    n = max(1, min(n, len(s)))
    size, extra = divmod(len(s), n)
    pieces: list[str] = []
    start = 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        pieces.append(s[start:end])
        start = end
    return pieces


def _sse(event: str, data: JSONDict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class FakeAnthropic:
    """A fake ``POST /v1/messages`` endpoint served on 127.0.0.1 from a background thread."""

    def __init__(self, default: Reply | None = None, *, host: str = "127.0.0.1", api_key: str | None = None) -> None:
        """`host`: the address to serve on (multi-machine tests use a bridge address other namespaces reach).
        `api_key`: when set, a request with another `x-api-key` gets the real API's 401 (no `x-should-retry`)."""
        self.host = host
        self.api_key = api_key
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._default: Reply = default if default is not None else text("ok")
        self._log: list[JSONDict] = []
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._port: int | None = None
        self._startup_error: BaseException | None = None
        self._app = Starlette(
            routes=[Route("/{path:path}", self._handle, methods=_ALL_METHODS)],
        )

    # ------------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeAnthropic is not started")
        return f"http://{self.host}:{self._port}"

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeAnthropic is not started")
        return self._port

    def start(self) -> FakeAnthropic:
        if self._thread is not None:
            raise RuntimeError("FakeAnthropic already started")
        # IPPROTO_TCP named explicitly: asyncio disables Nagle (TCP_NODELAY) only on connections accepted from a
        # socket whose proto says TCP; with proto 0 every streamed reply stalled ~40 ms on the client's delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        sock.listen(128)
        sock.setblocking(False)
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            loop="none",
            timeout_graceful_shutdown=2,
            timeout_keep_alive=5,
        )
        server = uvicorn.Server(config)
        self._server = server
        loop = asyncio.new_event_loop()
        self._loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve(server, sock))
            except BaseException as exc:  # surfaced by start() or stop()
                self._startup_error = exc
            finally:
                sock.close()
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name=f"fake-anthropic-{self._port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive():
                self._thread = None
                raise RuntimeError("FakeAnthropic failed to start") from self._startup_error
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("FakeAnthropic did not start within 10 s")
            time.sleep(0.002)
        return self

    async def _serve(self, server: uvicorn.Server, sock: socket.socket) -> None:
        self._stopping = asyncio.Event()
        await server.serve(sockets=[sock])

    def stop(self) -> None:
        """Stop serving, cut any in-flight slow stream short, join the thread and free the port."""
        thread, server, loop = self._thread, self._server, self._loop
        if thread is None or server is None or loop is None:
            return
        server.should_exit = True
        stopping = self._stopping
        if stopping is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=10)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        self._thread = None
        self._server = None
        self._loop = None
        self._stopping = None
        self._port = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ scripting

    def on(self, matcher: Matcher, reply: Reply | Sequence[Reply]) -> None:
        """Answer requests whose prompt contains ``matcher`` (or satisfies it, if callable) with ``reply``.

        A list of replies is consumed one per model call of the same prompt (see :meth:`reply_index`).
        The first registered matching rule wins.
        """
        replies = (reply,) if isinstance(reply, Reply) else tuple(reply)
        if not replies:
            raise ValueError("at least one reply is needed")
        if not all(isinstance(r, Reply) for r in replies):
            raise TypeError("replies must be Reply objects (use text(), tool_use(), api_error(), echo())")
        with self._lock:
            self._rules.append(_Rule(matcher, replies))

    @property
    def default(self) -> Reply:
        with self._lock:
            return self._default

    @default.setter
    def default(self, reply: Reply) -> None:
        with self._lock:
            self._default = reply

    def reset(self) -> None:
        """Forget all rules and recorded requests (the default reply is kept)."""
        with self._lock:
            self._rules.clear()
            self._log.clear()

    # ------------------------------------------------------------------ inspection

    @property
    def request_log(self) -> list[JSONDict]:
        """``{path, query, headers, body, status, completed, response_body}`` per request to any path, in order.

        ``headers`` has lowercased names; ``completed`` turns True once the whole response was sent (it stays
        False when the client went away in the middle of a stream); ``response_body`` holds the body bytes sent
        so far (a relay can be checked byte for byte against it).
        """
        with self._lock:
            return list(self._log)

    @property
    def requests(self) -> list[JSONDict]:
        """Bodies of the ``/v1/messages`` requests, in arrival order."""
        with self._lock:
            return [e["body"] for e in self._log if e["messages_endpoint"]]

    def requests_with_prompt(self, substr: str) -> list[JSONDict]:
        return [b for b in self.requests if substr in self.prompt_of(b)]

    @staticmethod
    def user_texts(body: JSONDict) -> list[str]:
        """Every real user text block of the request's messages, in order (reminders/tool results skipped)."""
        texts: list[str] = []
        for message in _messages(body):
            if message.get("role") == "user":
                texts.extend(_message_texts(message))
        return texts

    @staticmethod
    def _last_prompt_index(body: JSONDict) -> int | None:
        messages = _messages(body)
        for i in range(len(messages) - 1, -1, -1):
            if messages[i].get("role") == "user" and _message_texts(messages[i]):
                return i
        return None

    @classmethod
    def prompt_of(cls, body: JSONDict) -> str:
        """The text of the last ``role:"user"`` message that carries real text ("" if none).

        ``<system-reminder>`` blocks, tool_result-only messages and ``role:"system"`` entries are skipped;
        several real text blocks of that message are joined with newlines.
        """
        i = cls._last_prompt_index(body)
        if i is None:
            return ""
        return "\n".join(_message_texts(_messages(body)[i]))

    @classmethod
    def reply_index(cls, body: JSONDict) -> int:
        """How many assistant turns follow the prompt message (consecutive assistant messages count once)."""
        i = cls._last_prompt_index(body)
        messages = _messages(body)[(i + 1 if i is not None else 0) :]
        count = 0
        previous = ""
        for message in messages:
            role = message.get("role")
            if role not in ("user", "assistant"):
                continue
            if role == "assistant" and previous != "assistant":
                count += 1
            previous = str(role)
        return count

    def reply_for(self, body: JSONDict) -> Reply:
        """The reply the fake sends for this request body."""
        prompt = self.prompt_of(body)
        with self._lock:
            rules = list(self._rules)
            default = self._default
        for rule in rules:
            if rule.matches(prompt):
                index = self.reply_index(body)
                if index < len(rule.replies):
                    return rule.replies[index]
                for reply in reversed(rule.replies):
                    if reply.is_text:
                        return reply
                return default
        return default

    # ------------------------------------------------------------------ HTTP

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        is_messages = request.method == "POST" and path.endswith("/v1/messages")
        raw = await request.body()
        body: Any
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        entry: JSONDict = {
            "method": request.method,
            "path": path,
            "query": request.url.query,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body,
            "messages_endpoint": is_messages and isinstance(body, dict),
            "status": 0,
            "completed": False,
            "response_body": b"",
        }
        with self._lock:
            self._log.append(entry)

        if self.api_key is not None and entry["headers"].get("x-api-key") != self.api_key:
            return self._error_response(entry, 401, "authentication_error", "invalid x-api-key", should_retry=None)
        if request.method == "POST" and path.endswith("/v1/messages/count_tokens") and isinstance(body, dict):
            counted = JSONResponse({"input_tokens": len(_messages(body)) * 10})
            entry.update(status=200, completed=True, response_body=bytes(counted.body))
            return counted
        if not is_messages:
            return self._error_response(entry, 404, "not_found_error", f"Not found: {request.method} {path}")
        if not isinstance(body, dict):
            return self._error_response(entry, 400, "invalid_request_error", "request body is not a JSON object")

        reply = self.reply_for(body)
        if reply.kind == "error":
            return self._error_response(
                entry, reply.status, reply.error_type, reply.error_message, should_retry=reply.should_retry
            )

        blocks = self._render(reply, body)
        model = str(body.get("model", "claude-fake"))
        input_tokens = len(_messages(body)) * 10
        output_tokens = sum(len(b.text) if b.type == "text" else len(json.dumps(b.input)) for b in blocks)
        output_tokens = output_tokens // 4 + 1
        stop_reason = "tool_use" if any(b.type == "tool_use" for b in blocks) else "end_turn"
        message_id = f"msg_fake_{uuid.uuid4().hex[:24]}"
        entry["status"] = 200
        headers = {"request-id": f"req_fake_{uuid.uuid4().hex[:24]}"}

        if not body.get("stream"):
            entry["completed"] = True
            response = JSONResponse(
                {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [self._block_json(b, final=True) for b in blocks],
                    "stop_reason": stop_reason,
                    "stop_sequence": None,
                    "usage": self._usage(input_tokens, output_tokens),
                },
                headers=headers,
            )
            entry["response_body"] = bytes(response.body)
            return response

        chunks = reply.chunks
        delay = reply.delay

        async def events() -> AsyncIterator[bytes]:
            start_usage = self._usage(input_tokens, 1)
            yield _sse(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": message_id,
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": start_usage,
                    },
                },
            )
            yield _sse("ping", {"type": "ping"})
            for index, block in enumerate(blocks):
                yield _sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": self._block_json(block)},
                )
                if block.type == "text":
                    pieces = _split(block.text, chunks)
                    deltas: Iterator[JSONDict] = ({"type": "text_delta", "text": p} for p in pieces)
                    slow = delay > 0
                else:
                    pieces = _split(json.dumps(block.input), 3)
                    deltas = ({"type": "input_json_delta", "partial_json": p} for p in ["", *pieces])
                    slow = False
                for n, delta in enumerate(deltas):
                    if slow and n > 0 and not await self._sleep(delay):
                        return  # server is stopping: cut the stream short
                    yield _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
                yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
            yield _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": self._usage(input_tokens, output_tokens),
                },
            )
            yield _sse("message_stop", {"type": "message_stop"})
            entry["completed"] = True

        async def recorded() -> AsyncIterator[bytes]:
            async for chunk in events():
                entry["response_body"] += chunk
                yield chunk

        return StreamingResponse(
            recorded(),
            media_type="text/event-stream",
            headers={**headers, "cache-control": "no-cache"},
        )

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless the server stops first; returns False if it is stopping."""
        stopping = self._stopping
        if stopping is None:
            await asyncio.sleep(seconds)
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=seconds)
        return not stopping.is_set()

    def _render(self, reply: Reply, body: JSONDict) -> list[_Block]:
        if reply.kind == "text":
            return [_Block("text", text=reply.text)]
        if reply.kind == "echo":
            summary = {
                "user_texts": self.user_texts(body),
                "system": _system_text(body),
                "model": body.get("model"),
                "max_tokens": body.get("max_tokens"),
                "n_messages": len(_messages(body)),
            }
            return [_Block("text", text=json.dumps(summary))]
        blocks: list[_Block] = []
        if reply.preamble:
            blocks.append(_Block("text", text=reply.preamble))
        tool_id = reply.tool_id or f"toolu_fake_{uuid.uuid4().hex[:20]}"
        blocks.append(_Block("tool_use", tool_id=tool_id, name=reply.tool_name, input=reply.tool_input))
        return blocks

    @staticmethod
    def _block_json(block: _Block, final: bool = False) -> JSONDict:
        if block.type == "text":
            return {"type": "text", "text": block.text if final else ""}
        return {
            "type": "tool_use",
            "id": block.tool_id,
            "name": block.name,
            "input": block.input if final else {},
        }

    @staticmethod
    def _usage(input_tokens: int, output_tokens: int) -> JSONDict:
        return {
            "input_tokens": input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output_tokens,
        }

    @staticmethod
    def _error_response(
        entry: JSONDict, status: int, error_type: str, message: str, *, should_retry: str | None = "false"
    ) -> JSONResponse:
        entry["status"] = status
        entry["completed"] = True
        headers = {"request-id": f"req_fake_{uuid.uuid4().hex[:24]}"}
        if should_retry is not None:
            headers["x-should-retry"] = should_retry
        response = JSONResponse(
            {"type": "error", "error": {"type": error_type, "message": message}}, status_code=status, headers=headers
        )
        entry["response_body"] = bytes(response.body)
        return response
