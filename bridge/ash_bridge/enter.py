"""Runs a command inside a live bubblewrap sandbox: its user, mount, PID, network, IPC, UTS and cgroup namespaces.

Standalone (standard library only): the launcher runs this file's source with `python -I -S -c` as the sandbox
user, after the limits prefix has put it in the sandbox's cgroup. bwrap's `--disable-userns` nests the sandbox in
a second user namespace, while its other namespaces belong to the first: so the first is entered (the sandbox
user owns it), then the other namespaces, then the nested user namespace. The command runs with no capabilities
(it is not uid 0 inside), as a child, since only children join a PID namespace.

    python -I -S -c "$(cat enter.py)" <bwrap's pid> <working dir> <command...>

The bridge template (template.py) imports it to put a forked bridge into a sandbox the same way (`join`).

The sandbox's pid 1 (bwrap's child) is looked up here, as the sandbox user, rather than by the server: under
systemd's `ProtectProc=invisible` (systemd/ash.service) the server's user cannot see the sandbox user's processes
in /proc at all, while this helper, running as their owner, can.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import sys

NS_GET_PARENT = 0xB702  # _IO(0xb7, 0x2)
CLONE_NEWUSER = 0x10000000
NAMESPACES = {
    "ipc": 0x08000000,
    "uts": 0x04000000,
    "net": 0x40000000,
    "cgroup": 0x02000000,
    "pid": 0x20000000,
    "mnt": 0x00020000,
}


def _setns(libc: ctypes.CDLL, fd: int, kind: int) -> None:
    if libc.setns(fd, kind) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns({kind:#x}): {os.strerror(err)}")


# How this helper says it found no sandbox to enter; the server answers that as "cannot run commands now". The
# same as ash_bridge.protocol's EXEC_NOT_RUNNING* (this file runs as source, with no package to import from).
NOT_RUNNING = 125
NOT_RUNNING_MESSAGE = "the sandbox has no process inside its namespaces (is it still starting or stopping?)"


def inner_pid(outer: str) -> str | None:
    """bwrap's child: the sandbox's pid 1, in the sandbox's namespaces, seen from the host."""
    try:
        with open(f"/proc/{outer}/task/{outer}/children") as children:
            found = children.read().split()
        if found:
            return found[0]
    except OSError:  # a kernel without CONFIG_PROC_CHILDREN: scan
        pass
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as stat:
                fields = stat.read().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == outer:
            return name
    return None


PR_CAPBSET_DROP = 24
EINVAL = 22


def drop_bounding_set(libc: ctypes.CDLL) -> None:
    """Empty the capability bounding set (joining the sandbox's user namespace made it full there), so that nothing
    this process runs or execs can ever gain a capability in the sandbox."""
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == EINVAL:  # past the last one
            break


class NotRunning(Exception):
    """The sandbox has no process inside its namespaces to join."""


def join(bwrap_pid: str) -> None:
    """Move this (single-threaded) process into the namespaces of the sandbox bwrap `bwrap_pid` runs: its user,
    mount, network, IPC, UTS and cgroup namespaces at once, its PID namespace for the children it forks next.
    The process then holds every capability of the sandbox's user namespace: drop them before running anything."""
    pid = inner_pid(bwrap_pid)
    if pid is None:
        raise NotRunning(NOT_RUNNING_MESSAGE)
    join_process(pid)


def join_process(pid: str) -> None:
    """`join`, given a process inside the sandbox (seen from the host)."""
    libc = ctypes.CDLL(None, use_errno=True)
    user = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    others = {kind: os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC) for name, kind in NAMESPACES.items()}
    outer = fcntl.ioctl(user, NS_GET_PARENT)
    _setns(libc, outer, CLONE_NEWUSER)
    for kind, fd in others.items():
        _setns(libc, fd, kind)
    _setns(libc, user, CLONE_NEWUSER)
    for fd in (user, outer, *others.values()):
        os.close(fd)


def main(args: list[str]) -> int:
    bwrap_pid, cwd, *command = args
    try:
        join(bwrap_pid)
    except NotRunning:
        sys.stderr.write(NOT_RUNNING_MESSAGE + "\n")
        return NOT_RUNNING
    drop_bounding_set(ctypes.CDLL(None, use_errno=True))
    os.chdir(cwd)
    child = os.fork()
    if child == 0:
        try:
            os.execvp(command[0], command)  # noqa: S606 (a command, not a shell line)
        finally:
            os._exit(127)
    _, status = os.waitpid(child, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
