"""The reference's TypeScript SDK and CLI (../shared/clients/reference-ts, built from ash-ai-org/ash-ai), installed
once per test run into a temp folder and driven as outside clients with Node."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .server import REPO

SOURCE = REPO.parent / "shared" / "clients" / "reference-ts"

PRELUDE = """
import { AshClient } from '@ash-ai/sdk';
const client = new AshClient({ serverUrl: process.env.ASH_SERVER_URL, apiKey: process.env.ASH_API_KEY });
const out = {};
// Every call's outcome, success or the SDK's error, so one script reports on many calls.
async function attempt(fn) {
  try { return { ok: true, value: await fn() }; }
  catch (e) { return { ok: false, status: e.statusCode ?? null, error: String(e.message ?? e) }; }
}
"""


class ReferenceClients:
    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def install(cls, target: Path) -> ReferenceClients:
        """Copy the built packages and `npm install` them (links the workspace, fetches the CLI's two deps)."""
        if shutil.which("node") is None or shutil.which("npm") is None:
            raise RuntimeError("node and npm are needed to drive the reference's TypeScript clients")
        shutil.copytree(SOURCE, target, dirs_exist_ok=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=target,
            check=True,
            capture_output=True,
            timeout=300,
        )
        return cls(target)

    def sdk(self, body: str, *, url: str, key: str, timeout_s: float = 120) -> dict[str, Any]:
        """Run `body` (ES module code using `client`, `attempt` and filling `out`) and return `out`."""
        script = PRELUDE + body + "\nconsole.log(JSON.stringify(out));\n"
        env = {**os.environ, "ASH_SERVER_URL": url, "ASH_API_KEY": key}
        done = subprocess.run(
            ["node", "--input-type=module", "-e", script],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    def cli(self, *args: str, env: dict[str, str], timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        """The reference CLI (`ash ...`) with `env` (HOME, ASH_SERVER_URL, ASH_API_KEY as the test wants)."""
        return subprocess.run(
            ["node", str(self.root / "packages" / "cli" / "dist" / "index.js"), *args],
            cwd=self.root,
            env={"PATH": os.environ["PATH"], **env},
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
