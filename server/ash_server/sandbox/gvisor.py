"""gVisor: each sandbox an OCI container under `runsc`, whose user-space kernel serves every system call the agent
makes, so a host kernel bug reachable through bubblewrap's namespaces is not reachable from the sandbox.

The process chain (docs/decisions/0014-gvisor-runtime.md):

    <cgroup join>               as the server: join the sandbox's cgroups (runsc runs with --ignore-cgroups, so
                                it and everything it starts, the sentry and the gofer, stay in them)
    setpriv --pdeathsig KILL    the sandbox dies with the server, as bubblewrap's --die-with-parent has it
    runsc run                   as root; the sentry runs as nobody in namespaces of its own, ptrace platform;
                                `--attached`: the sentry and gofer die with this process
    <bridge>                    uid U inside gVisor, no capability; sees what oci.py binds, nothing else

The bridge reaches its host sockets (bridge.sock, model.sock, egress.sock in the sandbox's folder) through
`--host-uds=open`: it may connect to host sockets bound in, and create none. State (runsc's `--root`) and bundles
live under the data dir (`run/gvisor/`); a stopped sandbox's container is deleted, and the crash sweep deletes
whatever a previous server left there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

from ..errors import SandboxError
from ..paths import remove_tree
from .bwrap import identity_files, sandbox_ids
from .environment import DEFAULT_PATH
from .launcher import LaunchSpec, SandboxProcess, probe_spec
from .limits import cgroupfs
from .oci import INIT, environment, make_dirs, rlimits, write_bundle

PROBE_S = 60.0
EXEC_RECORD = "/tmp/.ash-exec-"  # noqa: S108 (the sandbox's own private /tmp)
# SIGKILL every process whose session (the 4th field after "comm) " in /proc/<pid>/stat) is the one in "$1".
KILL_MARKED = (
    'record=$1; sid=$(cat "$record" 2>/dev/null) && [ -n "$sid" ] && for p in /proc/[0-9]*; do '
    's=$(cat "$p/stat" 2>/dev/null) || continue; s=${s##*) }; set -- $s; [ "$4" = "$sid" ] && kill -9 "${p#/proc/}"; '
    'done; rm -f "$record"; exit 0'
)
# gVisor's kernel of 2022 (Debian's runsc) refuses the AT_NO_AUTOMOUNT flag, which coreutils' ls and stat pass to
# every stat call ("Invalid argument"); busybox's ls and stat do not, so they come first in a gVisor sandbox's PATH.
# (cp, mv, du, GNU find, tar, git, ... were tried and work as they are. The CLI's Bash tool runs its own bfs for
# `find`, which fails the same way and cannot be redirected: docs/security.md.)
COMPAT_COMMANDS = ("ls", "stat")
# Host tasks of a gVisor sandbox on the ptrace platform (measured with the CLI, a Bash tool and `sleep`s): ~200
# while idle (the CLI's and the bridge's threads each have a tracing thread and a stub thread, plus the sentry's and
# the gofer's own), ~12 more for each process the agent starts.
HOST_TASKS_IDLE = 256
HOST_TASKS_PER_PROCESS = 12


def host_pids(max_pids: int) -> int:
    """The cgroup pids.max of a gVisor sandbox whose agent may run `max_pids` processes and threads. The limit is on
    what the host sees, so it is approximate in the agent's terms; reaching it kills the sandbox (the sentry cannot
    make a thread), which the guard names as the process limit, as under bubblewrap."""
    return HOST_TASKS_IDLE + HOST_TASKS_PER_PROCESS * max_pids


class GvisorLauncher:
    name = "gvisor"
    bridge_start = "exec"  # no bridge template: the template's fork joins host namespaces, gVisor has none to join

    def __init__(self, base: Path, *, runsc: str | None = None) -> None:
        self.runsc = runsc or shutil.which("runsc") or "runsc"
        self.base = base

    @property
    def state_root(self) -> Path:
        return self.base / "state"

    @property
    def compat_bin(self) -> Path:
        return self.base / "compat-bin"

    def make_compat_bin(self) -> None:
        """COMPAT_COMMANDS as links to busybox, in a folder the sandboxes get read-only (oci.COMPAT_BIN)."""
        busybox = shutil.which("busybox")
        if busybox is None or not Path(INIT).is_file():
            missing = "busybox" if busybox is None else "tini"
            raise SandboxError(f"{missing} is not installed (scripts/install.sh --runtime gvisor installs it)")
        folder = self.compat_bin
        make_dirs(folder)
        for name in COMPAT_COMMANDS:
            link = folder / name
            if not link.is_symlink():
                link.symlink_to(busybox)

    def bundle(self, sandbox_id: str) -> Path:
        return self.base / "bundles" / sandbox_id

    def global_flags(self, network: str = "none") -> list[str]:
        return [
            f"--root={self.state_root}",
            # ptrace: works on any host. (KVM's platform, faster where /dev/kvm exists, hung starting here.)
            "--platform=ptrace",
            # host: the agent's network is the host's, through gVisor's own network stack (what "full" means).
            f"--network={'host' if network == 'full' else 'none'}",
            "--host-uds=open",
            "--ignore-cgroups",
        ]

    def outer_argv(self, spec: LaunchSpec) -> list[str]:
        return [
            *self.host_prefix(spec),
            # The mount points gVisor makes inside the sandbox (in its /tmp, say) get runsc's umask: the server's
            # 077 would leave the sandbox user unable to walk to its own workspace. (uvloop takes no umask=.)
            "/bin/sh",
            "-c",
            'umask 022 && exec "$@"',
            "ash-umask",
            "setpriv",
            "--pdeathsig=KILL",
            "--",
            self.runsc,
            *self.global_flags(spec.network),
            "run",
            f"--bundle={self.bundle(spec.sandbox_id)}",
            spec.sandbox_id,
        ]

    @staticmethod
    def host_prefix(spec: LaunchSpec) -> list[str]:
        """Only the cgroup join: the file size limit is gVisor's own (oci.rlimits), and a host rlimit on runsc
        would limit the sentry and gofer, not the agent."""
        if spec.confinement is None or not spec.confinement.procs_files:
            return []
        return cgroupfs.join_argv(spec.confinement.procs_files)

    async def launch(self, spec: LaunchSpec) -> SandboxProcess:
        return await self.start_runsc(spec)

    async def start_runsc(self, spec: LaunchSpec) -> asyncio.subprocess.Process:
        identity_dir = spec.sandbox_dir / "etc"
        identity_dir.mkdir(exist_ok=True)
        for name, text in identity_files(spec).items():
            (identity_dir / name).write_text(text)
            (identity_dir / name).chmod(0o644)
        self.state_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.compat_bin.is_dir():
            self.make_compat_bin()
        write_bundle(self.bundle(spec.sandbox_id), spec, identity_dir, self.compat_bin)
        return await asyncio.create_subprocess_exec(
            *self.outer_argv(spec),
            # What identifies the sandbox to the crash sweep (manager._is_our_sandbox) and nothing else.
            env={"PATH": DEFAULT_PATH, "ASH_SANDBOX_ID": spec.sandbox_id},
            cwd="/",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )

    def exec_argv(self, spec: LaunchSpec, sandbox_pid: int, command: list[str]) -> list[str]:
        """`runsc exec` with a process spec file: the environment stays off every command line `ps` shows. The
        file goes with the bundle when the sandbox stops."""
        uid, gid = sandbox_ids(spec)
        process = {
            "terminal": False,
            "user": {"uid": uid, "gid": gid, "additionalGids": []},
            "args": command,
            "env": environment(spec, self.compat_bin),
            "cwd": str(spec.workspace),
            "capabilities": {"bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []},
            "rlimits": rlimits(spec),
            "noNewPrivileges": True,
        }
        path = self.bundle(spec.sandbox_id) / f"exec-{uuid.uuid4().hex}.json"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise SandboxError(f"its bundle is gone ({exc.strerror})", sandbox_id=spec.sandbox_id) from exc
        with os.fdopen(fd, "w") as out:
            json.dump(process, out)
        return [self.runsc, f"--root={self.state_root}", "exec", f"--process={path}", spec.sandbox_id]

    @staticmethod
    def marked(command: list[str]) -> tuple[list[str], str]:
        """`command` in a session of its own inside the sandbox, whose id it writes to /tmp/.ash-exec-<marker>: killing
        `runsc exec` on the host (what an exec's timeout does) leaves what it started running in gVisor's kernel, so
        the timeout then kills that session (kill_marked). (gVisor shows no other exec's environment or command line
        in /proc, only its stat.) The record goes when the command ends."""
        marker = uuid.uuid4().hex
        record = 'echo $$ > "$0" || exit 125; "$@"; status=$?; rm -f "$0"; exit $status'
        return ["setsid", "--wait", "/bin/sh", "-c", record, f"{EXEC_RECORD}{marker}", *command], marker

    async def kill_marked(self, spec: LaunchSpec, marker: str) -> None:
        """SIGKILL every process of a timed-out exec's session, and remove its record."""
        argv = self.exec_argv(spec, 0, ["/bin/sh", "-c", KILL_MARKED, "ash-kill", f"{EXEC_RECORD}{marker}"])
        quiet = asyncio.subprocess.DEVNULL
        process = await asyncio.create_subprocess_exec(*argv, stdin=quiet, stdout=quiet, stderr=quiet)
        try:
            async with asyncio.timeout(PROBE_S):
                await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def release(self, spec: LaunchSpec) -> None:
        """After the sandbox's processes ended: its container's state and its bundle."""
        await self._delete(spec.sandbox_id)
        await remove_tree(self.bundle(spec.sandbox_id))

    async def _delete(self, container: str) -> None:
        process = await asyncio.create_subprocess_exec(
            self.runsc,
            f"--root={self.state_root}",
            "delete",
            "--force",
            container,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await process.wait()

    async def sweep(self) -> int:
        """Delete the containers and bundles a previous server of this data dir left behind; how many."""
        found = 0
        if self.state_root.is_dir() and shutil.which(self.runsc) is not None:
            process = await asyncio.create_subprocess_exec(
                self.runsc,
                f"--root={self.state_root}",
                "list",
                "--quiet",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
            )
            output, _ = await process.communicate()
            for container in output.decode().split():
                await self._delete(container)
                found += 1
        bundles = self.base / "bundles"
        for leftover in bundles.iterdir() if bundles.is_dir() else []:
            await remove_tree(leftover)
        return found

    async def probe(self, ids: tuple[int, int] | None, runtime: list[Path]) -> str | None:
        """Start one real gVisor sandbox that runs the bridge's interpreter as the sandbox user; why it failed, or
        None."""
        if shutil.which(self.runsc) is None:
            return "runsc is not installed (scripts/install.sh --runtime gvisor installs it)"
        if os.geteuid() != 0:
            # runsc --rootless does run as an unprivileged user here, but maps only root inside gVisor onto that
            # user: not wired up (ADR 0014).
            return "Ash runs runsc as root: the server must be root (runsc's rootless mode is not supported)"
        with tempfile.TemporaryDirectory(prefix="ash-probe-") as tmp:
            base = Path(tmp)
            spec = probe_spec(base, ids, runtime, f"probe-{uuid.uuid4().hex[:12]}")
            # A state dir and bundles of its own: the crash sweep, which may run meanwhile, deletes every container
            # and bundle in the server's.
            launcher = GvisorLauncher(base / "gvisor", runsc=self.runsc)
            try:
                process = await launcher.start_runsc(spec)
            except (OSError, SandboxError) as exc:
                return str(exc) or type(exc).__name__
            try:
                async with asyncio.timeout(PROBE_S):
                    output, _ = await process.communicate()
            except (TimeoutError, asyncio.CancelledError) as exc:
                # Timed out, or the server stops while probing in the background: runsc goes too.
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return f"runsc did not finish within {PROBE_S:.0f} s"
            finally:
                await launcher.release(spec)
            if process.returncode != 0:
                text = output.decode(errors="replace").strip()
                return text[-500:] or f"runsc exited with status {process.returncode}"
        return None
