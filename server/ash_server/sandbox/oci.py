"""The OCI bundle of one gVisor sandbox (gvisor.py): its config.json and the root filesystem it mounts over.

The bundle gives the sandbox what bubblewrap gives it (bwrap.py), in OCI terms: /usr and a few /etc files of the
host read-only, the bridge's runtime (interpreter, virtualenv, bridge package) read-only at the same absolute paths,
the sandbox's folder read-only (its sockets, its bridge config), the session's workspace and HOME read-write, a
private /tmp, its own /proc, the sandbox user, no capability, no network but loopback. The root filesystem is an
empty folder we build (mount points and the /bin, /lib... links), read-only, so nothing of the host is visible but
what is bound.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .bwrap import ETC, ETC_FULL_NETWORK, HOST_ONLY_ENV, HOSTNAME, ROOT_LINKS, runtime_mounts, sandbox_ids
from .launcher import LaunchSpec

# Where the sandbox finds the commands that stand in for coreutils' under gVisor (gvisor.py, COMPAT_COMMANDS),
# first in its PATH.
COMPAT_BIN = "/opt/ash/gvisor-bin"
# PID 1 of the sandbox, which reaps the orphans the agent leaves (the bridge would let them pile up as zombies:
# under bubblewrap, bwrap is that init).
INIT = "/usr/bin/tini"
RO = ["rbind", "ro", "nosuid", "nodev"]
RW = ["rbind", "rw", "nosuid", "nodev"]


def bind(source: Path, destination: Path | str, options: list[str]) -> dict[str, Any]:
    return {"destination": str(destination), "type": "bind", "source": str(source), "options": options}


def environment(spec: LaunchSpec, compat_bin: Path | None) -> list[str]:
    """The sandbox's environment as OCI has it, with COMPAT_BIN first in PATH when there is one."""
    env = {name: value for name, value in spec.env.items() if name not in HOST_ONLY_ENV}
    if compat_bin is not None:
        env["PATH"] = f"{COMPAT_BIN}:{env.get('PATH', '')}".rstrip(":")
    return [f"{name}={value}" for name, value in env.items()]


def mounts(
    spec: LaunchSpec, identity_dir: Path, compat_bin: Path | None = None, *, root: Path = Path("/")
) -> list[dict[str, Any]]:
    """The sandbox's mounts, in the order they are made (parents before what is bound inside them)."""
    tmpfs_options = ["nosuid", "nodev", "mode=1777"]
    found: list[dict[str, Any]] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
        # A private /tmp, in the sandbox's own memory (charged to its limit, as bubblewrap's tmpfs is).
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": tmpfs_options},  # noqa: S108
        bind(root / "usr", "/usr", RO),
    ]
    for name in ROOT_LINKS:
        path = root / name
        if path.is_dir() and not path.is_symlink():
            found.append(bind(path, f"/{name}", RO))
    etc = [*ETC, *(ETC_FULL_NETWORK if spec.network == "full" else ())]
    for name in etc:
        path = root / "etc" / name
        if path.exists():
            found.append(bind(path, f"/etc/{name}", RO))
    for name in ("passwd", "group", "hosts"):
        found.append(bind(identity_dir / name, f"/etc/{name}", RO))
    for path in runtime_mounts(spec.extra_ro_paths):
        found.append(bind(path, path, RO))
    if compat_bin is not None:
        found.append(bind(compat_bin, COMPAT_BIN, RO))
    found.append(bind(spec.sandbox_dir, spec.sandbox_dir, RO))
    found.append(bind(spec.workspace, spec.workspace, RW))
    found.append(bind(spec.home, spec.home, RW))
    return found


def build_rootfs(rootfs: Path, targets: Sequence[tuple[str, str]], *, root: Path = Path("/")) -> None:
    """An empty root with a folder for every mount point (or an empty file, for a file bound there) and the
    host's /bin, /lib... symlinks into /usr."""
    make_dirs(rootfs)
    for name in ROOT_LINKS:
        path = root / name
        if path.is_symlink():
            (rootfs / name).symlink_to(os.readlink(path))
    for source, destination in targets:
        point = rootfs / destination.lstrip("/")
        if point.is_symlink() or point.exists():
            continue
        if Path(source).is_dir() or source in ("proc", "tmpfs"):
            make_dirs(point)
        else:
            make_dirs(point.parent)
            point.touch()
            point.chmod(0o644)
    make_dirs(rootfs / "var")
    (rootfs / "var" / "tmp").symlink_to("/tmp")  # noqa: S108


def make_dirs(path: Path) -> None:
    """mkdir -p with every folder it makes 0755 whatever the server's umask (077): the sandbox user walks them."""
    if path.is_dir():
        return
    make_dirs(path.parent)
    path.mkdir()
    path.chmod(0o755)


def rlimits(spec: LaunchSpec) -> list[dict[str, Any]]:
    """Enforced by gVisor's own kernel: a single file can never outgrow the disk quota (sandbox/disk.py watches the
    quota itself), and a fixed number of open files."""
    found = [{"type": "RLIMIT_NOFILE", "hard": 65536, "soft": 65536}]
    if spec.file_size_bytes is not None:
        found.append({"type": "RLIMIT_FSIZE", "hard": spec.file_size_bytes, "soft": spec.file_size_bytes})
    return found


def config(
    spec: LaunchSpec, identity_dir: Path, compat_bin: Path | None = None, *, root: Path = Path("/")
) -> dict[str, Any]:
    """config.json: the bridge as the sandbox user, in its workspace, with nothing but its own environment."""
    uid, gid = sandbox_ids(spec)
    namespaces = [{"type": kind} for kind in ("pid", "ipc", "uts", "mount")]
    if spec.network != "full":
        namespaces.append({"type": "network"})
    return {
        "ociVersion": "1.0.0",
        "process": {
            "terminal": False,
            "user": {"uid": uid, "gid": gid, "additionalGids": []},
            "args": [INIT, "--", *spec.argv],
            "env": environment(spec, compat_bin),
            "cwd": str(spec.workspace),
            # None of the five sets: the bridge, and everything the agent runs, starts with no capability at all.
            "capabilities": {"bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []},
            "rlimits": rlimits(spec),
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": HOSTNAME,
        "mounts": mounts(spec, identity_dir, compat_bin, root=root),
        "linux": {"namespaces": namespaces},
    }


def write_bundle(
    bundle: Path, spec: LaunchSpec, identity_dir: Path, compat_bin: Path | None = None, *, root: Path = Path("/")
) -> None:
    """The bundle folder: config.json (private: it holds the sandbox's environment) and its rootfs."""
    document = config(spec, identity_dir, compat_bin, root=root)
    bundle.mkdir(mode=0o700, parents=True, exist_ok=True)
    build_rootfs(bundle / "rootfs", [(m["source"], m["destination"]) for m in document["mounts"]], root=root)
    path = bundle / "config.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(document, out)
