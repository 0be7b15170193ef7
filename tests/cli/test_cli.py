"""The `ash` CLI as users run it: real processes (`python -m ash_cli`), a real server started by `ash start`, the
fake Messages API behind it. Plus the pure parts (SSE framing, configuration, folder bundling) tested directly.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from ash_cli import client as client_module
from ash_cli import daemon
from ash_cli.bundle import collect
from ash_cli.client import (
    AshClient,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConnectionFailed,
    NotFoundError,
    ServerError,
    StatusError,
)
from ash_cli.config import StoredConfig, default_data_dir, resolve, save_stored
from ash_cli.errors import CliError
from ash_cli.sse import ServerSentEvent, SSEDecoder, iter_events
from tests.fakes.anthropic_api import FakeAnthropic, text, tool_use

REPO = Path(__file__).resolve().parents[2]
HELLO_AGENT = REPO / "examples" / "hello-agent"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def short_tempdir() -> Path:
    """Under /tmp and 0755: sandboxes run as uid 65534 when the tests run as root, and socket paths stay short."""
    path = Path(tempfile.mkdtemp(prefix="ash-"))
    path.chmod(0o755)
    return path


@dataclass
class Cli:
    """`ash` with its own HOME and data dir, as a user on a fresh machine would run it."""

    root: Path
    env: dict[str, str]
    started: subprocess.CompletedProcess[str] | None = field(default=None, repr=False)

    @property
    def home(self) -> Path:
        return Path(self.env["HOME"])

    @property
    def data_dir(self) -> Path:
        return Path(self.env["ASH_DATA_DIR"])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['ASH_PORT']}"

    def config(self) -> dict[str, object]:
        loaded: dict[str, object] = json.loads((self.home / ".ash" / "config.json").read_text())
        return loaded

    def run(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "ash_cli", *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=REPO,
        )


def make_cli(model_url: str) -> Cli:
    root = short_tempdir()
    (root / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("ASH_API_KEY", "ASH_SERVER_URL", "ASH_AGENT_ROOTS")}
    env.update(
        HOME=str(root / "home"),
        ASH_DATA_DIR=str(root / "data"),
        ASH_PORT=str(free_port()),
        ANTHROPIC_BASE_URL=model_url,
        ANTHROPIC_API_KEY="sk-test",
        CLAUDE_CODE_MAX_RETRIES="0",
        COLUMNS="200",
    )
    return Cli(root=root, env=env)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while daemon.is_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- the quickstart, against one server started with `ash start` ---------------------------------------------


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(default=text("ok")) as model:
        yield model


@pytest.fixture(scope="module")
def server(fake: FakeAnthropic) -> Iterator[Cli]:
    cli = make_cli(fake.url)
    try:
        cli.started = cli.run("start")
        assert cli.started.returncode == 0, cli.started.stdout + cli.started.stderr
        yield cli
    finally:
        cli.run("stop", timeout=60)
        pid = daemon.read_pid(cli.data_dir)
        if pid is not None and daemon.is_alive(pid):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(cli.root, ignore_errors=True)


def test_start_serves_and_stores_a_private_config(server: Cli) -> None:
    assert server.started is not None
    config = server.config()
    key = (server.data_dir / "api-key").read_text().strip()
    assert config == {
        "serverUrl": server.url,
        "apiKey": key,
        "server_url": server.url,  # the reference CLI's names
        "api_key": key,
        "dataDir": str(server.data_dir),
        "pid": config["pid"],
    }
    assert key.startswith("ash_")
    assert stat.S_IMODE((server.home / ".ash" / "config.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((server.home / ".ash").stat().st_mode) == 0o700
    assert daemon.read_pid(server.data_dir) == config["pid"]
    assert server.url in server.started.stdout
    assert str(server.data_dir) in server.started.stdout
    assert re.search(r"is running at .* \(pid \d+\), ready in \d+\.\d s", server.started.stdout)
    # A line per step on stderr, the server's own among them (from its log), so a slow start is never silent.
    progress = server.started.stderr
    assert f"started the server process (pid {config['pid']})" in progress
    assert f"waiting for {server.url}/health" in progress
    assert "server: database schema migrated to" in progress
    assert "server: Application startup complete." in progress
    assert "No model key" not in progress  # the fixture's server has one (test_start_without_a_model_key_says_so)
    assert key not in server.started.stdout + server.started.stderr

    health = server.run("health")
    assert health.returncode == 0, health.stderr
    assert "ok" in health.stdout
    assert httpx.get(server.url + "/health").json()["status"] == "ok"

    status = server.run("status")
    assert status.returncode == 0, status.stderr
    assert "running" in status.stdout
    assert f"pid {config['pid']}" in status.stdout


def test_start_refuses_a_second_server_on_the_same_data_dir(server: Cli) -> None:
    result = server.run("start")
    assert_one_line_error(result, "already running", str(server.data_dir))


def test_quickstart_deploy_chat_and_list(server: Cli, fake: FakeAnthropic) -> None:
    fake.on("hello", text("Hello there, friend!", chunks=3))
    fake.on("write the file", [tool_use("Bash", {"command": "echo hi > out.txt"}), text("I wrote it.")])

    deployed = server.run("deploy", str(HELLO_AGENT), "--name", "hello-agent")
    assert deployed.returncode == 0, deployed.stderr
    assert "hello-agent" in deployed.stdout
    assert "version 1" in deployed.stdout

    chat = server.run("chat", "hello-agent", "hello")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout == "Hello there, friend!\n"
    sessions = json.loads(server.run("session", "list", "--json").stdout)
    assert [s["agentName"] for s in sessions] == ["hello-agent"]
    session_id = sessions[0]["id"]
    assert f"ash session send {session_id}" in chat.stderr

    listed = server.run("session", "list")
    assert listed.returncode == 0, listed.stderr
    assert session_id in listed.stdout
    assert "active" in listed.stdout
    agents = server.run("agent", "list")
    assert agents.returncode == 0, agents.stderr
    assert "hello-agent" in agents.stdout

    tool = server.run("session", "send", session_id, "please write the file")
    assert tool.returncode == 0, tool.stderr
    assert "⏺ Bash(echo hi > out.txt)" in tool.stdout
    assert tool.stdout.rstrip().endswith("I wrote it.")

    history = server.run("session", "messages", session_id)
    assert history.returncode == 0, history.stderr
    assert "user: hello\n" in history.stdout
    assert "Hello there, friend!" in history.stdout
    assert "⏺ Bash(echo hi > out.txt)" in history.stdout
    assert "I wrote it." in history.stdout

    ended = server.run("--json", "session", "end", session_id)
    assert json.loads(ended.stdout)["status"] == "ended"
    refused = server.run("session", "send", session_id, "hello")
    assert_one_line_error(refused, "ended")


def test_agent_versions_and_rollback(server: Cli) -> None:
    for _ in range(2):
        assert server.run("deploy", str(HELLO_AGENT), "--name", "versioned").returncode == 0
    listed = server.run("agent", "versions", "versioned")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert [r[:3] for r in rows] == [["2", "v2", "active"], ["1", "v1", "1"]]  # 1: its file count, not "active"
    rolled = server.run("agent", "activate", "versioned", "1")
    assert rolled.returncode == 0 and "now runs version 1" in rolled.stdout, rolled.stderr
    agent = json.loads(server.run("--json", "agent", "info", "versioned").stdout)
    assert agent["version"] == 1
    versions = json.loads(server.run("--json", "agent", "versions", "versioned").stdout)
    assert [(v["versionNumber"], v["isActive"]) for v in versions] == [(2, False), (1, True)]
    assert_one_line_error(server.run("agent", "activate", "versioned", "9"), "Version not found")


def test_the_reference_clis_flags_work_here(server: Cli, fake: FakeAnthropic) -> None:
    """`deploy -n` and `chat -s <session>` / `--end`, as a user of the reference CLI types them."""
    fake.on("first of two", text("One."))
    fake.on("second of two", text("Two."))
    deployed = server.run("deploy", str(HELLO_AGENT), "-n", "flagged")
    assert deployed.returncode == 0 and "flagged" in deployed.stdout, deployed.stderr
    first = server.run("chat", "flagged", "first of two")
    assert first.returncode == 0 and first.stdout == "One.\n", first.stderr
    sid = next(
        s["id"] for s in json.loads(server.run("session", "list", "--json").stdout) if s["agentName"] == "flagged"
    )
    second = server.run("chat", "flagged", "second of two", "-s", sid)
    assert second.returncode == 0 and second.stdout == "Two.\n", second.stderr
    assert (
        len([s for s in json.loads(server.run("session", "list", "--json").stdout) if s["agentName"] == "flagged"]) == 1
    )
    fake.on("last words", text("Bye."))
    ended = server.run("chat", "flagged", "last words", "--end")
    assert ended.returncode == 0 and ended.stdout == "Bye.\n", ended.stderr
    statuses = [
        s["status"] for s in json.loads(server.run("session", "list", "--json").stdout) if s["agentName"] == "flagged"
    ]
    assert sorted(statuses) == ["active", "ended"]


def test_chat_prints_text_as_it_streams(server: Cli, fake: FakeAnthropic) -> None:
    fake.on("count slowly", text("one two three", chunks=3, delay=0.8))
    assert server.run("deploy", str(HELLO_AGENT), "--name", "slow-agent").returncode == 0
    created = server.run("session", "create", "slow-agent")
    assert created.returncode == 0, created.stderr
    session_id = created.stdout.strip()

    process = subprocess.Popen(
        [sys.executable, "-m", "ash_cli", "session", "send", session_id, "count slowly"],
        env=server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        bufsize=0,  # unbuffered: what the first read returns is all that was read
    )
    assert process.stdout is not None
    first = process.stdout.read(3)  # returns as soon as anything was printed
    # The first words are on the terminal while the model is still sending the rest: streamed, not buffered.
    model_call = [e for e in fake.request_log if "count slowly" in json.dumps(e.get("body"))][-1]
    still_streaming = not model_call["completed"]
    rest, errors = process.communicate(timeout=60)
    assert process.returncode == 0, errors
    assert (first + rest).decode() == "one two three\n"
    assert still_streaming, "the first words were printed only at the end of the turn"


def test_tail_follows_later_turns(server: Cli, fake: FakeAnthropic) -> None:
    fake.on("tail one", text("first reply"))
    fake.on("tail two", text("second reply"))
    assert server.run("deploy", str(HELLO_AGENT), "--name", "tailed").returncode == 0
    created = server.run("session", "create", "tailed")
    session_id = created.stdout.strip()
    tail = subprocess.Popen(
        [sys.executable, "-m", "ash_cli", "session", "tail", session_id],
        env=server.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    assert tail.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(tail.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while httpx.get(server.url + "/health").json()["openStreams"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)  # the tail is attached before anything is sent
        for prompt in ("tail one", "tail two"):
            sent = server.run("session", "send", session_id, prompt)
            assert sent.returncode == 0, sent.stderr
        while "second reply" not in "".join(lines) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        tail.terminate()
        tail.communicate(timeout=30)
    output = "".join(lines)
    assert "first reply" in output and "second reply" in output
    assert output.index("first reply") < output.index("second reply")


def test_wrong_api_key_is_one_line(server: Cli) -> None:
    result = server.run("agent", "list", ASH_API_KEY="ash_not-the-right-key-at-all")
    assert_one_line_error(result, "invalid API key (set ASH_API_KEY or run `ash start`)")


def test_chat_with_an_unknown_agent_is_one_line(server: Cli) -> None:
    assert_one_line_error(server.run("chat", "nope", "hi"), "Agent not found: 'nope'")


def test_client_errors_carry_status_and_message(server: Cli) -> None:
    key = str(server.config()["apiKey"])
    with AshClient(server.url, key) as ash:
        with pytest.raises(NotFoundError) as missing:
            ash.get_agent("nope")
        with pytest.raises(BadRequestError) as invalid:
            ash.list_sessions(status="bogus")
    assert (missing.value.status_code, missing.value.message) == (404, "Agent not found: 'nope'")
    assert invalid.value.status_code == 400
    with AshClient(server.url, "ash_wrong-key-wrong-key") as ash, pytest.raises(AuthenticationError) as denied:
        ash.list_agents()
    assert (denied.value.status_code, denied.value.message) == (401, "Invalid API key")


def test_logs_prints_the_server_log(server: Cli) -> None:
    result = server.run("logs", "-n", "5")
    assert result.returncode == 0, result.stderr
    assert 0 < len(result.stdout.splitlines()) <= 5
    # For people: time, level, message; piped, so no escape codes (uvicorn's lines carry colour codes in JSON).
    assert "\x1b" not in result.stdout
    for line in result.stdout.splitlines():
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) +\S.*", line), line
    started = server.run("logs", "-n", "1000").stdout
    assert re.search(r"INFO +Started server process \[\d+\]", started), started
    raw = server.run("logs", "-n", "5", "--json")
    assert raw.returncode == 0, raw.stderr
    records = [json.loads(line) for line in raw.stdout.splitlines()]
    assert len(records) == 5 and all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    assert server.run("--json", "logs", "-n", "5").stdout == raw.stdout


def test_stop_stops_the_server(server: Cli) -> None:
    """Last of the module: the fixture's own `ash stop` then finds nothing to stop.

    A client follows a session meanwhile: at the stop signal the server ends that idle stream (api/sse.py) instead
    of waiting its 30 s of graceful shutdown for it, and `ash stop` follows the shutdown to its end without a kill.
    """
    pid = server.config()["pid"]
    assert isinstance(pid, int) and daemon.is_alive(pid)
    assert server.run("deploy", str(HELLO_AGENT), "--name", "followed").returncode == 0
    followed = server.run("session", "create", "followed").stdout.strip()
    tail = subprocess.Popen(
        [sys.executable, "-m", "ash_cli", "session", "tail", followed],
        env=server.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while httpx.get(server.url + "/health").json()["openStreams"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        result = server.run("stop", timeout=120)
    finally:
        tail.terminate()
        tail.wait(timeout=30)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(rf"Ash server stopped \(pid {pid}\) in \d+\.\d s\.\n", result.stdout), result.stdout
    assert f"sent SIGTERM to the server (pid {pid})" in result.stderr
    # The follower's idle stream ended at the signal: nothing held the shutdown up.
    assert "keep it up to 30 s" not in result.stderr, result.stderr
    assert "server: Application shutdown complete." in result.stderr
    assert "SIGKILL" not in result.stderr
    assert wait_gone(pid)
    assert not (server.data_dir / daemon.PID_FILE).exists()
    assert "pid" not in server.config()

    status = server.run("status")
    assert status.returncode == 1
    assert "not running" in status.stdout
    again = server.run("stop")
    assert again.returncode == 0
    assert "not running" in again.stdout


def test_start_without_a_model_key_says_so(fake: FakeAnthropic) -> None:
    cli = make_cli(fake.url)
    del cli.env["ANTHROPIC_API_KEY"]
    cli.env.pop("ANTHROPIC_AUTH_TOKEN", None)
    try:
        started = cli.run("start")
        assert started.returncode == 0, started.stderr
        assert "server: warning: no model key" in started.stderr  # the server's own warning, as it logged it
        assert "No model key: messages will fail until the server has one" in started.stderr
    finally:
        cli.run("stop", timeout=60)
        shutil.rmtree(cli.root, ignore_errors=True)


# -- errors without a server ---------------------------------------------------------------------------------


@pytest.fixture
def offline() -> Iterator[Cli]:
    cli = make_cli("http://127.0.0.1:9")
    yield cli
    shutil.rmtree(cli.root, ignore_errors=True)


def test_health_with_nothing_running(offline: Cli) -> None:
    port = free_port()
    result = offline.run("health", ASH_SERVER_URL=f"http://127.0.0.1:{port}")
    assert_one_line_error(result, f"Ash server is not running at http://127.0.0.1:{port} (start it with `ash start`)")


def test_commands_without_any_api_key(offline: Cli) -> None:
    assert_one_line_error(offline.run("agent", "list"), "no API key found")


def test_deploy_of_a_folder_without_claude_md(offline: Cli, tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("not an agent")
    assert_one_line_error(offline.run("deploy", str(tmp_path)), "has no CLAUDE.md")
    assert_one_line_error(offline.run("deploy", str(tmp_path / "missing")), "does not exist")


def test_invalid_session_id_is_refused_before_asking_the_server(offline: Cli) -> None:
    assert_one_line_error(offline.run("session", "get", "nope"), "'nope' is not a session id")


# -- SSE framing -------------------------------------------------------------------------------------------


def test_sse_frames_ids_comments_and_multiline_data() -> None:
    lines = [
        ": keepalive",
        "retry: 3000",
        "id: 1",
        "event: session_start",
        'data: {"sessionId":"s"}',
        "",
        "event: text_delta",
        'data: {"delta":',
        'data: "hi"}',
        "",
        "event: done\r\n",
        "data:{}\r\n",
        "\r\n",
    ]
    assert list(iter_events(lines)) == [
        ServerSentEvent("session_start", '{"sessionId":"s"}', id="1"),
        ServerSentEvent("text_delta", '{"delta":\n"hi"}', id="1"),
        ServerSentEvent("done", "{}", id="1"),
    ]


def test_sse_drops_frames_without_data_and_an_unterminated_last_frame() -> None:
    events = list(iter_events(["event: ping", "", "data: x", "", "event: done", "data: {}"]))
    assert events == [ServerSentEvent("message", "x")]
    decoder = SSEDecoder()
    assert decoder.decode("data: partial") is None
    assert decoder.decode("") == ServerSentEvent("message", "partial")


def test_client_parses_a_stream_and_maps_errors() -> None:
    body = b'id: 1\nevent: text_delta\ndata: {"delta":"Hi"}\n\n: keepalive\n\nevent: done\ndata: {"sessionId":"s"}\n\n'

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/sessions/busy/messages":
            return httpx.Response(409, json={"error": "a turn is already running", "statusCode": 409})
        if request.url.path.endswith("/messages"):
            assert json.loads(request.content) == {"content": "hi", "includePartialMessages": True}
            return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
        if request.url.path == "/api/agents/teapot":
            return httpx.Response(418, text="short and stout")
        return httpx.Response(500, text="boom")

    with AshClient("http://ash.test", "ash_k", transport=httpx.MockTransport(handler)) as ash:
        assert list(ash.send_message_stream("s", "hi")) == [
            ("text_delta", {"delta": "Hi"}),
            ("done", {"sessionId": "s"}),
        ]
        with pytest.raises(ConflictError) as busy:
            next(ash.send_message_stream("busy", "hi"))
        assert (busy.value.status_code, busy.value.message) == (409, "a turn is already running")
        with pytest.raises(ServerError) as failed:
            ash.list_agents()
        assert (failed.value.status_code, failed.value.message) == (500, "boom")
        with pytest.raises(StatusError) as odd:
            ash.get_agent("teapot")
        assert type(odd.value) is StatusError
        assert odd.value.status_code == 418


def test_client_reports_a_refused_connection() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with AshClient(url) as ash, pytest.raises(ConnectionFailed) as refused:
        ash.health()
    assert type(refused.value) is ConnectionFailed
    assert refused.value.url == url
    assert refused.value.status_code is None


def test_client_public_surface() -> None:
    exported = set(client_module.__all__)
    assert exported == {
        "DEFAULT_TIMEOUT",
        "Agent",
        "AgentVersion",
        "AshClient",
        "AshClientError",
        "AuthenticationError",
        "BadRequestError",
        "ConflictError",
        "ConnectionFailed",
        "ConnectionLost",
        "GoneError",
        "Health",
        "Message",
        "NotFoundError",
        "PayloadTooLargeError",
        "PermissionDeniedError",
        "ProtocolError",
        "RequestTimedOut",
        "ServerError",
        "ServiceUnavailableError",
        "Session",
        "StatusError",
    }
    assert all(hasattr(client_module, name) for name in exported)


def test_the_cli_and_client_do_not_import_the_server() -> None:
    code = (
        "import sys, ash_cli.client, ash_cli.main\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'ash_server', 'fastapi', 'sqlalchemy'}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# -- configuration ---------------------------------------------------------------------------------------------


def test_config_defaults(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "ASH_DATA_DIR": str(tmp_path / "data")}
    config = resolve(env)
    assert config.server_url == "http://127.0.0.1:4100"
    assert config.api_key is None
    assert config.data_dir == tmp_path / "data"
    assert resolve({**env, "ASH_PORT": "4200"}).server_url == "http://127.0.0.1:4200"

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "api-key").write_text("ash_from-data-dir\n")
    assert resolve(env).api_key == "ash_from-data-dir"


def test_config_precedence_env_over_file_over_defaults(tmp_path: Path) -> None:
    data = tmp_path / "stored-data"
    data.mkdir()
    (data / "api-key").write_text("ash_from-data-dir")
    env = {"HOME": str(tmp_path)}
    save_stored(
        tmp_path / ".ash" / "config.json",
        StoredConfig(server_url="http://stored:1", api_key="ash_stored", data_dir=str(data), pid=42),
    )
    stored = resolve(env)
    assert (stored.server_url, stored.api_key, stored.data_dir, stored.pid) == (
        "http://stored:1",
        "ash_stored",
        data,
        42,
    )
    overridden = resolve({**env, "ASH_SERVER_URL": "http://env:2/", "ASH_API_KEY": "ash_env"})
    assert (overridden.server_url, overridden.api_key, overridden.api_key_source) == (
        "http://env:2",
        "ash_env",
        "ASH_API_KEY",
    )
    save_stored(tmp_path / ".ash" / "config.json", StoredConfig(data_dir=str(data)))
    assert resolve(env).api_key == "ash_from-data-dir"


def test_a_config_written_by_the_reference_cli_is_read(tmp_path: Path) -> None:
    """The reference CLI's `ash link` writes `server_url`/`api_key`; ours reads them (and writes both spellings)."""
    path = tmp_path / ".ash" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"server_url": "http://linked:4100", "api_key": "ash_linked"}))
    linked = resolve({"HOME": str(tmp_path)})
    assert (linked.server_url, linked.api_key) == ("http://linked:4100", "ash_linked")
    save_stored(path, StoredConfig(server_url="http://ours:1", api_key="ash_ours"))
    written = json.loads(path.read_text())
    assert (
        (written["server_url"], written["api_key"])
        == (written["serverUrl"], written["apiKey"])
        == (
            "http://ours:1",
            "ash_ours",
        )
    )


def test_config_file_is_private_and_a_broken_one_is_explained(tmp_path: Path) -> None:
    path = tmp_path / ".ash" / "config.json"
    save_stored(path, StoredConfig(api_key="ash_secret"))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    path.write_text("{not json")
    with pytest.raises(CliError, match="cannot read"):
        resolve({"HOME": str(tmp_path)})


def test_default_data_dir_and_server_environment(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    expected = Path("/var/lib/ash") if os.geteuid() == 0 else tmp_path / ".ash"
    assert default_data_dir(env) == expected
    server_env = daemon.server_environment({**env, "ASH_DATA_DIR": str(tmp_path / "d")})
    assert server_env["ASH_DATA_DIR"] == str(tmp_path / "d")
    assert server_env["ASH_PORT"] == "4100"
    assert "ASH_AGENT_ROOTS" not in server_env  # never the home folder: it holds the operator's secrets
    assert daemon.server_environment({**env, "ASH_AGENT_ROOTS": "/srv"})["ASH_AGENT_ROOTS"] == "/srv"
    assert daemon.server_url({"ASH_HOST": "0.0.0.0", "ASH_PORT": "5000"}) == "http://127.0.0.1:5000"


# -- bundling a folder for `ash deploy` ------------------------------------------------------------------------


def test_bundle_skips_tooling_folders_and_keeps_inside_links(tmp_path: Path) -> None:
    (tmp_path / "CLAUDE.md").write_text("prompt")
    (tmp_path / "skills" / "a").mkdir(parents=True)
    (tmp_path / "skills" / "a" / "SKILL.md").write_bytes(b"\x00binary")
    for skipped in (".git", "__pycache__", "node_modules", ".venv"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "x").write_text("skip me")
    (tmp_path / "link.md").symlink_to(tmp_path / "CLAUDE.md")
    (tmp_path / "loop").symlink_to(tmp_path)
    assert collect(tmp_path) == [
        ("CLAUDE.md", b"prompt"),
        ("link.md", b"prompt"),
        ("skills/a/SKILL.md", b"\x00binary"),
    ]


def test_bundle_refuses_links_out_of_the_folder(tmp_path: Path) -> None:
    agent = tmp_path / "agent"
    agent.mkdir()
    (agent / "CLAUDE.md").write_text("prompt")
    (tmp_path / "secret").write_text("do not upload")
    (agent / "innocent.txt").symlink_to(tmp_path / "secret")
    with pytest.raises(CliError, match="outside the agent folder"):
        collect(agent)
