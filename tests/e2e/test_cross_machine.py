"""Pause on one server, resume and continue on another: two servers with their own data dirs, one database, one
bucket (S3 through moto in server mode, GCS through its emulator, both over real HTTP)."""

from __future__ import annotations

import secrets
import shutil
import uuid
from typing import Any

import httpx
import pytest

from tests.fakes.anthropic_api import FakeAnthropic, echo, text, tool_use
from tests.support.server import REPO, AshServer, short_tempdir
from tests.support.sse import turn_text as turn
from tests.support.storage import GcsServer, S3Server

pytestmark = pytest.mark.slow


class Bucket:
    """A fresh bucket in one of the stores, and what the servers and the test need to reach it."""

    def __init__(self, kind: str, s3: S3Server | None, gcs: GcsServer | None) -> None:
        self.kind = kind
        self.name = f"ash-{uuid.uuid4().hex[:12]}"
        self.s3, self.gcs = s3, gcs
        if kind == "s3":
            assert s3 is not None
            s3.bucket(self.name)
            self.env = {**s3.env, "ASH_SNAPSHOT_URL": f"s3://{self.name}/snapshots"}
        else:
            assert gcs is not None
            gcs.bucket(self.name)
            self.env = {**gcs.env, "ASH_SNAPSHOT_URL": f"gs://{self.name}/snapshots"}

    def keys(self, prefix: str) -> list[str]:
        if self.s3 is not None:
            listed = self.s3.client().list_objects_v2(Bucket=self.name, Prefix=prefix)
            return [item["Key"] for item in listed.get("Contents", [])]
        assert self.gcs is not None
        return [blob.name for blob in self.gcs.client().list_blobs(self.name, prefix=prefix)]

    def overwrite(self, key: str, data: bytes) -> None:
        if self.s3 is not None:
            self.s3.client().put_object(Bucket=self.name, Key=key, Body=data)
        else:
            assert self.gcs is not None
            self.gcs.client().bucket(self.name).blob(key).upload_from_string(data)

    def delete(self, key: str) -> None:
        if self.s3 is not None:
            self.s3.client().delete_object(Bucket=self.name, Key=key)
        else:
            assert self.gcs is not None
            self.gcs.client().bucket(self.name).blob(key).delete()


@pytest.fixture(params=["s3", "gcs"])
def bucket(request: pytest.FixtureRequest) -> Bucket:
    if request.param == "s3":
        return Bucket("s3", request.getfixturevalue("s3_server"), None)
    return Bucket("gcs", None, request.getfixturevalue("gcs_server"))


def session_of(client: httpx.Client, sid: str) -> dict[str, Any]:
    session: dict[str, Any] = client.get(f"/api/sessions/{sid}").json()["session"]
    return session


def test_a_session_paused_on_one_server_continues_on_another(model: FakeAnthropic, bucket: Bucket) -> None:
    model.on("my name is", text("Hello, Grace."))
    model.on("keep a file", [tool_use("Bash", {"command": "echo carried > carried.txt"}), text("Kept.")])
    model.on("what is my name", echo())
    shared = short_tempdir()
    common = {
        **bucket.env,
        "ASH_DATABASE_URL": f"sqlite+aiosqlite:///{shared / 'ash.db'}",
        "ASH_API_KEY": "ash_" + secrets.token_hex(16),
        "ASH_SECRET_KEY": secrets.token_hex(32),
    }
    a = AshServer(model.url, env=common).start()
    b = AshServer(model.url, env=common).start()
    try:
        with a.client() as on_a, b.client() as on_b:
            a_id, b_id = on_a.get("/health").json()["serverId"], on_b.get("/health").json()["serverId"]
            assert a_id != b_id
            path = str(REPO / "examples" / "hello-agent")
            assert on_a.post("/api/agents", json={"name": "traveller", "path": path}).status_code == 201
            sid = on_a.post("/api/sessions", json={"agent": "traveller"}).json()["session"]["id"]
            turn(on_a, sid, "my name is Grace")
            turn(on_a, sid, "keep a file for me")
            assert on_a.post(f"/api/sessions/{sid}/pause").json()["session"]["status"] == "paused"
            assert bucket.keys(f"snapshots/default/{sid}/")  # keys scoped by tenant and session

            # Server B has never seen this session: it restores the snapshot and the conversation goes on.
            assert not (b.data_dir / "sessions" / "default" / sid).exists()
            resumed = on_b.post(f"/api/sessions/{sid}/resume")
            assert resumed.status_code == 200, resumed.text
            assert resumed.json()["session"]["runnerId"] == b_id
            turn(on_b, sid, "what is my name")
            seen = model.user_texts(model.requests_with_prompt("what is my name")[-1])
            assert seen == ["my name is Grace", "keep a file for me", "what is my name"]
            assert on_b.get(f"/api/sessions/{sid}/files/carried.txt").text == "carried\n"
            # B runs it now: A may read its files, but not pause it or change them.
            conflict = on_a.post(f"/api/sessions/{sid}/pause")
            assert conflict.status_code == 409 and b_id in conflict.json()["error"]
            files = {"files": [{"path": "x.txt", "content": "eA=="}]}
            assert on_a.post(f"/api/sessions/{sid}/files", json=files).status_code == 409
            assert on_b.post(f"/api/sessions/{sid}/pause").status_code == 200

            # A damaged snapshot: server A (whose copy is out of date) refuses clearly and changes nothing.
            keys = bucket.keys(f"snapshots/default/{sid}/")
            for key in keys:
                bucket.overwrite(key, b"this is not a snapshot")
            damaged = on_a.post(f"/api/sessions/{sid}/resume")
            assert damaged.status_code == 503 and "is damaged" in damaged.json()["error"], damaged.text
            assert sid in damaged.json()["error"]
            after = session_of(on_a, sid)
            assert (after["status"], after["runnerId"]) == ("paused", b_id)
            # A missing one: the same.
            for key in keys:
                bucket.delete(key)
            missing = on_a.post(f"/api/sessions/{sid}/resume")
            assert missing.status_code == 503 and "is missing" in missing.json()["error"], missing.text
            assert session_of(on_a, sid)["status"] == "paused"

            # Still resumable from what exists: server B has the files.
            assert on_b.post(f"/api/sessions/{sid}/resume").json()["session"]["status"] == "active"
            turn(on_b, sid, "what is my name now")
            seen = model.user_texts(model.requests_with_prompt("what is my name now")[-1])
            assert seen[:3] == ["my name is Grace", "keep a file for me", "what is my name"]
    finally:
        a.cleanup()
        b.cleanup()
        shutil.rmtree(shared, ignore_errors=True)
