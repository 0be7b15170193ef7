"""The OCI bundle of a gVisor sandbox: what it binds, how, and as whom (the suites under gVisor run it for real)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from ash_server.sandbox.launcher import LaunchSpec
from ash_server.sandbox.oci import COMPAT_BIN, config, write_bundle


def spec(tmp_path: Path, network: str = "none") -> LaunchSpec:
    return LaunchSpec(
        sandbox_id="sbx-test",
        argv=["/usr/bin/python3", "-I", "-m", "ash_bridge"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "ASH_SERVER_PID": "1"},
        workspace=tmp_path / "workspace",
        home=tmp_path / "home",
        sandbox_dir=tmp_path / "sandbox",
        ids=(65534, 65534),
        extra_ro_paths=[Path("/usr/lib/python3"), tmp_path / "venv"],
        network=network,
        file_size_bytes=64 << 20,
    )


def binds(document: dict[str, Any]) -> dict[str, list[str]]:
    return {m["destination"]: m["options"] for m in document["mounts"] if m["type"] == "bind"}


def test_the_bridge_runs_as_the_sandbox_user_with_nothing_more(tmp_path: Path) -> None:
    document = config(spec(tmp_path), tmp_path / "etc", tmp_path / "compat")
    process = document["process"]
    assert process["user"] == {"uid": 65534, "gid": 65534, "additionalGids": []}
    assert all(value == [] for value in process["capabilities"].values()) and len(process["capabilities"]) == 5
    assert process["noNewPrivileges"] is True
    assert process["args"] == ["/usr/bin/tini", "--", "/usr/bin/python3", "-I", "-m", "ash_bridge"]  # PID 1 reaps
    assert process["cwd"] == str(tmp_path / "workspace")
    assert {"type": "RLIMIT_FSIZE", "hard": 64 << 20, "soft": 64 << 20} in process["rlimits"]
    env = dict(entry.split("=", 1) for entry in process["env"])
    assert "ASH_SERVER_PID" not in env  # the host's pid means nothing in gVisor's kernel
    assert env["PATH"] == f"{COMPAT_BIN}:/usr/bin:/bin"
    assert document["root"] == {"path": "rootfs", "readonly": True}


def test_only_the_workspace_and_home_are_writable(tmp_path: Path) -> None:
    mounted = binds(config(spec(tmp_path), tmp_path / "etc", tmp_path / "compat"))
    writable = {path for path, options in mounted.items() if "rw" in options}
    assert writable == {str(tmp_path / "workspace"), str(tmp_path / "home")}
    assert all("ro" in options and "nosuid" in options for path, options in mounted.items() if path not in writable)
    # What the bridge needs, at the host's own paths, and the generated identity files; no /etc/shadow, no /root.
    for path in ("/usr", str(tmp_path / "venv"), str(tmp_path / "sandbox"), "/etc/passwd", COMPAT_BIN):
        assert path in mounted, path
    assert "/usr/lib/python3" not in mounted  # under /usr already
    assert not {"/etc/shadow", "/root", "/etc/resolv.conf"} & set(mounted)


def test_the_network_namespace_goes_only_for_full_network(tmp_path: Path) -> None:
    def kinds(network: str) -> set[str]:
        return {n["type"] for n in config(spec(tmp_path, network), tmp_path / "etc")["linux"]["namespaces"]}

    assert "network" in kinds("none") and "network" in kinds("allowlist")
    assert "network" not in kinds("full")
    assert "/etc/resolv.conf" in binds(config(spec(tmp_path, "full"), tmp_path / "etc"))


def test_the_bundle_is_private_and_its_mount_points_walkable_whatever_the_umask(tmp_path: Path) -> None:
    for name in ("workspace", "home", "sandbox", "venv"):
        (tmp_path / name).mkdir()
    old = os.umask(0o077)  # the server's
    try:
        write_bundle(tmp_path / "bundle", spec(tmp_path), tmp_path / "etc")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "bundle" / "config.json").stat().st_mode) == 0o600
    assert json.loads((tmp_path / "bundle" / "config.json").read_text())["process"]["user"]["uid"] == 65534
    point = tmp_path / "bundle" / "rootfs" / str(tmp_path / "workspace").lstrip("/")
    assert point.is_dir()
    walked = point
    while walked != tmp_path / "bundle":
        assert stat.S_IMODE(walked.stat().st_mode) == 0o755, walked
        walked = walked.parent
    assert (tmp_path / "bundle" / "rootfs" / "etc" / "passwd").is_file()  # a file's mount point is a file
