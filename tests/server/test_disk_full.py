"""A full disk is a 507 that says so, never a 500, and loses nothing acknowledged; the log, on the same disk, says
how many of its records it could not write once it can write again. The server's data dir and log are on a real
16 MiB tmpfs that the test fills."""

from __future__ import annotations

import base64
import contextlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.anthropic_api import FakeAnthropic
from tests.support.server import AshServer, short_tempdir

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root (CI runs as root)"),
]


@pytest.fixture
def small_disk() -> Iterator[Path]:
    mount = short_tempdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write until the file system refuses: the disk is full afterwards."""
    filler = disk / "filler"
    with filler.open("wb") as out, contextlib.suppress(OSError):
        while True:
            out.write(b"\0" * 65536)
            out.flush()
    return filler


def agent(name: str, size: int = 64) -> dict[str, object]:
    files = [{"path": "CLAUDE.md", "content": base64.b64encode(b"x" * size).decode()}]
    return {"name": name, "files": files}


def test_a_full_disk_is_507_and_loses_nothing(fake_model: FakeAnthropic, small_disk: Path) -> None:
    with AshServer(fake_model.url, data_dir=small_disk / "data", env={"ASH_LOG_LEVEL": "info"}) as server:
        with server.client() as client:
            assert client.post("/api/agents", json=agent("before")).status_code == 201
            filler = fill(small_disk)
            for i in range(3):
                # A connection each: the server logs each refusal, and the log is on the full disk too.
                with server.client() as fresh:
                    response = fresh.post("/api/agents", json=agent(f"full-{i}", 200_000))
                assert response.status_code == 507, response.text
                assert response.json() == {"error": response.json()["error"], "statusCode": 507}
                assert "disk is full" in response.json()["error"]
            assert client.get("/api/agents/before").status_code == 200  # reads go on

            filler.unlink()
            assert client.post("/api/agents", json=agent("after")).status_code == 201
            names = {a["name"] for a in client.get("/api/agents").json()["agents"]}
            assert {"before", "after"} <= names and not any(n.startswith("full-") for n in names)
        server.stop()  # its shutdown lines are the first it can write again
        log = server.log()
    database = sqlite3.connect(small_disk / "data" / "ash.db")
    try:
        assert database.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        database.close()
    assert "log records could not be written" in log, log[-2000:]
