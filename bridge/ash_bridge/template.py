"""The bridge template: one process that has imported the bridge and the SDK once, and forks a bridge into each new
sandbox, so a sandbox start costs no interpreter start and no imports (~0.5-0.8 s of CPU each, the `mcp` package
most of it).

    python -I -m ash_bridge.template <listening socket fd> <server uid>

The server starts it as the sandbox user (no capabilities, no_new_privs) and asks over the socket, once per
sandbox, with the pid of the sandbox's bubblewrap (running a stub command), its environment, working directory,
file size limit, and the write end of its log pipe:

1. the template forks a child, which waits for the sandbox's stub to run (bubblewrap has then set up every mount
   and namespace) and joins its namespaces as `enter.py` does for exec;
2. the child joins the sandbox's cgroups (where their files are its user's, cgroup v1), forks the bridge (only
   children join a PID namespace) and tells the server its pid; the server puts it in the cgroups if the child
   could not, and answers `go`; only then does the bridge run anything;
3. the bridge drops every capability it got by joining the sandbox's user namespace (bounding, ambient,
   permitted, effective and inheritable sets), starts a session of its own, takes the sandbox's limit, directory,
   environment and log, and runs `ash_bridge.main` with everything already imported;
4. the child waits for the bridge and tells the server how it ended.

The template accepts connections from the server's uid and root only. It must stay single-threaded: a process
with threads cannot join a user namespace.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import json
import os
import resource
import signal
import socket
import sys
import time
from typing import Any

from . import enter
from . import main as bridge_main

# Imported here, once, for every bridge to come: what makes a forked bridge start in milliseconds.
with contextlib.suppress(ImportError):
    import uvloop  # noqa: F401

PR_SET_PDEATHSIG = 1
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CAPABILITY_VERSION_3 = 0x20080522
# How long the child waits for bubblewrap to run the sandbox's stub (its mounts and namespaces are ready then).
STUB_WAIT_S = 20.0
MAX_REQUEST = 1024 * 1024


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32))


def drop_capabilities(libc: ctypes.CDLL) -> None:
    """No capability left in any set, the bounding set included (what a non-root execve gives bwrap's command)."""
    enter.drop_bounding_set(libc)
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def stub_process(bwrap_pid: str, stub: str, limit_s: float = STUB_WAIT_S) -> str:
    """The sandbox's stub command (bwrap's grandchild, pid 2 inside), once it runs `stub`."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        reaper = enter.inner_pid(bwrap_pid)
        command = enter.inner_pid(reaper) if reaper is not None else None
        if command is not None:
            with contextlib.suppress(OSError), open(f"/proc/{command}/cmdline", "rb") as cmdline:
                if cmdline.read().split(b"\0")[0] == stub.encode():
                    return command
        time.sleep(0.002)
    raise enter.NotRunning(f"the sandbox's stub did not start within {limit_s:.0f}s")


def _send(conn: socket.socket, **fields: Any) -> None:
    conn.sendall(json.dumps(fields).encode() + b"\n")


def _read_line(conn: socket.socket) -> bytes:
    line = b""
    while not line.endswith(b"\n") and len(line) < MAX_REQUEST:
        chunk = conn.recv(4096)
        if not chunk:
            break
        line += chunk
    return line


def run_bridge(request: dict[str, Any], log_fd: int, go: int) -> None:
    """In the bridge process, inside the sandbox's namespaces: wait for `go`, become the sandbox's bridge."""
    libc = ctypes.CDLL(None, use_errno=True)
    if os.read(go, 1) != b"g":
        os._exit(1)  # the server did not put us in the sandbox's cgroups: run nothing
    os.close(go)
    drop_capabilities(libc)
    os.setsid()  # a session of its own: no controlling terminal (bwrap's --new-session)
    fsize = request.get("fsize")
    if isinstance(fsize, int):
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    os.chdir(request["cwd"])
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    for fd in (devnull, log_fd):
        if fd > 2:
            os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
    code: object = 0
    try:
        source = request.get("source")
        if isinstance(source, str) and source:
            # The server's ASH_BRIDGE_ENTRY was `python -I -c <source>` (an instrumented bridge): run that.
            exec(compile(source, "<ASH_BRIDGE_ENTRY>", "exec"), {"__name__": "__main__"})  # noqa: S102
        else:
            bridge_main.main()
    except SystemExit as exc:
        code = exc.code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 1)


def serve_one(conn: socket.socket) -> None:
    """In the child the template forked for one request: join the sandbox, fork the bridge, report on it."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    fds = array.array("i")
    data, ancillary, _, _ = conn.recvmsg(MAX_REQUEST, socket.CMSG_SPACE(fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    if not data.endswith(b"\n"):
        data += _read_line(conn)
    request = json.loads(data)
    if len(fds) != 1:
        _send(conn, error="expected exactly one file descriptor (the sandbox's log)")
        return
    log_fd = fds[0]
    joined, why_not = False, ""
    try:  # cgroup v1, whose files the server gave to this user: join them now
        for procs in request.get("cgroups") or []:
            with open(procs, "w") as members:
                members.write(str(os.getpid()))
        joined = bool(request.get("cgroups"))
    except OSError as exc:
        why_not = f"{exc.filename}: {exc.strerror}"
    try:
        enter.join_process(stub_process(request["target"], request["stub"]))
    except (enter.NotRunning, OSError) as exc:
        _send(conn, error=f"could not join the sandbox: {exc}")
        return
    go_read, go_write = os.pipe()
    bridge = os.fork()
    if bridge == 0:
        try:
            conn.close()
            os.close(go_write)
            run_bridge(request, log_fd, go_read)
        finally:
            os._exit(1)
    os.close(go_read)
    os.close(log_fd)
    _send(conn, pid=bridge, joined=joined, why_not=why_not)
    if _read_line(conn).strip() == b"go":
        os.write(go_write, b"g")
    os.close(go_write)  # without `go` the bridge reads nothing and exits
    _, status = os.waitpid(bridge, 0)
    code = os.waitstatus_to_exitcode(status)
    with contextlib.suppress(OSError):
        _send(conn, exit=code)


def main() -> None:
    # The server binds the socket (its own, mode 0600) and hands it over: the template needs no folder to write.
    listener_fd, server_uid = int(sys.argv[1]), int(sys.argv[2])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # the template dies with the server
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the children it forks are reaped by the kernel
    listener = socket.socket(fileno=listener_fd)
    print("ready", flush=True)
    while True:
        conn, _ = listener.accept()
        uid = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        peer_uid = int.from_bytes(uid[4:8], sys.byteorder)
        if peer_uid not in (0, server_uid):
            conn.close()
            continue
        if os.fork() == 0:
            try:
                listener.close()
                serve_one(conn)
            finally:
                os._exit(0)
        conn.close()


if __name__ == "__main__":
    main()
