"""Deploys as the reference takes them, without its hazards: `{name}` alone and files without CLAUDE.md get a
placeholder CLAUDE.md, a relative path resolves under the first deploy root, and a path deploy that would copy the
data dir into itself, exceed the caps or follow a symlink loop is a clear 4xx, decided off the event loop: a
concurrent probe sees `/health` answer within 100 ms throughout."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.support.server import AshServer, short_tempdir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(fake_model: FakeAnthropic) -> Iterator[AshServer]:
    with AshServer(fake_model.url, env={"ASH_MAX_AGENT_FILES": "5000"}) as server:
        yield server


@pytest.fixture
def client(server: AshServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.api_key}"}, timeout=120) as c:
        yield c


@pytest.fixture
def folder() -> Iterator[Path]:
    path = short_tempdir()
    (path / "CLAUDE.md").write_text("You are a test agent.")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class HealthProbe:
    """GET /health every 20 ms on its own connection; the slowest answer is what the event loop allowed."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as probe:
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    ok = probe.get(self.url + "/health").status_code == 200
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    ok = True
                self.latencies.append(time.perf_counter() - started)
                if not ok:
                    self.failures.append("status")
                self._stop.wait(0.02)

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        while not self.latencies and self._thread.is_alive():  # the probe is running before the deploy starts
            time.sleep(0.005)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def assert_refused_while_healthy(
    server: AshServer, client: httpx.Client, body: dict[str, str], status: int, says: str
) -> None:
    with HealthProbe(server.url) as probe:
        response = client.post("/api/agents", json=body)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "statusCode"} and says in response.json()["error"]
    assert not probe.failures and len(probe.latencies) >= 1
    assert max(probe.latencies) < 0.1, f"/health took {max(probe.latencies) * 1000:.0f} ms during the deploy"


def test_a_name_alone_gets_a_placeholder_claude_md(client: httpx.Client) -> None:
    created = client.post("/api/agents", json={"name": "bare"})
    assert created.status_code == 201, created.text
    assert client.get("/api/agents/bare/files/CLAUDE.md").json()["content"] == "# bare\n"
    uploaded = client.post("/api/agents", json={"name": "no-prompt", "files": [{"path": "a.txt", "content": "YQ=="}]})
    assert uploaded.status_code == 201, uploaded.text
    paths = {f["path"] for f in client.get("/api/agents/no-prompt/files").json()["files"]}
    assert {"a.txt", "CLAUDE.md"} <= paths


def test_a_relative_path_resolves_under_the_first_root(client: httpx.Client) -> None:
    # The test server's first ASH_AGENT_ROOTS entry is the repository's examples/ folder.
    created = client.post("/api/agents", json={"name": "relative", "path": "hello-agent"})
    assert created.status_code == 201, created.text
    assert created.json()["agent"]["path"].endswith("examples/hello-agent")
    assert client.post("/api/agents", json={"name": "up", "path": "../server"}).status_code == 400


def test_a_folder_holding_the_data_dir_is_refused(server: AshServer, client: httpx.Client) -> None:
    assert server.root is not None and server.data_dir.is_relative_to(server.root)
    (server.root / "CLAUDE.md").write_text("A folder that looks like an agent but holds the server's data.")
    assert_refused_while_healthy(server, client, {"name": "home", "path": str(server.root)}, 400, "data dir")
    inside = {"name": "inside", "path": str(server.data_dir / "agents")}
    assert client.post("/api/agents", json=inside).status_code == 400


def test_a_folder_over_the_file_cap_is_413_and_health_stays_fast(
    server: AshServer, client: httpx.Client, folder: Path
) -> None:
    for i in range(20):
        sub = folder / f"d{i}"
        sub.mkdir()
        for j in range(1000):
            (sub / f"f{j}").touch()
    body = {"name": "huge", "path": str(folder)}
    assert_refused_while_healthy(server, client, body, 413, "5000")
    assert client.get("/api/agents/huge").status_code == 404


def test_a_big_folder_within_the_caps_deploys_off_the_event_loop(
    server: AshServer, client: httpx.Client, folder: Path
) -> None:
    for i in range(4):
        sub = folder / f"d{i}"
        sub.mkdir()
        for j in range(1000):
            (sub / f"f{j}.txt").write_text(f"file {i}/{j}\n" * 20)
    with HealthProbe(server.url) as probe:
        created = client.post("/api/agents", json={"name": "big", "path": str(folder)})
    assert created.status_code == 201, created.text
    assert not probe.failures and max(probe.latencies) < 0.1, f"{max(probe.latencies) * 1000:.0f} ms"
    assert client.get("/api/agents/big/files/d3/f999.txt").json()["content"].startswith("file 3/999")


def test_a_symlink_loop_or_a_link_out_is_refused(server: AshServer, client: httpx.Client, folder: Path) -> None:
    os.symlink(folder / "b", folder / "a")
    os.symlink(folder / "a", folder / "b")
    assert_refused_while_healthy(server, client, {"name": "loop", "path": str(folder)}, 400, "loops")
    (folder / "a").unlink()
    (folder / "b").unlink()
    os.symlink("/etc", folder / "out")
    refused = client.post("/api/agents", json={"name": "out", "path": str(folder)})
    assert refused.status_code == 400 and "outside" in refused.json()["error"]
    (folder / "out").unlink()
    os.symlink("CLAUDE.md", folder / "inside")
    assert client.post("/api/agents", json={"name": "inside-link", "path": str(folder)}).status_code == 201


def test_a_folder_without_claude_md_is_refused_before_copying(client: httpx.Client, folder: Path) -> None:
    (folder / "CLAUDE.md").unlink()
    refused = client.post("/api/agents", json={"name": "empty", "path": str(folder)})
    assert refused.status_code == 400 and refused.json()["error"].startswith("Agent directory must contain CLAUDE.md")


@pytest.mark.parametrize(
    "secret", [".ssh/id_ed25519", ".env", "config/.env.production", ".aws/credentials", "certs/server.pem", ".ash/x"]
)
def test_a_folder_holding_a_secret_bearing_name_is_refused(client: httpx.Client, folder: Path, secret: str) -> None:
    """Even inside an allowed root: a home folder (or a project's) holds its secrets under these names."""
    path = folder / secret
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    refused = client.post("/api/agents", json={"name": "leaky", "path": str(folder)})
    assert refused.status_code == 400, refused.text
    first = secret.split("/")[0] if secret.startswith((".ssh", ".aws", ".ash")) else secret
    assert refused.json()["error"].startswith(f"{first} looks like a secret"), refused.text
    assert client.get("/api/agents/leaky").status_code == 404
    uploaded = client.post(  # the tenant's own files, uploaded, may hold what it likes
        "/api/agents",
        json={"name": "uploaded-env", "files": [{"path": ".env.example", "content": "QT0x"}]},
    )
    assert uploaded.status_code == 201, uploaded.text


def test_a_template_of_a_secret_is_not_one(client: httpx.Client, folder: Path) -> None:
    (folder / ".env.example").write_text("API_KEY=\n")
    created = client.post("/api/agents", json={"name": "templated", "path": str(folder)})
    assert created.status_code == 201, created.text


def test_only_the_tenants_the_operator_names_deploy_by_path(fake_model: FakeAnthropic, folder: Path) -> None:
    """The default: the operator's tenant only; another tenant gets 403 (and may upload). With
    ASH_PATH_DEPLOY_TENANTS naming it, it may."""
    for allowed, status in ((None, 403), ("default,tenant-b", 201)):
        env = {} if allowed is None else {"ASH_PATH_DEPLOY_TENANTS": allowed}
        with AshServer(fake_model.url, env=env) as server:
            key_b = server.admin("create-tenant", "tenant-b")["key"]
            headers = {"Authorization": f"Bearer {key_b}"}
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as b:
                by_path = b.post("/api/agents", json={"name": "b-agent", "path": str(folder)})
                assert by_path.status_code == status, by_path.text
                if status == 403:
                    assert "ASH_PATH_DEPLOY_TENANTS" in by_path.json()["error"]
                    files = [{"path": "CLAUDE.md", "content": "QiBhZ2VudA=="}]
                    assert b.post("/api/agents", json={"name": "b-agent", "files": files}).status_code == 201
            with server.client() as a:
                assert a.post("/api/agents", json={"name": "a-agent", "path": str(folder)}).status_code == 201
