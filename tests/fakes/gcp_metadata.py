"""A fake of the three Google endpoints the GCP startup script (infra/gcp/ash_gcp/boot.py) calls, over real HTTP.

- the metadata server's token: ``GET /computeMetadata/v1/instance/service-accounts/default/token`` (only with
  ``Metadata-Flavor: Google``, as the real one);
- Cloud Storage's media download: ``GET /storage/v1/b/BUCKET/o/OBJECT?alt=media``;
- Secret Manager's ``GET /v1/projects/P/secrets/S/versions/latest:access`` (404 with Google's error body when the
  secret is missing).

The last two want the token the first hands out (``Authorization: Bearer ...``), so a script that forgets it fails
here as it would on Google Cloud. Point the script at it with ``metadata_url``, ``storage_url`` and
``secret_manager_url`` (properties of the same names). GCP Secret Manager has no emulator usable here.

Usage::

    with FakeGoogleCloud(host="10.170.0.1", project="p") as google:
        google.secrets["ash-api-key"] = "..."
        google.objects[("bucket", "artifacts/ash.zip")] = archive_bytes
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["FakeGoogleCloud"]


def google_error(code: int, status: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "status": status}}, status_code=code)


class FakeGoogleCloud:
    """Served from a background thread on `host` (a podman network's gateway, so containers reach it)."""

    def __init__(self, *, host: str = "127.0.0.1", project: str = "test-project") -> None:
        self.host = host
        self.project = project
        self.token = f"ya29.fake-{secrets.token_hex(8)}"
        self.secrets: dict[str, str] = {}  # secret id -> the latest version's value
        self.objects: dict[tuple[str, str], bytes] = {}  # (bucket, object name) -> content
        self.requests: list[str] = []  # "METHOD path", for assertions on what was asked
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._app = Starlette(
            routes=[
                Route("/computeMetadata/v1/instance/service-accounts/default/token", self._token),
                Route("/storage/v1/b/{bucket}/o/{name:path}", self._object),
                Route("/v1/projects/{project}/secrets/{secret}/versions/{version}:access", self._access),
            ]
        )

    @property
    def url(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeGoogleCloud is not started")
        return f"http://{self.host}:{self._port}"

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/computeMetadata/v1"

    @property
    def storage_url(self) -> str:
        return self.url

    @property
    def secret_manager_url(self) -> str:
        return f"{self.url}/v1"

    # ------------------------------------------------------------------ endpoints

    async def _token(self, request: Request) -> Response:
        self.requests.append(f"GET {request.url.path}")
        if request.headers.get("metadata-flavor") != "Google":
            return Response("Missing Metadata-Flavor:Google header.", status_code=403)
        return JSONResponse({"access_token": self.token, "expires_in": 3599, "token_type": "Bearer"})

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.token}"

    async def _object(self, request: Request) -> Response:
        self.requests.append(f"GET {request.url.path}")
        if not self._authorized(request):
            return google_error(401, "UNAUTHENTICATED", "Request is missing required authentication credential.")
        if request.query_params.get("alt") != "media":
            return google_error(400, "INVALID_ARGUMENT", "only ?alt=media downloads are faked")
        content = self.objects.get((request.path_params["bucket"], request.path_params["name"]))
        if content is None:
            return google_error(404, "NOT_FOUND", "No such object.")
        return Response(content, media_type="application/octet-stream")

    async def _access(self, request: Request) -> Response:
        self.requests.append(f"GET {request.url.path}")
        if not self._authorized(request):
            return google_error(401, "UNAUTHENTICATED", "Request is missing required authentication credential.")
        project, secret = request.path_params["project"], request.path_params["secret"]
        name = f"projects/{project}/secrets/{secret}"
        if project != self.project or secret not in self.secrets or request.path_params["version"] != "latest":
            return google_error(404, "NOT_FOUND", f"Secret [{name}] not found or has no versions.")
        data = base64.b64encode(self.secrets[secret].encode()).decode()
        return JSONResponse({"name": f"{name}/versions/1", "payload": {"data": data}})

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeGoogleCloud:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        sock.listen(64)
        sock.setblocking(False)
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(self._app, lifespan="off", log_level="warning", access_log=False, loop="none")
        server = uvicorn.Server(config)
        self._server = server
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(server.serve(sockets=[sock]))
            finally:
                sock.close()
                with contextlib.suppress(Exception):
                    loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name=f"fake-google-{self._port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("FakeGoogleCloud did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._thread is None or self._server is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._thread = self._server = self._port = None

    def __enter__(self) -> FakeGoogleCloud:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
