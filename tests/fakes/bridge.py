"""A stand-in bridge for in-process tests of the core: it speaks the real wire protocol (ash_bridge.protocol) over the
sandbox's socket but has no SDK behind it, so a sandbox starts in milliseconds and needs neither bubblewrap nor the
Claude Code CLI. Started as the server starts the real one (ASH_BRIDGE_ENTRY, environment and config file alike).

Each query answers with an SDK-shaped `system` init, an `assistant` text and a `result`, then `done`:
- the text is `echo: <prompt>`, and ` (remembering <id>)` when the sandbox was started with `resume=<id>` (how the
  server continues a conversation on a new sandbox), so a test sees whether a session kept its memory;
- a prompt starting with `slow` waits a second before it answers (a turn that is running), `fail` answers with an
  error event.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any


def _frame(**fields: Any) -> bytes:
    return (json.dumps(fields) + "\n").encode()


async def main() -> None:
    config = json.loads(Path(os.environ["ASH_BRIDGE_CONFIG"]).read_text())
    resume = config.get("resume")
    sdk_session_id = resume or f"fake-sdk-{uuid.uuid4().hex[:12]}"
    reader, writer = await asyncio.open_unix_connection(os.environ["ASH_BRIDGE_SOCKET"], limit=32 * 1024 * 1024)
    writer.write(_frame(event="ready", id="", pid=os.getpid()))
    await writer.drain()
    while line := await reader.readline():
        command = json.loads(line)
        if command["cmd"] == "shutdown":
            break
        if command["cmd"] != "query":
            continue
        rid = command["id"]
        prompt = command.get("prompt")
        text = prompt if isinstance(prompt, str) else json.dumps(prompt)
        if text.startswith("slow"):
            await asyncio.sleep(1.0)
        writer.write(
            _frame(event="message", id=rid, message={"type": "system", "subtype": "init", "session_id": sdk_session_id})
        )
        if text.startswith("fail"):
            writer.write(_frame(event="error", id=rid, error="the fake SDK failed", code="sdk_error"))
        else:
            answer = f"echo: {text}" + (f" (remembering {resume})" if resume else "")
            assistant = {"role": "assistant", "content": [{"type": "text", "text": answer}], "model": "fake"}
            writer.write(
                _frame(
                    event="message",
                    id=rid,
                    message={"type": "assistant", "message": assistant, "session_id": sdk_session_id},
                )
            )
            result = {"type": "result", "subtype": "success", "result": answer, "num_turns": 1, "is_error": False}
            writer.write(_frame(event="message", id=rid, message={**result, "session_id": sdk_session_id}))
        writer.write(_frame(event="done", id=rid, sdkSessionId=sdk_session_id))
        await writer.drain()
    writer.close()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
