"""`ash session fork | files | exec`, `ash --version`, and docs/cli.md covering every command: real CLI processes
against a real server (AshServer) with the fake Messages API behind it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main

from ash_cli.main import app
from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.server import REPO, AshServer, short_tempdir

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server() -> Iterator[AshServer]:
    with FakeAnthropic(default=text("ok")) as fake, AshServer(fake.url) as running:
        with running.client() as client:
            agent = {"name": "hello-agent", "path": str(REPO / "examples" / "hello-agent")}
            assert client.post("/api/agents", json=agent).status_code == 201
        yield running


def ash(server: AshServer, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(short_tempdir()), "ASH_SERVER_URL": server.url, "ASH_API_KEY": server.api_key}
    return subprocess.run(
        [sys.executable, "-m", "ash_cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def created_session(server: AshServer) -> str:
    created = ash(server, "session", "create", "hello-agent")
    assert created.returncode == 0, created.stderr
    return created.stdout.strip()


def test_exec_prints_both_streams_and_exits_with_the_commands_code(server: AshServer) -> None:
    sid = created_session(server)
    ran = ash(server, "session", "exec", sid, "--", "echo to-stdout; echo to-stderr >&2; exit 3")
    assert ran.returncode == 3, ran
    assert ran.stdout == "to-stdout\n"
    assert "to-stderr" in ran.stderr
    whoami = ash(server, "session", "exec", sid, "--", "pwd")
    assert whoami.returncode == 0 and whoami.stdout.strip(), whoami
    as_json = ash(server, "--json", "session", "exec", sid, "--", "exit 0")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout) | {"stdout": "", "stderr": ""} == {
        "exitCode": 0,
        "stdout": "",
        "stderr": "",
        "timedOut": False,
        "truncated": False,
    }
    slow = ash(server, "session", "exec", sid, "--timeout", "0.5", "--", "sleep 30")
    assert slow.returncode == 124, slow
    assert "timed out" in slow.stderr


def test_files_lists_and_fetches_what_the_sandbox_wrote(server: AshServer, tmp_path: Path) -> None:
    sid = created_session(server)
    wrote = ash(server, "session", "exec", sid, "--", "mkdir -p sub && printf 'hi there' > sub/note.txt")
    assert wrote.returncode == 0, wrote.stderr
    listed = ash(server, "session", "files", sid)
    assert listed.returncode == 0, listed.stderr
    assert re.search(r"sub/note\.txt\s+8\s", listed.stdout), listed.stdout
    assert "from the live sandbox" in listed.stderr
    files = json.loads(ash(server, "session", "files", sid, "--json").stdout)
    assert {"path": "sub/note.txt", "size": 8} in [{k: f[k] for k in ("path", "size")} for f in files["files"]]

    fetched = ash(server, "session", "files", sid, "sub/note.txt")
    assert fetched.returncode == 0 and fetched.stdout == "hi there", fetched
    target = tmp_path / "copy.txt"
    saved = ash(server, "session", "files", sid, "sub/note.txt", "-o", str(target))
    assert saved.returncode == 0, saved.stderr
    assert target.read_bytes() == b"hi there"
    missing = ash(server, "session", "files", sid, "nope.txt")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr


def test_fork_copies_the_session_into_a_paused_one(server: AshServer) -> None:
    sid = created_session(server)
    assert ash(server, "session", "exec", sid, "--", "echo parent > mark.txt").returncode == 0
    forked = ash(server, "session", "fork", sid)
    assert forked.returncode == 0, forked.stderr
    fork_id = forked.stdout.strip()
    assert fork_id != sid
    details: dict[str, Any] = json.loads(ash(server, "session", "get", fork_id, "--json").stdout)
    assert (details["parentSessionId"], details["status"]) == (sid, "paused")
    copied = ash(server, "session", "files", fork_id, "mark.txt")
    assert copied.returncode == 0 and copied.stdout == "parent\n", copied


def test_chat_without_a_message_reads_a_pipe_as_the_message(server: AshServer) -> None:
    """Not a terminal, so not the interactive chat (tests/cli/test_interactive.py): stdin is the one message."""
    piped = ash(server, "chat", "hello-agent", stdin="a message from a pipe\n")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == "ok\n"
    assert "> " not in piped.stdout + piped.stderr  # no prompt
    nothing = ash(server, "chat", "hello-agent", stdin="")
    assert nothing.returncode == 1 and "the message is empty" in nothing.stderr


def test_health_model_says_whether_the_model_takes_the_key(server: AshServer) -> None:
    plain = ash(server, "health")
    assert plain.returncode == 0, plain.stderr
    assert "model key" in plain.stdout and "configured" in plain.stdout
    good = ash(server, "health", "--model")
    assert good.returncode == 0, good.stderr
    assert "the model accepts the server's key" in good.stdout
    assert json.loads(ash(server, "health", "--model", "--json").stdout)["modelCheck"]["ok"] is True

    with FakeAnthropic(api_key="sk-ant-the-right-one") as strict:
        wrong = AshServer(strict.url, env={"ANTHROPIC_API_KEY": "sk-ant-a-wrong-one"})
        with wrong:
            refused = ash(wrong, "health", "--model")
    assert refused.returncode == 1, refused
    assert "the model refused the server's key (401): model authentication failed" in refused.stdout


def test_version_is_the_packages() -> None:
    result = subprocess.run([sys.executable, "-m", "ash_cli", "--version"], capture_output=True, text=True)
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"ash {version}\n"


def _command_paths() -> list[str]:
    paths: list[str] = []

    def walk(command: Any, prefix: list[str]) -> None:
        if hasattr(command, "commands"):
            for name, sub in command.commands.items():
                walk(sub, [*prefix, name])
        else:
            paths.append(" ".join(prefix))

    walk(typer.main.get_command(app), [])
    return paths


def _documented_paths(doc: str) -> set[str]:
    """The commands named in `ash ...` code spans: `ash session pause|resume <id>` names two."""
    documented: set[str] = set()
    for span in re.findall(r"`(ash [^`]*)`", doc):
        alternatives: list[list[str]] = [[]]
        for word in span.split()[1:]:
            if not re.fullmatch(r"[a-z][a-z0-9|-]*", word):
                break
            alternatives = [[*a, choice] for a in alternatives for choice in word.split("|")]
        documented.update(" ".join(a) for a in alternatives)
    return documented


def test_every_command_is_in_docs_cli_md() -> None:
    paths = _command_paths()
    assert {"chat", "session fork", "session files", "session exec", "session tail", "logs"} <= set(paths)
    documented = _documented_paths((REPO / "docs" / "cli.md").read_text())
    assert [p for p in paths if p not in documented] == []
