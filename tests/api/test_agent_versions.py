"""Agent versions and agent file writes through the API on a real server, on both engines: every deploy and every
file write is a numbered version holding its files; sessions pin the version they started on; activating an older
version rolls back; a version once active keeps its files; tenants see only their own; everything survives a restart,
even with the server's copy of the agent gone (the files come back from the database)."""

from __future__ import annotations

import base64
import shutil
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.postgres import PostgresCluster
from tests.support.server import AshServer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, fake_model: FakeAnthropic) -> Iterator[AshServer]:
    database_url = None
    if request.param == "postgresql":
        postgres: PostgresCluster = request.getfixturevalue("postgres")
        database_url = postgres.database()
    with AshServer(fake_model.url, database_url=database_url) as server:
        yield server


@pytest.fixture
def client(server: AshServer) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def b64(data: str) -> str:
    return base64.b64encode(data.encode()).decode()


def deploy(client: httpx.Client, name: str, prompt: str, **files: str) -> dict[str, Any]:
    uploads = [{"path": "CLAUDE.md", "content": b64(prompt)}]
    uploads += [{"path": path.replace("__", "/"), "content": b64(body)} for path, body in files.items()]
    response = client.post("/api/agents", json={"name": name, "files": uploads})
    assert response.status_code == 201, response.text
    agent: dict[str, Any] = response.json()["agent"]
    return agent


def versions(client: httpx.Client, name: str) -> list[dict[str, Any]]:
    response = client.get(f"/api/agents/{name}/versions")
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()["versions"]
    return listed


def session_file(client: httpx.Client, name: str, path: str = "CLAUDE.md") -> tuple[int, str]:
    """A new session of the agent: its version and the file as its workspace holds it."""
    created = client.post("/api/sessions", json={"agent": name})
    assert created.status_code == 201, created.text
    session = created.json()["session"]
    got = client.get(f"/api/sessions/{session['id']}/files/{path}", params={"format": "raw"})
    assert got.status_code == 200, got.text
    return session["agentVersion"], got.text


def assert_error(response: httpx.Response, status: int, says: str = "") -> None:
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "statusCode"} and says in response.json()["error"], response.text


def test_every_deploy_is_a_version_and_sessions_pin_theirs(client: httpx.Client) -> None:
    name = f"v-{uuid.uuid4().hex[:6]}"
    assert deploy(client, name, "# first")["version"] == 1
    pinned = client.post("/api/sessions", json={"agent": name}).json()["session"]
    assert deploy(client, name, "# second")["version"] == 2
    listed = versions(client, name)
    assert [(v["versionNumber"], v["name"], v["isActive"], v["systemPrompt"]) for v in listed] == [
        (2, "v2", True, "# second"),
        (1, "v1", False, "# first"),
    ]
    assert all(v["agentName"] == name and v["fileCount"] == 1 and v["activatedAt"] for v in listed)
    # The session started on version 1 keeps it: its files and its number.
    again = client.get(f"/api/sessions/{pinned['id']}").json()["session"]
    assert again["agentVersion"] == 1
    assert client.get(f"/api/sessions/{pinned['id']}/files/CLAUDE.md", params={"format": "raw"}).text == "# first"
    assert session_file(client, name) == (2, "# second")


def test_create_edit_activate_and_roll_back(client: httpx.Client, model: FakeAnthropic) -> None:
    name = f"v-{uuid.uuid4().hex[:6]}"
    deploy(client, name, "# one", notes__a="kept")
    created = client.post(
        f"/api/agents/{name}/versions",
        json={"systemPrompt": "You are Draft Two.", "releaseNotes": "sharper", "knowledgeFiles": ["notes/a"]},
    )
    assert created.status_code == 201, created.text
    draft = created.json()["version"]
    assert (draft["versionNumber"], draft["isActive"], draft["activatedAt"]) == (2, False, None)
    assert (draft["releaseNotes"], draft["knowledgeFiles"], draft["fileCount"]) == ("sharper", ["notes/a"], 2)
    # Not active yet: new sessions still run version 1.
    assert client.get(f"/api/agents/{name}").json()["agent"]["version"] == 1
    # A draft can still change, prompt and all.
    patched = client.patch(f"/api/agents/{name}/versions/2", json={"systemPrompt": "You are Version Two."})
    assert patched.status_code == 200 and patched.json()["version"]["systemPrompt"] == "You are Version Two."
    activated = client.post(f"/api/agents/{name}/versions/{draft['id']}/activate")
    assert activated.status_code == 200 and activated.json() == {"activated": True, "versionNumber": 2}
    assert client.get(f"/api/agents/{name}").json()["agent"]["version"] == 2
    assert session_file(client, name) == (2, "You are Version Two.")
    assert session_file(client, name, "notes/a") == (2, "kept")  # the files came along from version 1
    # The model sees the new version's CLAUDE.md as its system prompt.
    model.on("who are you", text("Version two here."))
    sid = client.post("/api/sessions", json={"agent": name}).json()["session"]["id"]
    with client.stream("POST", f"/api/sessions/{sid}/messages", json={"content": "who are you"}) as stream:
        assert stream.status_code == 200 and "Version two here." in stream.read().decode()
    (request,) = model.requests_with_prompt("who are you")
    system = request["system"]
    assert "You are Version Two." in (system if isinstance(system, str) else " ".join(b["text"] for b in system))
    # Once active, a version's prompt is frozen; its name and notes are not.
    assert_error(client.patch(f"/api/agents/{name}/versions/2", json={"systemPrompt": "sneaky"}), 409, "frozen")
    renamed = client.patch(f"/api/agents/{name}/versions/2", json={"name": "two", "releaseNotes": "final"})
    assert (renamed.json()["version"]["name"], renamed.json()["version"]["releaseNotes"]) == ("two", "final")
    # Rollback: activate the older one.
    assert client.post(f"/api/agents/{name}/versions/1/activate").json() == {"activated": True, "versionNumber": 1}
    assert session_file(client, name) == (1, "# one")
    assert [v["isActive"] for v in versions(client, name)] == [False, True]
    # A clone of version 2 starts from its files and knowledge files.
    clone = client.post(f"/api/agents/{name}/versions", json={"cloneFrom": 2, "name": "two again"}).json()["version"]
    assert (clone["versionNumber"], clone["name"], clone["systemPrompt"]) == (3, "two again", "You are Version Two.")
    assert clone["knowledgeFiles"] == ["notes/a"]
    assert client.post(f"/api/agents/{name}/versions").json()["version"]["systemPrompt"] == "# one"  # no body


def test_delete_a_version_but_never_the_active_one(client: httpx.Client) -> None:
    name = f"v-{uuid.uuid4().hex[:6]}"
    deploy(client, name, "# one")
    deploy(client, name, "# two")
    assert_error(client.delete(f"/api/agents/{name}/versions/2"), 409, "active")
    by_id = versions(client, name)[1]["id"]
    assert client.get(f"/api/agents/{name}/versions/{by_id}").json()["version"]["versionNumber"] == 1
    deleted = client.delete(f"/api/agents/{name}/versions/{by_id}")
    assert deleted.status_code == 200 and deleted.json() == {"deleted": True, "versionNumber": 1}
    assert_error(client.get(f"/api/agents/{name}/versions/1"), 404, "Version not found")
    assert [v["versionNumber"] for v in versions(client, name)] == [2]
    assert deploy(client, name, "# three")["version"] == 3  # numbers are never reused


def test_writing_and_deleting_files_make_new_active_versions(client: httpx.Client) -> None:
    name = f"v-{uuid.uuid4().hex[:6]}"
    deploy(client, name, "# files")
    written = client.post(
        f"/api/agents/{name}/files",
        json={"files": [{"path": "kb/facts.md", "content": b64("water is wet")}, {"path": "x", "content": b64("x")}]},
    )
    assert written.status_code == 200 and written.json() == {"written": 2, "version": 2}
    read = client.get(f"/api/agents/{name}/files/kb/facts.md").json()
    assert read["content"] == "water is wet"
    listed = {f["path"] for f in client.get(f"/api/agents/{name}/files").json()["files"]}
    assert {"CLAUDE.md", "kb/facts.md", "x"} <= listed
    assert session_file(client, name, "kb/facts.md") == (2, "water is wet")
    deleted = client.delete(f"/api/agents/{name}/files/kb/facts.md")
    assert deleted.status_code == 200 and deleted.json() == {"deleted": True, "version": 3}
    assert_error(client.get(f"/api/agents/{name}/files/kb/facts.md"), 404, "File not found")
    assert [v["fileCount"] for v in versions(client, name)] == [2, 3, 1]
    # Version 2 still holds the file: roll back and it is there again.
    client.post(f"/api/agents/{name}/versions/2/activate")
    assert client.get(f"/api/agents/{name}/files/kb/facts.md").json()["content"] == "water is wet"


def test_bad_input_is_refused_and_changes_nothing(client: httpx.Client) -> None:
    name = f"v-{uuid.uuid4().hex[:6]}"
    deploy(client, name, "# safe")
    files = f"/api/agents/{name}/files"
    assert_error(client.post(files, json={"files": [{"path": "../out", "content": b64("x")}]}), 400, "path")
    assert_error(client.post(files, json={"files": [{"path": "a", "content": "not base64!"}]}), 400, "base64")
    assert_error(client.post(files, json={"files": []}), 400)
    assert_error(client.post(files, json={"nope": 1}), 400)
    assert_error(client.delete(f"{files}/CLAUDE.md"), 400, "system prompt")
    assert_error(client.delete(f"{files}/missing.md"), 404, "File not found")
    assert_error(client.delete(f"{files}/..%2Fetc%2Fpasswd"), 400)
    root = f"/api/agents/{name}/versions"
    assert_error(client.get(f"{root}/7"), 404, "Version not found")
    assert_error(client.get(f"{root}/not-a-version"), 404, "Version not found")
    assert_error(client.get(f"{root}/{uuid.uuid4()}"), 404, "Version not found")
    assert_error(client.post(f"{root}/9/activate"), 404, "Version not found")
    assert_error(client.post(root, json={"cloneFrom": 9}), 400, "Source version 9 not found")
    assert_error(client.post(root, json={"name": "x" * 300}), 400)
    assert_error(client.patch(f"{root}/1", json={"knowledgeFiles": "not a list"}), 400)
    assert_error(client.post(root, content=b"{not json", headers={"content-type": "application/json"}), 400)
    assert_error(client.get("/api/agents/no-such-agent/versions"), 404, "Agent not found")
    one_file = {"files": [{"path": "a", "content": "eA=="}]}
    assert_error(client.post("/api/agents/no-such-agent/files", json=one_file), 404)
    assert [(v["versionNumber"], v["isActive"]) for v in versions(client, name)] == [(1, True)]


def test_tenants_see_only_their_own_versions(server: AshServer, client: httpx.Client) -> None:
    name = f"v-{uuid.uuid4().hex[:6]}"
    deploy(client, name, "# private")
    key_b = server.admin("create-tenant", f"tenant-{uuid.uuid4().hex[:6]}")["key"]
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key_b}"}) as b:
        version_id = versions(client, name)[0]["id"]
        for method, url in [
            ("GET", f"/api/agents/{name}/versions"),
            ("GET", f"/api/agents/{name}/versions/1"),
            ("GET", f"/api/agents/{name}/versions/{version_id}"),
            ("POST", f"/api/agents/{name}/versions/1/activate"),
            ("DELETE", f"/api/agents/{name}/versions/1"),
            ("DELETE", f"/api/agents/{name}/files/CLAUDE.md"),
        ]:
            assert_error(b.request(method, url), 404, "Agent not found")
        # B's own agent of the same name is B's: A's versions are not reachable through it either.
        deploy(b, name, "# b's")
        assert_error(b.get(f"/api/agents/{name}/versions/{version_id}"), 404, "Version not found")
    assert [v["systemPrompt"] for v in versions(client, name)] == ["# private"]


def test_versions_survive_a_restart_without_the_server_s_copy(server: AshServer) -> None:
    name = f"v-{uuid.uuid4().hex[:6]}"
    with server.client() as client:
        deploy(client, name, "# before")
        client.post(f"/api/agents/{name}/files", json={"files": [{"path": "kept.md", "content": b64("kept")}]})
        client.post(f"/api/agents/{name}/versions", json={"systemPrompt": "# drafted"})
    server.stop()
    shutil.rmtree(server.data_dir / "agents" / "default" / name)  # the files must come back from the database
    server.start()
    with server.client() as client:
        assert [(v["versionNumber"], v["isActive"]) for v in versions(client, name)] == [
            (3, False),
            (2, True),
            (1, False),
        ]
        assert session_file(client, name, "kept.md") == (2, "kept")
        client.post(f"/api/agents/{name}/versions/3/activate")
        assert session_file(client, name) == (3, "# drafted")
        assert session_file(client, name, "kept.md") == (3, "kept")
