"""bubblewrap: each sandbox in its own user, mount, PID, IPC, UTS, cgroup and (by default) network namespaces.

The process chain (docs/decisions/0004-bubblewrap.md):

    <limits prefix>        as the server (root, or its own user with capabilities): join the sandbox's cgroups,
                           cap file sizes
    setpriv --reuid=U ...  drop to the sandbox user for good (no groups, no capabilities left, no_new_privs)
    bwrap --args FD        unprivileged, in a user namespace of its own; uid U inside as outside
    <bridge>               sees /usr, a few /etc files, the Python runtime (read-only), its workspace and HOME
                           (read-write), its sandbox dir (read-only: bridge.sock), a private /tmp, its own /proc

Host paths are bound at the same absolute paths, so paths in the environment, in the SDK's transcript folder names
and in tool output are the same in every isolation mode. bwrap's options, the environment among them, go through a
memfd (`--args FD`), not through a command line that `ps` shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ash_bridge import protocol

from ..errors import SandboxError
from .environment import DEFAULT_PATH
from .launcher import LaunchSpec, SandboxProcess, drop_privileges, probe_spec

HOSTNAME = "sandbox"
# The helper that runs a command inside a live sandbox: read as source, run by the sandbox's own user.
ENTER_SOURCE = Path(protocol.__file__).with_name("enter.py")
# What of /etc the CLI, bash, git and Python need; nothing else (no shadow, no ssh keys, no proxy or package
# manager credentials). passwd, group and hosts are written for each sandbox instead.
ETC = (
    "alternatives",
    "bash.bashrc",
    "debian_version",
    "gai.conf",
    "host.conf",
    "inputrc",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "magic",
    "magic.mime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "protocols",
    "python3",
    f"python3.{sys.version_info.minor}",
    "services",
    "shells",
    "ssl/certs",
    "ssl/openssl.cnf",
    "terminfo",
    "timezone",
)
ETC_FULL_NETWORK = ("resolv.conf",)
ROOT_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# The bridge's own parent-death check compares with the server's pid, which a PID namespace hides;
# --die-with-parent ties the sandbox to the server instead.
HOST_ONLY_ENV = ("ASH_SERVER_PID",)


def sandbox_ids(spec: LaunchSpec) -> tuple[int, int]:
    return spec.ids if spec.ids is not None else (os.getuid(), os.getgid())


def identity_files(spec: LaunchSpec) -> dict[str, str]:
    """/etc/passwd, /etc/group and /etc/hosts of the sandbox: its user, root, and nothing of the host."""
    uid, gid = sandbox_ids(spec)
    passwd = ["root:x:0:0:root:/root:/usr/sbin/nologin", f"sandbox:x:{uid}:{gid}:Ash sandbox:{spec.home}:/bin/bash"]
    group = ["root:x:0:", f"sandbox:x:{gid}:"]
    if uid != 65534:
        passwd.append("nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin")
    if gid != 65534:
        group.append("nogroup:x:65534:")
    hosts = ["127.0.0.1 localhost " + HOSTNAME, "::1 localhost ip6-localhost ip6-loopback"]
    return {name: "\n".join(lines) + "\n" for name, lines in (("passwd", passwd), ("group", group), ("hosts", hosts))}


def system_mounts(root: Path = Path("/")) -> list[str]:
    """/usr read-only, and /bin, /lib... as on the host: symlinks into /usr on merged-/usr systems, else binds."""
    args = ["--ro-bind", str(root / "usr"), "/usr"]
    for name in ROOT_LINKS:
        path = root / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), f"/{name}"]
        elif path.is_dir():
            args += ["--ro-bind", str(path), f"/{name}"]
    return args


def runtime_mounts(paths: Sequence[Path]) -> list[Path]:
    """The runtime paths that are not under /usr already nor under one another, parents first."""
    kept: list[Path] = []
    for path in sorted({p.resolve() for p in paths}, key=lambda p: len(p.parts)):
        if path == Path("/usr") or Path("/usr") in path.parents:
            continue
        if any(k == path or k in path.parents for k in kept):
            continue
        kept.append(path)
    return kept


def bwrap_args(spec: LaunchSpec, identity_dir: Path, *, root: Path = Path("/")) -> list[str]:
    """The options bwrap gets for one sandbox, through `--args` (the command itself must be on its command line)."""
    uid, gid = sandbox_ids(spec)
    args = [
        "--unshare-user",
        "--uid",
        str(uid),
        "--gid",
        str(gid),
        "--disable-userns",  # no user namespaces inside: a large kernel attack surface
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--hostname",
        HOSTNAME,
        "--die-with-parent",
        "--new-session",  # no controlling terminal to inject keystrokes into (TIOCSTI)
    ]
    if spec.network != "full":
        args.append("--unshare-net")  # loopback of its own, nothing else
    args += system_mounts(root)
    etc = [*ETC, *(ETC_FULL_NETWORK if spec.network == "full" else ())]
    for name in etc:
        args += ["--ro-bind-try", str(root / "etc" / name), f"/etc/{name}"]
    for name in ("passwd", "group", "hosts"):
        args += ["--ro-bind", str(identity_dir / name), f"/etc/{name}"]
    # A private /tmp: a tmpfs of its own, charged to the sandbox's memory limit.
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--symlink", "/tmp", "/var/tmp"]  # noqa: S108
    for path in runtime_mounts(spec.extra_ro_paths):
        args += ["--ro-bind", str(path), str(path)]
    args += ["--ro-bind", str(spec.sandbox_dir), str(spec.sandbox_dir)]
    args += ["--bind", str(spec.workspace), str(spec.workspace)]
    args += ["--bind", str(spec.home), str(spec.home)]
    # Everything bwrap created (mount points, /etc) stays read-only: writes go to the workspace, HOME, /tmp.
    args += ["--remount-ro", "/", "--chdir", str(spec.workspace), "--clearenv"]
    for name, value in spec.env.items():
        if name not in HOST_ONLY_ENV:
            args += ["--setenv", name, value]
    return args


def encode_args(args: Sequence[str]) -> bytes:
    if any("\0" in a for a in args):
        raise SandboxError("a sandbox argument or environment value contains a NUL byte")
    return b"".join(a.encode() + b"\0" for a in args)


class BwrapLauncher:
    name = "bwrap"
    bridge_start = "exec"

    def __init__(self, bwrap: str | None = None) -> None:
        self.bwrap = bwrap or shutil.which("bwrap") or "bwrap"

    def outer_argv(self, spec: LaunchSpec, args_fd: int) -> list[str]:
        return [*spec.limits_argv, *drop_privileges(spec.ids), self.bwrap, "--args", str(args_fd), "--", *spec.argv]

    async def launch(self, spec: LaunchSpec) -> SandboxProcess:
        return await self.start_bwrap(spec)

    async def start_bwrap(self, spec: LaunchSpec, output: int | None = None) -> asyncio.subprocess.Process:
        """bwrap running `spec`; its output to the `output` fd if given, else to a pipe of its own."""
        identity_dir = spec.sandbox_dir / "etc"
        identity_dir.mkdir(exist_ok=True)
        identity_dir.chmod(0o755)  # bwrap, as the sandbox user, reads these to bind them (the server's umask is 077)
        for name, text in identity_files(spec).items():
            (identity_dir / name).write_text(text)
            (identity_dir / name).chmod(0o644)
        # A memfd rather than a pipe: no writer to keep alive, and bwrap closes the fd once it has read it (a
        # pipe on stdin would leave the sandbox without a stdin, which libuv in the bridge does not survive).
        args_fd = os.memfd_create("ash-bwrap-args", os.MFD_CLOEXEC)
        try:
            os.write(args_fd, encode_args(bwrap_args(spec, identity_dir)))
            os.lseek(args_fd, 0, os.SEEK_SET)
            return await asyncio.create_subprocess_exec(
                *self.outer_argv(spec, args_fd),
                # bwrap's own environment is /proc/1/environ inside: nothing in it but what identifies the
                # sandbox to the server (its reaper and tests look for ASH_SANDBOX_ID).
                env={"PATH": DEFAULT_PATH, "ASH_SANDBOX_ID": spec.sandbox_id},
                cwd="/",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if output is None else output,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                pass_fds=[args_fd],
            )
        finally:
            os.close(args_fd)

    def exec_argv(self, spec: LaunchSpec, sandbox_pid: int, command: list[str]) -> list[str]:
        source = ENTER_SOURCE.read_text()
        helper = [sys.executable, "-I", "-S", "-c", source, str(sandbox_pid), str(spec.workspace)]
        return [*spec.limits_argv, *drop_privileges(spec.ids), *helper, *command]

    async def release(self, spec: LaunchSpec) -> None:
        return None  # the sandbox's folder (its /etc files) is the manager's to remove

    async def sweep(self) -> int:
        return 0  # bwrap keeps nothing outside the sandbox folders

    async def probe(self, ids: tuple[int, int] | None, runtime: Sequence[Path]) -> str | None:
        """Start one real sandbox that runs the bridge's interpreter; why it failed, or None."""
        with tempfile.TemporaryDirectory(prefix="ash-probe-") as tmp:
            spec = probe_spec(Path(tmp), ids, runtime, "probe")
            try:
                process = await self.start_bwrap(spec)
            except (OSError, SandboxError) as exc:
                return str(exc) or type(exc).__name__
            try:
                async with asyncio.timeout(30):
                    output, _ = await process.communicate()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
                return "bwrap did not finish within 30 s"
            if process.returncode != 0:
                text = output.decode(errors="replace").strip()
                return text or f"bwrap exited with status {process.returncode}"
        return None
