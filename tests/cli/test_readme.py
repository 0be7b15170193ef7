"""The README's path, run as written: its `ash start` line, then every code block of its Quickstart, in one shell
as a person pasting them would, against a fresh server (`ash start`) and the fake Messages API.

What is substituted, and why (nothing else is):
- `scripts/install.sh` in the start line becomes `true`: the suite runs inside the environment
  `scripts/install.sh --dev` built, and installing again from inside it would rewrite the interpreter running
  the tests. `.venv/bin/ash start` then runs as written, from the checkout.
- `127.0.0.1:4100` becomes a free port (and ASH_PORT says the same): other servers of the suite, or of someone else
  on the machine, may hold 4100.
- The environment, not the text: HOME and ASH_DATA_DIR are fresh temp dirs (the README's `~/.ash/config.json` is
  then this test's, and a root run must not use the machine's /var/lib/ash); ANTHROPIC_BASE_URL points at the fake
  model (no network and no key in tests).
- The Python block runs with this interpreter instead of `~/ash-client/bin/python`: creating that venv needs the
  package index; the dev install pins the same `ash-ai-sdk` (pyproject.toml).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.fakes.anthropic_api import FakeAnthropic, text
from tests.support.server import REPO, free_port, short_tempdir

pytestmark = pytest.mark.slow

README = REPO / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def section(markdown: str, title: str) -> str:
    start = markdown.index(f"\n## {title}\n")
    end = markdown.find("\n## ", start + 1)
    return markdown[start : end if end != -1 else None]


def blocks(markdown: str) -> list[tuple[str, str]]:
    """`(language, code)` of each fenced block, in order."""
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(markdown)]


def test_the_readme_blocks_are_where_this_test_looks() -> None:
    """If the README is rearranged, this says so rather than running nothing."""
    readme = README.read_text()
    setup = blocks(section(readme, "Set up"))
    assert setup[0] == ("bash", "scripts/install.sh && .venv/bin/ash start\n")
    quickstart = blocks(section(readme, "Quickstart"))
    assert [language for language, _ in quickstart] == ["bash", "bash", "python"]
    assert all("127.0.0.1:4100" in code for _, code in quickstart[1:])
    assert "<" not in quickstart[1][1], "a placeholder a reader must replace is not runnable"


@pytest.fixture
def fresh() -> Iterator[tuple[dict[str, str], int]]:
    root = short_tempdir()
    port = free_port()
    (root / "home").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASH_", "ANTHROPIC_"))}
    env.update(HOME=str(root / "home"), ASH_DATA_DIR=str(root / "data"), ASH_PORT=str(port), COLUMNS="200")
    with FakeAnthropic(default=text("Hello! Bonjour! Hola!", chunks=3)) as fake:
        env.update(ANTHROPIC_BASE_URL=fake.url, ANTHROPIC_API_KEY="sk-test", CLAUDE_CODE_MAX_RETRIES="0")
        try:
            yield env, port
        finally:
            subprocess.run([str(REPO / ".venv" / "bin" / "ash"), "stop"], env=env, capture_output=True, timeout=90)
            shutil.rmtree(root, ignore_errors=True)


def test_the_quickstart_runs_as_written(fresh: tuple[dict[str, str], int]) -> None:
    env, port = fresh
    readme = README.read_text()
    start_line = blocks(section(readme, "Set up"))[0][1]
    quickstart = blocks(section(readme, "Quickstart"))

    def substituted(code: str) -> str:
        return code.replace("127.0.0.1:4100", f"127.0.0.1:{port}")

    started = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", start_line.replace("scripts/install.sh", "true")],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    assert f"is running at http://127.0.0.1:{port}" in started.stdout

    shell = "\n".join(substituted(code) for language, code in quickstart if language == "bash")
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", shell], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    out = ran.stdout
    assert "Deployed hello-agent version 1" in out
    assert "Hello! Bonjour! Hola!\n" in out  # ash chat's streamed answer
    assert re.search(r"[0-9a-f-]{36}\s+hello-agent\s+active", out), out  # ash session list
    # The curl stream: SSE frames, the assistant's message among them, to its end.
    stream = out[out.index("event: ") :]
    assert stream.rstrip().endswith("}") and "event: done" in stream
    messages = [json.loads(line[len("data: ") :]) for line in stream.splitlines() if line.startswith("data: ")]
    assert any(m.get("type") == "assistant" and "Hello! Bonjour! Hola!" in json.dumps(m) for m in messages), stream

    (python_code,) = [code for language, code in quickstart if language == "python"]
    client = subprocess.run(
        [sys.executable, "-c", substituted(python_code)], env=env, capture_output=True, text=True, timeout=300
    )
    assert client.returncode == 0, client.stdout + client.stderr
    assert "Hola" in client.stdout
