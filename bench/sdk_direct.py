"""The same turns as the API's, sent straight to a connected ClaudeSDKClient: the baseline Ash's overhead is
measured against.

Run by bench/message_overhead.py as `python -I bench/sdk_direct.py <config.json>` in a process set up like the
bridge: the same interpreter and flags, uvloop, the bridge's own SdkDriver with the bridge's options for the agent's
folder, HOME and CLAUDE_CONFIG_DIR of its own, the sandbox's environment allowlist. What is left out is Ash: no
server, no socket to it, no store, no SSE, no model gateway (the CLI reaches the fake model over TCP directly).
Prints one JSON document: per turn, when the query went in and when each SDK message came out (CLOCK_MONOTONIC ns).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from ash_bridge.driver import SdkDriver


async def run(config: dict[str, Any]) -> dict[str, Any]:
    driver = SdkDriver(config["bridge"])
    started = time.monotonic_ns()
    await driver.connect()
    connected = time.monotonic_ns()
    turns = []
    cpu_before = 0.0
    try:
        for n in range(config["warmup"] + config["turns"]):
            if n == config["warmup"]:
                cpu_before = cpu_seconds()
            query = time.monotonic_ns()
            messages = []
            async for message in driver.turn(f"{config['prompt']} {n}"):
                messages.append((time.monotonic_ns(), message.get("type")))
            if n >= config["warmup"]:
                turns.append({"query": query, "messages": messages})
            await asyncio.sleep(config.get("pause_s", 0))
        cpu = cpu_seconds() - cpu_before
    finally:
        await driver.disconnect()
    return {"connect_ns": connected - started, "turns": turns, "cpu_s": cpu}


def cpu_seconds() -> float:
    """CPU time of this process and the CLI it started (its descendants)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    children.setdefault(int(f.read().rsplit(") ", 1)[1].split()[1]), []).append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    todo, ticks = [os.getpid()], 0
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(") ", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def main() -> None:
    with open(sys.argv[1]) as f:
        config = json.load(f)
    try:
        import uvloop
    except ImportError:
        result = asyncio.run(run(config))
    else:
        result = uvloop.run(run(config))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
