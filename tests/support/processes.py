"""Looking for sandbox processes in the real process table."""

from __future__ import annotations

from pathlib import Path


def pids_with_env(name: str, value: str) -> list[int]:
    """Every live process whose environment has name=value (tests run as root, so /proc/*/environ is readable)."""
    needle = f"{name}={value}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            found.append(int(proc.name))
    return found


def descendants(pid: int) -> set[int]:
    """`pid` and every live process below it."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(proc.name))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        if current not in found:
            found.add(current)
            todo.extend(children.get(current, []))
    return found


def env_values(name: str, *, under: int | None = None) -> dict[str, set[int]]:
    """Every value of the variable `name` among live processes (below the process `under`, if given), with the
    pids that have it. Other tests' servers may run on the same machine: `under` keeps to one server's."""
    prefix = f"{name}=".encode()
    scope = descendants(under) if under is not None else None
    found: dict[str, set[int]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or (scope is not None and int(proc.name) not in scope):
            continue
        try:
            environ = (proc / "environ").read_bytes()
            state = (proc / "stat").read_text().split(") ", 1)[1][0]
        except OSError:
            continue
        if state == "Z":
            continue
        for item in environ.split(b"\0"):
            if item.startswith(prefix):
                found.setdefault(item[len(prefix) :].decode(errors="replace"), set()).add(int(proc.name))
    return found
