"""`ash chat AGENT` with no message, as a person at a terminal uses it: a real pseudo-terminal (pexpect), a real
server (AshServer) and the fake Messages API behind it.

The expectations' timeouts bound how long a failure takes to show; none is a measure of speed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.fakes.anthropic_api import FakeAnthropic, text, tool_use
from tests.support.server import REPO, AshServer, short_tempdir

pytestmark = pytest.mark.slow

SESSION_ID = r"session ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
PROMPT = "> "
UP = "\x1b[A"  # the arrow key, as a terminal sends it: readline's previous history line


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(default=text("ok")) as model:
        yield model


@pytest.fixture(scope="module")
def server(fake: FakeAnthropic) -> Iterator[AshServer]:
    with AshServer(fake.url) as running:
        with running.client() as client:
            agent = {"name": "hello-agent", "path": str(REPO / "examples" / "hello-agent")}
            deployed = client.post("/api/agents", json=agent)
            assert deployed.status_code == 201, deployed.text
        yield running


@pytest.fixture
def home() -> Iterator[Path]:
    path = short_tempdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def spawn(server: AshServer, home: Path, *args: str) -> pexpect.spawn:
    env = {
        **os.environ,
        "HOME": str(home),
        "ASH_SERVER_URL": server.url,
        "ASH_API_KEY": server.api_key,
        "TERM": "xterm",
    }
    child = pexpect.spawn(
        sys.executable, ["-m", "ash_cli", "chat", *args], env=env, cwd=str(REPO), encoding="utf-8", timeout=90
    )
    child.logfile_read = Transcript()
    if os.environ.get("SHOW_PTY"):
        child.logfile_read = sys.stdout
    return child


class Transcript:
    """Everything the terminal showed, for the assertions on what must not appear and for failure messages."""

    def __init__(self) -> None:
        self.text = ""

    def write(self, data: str) -> None:
        self.text += data

    def flush(self) -> None:
        pass


def shown(child: pexpect.spawn) -> str:
    log = child.logfile_read
    assert isinstance(log, Transcript)
    return log.text


def model_prompts(fake: FakeAnthropic) -> list[str]:
    """The user messages the model was sent, newest last."""
    prompts = []
    for entry in fake.request_log:
        messages = (entry.get("body") or {}).get("messages") or []
        users = [m for m in messages if m.get("role") == "user"]
        if not users:
            continue
        content = users[-1]["content"]
        if isinstance(content, str):
            blocks = [content]
        else:
            blocks = [b.get("text", "") for b in content if b.get("type") == "text"]
        prompts.append("\n".join(b for b in blocks if b))
    return prompts


def test_a_conversation_streams_tools_continues_lines_and_quits(
    server: AshServer, fake: FakeAnthropic, home: Path
) -> None:
    fake.on("hello there", text("Hello, friend!", chunks=3))
    fake.on("use a tool", [tool_use("Bash", {"command": "echo from-the-tool"}), text("The tool ran.")])
    fake.on("first line", text("Got both lines."))
    child = spawn(server, home, "hello-agent")
    child.expect(SESSION_ID)
    session_id = child.match.group(1)
    child.expect_exact(PROMPT)

    child.sendline("hello there")
    child.expect_exact("Hello, friend!")
    child.expect_exact(PROMPT)

    child.sendline("use a tool")
    child.expect_exact("⏺ Bash(echo from-the-tool)")
    child.expect_exact("from-the-tool")  # the result's first line
    child.expect_exact("The tool ran.")
    child.expect_exact(PROMPT)

    # A line ending in a backslash goes on: one message of two lines.
    child.sendline("first line\\")
    child.expect_exact("… ")
    child.sendline("second line")
    child.expect_exact("Got both lines.")
    child.expect_exact(PROMPT)
    assert any("first line\nsecond line" in prompt for prompt in model_prompts(fake))

    # Ctrl-C at the prompt drops the line, not the program.
    child.send("half a thought")
    # Its echo says readline is reading: a SIGINT that came before it entered its wait would not be seen until
    # the next key (CPython's readline checks for signals when its select() is interrupted).
    child.expect_exact("half a thought")
    child.sendintr()
    child.expect_exact("drops the line")
    child.expect_exact(PROMPT)

    child.sendline("/exit")
    child.expect_exact(f"resume with: ash chat hello-agent -s {session_id}")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, shown(child)
    assert not any("half a thought" in prompt for prompt in model_prompts(fake))

    # The whole conversation is one session, stored on the server.
    with server.client() as client:
        sessions = client.get("/api/sessions").json()["sessions"]
        messages = client.get(f"/api/sessions/{session_id}/messages").json()["messages"]
    assert session_id in [s["id"] for s in sessions]
    user_prompts = [json.loads(m["content"]) for m in messages if m["role"] == "user"]
    assert any("hello there" in json.dumps(p) for p in user_prompts)


def test_ctrl_c_interrupts_the_turn_on_the_server_and_the_chat_goes_on(
    server: AshServer, fake: FakeAnthropic, home: Path
) -> None:
    # Ten words two seconds apart: the interrupt lands while the model is still sending.
    fake.on("count slowly", text(" ".join(f"w{n}" for n in range(10)), chunks=10, delay=2.0))
    fake.on("after the interrupt", text("Still here."))
    child = spawn(server, home, "hello-agent")
    child.expect(SESSION_ID)
    session_id = child.match.group(1)
    child.expect_exact(PROMPT)
    child.sendline("count slowly")
    child.expect_exact("w0")
    child.sendintr()
    child.expect_exact("interrupting the turn")
    child.expect_exact("Error: ")  # the turn's own end, as the server reports it
    child.expect_exact(PROMPT)
    assert "w9" not in shown(child)

    child.sendline("after the interrupt")
    child.expect_exact("Still here.")
    child.expect_exact(PROMPT)
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, shown(child)

    # The server ended the turn because it was asked to: its stored events say so.
    with server.client() as client:
        events = client.get(f"/api/sessions/{session_id}/events").json()["events"]
    errors = [e for e in events if e.get("type") == "error"]
    assert errors and "interrupt" in json.dumps(errors[0]).lower(), events


def test_history_survives_the_program_and_s_continues_a_session(
    server: AshServer, fake: FakeAnthropic, home: Path
) -> None:
    fake.on("remember this line", text("Noted."))
    first = spawn(server, home, "hello-agent")
    first.expect(SESSION_ID)
    session_id = first.match.group(1)
    first.expect_exact(PROMPT)
    first.sendline("remember this line")
    first.expect_exact("Noted.")
    first.expect_exact(PROMPT)
    first.sendline("/exit")
    first.expect(pexpect.EOF)
    first.close()
    history = home / ".ash" / "chat_history"
    assert "remember this line" in history.read_text()
    assert history.stat().st_mode & 0o077 == 0

    again = spawn(server, home, "hello-agent", "-s", session_id)
    again.expect(re.escape(f"session {session_id}"))
    again.expect_exact(PROMPT)
    before = len(model_prompts(fake))
    again.send(UP + "\r")  # the previous run's last message, recalled and sent again
    again.expect_exact("Noted.")
    again.expect_exact(PROMPT)
    again.sendline("/exit")
    again.expect(pexpect.EOF)
    again.close()
    assert again.exitstatus == 0, shown(again)
    resent = model_prompts(fake)[before:]
    assert resent and "remember this line" in resent[-1]
    with server.client() as client:
        mine = [s for s in client.get("/api/sessions").json()["sessions"] if s["id"] == session_id]
    assert len(mine) == 1
